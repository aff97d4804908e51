"""ControlNet units' settings, preprocessors, mask steps and mask expressions (no models)."""
import cv2
import numpy as np
import pytest

from deforum_engine.control import masks, preprocess
from deforum_engine.schedules.mask_expressions import evaluate_mask, parse_mask_expression
from deforum_engine.control.sources import FrameSource, check_source
from deforum_engine.config.control_units import UNIT_DEFAULTS, read_units, unit_setting_names
from deforum_engine.errors import SettingsError


def _unit(number=1, **values):
    settings = {f"cn_{number}_enabled": True, f"cn_{number}_model": "some/controlnet", f"cn_{number}_vid_path": "a.png"}
    settings.update({f"cn_{number}_{key}": value for key, value in values.items()})
    return settings


# --- units --------------------------------------------------------------------------------------------------

def test_units_read_only_enabled_ones_with_deforums_defaults():
    settings = {**_unit(2, module="canny", threshold_a=100, threshold_b=200), "cn_4_enabled": False}
    (unit,) = read_units(settings)
    assert unit.name == "cn_2" and unit.module == "canny" and unit.model == "some/controlnet"
    assert (unit.weight, unit.guidance_start, unit.guidance_end) == ("0:(1)", "0:(0.0)", "0:(1.0)")
    assert unit.control_mode == "Balanced" and unit.fit == "crop" and unit.processor_res == 64
    assert (unit.threshold_a, unit.threshold_b) == (100.0, 200.0)
    assert len(unit_setting_names()) == 5 * len(UNIT_DEFAULTS)


def test_control_extension_spellings_are_accepted():
    (unit,) = read_units(_unit(module="tile_resample", threshold_a=2, resize_mode="Resize and Fill",
                               control_mode="controlnet is more important"))
    assert (unit.module, unit.fit, unit.control_mode) == ("tile", "pad", "ControlNet is more important")


