"""ControlNet units and masks in whole renders: a recording backend for what the loop hands over, the
tiny diffusers models for what users see, and the checks that run before any model loads."""
import json

import numpy as np
import pytest
from PIL import Image

from deforum_engine import SettingsError, render
from deforum_engine.backends.base import FrameRequest, RenderContext
from deforum_engine.frame.warp import warp_frame
from deforum_engine.rendering.inputs import check_inputs
from deforum_engine.output import read_frame
from deforum_engine.plan.frame_plan import build_plan
from deforum_engine.config.settings import validate_settings

SIZE = 64
QUIET = {"W": SIZE, "H": SIZE, "seed": 5, "video_preset": "ultrafast", "color_coherence": "None",
         "contrast_schedule": "0:(1)", "amount_schedule": "0:(0)", "zoom": "0:(1)", "safety_checker": False}


class RecordingBackend:
    """A backend that records each request and answers with a picture of its own (distinct per frame)."""

    name = "recording"
    is_preview = False

    def __init__(self):
        self.context: RenderContext | None = None
        self.requests: list[FrameRequest] = []

    def begin(self, context):
        self.context = context

    def generate(self, request):
        self.requests.append(request)
        return np.random.default_rng(request.index).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def frames_of(folder):
    return [read_frame(path) for path in sorted((folder / "frames").glob("*.png"))]


