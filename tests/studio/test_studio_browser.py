"""The studio's page in a real browser: Debian's headless Chromium driven by Playwright's Python package.

A person's path: open the page, switch the image prompt on and pick a picture with the file input,
drop an init image on its drop zone, slide the influence to "high", choose a motion preset, click
Create on a motion preview, watch frames arrive, see the video play, download it. Screenshots of
the page before and during the render go to tests/artifacts/ (not kept in git).

Skipped, with the reason, when Chromium or Playwright is missing, unless DEFORUM_REQUIRE_BROWSER=1
(CI sets it), which turns the skip into a failure. Playwright's own browser downloads are never used.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from studio_helpers import encoded, picture
from video_clips import panned_clip

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--no-first-run"]


def _missing() -> str | None:
    try:
        import fastapi  # noqa: F401
        import playwright.sync_api  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        return f"{error.name} is not installed (pip install -e '.[dev]'; never `playwright install`)"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (Debian: apt-get install chromium)"
    return None


@pytest.fixture
def browser():
    reason = _missing()
    if reason is not None:
        if os.environ.get("DEFORUM_REQUIRE_BROWSER") == "1":
            pytest.fail(f"DEFORUM_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def studio_url(tmp_path):
    """The studio (motion previews) under uvicorn on a free loopback port, in a thread of this process."""
    from deforum_engine.studio.config import StudioConfig

    yield from _serve(StudioConfig(data=tmp_path / "data", preview_only=True))


@pytest.fixture
def studio_with_rife_url(tmp_path):
    """The same, started with tiny random RIFE weights (`serve --rife-model`), so renders can be interpolated."""
    from deforum_engine.studio.config import StudioConfig
    from tiny_post import save_tiny_rife

    rife = save_tiny_rife(tmp_path / "rife", "4.6").parent
    yield from _serve(StudioConfig(data=tmp_path / "data", preview_only=True, rife_model=str(rife)))


def _serve(config):
    import uvicorn

    from deforum_engine.studio.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the studio did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(15)


def _drop_file(page, selector: str, name: str, data: bytes, mime: str) -> None:
    """Drag and drop a file onto an element, as a person dragging it from the desktop would."""
    page.evaluate(
        """([selector, name, data, mime]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            const target = document.querySelector(selector);
            for (const type of ["dragenter", "dragover", "drop"]) {
                target.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
            }
        }""",
        [selector, name, base64.b64encode(data).decode(), mime],
    )


def test_a_person_makes_a_motion_preview_with_an_image_prompt_and_downloads_it(browser, studio_url, tmp_path):
    from deforum_engine.output import probe_video

    ARTIFACTS.mkdir(exist_ok=True)
    garden = tmp_path / "garden.png"
    garden.write_bytes(encoded(picture(160, 120, seed=8)))
    page = browser.new_page(viewport={"width": 1360, "height": 1000}, accept_downloads=True)
    problems = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(studio_url)
    page.wait_for_selector(".preset[data-preset=spiral_in]")
    assert page.text_content("#mode-badge") == "motion previews (no model)"
    page.screenshot(path=str(ARTIFACTS / "studio-before.png"), full_page=True)

    page.fill("#prompt", "a lighthouse on a cliff at dusk, oil painting")
    page.click("label.switch-row")  # the image prompt switch
    page.set_input_files("#image-prompt-file", str(garden))
    page.wait_for_selector("#image-prompt-thumb:not([hidden])")
    assert page.text_content("#image-prompt-name") == "garden.png"
    page.locator("#influence-slider").fill("3")
    assert page.text_content("#influence-label") == "high" and page.input_value("#influence-value") == "0.8"
    page.click("#init-details summary")
    _drop_file(page, "#init-image-drop", "dusk.png", encoded(picture(256, 256, seed=3)), "image/png")
    page.wait_for_selector("#init-image-thumb:not([hidden])")
    assert page.text_content("#init-image-name") == "dusk.png"
    page.click(".preset[data-preset=spiral_in]")
    page.wait_for_function("document.getElementById('preset-clip').readyState >= 2")
    for field, value in (("#max-frames", "72"), ("#width", "192"), ("#height", "192"), ("#seed", "42")):
        page.fill(field, value)

    page.click("#create-button")
    page.wait_for_selector("#live-frame[data-shown]")
    page.screenshot(path=str(ARTIFACTS / "studio-during.png"), full_page=True)
    assert "frames" in page.text_content("#progress-text")
    page.wait_for_selector("#result-video:not([hidden])", timeout=60_000)
    page.wait_for_function("(() => { const v = document.getElementById('result-video');"
                           " return v.currentTime > 0 && v.videoWidth === 192 && !v.error; })()")
    page.screenshot(path=str(ARTIFACTS / "studio-finished.png"), full_page=True)
    with page.expect_download() as download:
        page.click("#download-video")
    video = tmp_path / "download.mp4"
    download.value.save_as(video)
    assert probe_video(video)["frames"] == 72

    with page.expect_download() as download:
        page.click("#download-settings")
    settings_file = tmp_path / "settings.json"
    download.value.save_as(settings_file)
    settings = json.loads(settings_file.read_text())
    assert (settings["image_prompt_influence"], settings["motion_preset"], settings["seed"]) == ("high", "spiral_in", 42)
    assert settings["init_image"] and settings["image_prompt"] and settings["prompt_style"] == "none"

    # The settings file loads back into the form.
    page.reload()
    page.wait_for_selector(".preset[data-preset=spiral_in]")
    page.set_input_files("#settings-file", str(settings_file))
    page.wait_for_selector("#image-prompt-thumb:not([hidden])")
    assert page.input_value("#prompt") == "a lighthouse on a cliff at dusk, oil painting"
    assert page.text_content("#image-prompt-name") == "garden.png" and page.text_content("#init-image-name") == "dusk.png"
    assert page.get_attribute(".preset[data-preset=spiral_in]", "aria-selected") == "true"
    assert page.input_value("#seed") == "42" and page.text_content("#influence-label") == "high"
    assert problems == []



def test_a_deforum_user_keyframes_edits_schedules_renders_3d_and_from_a_clip_and_re_edits(browser, studio_with_rife_url,
                                                                                       tmp_path):
    """Issue 21's path: three prompt keyframes, the zoom schedule edited with its curve redrawn, a broken
    keyframe shown at the field, a 3D preset filling the camera fields, Create, frames arriving, the
    render opened from the gallery and its settings back in the form; then a clip uploaded for Video
    Input with hybrid compositing, a ControlNet unit and RIFE interpolation, Create, its videos played
    from the gallery; screenshots at 1440 and 390 px."""
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    problems = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(studio_with_rife_url)
    page.wait_for_selector(".preset[data-preset='3d_fly_through']")
    page.wait_for_function("document.getElementById('curve-zoom').dataset.values !== undefined")

    page.fill("#prompt", "a forest at dawn, watercolour")
    for frame, prompt, negative in ((8, "a forest at noon", "people"), (16, "a forest at dusk", ""),
                                    (20, "a forest at night, stars", "blur")):
        page.click("#add-keyframe")
        row = page.locator("#prompt-keyframes .keyframe").last
        row.locator(".kf-frame").fill(str(frame))
        row.locator(".kf-prompt").fill(prompt)
        row.locator(".kf-negative").fill(negative)
    assert page.locator("#prompt-keyframes .keyframe").count() == 3

    before = page.get_attribute("#curve-zoom", "data-values")
    page.fill("#schedule-zoom", "0:(1.0), 4:(1.08)")
    page.wait_for_function(f"document.getElementById('curve-zoom').dataset.values !== {json.dumps(before)}")
    assert page.get_attribute("#curve-zoom", "data-values").startswith("1,1.02,1.04,1.06,1.08")

    page.fill("#schedule-zoom", "0:(1.0), 4:(1.08 +)")
    page.wait_for_function("document.getElementById('error-zoom').textContent.includes('keyframe 2')")
    assert page.get_attribute("#schedule-zoom", "aria-invalid") == "true"
    assert page.text_content("#error-zoom").startswith('Zoom: keyframe 2 ("4:(1.08 +)")')
    page.fill("#schedule-zoom", "0:(1.0), 4:(1.08)")
    page.wait_for_function("document.getElementById('error-zoom').textContent === ''")

    page.click(".preset[data-preset='3d_fly_through']")
    assert page.is_checked("input[name=animation-mode][value='3D']")
    assert page.input_value("#schedule-translation_z") == "0:(2.5)"
    assert page.is_visible("#schedule-rotation_3d_y") and not page.is_visible("#schedule-zoom")
    page.wait_for_function("document.getElementById('curve-translation_z').dataset.values.startsWith('2.5')")

    page.fill("#max-frames", "")
    page.click("#create-button")
    assert page.text_content("#form-message") == "Frames is empty"
    page.fill("#width", "60")
    for field, value in (("#max-frames", "24"), ("#height", "64"), ("#seed", "5")):
        page.fill(field, value)
    page.click("#create-button")
    page.wait_for_function("document.getElementById('form-message').textContent.startsWith('Width: ')")
    page.fill("#width", "64")
    page.click("#create-button")
    page.wait_for_selector("#live-frame[data-shown]")
    page.wait_for_selector(".render-card .thumb-button img")
    page.wait_for_selector("#result-video:not([hidden])", timeout=60_000)
    page.evaluate("window.scrollTo(0, 0)")
    # the README's screenshot (docs/studio.png is refreshed from it by hand, so a test run leaves git clean)
    page.screenshot(path=str(ARTIFACTS / "studio-readme.png"))
    assert page.evaluate("document.documentElement.scrollWidth") <= 1440

    page.reload()
    page.wait_for_selector(".render-card [data-action=edit]")
    card = page.locator(".render-card").first
    page.wait_for_function("document.querySelector('.render-card .size').textContent !== ''")
    assert "64×64" in card.text_content() and "24 / 24 frames" in card.text_content()
    card.locator("[data-action=watch]").click()
    page.wait_for_selector("#result-video:not([hidden])")
    page.wait_for_timeout(300)  # the job's event stream has sent its frame by now
    assert page.is_hidden("#live-frame")  # the video alone, not a still beside it
    card.locator("[data-action=edit]").click()
    page.wait_for_function("document.querySelectorAll('#prompt-keyframes .keyframe').length === 3")
    assert page.input_value("#prompt") == "a forest at dawn, watercolour"
    assert page.input_value("#prompt-keyframes .keyframe:nth-child(3) .kf-prompt") == "a forest at night, stars"
    assert page.input_value("#prompt-keyframes .keyframe:nth-child(1) .kf-negative") == "people"
    assert page.is_checked("input[name=animation-mode][value='3D']")
    assert page.input_value("#schedule-translation_z") == "0:(2.5)" and page.input_value("#max-frames") == "24"

    _video_input_render(page, tmp_path)
    page.screenshot(path=str(ARTIFACTS / "studio-1440.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1440

    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    clipped = page.evaluate("""[...document.querySelectorAll('.preset, .kf-frame, button, label:not(.sr-only), h3')]
        .filter((e) => e.offsetParent && e.scrollWidth > e.clientWidth + 1).map((e) => e.textContent || e.value)""")
    assert clipped == []
    page.screenshot(path=str(ARTIFACTS / "studio-390.png"), full_page=True)
    assert problems == []


def _video_input_render(page, tmp_path) -> None:
    """A clip for Video Input, composited over itself, a ControlNet unit with its image, RIFE x2: Create,
    the frames the clip gives, the interpolated video played from the render panel and the gallery."""
    clip, _ = panned_clip(tmp_path, count=10)
    edges = tmp_path / "edges.png"
    edges.write_bytes(encoded(picture(64, 64, seed=4)))
    page.check("input[name=animation-mode][value='Video Input']")
    assert page.is_visible("#mode-note") and page.is_hidden("#schedule-translation_z")
    assert page.evaluate("document.getElementById('video-details').open")
    page.set_input_files("#video-init-file", str(clip))
    page.wait_for_selector("#video-init-thumb:not([hidden])")
    assert page.text_content("#video-init-name") == clip.name
    page.wait_for_function("document.getElementById('video-frames').textContent.includes('gives 10 frames')")
    assert "picture=" in page.get_attribute("#preset-clip", "src")  # the preset clip plays on the clip's first frame
    page.fill("#extract-nth-frame", "2")
    page.wait_for_function("document.getElementById('video-frames').textContent.includes('gives 5 frames')")
    assert page.is_hidden("#schedule-hybrid_comp_alpha_schedule")
    page.select_option("#hybrid-composite", "Normal")
    page.fill("#schedule-hybrid_comp_alpha_schedule", "0:(0.2), 4:(0.6)")
    page.wait_for_function("(document.getElementById('curve-hybrid_comp_alpha_schedule').dataset.values || '')"
                           ".startsWith('0.2,0.3,0.4,0.5,0.6')")

    page.click("#control-details summary")
    assert "no ControlNet model" in page.text_content("#controlnet-note")
    assert page.is_hidden("#cn-1-module")
    page.check("#cn-1-enabled")
    page.select_option("#cn-1-module", "canny")
    page.fill("#cn-1-weight", "0:(0.7)")
    page.set_input_files("#cn-1-file", str(edges))
    page.wait_for_selector("#cn-1-thumb:not([hidden])")
    page.click("#post-details summary")
    page.select_option("#frame-interpolation-engine", "RIFE")
    page.fill("#frame-interpolation-x-amount", "2")

    page.click("#create-button")
    page.wait_for_function("document.getElementById('form-message').textContent.includes('left out')")
    page.wait_for_function("document.getElementById('progress-text').textContent.includes('/ 5 frames')")
    page.wait_for_selector("#extra-videos button[data-url$='_RIFE_x2.mp4']", timeout=60_000)
    page.click("#extra-videos button[data-url$='_RIFE_x2.mp4']")
    page.wait_for_function("(() => { const v = document.getElementById('result-video');"
                           " return v.getAttribute('src').endsWith('_RIFE_x2.mp4') && v.currentTime > 0 && !v.error; })()")
    card = page.locator(".render-card").first
    page.wait_for_function("document.querySelector('.render-card .meta button.extra') !== null")
    assert "5 / 5 frames" in card.text_content()
    card.locator("[data-action=watch]").click()
    page.wait_for_function("document.getElementById('result-video').getAttribute('src').endsWith('/video')")
    card.locator("button.extra").click()
    page.wait_for_function("document.getElementById('result-video').getAttribute('src').endsWith('_RIFE_x2.mp4')")

    page.select_option("#frame-interpolation-engine", "None")
    card.locator("[data-action=edit]").click()  # the clip, the unit's image and the switches come back
    # the switch was set to None above: RIFE again means the job's settings have reached the form
    page.wait_for_function("document.getElementById('frame-interpolation-engine').value === 'RIFE'")
    page.wait_for_function("document.getElementById('cn-1-name').textContent === 'edges.png'")
    assert page.text_content("#video-init-name") == clip.name and page.input_value("#extract-nth-frame") == "2"
    assert page.is_checked("input[name=animation-mode][value='Video Input']")
    assert page.input_value("#hybrid-composite") == "Normal" and page.input_value("#frame-interpolation-engine") == "RIFE"
    assert page.input_value("#cn-1-module") == "canny" and not page.is_checked("#cn-1-enabled")  # left out: no model
    page.evaluate("window.scrollTo(0, 0)")


def test_the_form_is_keyboard_reachable_and_speaks_the_form_s_words(browser, studio_url):
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.goto(studio_url)
    page.wait_for_selector(".preset[data-preset=audio_pulse_zoom]")
    reached = set()
    for _ in range(120):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.id || document.activeElement.dataset.preset || ''"))
    for wanted in ("prompt", "add-keyframe", "schedule-zoom", "sampler", "max-frames", "create-button", "spiral_in"):
        assert wanted in reached, wanted
    assert page.is_hidden("#schedule-perspective_flip_theta")
    page.check("#enable-perspective-flip")
    page.fill("#schedule-perspective_flip_theta", "0:(0), 10:(20)")
    page.wait_for_function("(document.getElementById('curve-perspective_flip_theta').dataset.values || '')"
                           ".startsWith('0,2,4,6')")
    assert page.is_hidden("#schedule-seed_schedule")
    page.select_option("#seed-behavior", "schedule")
    page.fill("#schedule-seed_schedule", "0:(5), 2:(9)")
    page.wait_for_function("(document.getElementById('curve-seed_schedule').dataset.values || '').startsWith('5,7,9')")
    page.focus(".preset[data-preset=audio_pulse_zoom]")
    page.keyboard.press("Enter")
    page.click("#create-button")
    page.wait_for_function("document.getElementById('form-message').textContent !== ''")
    message = page.text_content("#form-message")
    assert "soundtrack_path" not in message and "Soundtrack" in message, message
