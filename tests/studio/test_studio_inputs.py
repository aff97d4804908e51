"""The studio's video, ControlNet and after-the-render fields (issue 21): a clip uploaded for Video
Input, a ControlNet unit's uploaded control image, the interpolation / upscaling / loop switches and
the videos they make, through the real app (FastAPI TestClient)."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the studio's extra is not installed (pip install -e '.[studio]')")

from deforum_engine import cli  # noqa: E402
from deforum_engine.backends.preview import PreviewBackend  # noqa: E402
from deforum_engine.config.settings import validate_settings  # noqa: E402
from deforum_engine.output import RenderFolder, probe_video  # noqa: E402
from deforum_engine.plan.frame_plan import build_plan  # noqa: E402
from deforum_engine.rendering.summary import describe_plan  # noqa: E402
from deforum_engine.studio.documents import read_document  # noqa: E402
from deforum_engine.studio.errors import StudioError  # noqa: E402
from studio_client import studio, upload  # noqa: E402
from studio_helpers import encoded, picture, read_frames, wait_for_job  # noqa: E402
from video_clips import panned_clip, psnr  # noqa: E402

SMALL = {"W": 64, "H": 64, "fps": 10, "seed": 4, "video_preset": "ultrafast"}
CANNY = "lllyasviel/control_v11p_sd15_canny"


def finished(client, job: dict) -> dict:
    status = wait_for_job(lambda: client.get(f"/api/jobs/{job['id']}").json())
    assert status["status"] == "finished", status["error"]
    return status


def settings_of(client, job: dict) -> dict:
    return client.get(f"/api/jobs/{job['id']}/settings").json()


def test_a_clip_uploaded_for_video_input_makes_a_preview_of_its_frames(tmp_path):
    clip, frames = panned_clip(tmp_path, count=9)
    with studio(tmp_path / "data") as client:
        stored = upload(client, "video_init_path", clip.read_bytes(), "walk.mp4", "video/mp4")
        assert stored.status_code == 201, stored.text
        video = stored.json()
        assert video["kind"] == "video_init_path" and video["filename"] == "walk.mp4"
        document = {**SMALL, "animation_mode": "Video Input", "video_init_path": video["id"], "max_frames": 50,
                    "extract_nth_frame": 2, "hybrid_comp_alpha_schedule": "0:(0.3)"}
        created = client.post("/api/jobs?preview=true", json=document)
        assert created.status_code == 201, created.text
        job = created.json()
        assert job["frames"] == 5  # the clip's frames 0, 2, 4, 6, 8: the clip decides the count, as in Deforum
        status = finished(client, job)
        saved = settings_of(client, job)
        assert saved["max_frames"] == 5 and saved["extract_nth_frame"] == 2
        assert Path(saved["video_init_path"]).parent == (tmp_path / "data" / "uploads").resolve()
        out = tmp_path / "preview.mp4"
        out.write_bytes(client.get(f"/api/jobs/{job['id']}/video").content)
        assert probe_video(out)["frames"] == 5
        rendered = read_frames(RenderFolder(Path(status["folder"])).root)
        assert psnr(rendered[2], frames[4]) > 28  # output frame 2 is clip frame 4 (a preview runs no model)

        curves = client.post("/api/plan/curves", json=document).json()
        assert curves["frames"] == 5 and curves["curves"]["hybrid_comp_alpha_schedule"] == [0.3] * 5
        missing = client.post("/api/jobs?preview=true", json={**document, "video_init_path": None})
        assert missing.status_code == 422 and "video_init_path" in missing.json()["error"]


def test_a_preset_clip_plays_on_the_input_videos_first_frame(tmp_path):
    clip, _ = panned_clip(tmp_path, count=4, width=96, height=96)
    with studio(tmp_path / "data") as client:
        video = upload(client, "video_init_path", clip.read_bytes(), "walk.mp4", "video/mp4").json()
        on_default = client.get("/api/presets/pan_left/preview.mp4")
        on_clip = client.get(f"/api/presets/pan_left/preview.mp4?picture={video['id']}")
        assert on_default.status_code == on_clip.status_code == 200
        assert on_default.content != on_clip.content
        assert (tmp_path / "data" / "previews" / f"first-{video['id']}.png").is_file()
        control = upload(client, "cn_1_vid_path", clip.read_bytes(), "walk.mp4", "video/mp4").json()
        refused = client.get(f"/api/presets/pan_left/preview.mp4?picture={control['id']}")
        assert refused.status_code == 422 and "not an init image, image prompt or input video" in refused.json()["error"]


def test_a_controlnet_unit_takes_an_uploaded_control_image_and_refuses_paths(tmp_path):
    with studio(tmp_path / "data", controlnet_models=(CANNY,)) as client:
        options = client.get("/api/options").json()
        assert options["choices"]["cn_model"] == [CANNY] and "canny" in options["choices"]["cn_module"]
        assert options["choices"]["cn_control_mode"][0] == "Balanced"
        assert options["control_units"]["count"] == 5
        edges = upload(client, "cn_1_vid_path", encoded(picture(64, 64, seed=5)), "edges.png")
        mask = upload(client, "mask_file", encoded(picture(64, 64, seed=6)), "mask.png")
        assert edges.status_code == mask.status_code == 201, edges.text
        unit = {"cn_1_enabled": True, "cn_1_module": "canny", "cn_1_weight": "0:(0.8), 4:(0.4)",
                "cn_1_guidance_start": "0:(0.1)", "cn_1_guidance_end": "0:(0.9)",
                "cn_1_control_mode": "ControlNet is more important", "cn_1_vid_path": edges.json()["id"]}
        document = {**SMALL, "max_frames": 6, "motion_preset": "zoom_in", **unit,
                    "use_mask": True, "mask_file": mask.json()["id"]}
        created = client.post("/api/jobs?preview=true", json=document)
        assert created.status_code == 201, created.text
        job = created.json()
        assert any("not used by a motion preview" in note for note in job["notes"])
        finished(client, job)
        saved = settings_of(client, job)
        assert saved["cn_1_enabled"] and saved["cn_1_model"] == CANNY and saved["cn_1_module"] == "canny"
        assert saved["cn_1_weight"] == "0:(0.8), 4:(0.4)" and saved["cn_1_control_mode"] == "ControlNet is more important"
        assert Path(saved["cn_1_vid_path"]).name.startswith(edges.json()["id"])
        assert Path(saved["mask_file"]).name.startswith(mask.json()["id"])
        summary = describe_plan(build_plan(validate_settings(saved)), PreviewBackend())
        assert f"ControlNet cn_1: {CANNY}, module canny" in summary and "(not used by the motion preview)" in summary

        for setting, value, status in (("cn_1_vid_path", "/etc/hostname", 400), ("mask_file", "/etc/hostname", 400),
                                       ("cn_1_model", "/models/evil.safetensors", 422),
                                       ("cn_2_model", "someone/other-controlnet", 422)):
            refused = client.post("/api/jobs?preview=true", json={**document, setting: value})
            assert refused.status_code == status and refused.json()["error"].startswith(f"document: {setting}: ")
        wrong = client.post("/api/jobs?preview=true", json={**document, "cn_1_vid_path": mask.json()["id"]})
        assert wrong.status_code == 422 and "uploaded for mask_file" in wrong.json()["error"]


def test_without_controlnet_models_a_preview_leaves_units_out_and_a_model_render_is_refused(tmp_path):
    with studio(tmp_path / "data") as client:
        assert client.get("/api/options").json()["choices"]["cn_model"] == []
        edges = upload(client, "cn_2_vid_path", encoded(picture(64, 64, seed=5)), "edges.png").json()
        document = {**SMALL, "max_frames": 4, "cn_2_enabled": True, "cn_2_module": "canny", "cn_2_vid_path": edges["id"]}
        created = client.post("/api/jobs?preview=true", json=document)
        assert created.status_code == 201, created.text
        job = created.json()
        assert any("unit(s) 2 left out" in note and "serve --controlnet" in note for note in job["notes"])
        finished(client, job)
        assert settings_of(client, job)["cn_2_enabled"] is False
        running = client.app.state.studio
        with pytest.raises(StudioError) as refused:
            read_document(document, running.uploads, running.server, preview=False)
        assert refused.value.status == 422 and refused.value.message.startswith("document: cn_2_enabled: ")


def test_the_after_render_switches_reach_the_job_and_its_videos_are_listed(tmp_path):
    from tiny_post import save_tiny_rife, save_tiny_upscaler

    rife = save_tiny_rife(tmp_path / "rife", "4.6").parent
    upscaler = save_tiny_upscaler(tmp_path / "up" / "tiny-x4.pth", "srvgg", 4)
    with studio(tmp_path / "data", rife_model=str(rife), upscale_model=str(upscaler)) as client:
        options = client.get("/api/options").json()
        assert options["choices"]["r_upscale_model"][:2] == [str(upscaler), "realesr-animevideov3"]
        assert options["choices"]["frame_interpolation_engine"] == ["None", "RIFE"]
        document = {**SMALL, "max_frames": 6, "motion_preset": "zoom_in", "seamless_loop": True,
                    "frame_interpolation_engine": "RIFE", "frame_interpolation_x_amount": 2,
                    "r_upscale_video": True, "r_upscale_factor": "x2"}
        for setting, value in (("rife_model", "/models/rife"), ("r_upscale_model", "/models/up.pth")):
            refused = client.post("/api/jobs?preview=true", json={**document, setting: value})
            assert refused.status_code == 422 and refused.json()["error"].startswith(f"document: {setting}: ")
        job = client.post("/api/jobs?preview=true", json=document).json()
        status = finished(client, job)
        saved = settings_of(client, job)
        assert (saved["seamless_loop"], saved["frame_interpolation_engine"], saved["r_upscale_video"]) == (True, "RIFE", True)
        assert saved["rife_model"] == str(rife) and saved["r_upscale_model"] == str(upscaler)
        assert [video["name"] for video in status["extra_videos"]] == ["Upscaled x2", "RIFE x2"]
        sizes = []
        for video in status["extra_videos"]:
            answer = client.get(video["url"])
            assert answer.status_code == 200 and answer.headers["content-type"] == "video/mp4"
            path = tmp_path / video["file"]
            path.write_bytes(answer.content)
            probed = probe_video(path)
            sizes.append((probed["frames"], probed["width"]))
        assert sizes == [(6, 128), (12, 64)]  # upscaled x2; interpolated x2 round the loop (N * X frames)
        assert client.get(f"/api/jobs/{job['id']}/videos/settings.json").status_code == 404


def test_serve_takes_the_models_it_offers(monkeypatch):
    started = []
    monkeypatch.setattr("deforum_engine.studio.server.serve", started.append)
    assert cli.main(["serve", "--preview", "--controlnet", CANNY, "--controlnet", "./cn/depth", "--rife-model",
                     "./rife", "--upscale-model", "./up/x4.pth"]) == 0
    config = started[0]
    assert config.controlnet_models == (CANNY, "./cn/depth")
    assert (config.rife_model, config.upscale_model) == ("./rife", "./up/x4.pth")