def square_picture(path, size=SIZE):
    picture = np.zeros((size, size, 3), dtype=np.uint8)
    picture[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255
    Image.fromarray(picture).save(path)
    return path


def half_mask(path, width=SIZE, height=SIZE):
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[:, width // 2:] = 255
    Image.fromarray(mask).save(path)
    return path


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pictures")
    return {"square": square_picture(folder / "square.png"), "mask": half_mask(folder / "mask.png"),
            "big_mask": half_mask(folder / "big_mask.png", 128, 96)}


def unit(number=1, **values):
    return {f"cn_{number}_{key}": value for key, value in {"enabled": True, **values}.items()}


# --- the loop, with a recording backend ------------------------------------------------------------------

def test_loopback_feeds_the_previous_output_frame(tiny_controlnet_dir, tmp_path):
    backend = RecordingBackend()
    values = {**QUIET, "max_frames": 4, "noise_schedule": "0:(0)",
              **unit(model=str(tiny_controlnet_dir / "folder"), loopback_mode=True)}
    result = render(validate_settings(values), out=tmp_path / "r", backend=backend, quiet=True)
    written = frames_of(result.folder)
    assert backend.context.controlnets == (("cn_1_model", str(tiny_controlnet_dir / "folder")),)
    assert backend.requests[0].control == ()  # frame 0 has no previous frame and no init image: the unit sits out
    for n in (1, 2, 3):
        (control,) = backend.requests[n].control
        assert control.unit == "cn_1" and control.weight == 1.0
        assert np.array_equal(control.image, written[n - 1])


def test_weights_and_windows_are_read_per_frame(tiny_controlnet_dir, pictures, tmp_path):
    backend = RecordingBackend()
    values = {**QUIET, "max_frames": 4, **unit(model=str(tiny_controlnet_dir / "folder"), vid_path=str(pictures["square"]),
                                                module="canny", threshold_a=100, threshold_b=200,
                                                weight="0:(0), 1:(0.5), 3:(1)", guidance_end="0:(1), 2:(0), 3:(0.5)")}
    render(validate_settings(values), out=tmp_path / "r", backend=backend, quiet=True)
    controls = [request.control for request in backend.requests]
    assert controls[0] == () and controls[2] == ()  # weight 0; an empty window (0 .. 0)
    assert controls[1][0].weight == 0.5 and controls[3][0].guidance_end == 0.5
    assert set(np.unique(controls[1][0].image)) == {0, 255}  # canny edges of the square


def test_a_mask_keeps_the_masked_out_region_equal_to_the_warped_frame(pictures, tmp_path):
    backend = RecordingBackend()
    values = {**QUIET, "max_frames": 3, "translation_x": "0:(2)", "noise_schedule": "0:(0.2)", "use_mask": True,
              "mask_file": str(pictures["mask"]), "mask_overlay_blur": 4}
    settings = validate_settings(values)
    result = render(settings, out=tmp_path / "r", backend=backend, quiet=True)
    written = frames_of(result.folder)
    plan = build_plan(settings)
    for n in (1, 2):
        request = backend.requests[n]
        assert request.mask is not None and not request.mask[:, :32].any() and request.mask[:, 32:].all()
        warped = warp_frame(written[n - 1], plan.motion[n], "replicate")
        # no noise outside the noise mask (the mask, without use_noise_mask): the prepared frame is the warped one
        assert np.array_equal(request.image[:, :28], warped[:, :28])
        assert not np.array_equal(request.image[:, 36:], warped[:, 36:])
        # outside the mask (away from its blurred edge) the frame is the prepared frame, exactly
        assert np.array_equal(written[n][:, :20], request.image[:, :20])
        generated = np.random.default_rng(n).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        assert np.array_equal(written[n][:, 44:], generated[:, 44:])


def test_an_inverted_mask_expression_repaints_the_other_half(pictures, tmp_path):
    backend = RecordingBackend()
    values = {**QUIET, "max_frames": 2, "use_mask": True, "mask_file": str(pictures["mask"]), "invert_mask": True,
              "mask_schedule": '0:("{video_mask} & {everywhere}")', "noise_schedule": "0:(0)"}
    render(validate_settings(values), out=tmp_path / "r", backend=backend, quiet=True)
    mask = backend.requests[1].mask
    assert mask[:, :32].all() and not mask[:, 32:].any()


def test_plan_json_has_unit_values_and_mask_expressions(tiny_controlnet_dir, pictures):
    values = {**QUIET, "max_frames": 3, **unit(2, model=str(tiny_controlnet_dir / "folder"), loopback_mode=True,
                                              weight="0:(0.2), 2:(0.6)", guidance_start=0.1),
              "use_mask": True, "mask_file": str(pictures["mask"]),
              "mask_schedule": '0:("{video_mask}"), 2:("!{video_mask}")'}
    frames = build_plan(validate_settings(values)).to_json()["frames"]
    assert frames["cn_2_weight"] == pytest.approx([0.2, 0.4, 0.6])
    assert frames["cn_2_guidance_start"] == [0.1] * 3 and frames["cn_2_guidance_end"] == [1.0] * 3
    assert frames["mask_schedule"] == ["{video_mask}", "{video_mask}", "!{video_mask}"]
    assert "cn_1_weight" not in frames  # disabled units have no per-frame values


# --- bad input, before any model loads --------------------------------------------------------------------

def _write_video(path, count):
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), (SIZE, SIZE), fps=10, macro_block_size=1)
    writer.send(None)
    for value in range(count):
        writer.send(np.full((SIZE, SIZE, 3), value * 20, np.uint8).tobytes())
    writer.close()
    return path