@pytest.mark.parametrize(("values", "message"), [
    ({"module": "openpose"}, "cn_2_module: 'openpose' is not available; choose one of none, canny, depth, invert, tile, blur"),
    ({"model": "None"}, "cn_2_model: unit 2 is enabled but names no ControlNet model"),
    ({"vid_path": ""}, "cn_2_vid_path: unit 2 has no control input"),
    ({"control_mode": "Prompt"}, "cn_2_control_mode: 'Prompt' is not one of 'Balanced'"),
    ({"resize_mode": "Stretch"}, "cn_2_resize_mode: 'Stretch' is not one of"),
    ({"module": "tile", "threshold_a": 64}, "cn_2_threshold_a: tile's down-sampling rate must be in 1 .. 8"),
    ({"processor_res": 10}, "cn_2_processor_res: 10 is out of range"),
])
def test_unit_errors_name_the_unit_setting(values, message):
    with pytest.raises(SettingsError, match="^" + message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        read_units(_unit(2, **values))


def test_loopback_and_depth_units_need_no_input_file():
    assert read_units(_unit(vid_path="", loopback_mode=True))[0].loopback_mode
    assert read_units(_unit(vid_path="", module="depth_midas"))[0].module == "depth"


# --- preprocessors -------------------------------------------------------------------------------------------

def _square_picture(size=64):
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[16:48, 16:48] = 255
    return image


def test_canny_finds_the_square_edges_with_opencv_thresholds():
    edges = preprocess.canny(_square_picture(), 100, 200)
    assert edges.shape == (64, 64, 3) and set(np.unique(edges)) == {0, 255}
    assert edges[15, 30].all() and not edges[32, 32].any() and not edges[2, 2].any()
    expected = cv2.Canny(_square_picture(), 100, 200)
    assert np.array_equal(edges[:, :, 0], expected)
    assert not preprocess.canny(_square_picture() // 10, 100, 200).any()  # faint edges below the thresholds


def test_control_map_runs_at_processor_resolution_then_fits_the_render():
    (unit,) = read_units(_unit(module="canny", threshold_a=100, threshold_b=200, processor_res=64))
    picture = cv2.resize(_square_picture(), (256, 128), interpolation=cv2.INTER_NEAREST)
    control = preprocess.control_map(unit, picture, 96, 64)
    assert control.shape == (64, 96, 3) and control.max() == 255
    (perfect,) = read_units(_unit(module="canny", pixel_perfect=True, resize_mode="Just Resize"))
    assert preprocess.processor_resolution(perfect, 128, 256, 64, 96) == 64  # max(64/128, 96/256) * 128


def test_invert_blur_tile_and_depth_maps():
    picture = _square_picture()
    assert np.array_equal(preprocess.invert(picture), 255 - picture)
    blurred = preprocess.blur(picture, 3)
    assert 0 < blurred[16, 16, 0] < 255 and blurred[32, 32, 0] == 255
    assert preprocess.tile(picture, 4).shape == (16, 16, 3)
    (depth_unit,) = read_units(_unit(module="depth", vid_path=""))
    grey = np.tile(np.arange(64, dtype=np.uint8)[None] * 4, (64, 1))
    control = preprocess.control_map(depth_unit, grey, 64, 64)
    assert control.shape == (64, 64, 3) and np.array_equal(control[:, :, 1], grey)


# --- mask expressions ---------------------------------------------------------------------------------------

def _random_masks(seed=0, shape=(16, 16)):
    rng = np.random.default_rng(seed)
    return {name: rng.random(shape) > 0.5 for name in ("video_mask", "init_mask", "everywhere")}


def _evaluate(text, values):
    return evaluate_mask(parse_mask_expression(text), lambda leaf: values[leaf.text])


def test_and_of_init_and_video_mask_is_the_pixelwise_and():
    values = _random_masks()
    result = _evaluate("{init_mask} & {video_mask}", values)
    assert np.array_equal(result, values["init_mask"] & values["video_mask"])


def test_operator_precedence_and_grouping():
    v = _random_masks(1)
    a, b, c = v["video_mask"], v["init_mask"], v["everywhere"]
    assert np.array_equal(_evaluate("{video_mask} | {init_mask} & {everywhere}", v), a | (b & c))
    assert np.array_equal(_evaluate("({video_mask} | {init_mask}) & {everywhere}", v), (a | b) & c)
    assert np.array_equal(_evaluate("{video_mask} ^ {init_mask} | {everywhere}", v), a ^ (b | c))
    assert np.array_equal(_evaluate("{video_mask} - {init_mask} ^ {everywhere}", v), a & ~(b ^ c))
    assert np.array_equal(_evaluate(r"{video_mask} \ {init_mask}", v), a & ~b)
    assert np.array_equal(_evaluate("!{video_mask} & {init_mask}", v), ~a & b)
    assert np.array_equal(_evaluate("!!{video_mask}", v), a)


def test_leaves_of_every_kind_are_parsed():
    tree = parse_mask_expression("[masks/a-b.png] & <a red cat> | {everywhere}")
    assert [(leaf.kind, leaf.text) for leaf in tree.leaves()] == [
        ("file", "masks/a-b.png"), ("words", "a red cat"), ("name", "everywhere")]


HOSTILE_MASKS = ["__import__('os').system('x')", "{video_mask}; import os", "{video_mask} && {init_mask}",
                 "{__class__}", "eval({video_mask})", "({video_mask}", "{video_mask})", "{video_mask", "",
                 "{}", "[]", "{video_mask} &", "& {video_mask}", "(" * 40 + "{video_mask}" + ")" * 40,
                 "!" * 40 + "{video_mask}", "{video_mask}" * 2, "{video_mask} {init_mask}", "x" * 5000, "\x00"]


@pytest.mark.parametrize("text", HOSTILE_MASKS)
def test_hostile_mask_expressions_are_refused(text):
    with pytest.raises(SettingsError, match="^mask_schedule: "):
        parse_mask_expression(text)


def test_errors_point_at_the_column():
    with pytest.raises(SettingsError, match=r"unknown mask \{human_mask\}.*at column 16"):
        parse_mask_expression("{video_mask} & {human_mask}")


# --- mask steps ---------------------------------------------------------------------------------------------

def test_brightness_and_contrast_mean_what_they_say():
    grey = np.array([[50, 100, 150, 200]], dtype=np.uint8)
    assert np.array_equal(masks.adjust_mask(grey, 2.0, 1.0), [[100, 200, 255, 255]])
    stretched = masks.adjust_mask(grey, 1.0, 2.0)  # mean 125: 125 + 2 * (x - 125)
    assert np.array_equal(stretched, [[0, 75, 175, 255]])
    assert np.array_equal(masks.adjust_mask(grey, 1.0, 1.0), grey)


def test_inpaint_keeps_the_masked_out_region_equal_to_the_prepared_frame():
    rng = np.random.default_rng(0)
    generated, prepared = (rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2))
    mask = np.zeros((64, 64), dtype=bool)
    mask[:, 32:] = True
    out = masks.inpaint_composite(generated, prepared, mask, blur=4)
    assert np.array_equal(out[:, :16], prepared[:, :16])  # far from the edge: untouched
    assert np.array_equal(out[:, 48:], generated[:, 48:])
    seam = out[:, 30:34].astype(int)
    assert not np.array_equal(seam, prepared[:, 30:34]) and not np.array_equal(seam, generated[:, 30:34])
    assert np.array_equal(masks.inpaint_composite(generated, prepared, mask, blur=0)[:, :32], prepared[:, :32])


def test_overlay_and_noise_mask():
    frame, original = np.full((8, 8, 3), 200, np.uint8), np.full((8, 8, 3), 10, np.uint8)
    mask = np.zeros((8, 8), dtype=bool)
    mask[:4] = True
    out = masks.overlay(frame, original, mask)
    assert (out[:4] == 200).all() and (out[4:] == 10).all()
    noised = masks.noise_only_in(original, frame, mask)
    assert (noised[:4] == 200).all() and (noised[4:] == 10).all()


def test_alpha_and_binary_masks():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    assert masks.alpha_mask(rgba) is None  # uniform alpha: nothing masked, as in Deforum
    rgba[:2, :, 3] = 255
    assert np.array_equal(masks.binary(masks.alpha_mask(rgba)), rgba[:, :, 3] > 0)


# --- sources ------------------------------------------------------------------------------------------------

def _write_video(path, frames):
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), (32, 32), fps=10, macro_block_size=1,
                                         output_params=["-qp", "0"], codec="libx264rgb")
    writer.send(None)
    for value in frames:
        writer.send(np.full((32, 32, 3), value, np.uint8).tobytes())
    writer.close()


def test_video_source_gives_frame_i_and_a_short_video_is_refused(tmp_path):
    video = tmp_path / "control.mp4"
    _write_video(video, [0, 60, 120, 180])
    assert check_source(video, "cn_1_vid_path", 4) == 4
    with pytest.raises(SettingsError, match=r"cn_1_vid_path: the video .*control.mp4 has 4 frames but the render has 6"):
        check_source(video, "cn_1_vid_path", 6)
    source = FrameSource(video, "cn_1_vid_path")
    assert [int(source.frame(i).mean()) for i in (0, 1, 3, 2)] == [0, 60, 180, 120]
    source.close()


def test_unreadable_mask_files_are_settings_errors(tmp_path):
    bad = tmp_path / "mask.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(SettingsError, match="mask_file"):
        check_source(bad, "mask_file", 3)
    with pytest.raises(SettingsError, match="mask_file: .*missing.mp4 does not exist"):
        check_source(tmp_path / "missing.mp4", "mask_file", 3)