def test_bad_unit_inputs_are_named_before_any_model_loads(tiny_controlnet_dir, tiny_sd_dir, pictures, tmp_path):
    folder = str(tiny_controlnet_dir / "folder")
    sdxl = tmp_path / "sdxl-controlnet"
    sdxl.mkdir()
    (sdxl / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel", "cross_attention_dim": 2048}))
    short = _write_video(tmp_path / "short.mp4", 3)
    cases = [
        (unit(2, model=folder, module="openpose", vid_path=str(pictures["square"])),
         "cn_2_module: 'openpose' is not available; choose one of none, canny, depth, invert, tile, blur"),
        (unit(1, model="nobody/no-such-controlnet", vid_path=str(pictures["square"])),
         "cn_1_model: the ControlNet 'nobody/no-such-controlnet' is not in the local Hugging Face cache"),
        (unit(3, model=str(sdxl), vid_path=str(pictures["square"])), "cn_3_model: the ControlNet .* is for SDXL"),
        (unit(1, model=folder, vid_path=str(short)), "cn_1_vid_path: the video .*short.mp4 has 3 frames but the render "
                                                     "has 5"),
    ]
    for values, message in cases:
        with pytest.raises(SettingsError, match=message):
            check_inputs(validate_settings({**QUIET, "max_frames": 5, "model": str(tiny_sd_dir), **values}))


def test_mask_files_are_checked_and_fitted_with_a_note(pictures, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(SettingsError, match="mask_file"):
        check_inputs(validate_settings({**QUIET, "max_frames": 2, "use_mask": True, "mask_file": str(broken)}))
    backend = RecordingBackend()
    values = {**QUIET, "max_frames": 2, "use_mask": True, "mask_file": str(pictures["big_mask"]), "init_fit": "resize"}
    render(validate_settings(values), out=tmp_path / "r", backend=backend, quiet=True)
    assert "note: mask_file: " in capsys.readouterr().err
    assert backend.requests[1].mask[:, 33:].all() and not backend.requests[1].mask[:, :31].any()


def test_motion_previews_leave_units_out_and_need_no_controlnet(pictures, tmp_path):
    values = {**QUIET, "max_frames": 2, **unit(model="nobody/not-downloaded", vid_path=str(pictures["square"])),
              "use_mask": True, "mask_file": str(pictures["mask"])}
    result = render(validate_settings(values), out=tmp_path / "p", preview=True, quiet=True)
    assert result.preview and len(frames_of(result.folder)) == 2
    with pytest.raises(SettingsError, match="cn_1_model: the ControlNet 'nobody/not-downloaded'"):
        render(validate_settings(values), out=tmp_path / "r", backend=RecordingBackend(), quiet=True)


@pytest.mark.parametrize("payload", ["__import__('os').system('x')", "{video_mask} | open('x')", "{video_mask}) & (",
                                     "{video_mask} & {__class__}", "{video_mask} && {init_mask}"])
def test_hostile_mask_schedules_are_refused_by_the_plan(pictures, payload):
    values = {**QUIET, "max_frames": 3, "use_mask": True, "mask_file": str(pictures["mask"]),
              "mask_schedule": f'0:("{{video_mask}}"), 2:("{payload}")'}
    with pytest.raises(SettingsError, match="^mask_schedule: "):
        build_plan(validate_settings(values))


def test_word_masks_warn_and_count_as_everywhere(pictures):
    from deforum_engine.plan.control import WordMaskWarning
    from deforum_engine.rendering.guidance import check_guidance

    values = {**QUIET, "max_frames": 2, "use_mask": True, "mask_file": str(pictures["mask"]),
              "mask_schedule": '0:("{video_mask} | <a red cat>")'}
    with pytest.warns(WordMaskWarning, match=r"mask_schedule: word masks \(<a red cat>\) need a segmentation model"):
        plan = build_plan(validate_settings(values))
    guide = check_guidance(plan, None)
    assert guide.frame_mask(plan.control.mask, 1).all()


def test_a_control_video_gives_each_frame_its_own_source_frame(tiny_controlnet_dir, tmp_path):
    import imageio_ffmpeg

    video = tmp_path / "control.mp4"
    writer = imageio_ffmpeg.write_frames(str(video), (SIZE, SIZE), fps=10, macro_block_size=1, codec="libx264rgb",
                                         output_params=["-qp", "0"])
    writer.send(None)
    for value in range(6):
        writer.send(np.full((SIZE, SIZE, 3), value * 40, np.uint8).tobytes())
    writer.close()
    backend = RecordingBackend()
    values = {**QUIET, "max_frames": 6, "diffusion_cadence": 2,
              **unit(model=str(tiny_controlnet_dir / "controlnet.safetensors"), vid_path=str(video))}
    render(validate_settings(values), out=tmp_path / "r", backend=backend, quiet=True)
    seen = {request.index: int(request.control[0].image.mean()) for request in backend.requests}
    assert seen == {0: 0, 2: 80, 4: 160, 5: 200}  # the diffused frames, each with its own video frame
