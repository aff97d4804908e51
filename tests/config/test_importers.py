"""Importers: Deforum settings files and Parseq manifests, on realistic files in tests/data/importers."""
import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from deforum_engine.cli import main
from deforum_engine.errors import SettingsError
from deforum_engine.config.importers.deforum import import_deforum, looks_like_deforum
from deforum_engine.config.importers.parseq import (
    extend_to, load_parseq_manifest, parseq_overrides, split_negative,
)
from deforum_engine.plan.frame_plan import build_plan
from deforum_engine.schedules import ScheduleWarning
from deforum_engine.config.settings import IgnoredSettingsWarning, validate_settings
from deforum_engine.config.files import load_settings

DATA = Path(__file__).parents[1] / "data" / "importers"
A1111_FULL = DATA / "a1111_2d_full_settings.txt"
A1111_SCHEDULED = DATA / "a1111_3d_scheduling_settings.txt"
NOTEBOOK = DATA / "notebook_2d_settings.txt"
PARSEQ_ZOOM = DATA / "parseq_zoom_angle.json"
PARSEQ_SEED = DATA / "parseq_seed_travel.json"


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def imported(path: Path, **changes):
    raw = read(path)
    raw.update(changes)
    return import_deforum(raw, str(path))


def minimal(**keys) -> dict:
    """A small extension-style file: enough for looks_like_deforum, plus the keys under test."""
    return {"animation_mode": "2D", "W": 512, "H": 512, **keys}


# ---------------------------------------------------------------- Deforum: realistic files

def test_full_extension_file_maps_to_engine_settings():
    result = imported(A1111_FULL)
    s = result.settings
    assert (s["W"], s["H"], s["max_frames"], s["fps"], s["seed"]) == (768, 432, 144, 24, 3141592)
    assert s["seed_behavior"] == "iter" and s["seed_iter_N"] == 1
    assert s["seed_schedule"] == '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)'
    assert s["zoom"] == "0: (1.0025+0.002*sin(1.25*3.14*t/30))"
    assert s["angle"] == "0: (0), 48: (0.5), 96: (0)"
    assert s["translation_x"] == "0: (2*sin(2*3.14*t/48))"
    assert s["transform_center_x"] == s["transform_center_y"] == "0: (0.5)"
    assert s["enable_perspective_flip"] is False and s["perspective_flip_fv"] == "0: (53)"
    assert s["strength_schedule"] == "0: (0.65), 48: (0.55), 96: (0.65)"
    assert s["noise_schedule"] == "0: (0.065)" and s["cfg_scale_schedule"] == "0: (7)"
    assert s["amount_schedule"] == "0: (0.1)" and s["kernel_schedule"] == "0: (5)"
    assert s["border"] == "replicate" and s["color_coherence"] == "LAB"
    assert s["diffusion_cadence"] == 2
    assert (s["noise_type"], s["perlin_octaves"], s["perlin_persistence"]) == ("perlin", 4, 0.5)
    assert s["steps"] == 30 and s["steps_schedule"] is None
    assert s["sampler"] == "DPM++ 2M Karras" and s["sampler_schedule"] is None
    assert s["init_image"] == "inputs/first_frame.png" and s["strength"] == 0.75
    assert s["add_soundtrack"] is True and s["soundtrack_path"] == "audio/lighthouse_theme.mp3"
    assert s["prompts"]["48"] == "a lighthouse in a storm, crashing waves, dramatic lighting --neg sunny, calm sea"
    assert list(s["prompts"]) == ["0", "48", "96"]
    assert s["positive_prompts"] == "masterpiece, best quality"
    assert s["negative_prompts"] == "blurry, lowres, watermark"
    assert s["name"] == "Deforum"
    assert s["parseq_manifest"] is None and s["parseq_use_deltas"] is True


def test_full_extension_file_lists_what_it_ignores():
    raw = read(A1111_FULL)
    result = import_deforum(raw, str(A1111_FULL))
    ignored = set(result.ignored)
    for key in ("use_looper", "init_images",
                "enable_checkpoint_scheduling", "checkpoint_schedule",
                "subseed_schedule", "sd_model_name", "deforum_git_commit_id"):
        assert key in ignored, key
    for key in ("W", "zoom", "prompts", "use_init", "init_image", "add_soundtrack", "soundtrack_path",
                "color_coherence", "color_coherence_image_path", "batch_name", "steps_schedule",
                "enable_steps_scheduling", "sampler_schedule", "animation_mode", "parseq_manifest",
                "animation_prompts_positive", "animation_prompts_negative",
                # the 3D camera is an engine feature now (animation_mode 3D)
                "translation_z", "rotation_3d_x", "use_depth_warping", "depth_algorithm",
                "enable_noise_multiplier_scheduling", "noise_multiplier_schedule",
                # interpolation and upscaling are engine features now (post/)
                "r_upscale_video", "r_upscale_model", "frame_interpolation_engine", "frame_interpolation_x_amount",
                # ControlNet units and masks are engine features now (read even when switched off)
                "cn_1_enabled", "cn_5_weight", "cn_3_vid_path", "use_mask", "mask_file", "mask_schedule",
                # video in is an engine feature now (issue 18)
                "hybrid_motion", "hybrid_comp_alpha_schedule", "video_init_path", "optical_flow_cadence"):
        assert key not in ignored, key
    assert result.ignored == [key for key in raw if key in ignored]  # file order, no repeats
    notes = " ".join(result.notes)
    assert "video_init_path is a URL" in notes and "hybrid video is off" in notes and "cn_1_enabled" not in notes
    assert result.settings["hybrid_motion"] == "None" and "RAFT" not in notes
    assert "v1-5-pruned-emaonly.safetensors" in notes


def test_noise_multiplier_schedule_is_imported():
    s = imported(A1111_FULL).settings  # the extension's defaults: switched on, 1.05
    assert s["enable_noise_multiplier_scheduling"] is True and s["noise_multiplier_schedule"] == "0: (1.05)"
    keys = ("enable_noise_multiplier_scheduling", "noise_multiplier_schedule")
    plan = build_plan(validate_settings({key: s[key] for key in keys} | {"max_frames": 3}))
    assert list(plan.values["noise_multiplier"]) == [1.05] * 3


def test_notebook_file_with_deprecated_names_and_values():
    result = imported(NOTEBOOK)
    s = result.settings
    assert s["enable_perspective_flip"] is True                     # flip_2d_perspective
    assert s["perspective_flip_phi"] == "0:(t%15)"
    assert s["color_coherence"] == "LAB"                            # "Match Frame 0 LAB"
    assert s["diffusion_cadence"] == 1                              # "1"
    assert s["seed"] == 2653397011                                  # "2653397011"
    assert s["sampler"] == "Euler a"                                # euler_ancestral
    assert s["cfg_scale_schedule"] == 7                             # scale
    assert s["steps"] == 50 and "steps_schedule" not in s
    assert s["init_image"] is None                                  # use_init false, URL left alone
    assert s["border"] == "wrap" and s["zoom"] == "0:(1.04)"
    assert s["prompts"] == {
        "0": "a beautiful apple, trending on Artstation",
        "20": "a beautiful banana, trending on Artstation",
        "30": "a beautiful coconut, trending on Artstation",
        "40": "a beautiful durian, trending on Artstation",
    }
    assert s["name"] == "StableFun"
    assert s["hybrid_flow_method"] == "Farneback" and s["hybrid_comp_alpha_schedule"] == "0:(1)"  # hybrid_video_*
    assert s["hybrid_composite"] == "None" and "video_init_path" not in s  # hybrid off: the clip is not read
    for key in ("prompts", "near_plane", "fov", "hybrid_video_use_video_as_mse_image", "clip_name",
                "grad_inject_timing",
                "interpolate_key_frames", "flip_2d_perspective"):
        assert (key in result.ignored) == (key != "flip_2d_perspective"), key


def test_scheduling_switches_on():
    result = imported(A1111_SCHEDULED)
    s = result.settings
    assert s["steps"] == 25 and s["steps_schedule"] == "0: (25), 60: (40)"
    assert s["sampler"] == "Euler a" and s["sampler_schedule"] == '0: ("Euler a"), 60: ("DPM++ 2M Karras")'
    assert s["seed_behavior"] == "schedule" and s["seed_schedule"] == "0: (777), 60: (778)"
    assert s["diffusion_cadence"] == 3 and s["noise_type"] == "uniform" and s["fps"] == 12
    assert s["color_coherence"] == "Image" and s["color_coherence_image"] == "palettes/sunset.png"
    assert s["add_soundtrack"] is False and s["soundtrack_path"] is None
    assert s["init_image"] is None
    assert s["name"] == "777_512x512"
    notes = " ".join(result.notes)
    # 3D is an engine mode now: the camera settings map (before, a note said they had no effect)
    assert s["animation_mode"] == "3D" and "animation_mode" not in notes
    assert s["translation_z"] == "0: (1.75), 60: (3.5)" and s["rotation_3d_y"] == "0: (0.4*sin(2*3.14*t/60))"
    assert (s["fov_schedule"], s["near_schedule"], s["far_schedule"]) == ("0: (70)", "0: (200)", "0: (10000)")
    assert (s["use_depth_warping"], s["depth_algorithm"], s["midas_weight"]) == (True, "Midas-3-Hybrid", 0.2)
    assert (s["padding_mode"], s["sampling_mode"], s["save_depth_maps"]) == ("border", "bicubic", False)
    assert "Init Video" in notes and "enable_checkpoint_scheduling" in notes
    assert "checkpoint_schedule" in result.ignored and "clipskip_schedule" in result.ignored


def test_scheduling_switches_off_use_the_plain_values():
    result = imported(A1111_SCHEDULED, enable_steps_scheduling=False, enable_sampler_scheduling=False,
                      sampler_schedule=["not", "a", "schedule"])  # unused when off: never an error
    s = result.settings
    assert s["steps"] == 25 and s["steps_schedule"] is None
    assert s["sampler"] == "Euler a" and s["sampler_schedule"] is None
    assert "steps_schedule" not in result.ignored and "sampler_schedule" not in result.ignored


def test_scheduling_switch_on_without_its_schedule_is_an_error():
    with pytest.raises(SettingsError, match=r"x\.txt: enable_steps_scheduling .*add steps_schedule"):
        import_deforum(minimal(enable_steps_scheduling=True, steps=20), "x.txt")


def test_merged_prompts_are_separated_from_positive_and_negative():
    s = imported(A1111_SCHEDULED).settings
    assert s["negative_prompts"] == "nsfw, nude" and s["positive_prompts"] == ""
    assert s["prompts"]["0"].startswith("tiny cute swamp bunny") and "--neg" not in s["prompts"]["0"]
    assert s["prompts"]["60"] == "a beautiful coconut --neg photo, realistic"


def test_prompts_not_all_merged_are_kept_as_written():
    prompts = {"0": " a cat --neg nsfw", "10": "a dog"}
    s = import_deforum(minimal(prompts=prompts, negative_prompts="nsfw", positive_prompts=""), "x.txt").settings
    assert s["prompts"] == prompts


# ---------------------------------------------------------------- Deforum: values and names

@pytest.mark.parametrize("value, expected", [
    ("Match Frame 0 LAB", "LAB"), ("Match Frame 0 HSV", "HSV"), ("Match Frame 0 RGB", "RGB"),
    ("LAB", "LAB"), ("hsv", "HSV"), ("None", "None"), (None, "None"), ("Video Input", "Video Input"),
])
def test_color_coherence_values(value, expected):
    result = import_deforum(minimal(color_coherence=value), "x.txt")
    assert result.settings["color_coherence"] == expected
    assert "Video Input" not in " ".join(result.notes)


def test_current_name_wins_over_deprecated_one():
    s = import_deforum(minimal(enable_perspective_flip=False, flip_2d_perspective=True,
                               cfg_scale_schedule="0: (5)", scale=9), "x.txt").settings
    assert s["enable_perspective_flip"] is False and s["cfg_scale_schedule"] == "0: (5)"


def test_string_numbers_become_numbers():
    s = import_deforum(minimal(W="640", H="384", diffusion_cadence="2", fps="29.97", seed="-1",
                               steps="30.0", strength="0.8", zoom="1.02", perlin_octaves="4"), "x.txt").settings
    whole = ("W", "H", "diffusion_cadence", "seed", "steps", "perlin_octaves")
    assert [s[key] for key in whole] == [640, 384, 2, -1, 30, 4]
    assert all(type(s[key]) is int for key in whole)
    assert s["fps"] == pytest.approx(29.97) and s["strength"] == 0.8
    assert s["zoom"] == 1.02  # a bare number is a constant schedule


@pytest.mark.parametrize("key, value, complaint", [
    ("diffusion_cadence", "two", "number"),
    ("diffusion_cadence", 1.5, "whole number"),
    ("W", None, "whole number"),
    ("max_frames", float("inf"), "whole number"),
    ("perlin_persistence", float("nan"), "finite number"),
    ("fps", "fast", "number"),
    ("seed_behavior", "sometimes", "iter, fixed, random"),
    ("border", "mirror", "replicate, wrap, reflect"),
    ("enable_perspective_flip", "maybe", "true or false"),
    ("zoom", "", "schedule"),
    ("angle", [0, 1], "schedule"),
    ("color_coherence", "Sepia", "None, RGB, HSV, LAB, Image"),
    ("sampler", 3, "text"),
])
def test_unusable_mapped_value_names_file_and_key(key, value, complaint):
    with pytest.raises(SettingsError) as err:
        import_deforum(minimal(**{key: value}), "renders/old/20230101_settings.txt")
    message = str(err.value)
    assert message.startswith(f"renders/old/20230101_settings.txt: {key} = ")
    assert complaint in message


def test_ignored_keys_never_fail_loading():
    weird = {"cn_1_weight": 0.5, "init_images": {"bad": [1, 2]}, "fill": None,
             "future_feature_x": {"nested": True}, "mask_file": ""}
    result = import_deforum(minimal(**weird), "x.txt")
    read_and_dropped = {"cn_1_weight", "mask_file"}  # a disabled unit's and an unused mask's settings
    assert set(weird) - read_and_dropped <= set(result.ignored)
    assert not read_and_dropped & (set(result.ignored) | set(result.settings))


@pytest.mark.parametrize("add_soundtrack, path, expected", [
    ("File", "music/song.mp3", (True, "music/song.mp3")),
    ("None", "https://deforum.github.io/a1/A1.mp3", (False, None)),
    (True, "song.wav", (True, "song.wav")),
    (False, "", (False, None)),
])
def test_soundtrack(add_soundtrack, path, expected):
    s = import_deforum(minimal(add_soundtrack=add_soundtrack, soundtrack_path=path), "x.txt").settings
    assert (s["add_soundtrack"], s["soundtrack_path"]) == expected


@pytest.mark.parametrize("key, changes", [
    ("soundtrack_path", {"add_soundtrack": "File", "soundtrack_path": ""}),
    ("soundtrack_path", {"add_soundtrack": "File", "soundtrack_path": "https://deforum.github.io/a1/A1.mp3"}),
    ("init_image", {"use_init": True, "init_image": ""}),
    ("init_image", {"use_init": True, "init_image": "https://deforum.github.io/a1/I1.png"}),
    ("color_coherence_image_path", {"color_coherence": "Image", "color_coherence_image_path": ""}),
])
def test_switched_on_file_without_usable_path_is_an_error(key, changes):
    with pytest.raises(SettingsError, match=rf"^x\.txt: {key} = .*(give the file's path|download the file)"):
        import_deforum(minimal(**changes), "x.txt")


@pytest.mark.parametrize("batch_name, seed, expected", [
    ("Deforum_{timestring}", 5, "Deforum"),
    ("{seed}_{w}x{h}_{timestring}", 42, "42_512x512"),
    ("{seed}_{w}x{h}_{timestring}", -1, "512x512"),
    ("seed-{seed}", 0, "seed-0"),
    ("{timestring}", 5, None),
    ("../escape/attempt", 5, "escape_attempt"),
    ("My Batch {prompts}", 5, "My Batch"),
])
def test_batch_name_to_render_name(batch_name, seed, expected):
    assert import_deforum(minimal(batch_name=batch_name, seed=seed), "x.txt").settings["name"] == expected


def test_prompts_from_the_prompt_box_json_text():
    s = import_deforum(minimal(animation_prompts='{"0": "a red fox", "max_f/2": "a white fox --neg snow"}'),
                       "x.txt").settings
    assert s["prompts"] == {"0": "a red fox", "max_f/2": "a white fox --neg snow"}


@pytest.mark.parametrize("prompts, complaint", [
    ('{"0": "a red fox",}', "not valid JSON"),
    ({"0": None}, "frame '0'"),
    ("[1, 2]", "frame -> prompt"),
])
def test_bad_prompts_name_the_key(prompts, complaint):
    with pytest.raises(SettingsError, match=r"^x\.txt: animation_prompts = ") as err:
        import_deforum(minimal(animation_prompts=prompts), "x.txt")
    assert complaint in str(err.value)


def test_notebook_negative_prompt_dict_is_folded_in():
    s = import_deforum(minimal(animation_prompts={"0": "an apple", "20": "a pear --neg green"},
                               neg_prompts={"0": "blurry", "10": "text"}), "x.txt").settings
    assert s["prompts"] == {"0": "an apple --neg blurry", "10": "an apple --neg text", "20": "a pear --neg green"}


def test_only_still_image_prompts_gives_a_note():
    result = import_deforum(minimal(prompts=["a lake", "a portrait"]), "x.txt")
    assert "prompts" not in result.settings and "prompts" in result.ignored
    assert any("still-image" in note for note in result.notes)


def test_inline_parseq_manifest_in_a_deforum_file():
    manifest = PARSEQ_ZOOM.read_text(encoding="utf-8")
    s = import_deforum(minimal(parseq_manifest=manifest, parseq_use_deltas=False), "x.txt").settings
    assert s["parseq_manifest"] == manifest.strip() and s["parseq_use_deltas"] is False
    assert import_deforum(minimal(parseq_manifest=""), "x.txt").settings["parseq_manifest"] is None


@pytest.mark.parametrize("manifest, complaint", [
    ("https://sd-parseq.web.app/api/render?docId=doc-123", "download the manifest"),
    ('{"meta": {"generated_by": "sd_parseq"}, "options": {}}', "no rendered_frames"),
    ('{"rendered_frames": [', "not valid JSON"),
])
def test_unusable_parseq_manifest_in_a_deforum_file(manifest, complaint):
    with pytest.raises(SettingsError, match=r"^x\.txt: parseq_manifest: ") as err:
        import_deforum(minimal(parseq_manifest=manifest), "x.txt")
    assert complaint in str(err.value)


def test_animation_modes_give_notes_never_errors():
    for mode, words in (("Interpolation", "2D animation"),
                        ("Warp Drive", "unknown"), ("2D", None)):
        notes = " ".join(import_deforum(minimal(animation_mode=mode), "x.txt").notes)
        assert (words in notes) if words else "animation_mode" not in notes


def test_engine_only_keys_pass_through():
    s = import_deforum(minimal(motion_preset="zoom_in", image_prompt="ref.png", name="keep-me",
                               batch_name="Deforum_{timestring}"), "x.txt").settings
    assert (s["motion_preset"], s["image_prompt"], s["name"]) == ("zoom_in", "ref.png", "keep-me")


def test_looks_like_deforum():
    for path in (A1111_FULL, A1111_SCHEDULED, NOTEBOOK):
        assert looks_like_deforum(read(path)), path
    assert not looks_like_deforum({"zoom": "0: (1.01)", "max_frames": 60, "prompts": {"0": "a cat"}})
    assert not looks_like_deforum(["animation_mode"])
    assert looks_like_deforum({"deforum_git_commit_id": "abc"})


def test_import_does_not_change_the_raw_dict():
    raw = read(A1111_SCHEDULED)
    before = copy.deepcopy(raw)
    import_deforum(raw, "x.txt")
    assert raw == before


# ---------------------------------------------------------------- Parseq: loading

def test_manifest_loads_the_same_from_path_text_and_dict():
    expected = read(PARSEQ_ZOOM)
    text = PARSEQ_ZOOM.read_text(encoding="utf-8")
    assert load_parseq_manifest(PARSEQ_ZOOM) == expected
    assert load_parseq_manifest(str(PARSEQ_ZOOM)) == expected
    assert load_parseq_manifest(PARSEQ_ZOOM.name, base_dir=DATA) == expected
    assert load_parseq_manifest(Path(PARSEQ_ZOOM.name), base_dir=DATA) == expected
    assert load_parseq_manifest("  " + text) == expected
    assert load_parseq_manifest(expected) is expected


def test_missing_manifest_file_names_it(tmp_path):
    with pytest.raises(SettingsError, match=r"Parseq manifest .*nowhere\.json: file not found"):
        load_parseq_manifest("nowhere.json", base_dir=tmp_path)


def test_bad_json_file_names_it_and_the_position(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "rendered_frames": [\n    {"frame": 0,}\n  ]\n}', encoding="utf-8")
    with pytest.raises(SettingsError, match=r"broken\.json: not valid JSON .* line 3"):
        load_parseq_manifest(path)


def test_bad_inline_json_names_the_setting():
    with pytest.raises(SettingsError, match=r"inline JSON in parseq_manifest\): not valid JSON"):
        load_parseq_manifest('{"rendered_frames": [}')


@pytest.mark.parametrize("url", ["https://sd-parseq.web.app/api/render?docId=doc-1", "http://example.com/m.json"])
def test_url_is_refused_with_what_to_do(url):
    with pytest.raises(SettingsError, match="download the manifest and set parseq_manifest to the path"):
        load_parseq_manifest(url)


@pytest.mark.parametrize("manifest, complaint", [
    ({"meta": {}, "options": {}}, "no rendered_frames"),
    ({"rendered_frames": []}, "no rendered_frames"),
    ({"rendered_frames": [{"frame": 0}, "x"]}, r"rendered_frames\[1\] is not an object"),
    ({"rendered_frames": [{"frame": 0}, {"frame": 2}]}, r"rendered_frames\[1\] is frame 2"),
    ("[1, 2]", "expected a JSON object"),
])
def test_manifest_shape_errors(manifest, complaint):
    with pytest.raises(SettingsError, match=complaint):
        load_parseq_manifest(manifest)


def test_empty_value_is_refused():
    with pytest.raises(SettingsError, match="parseq_manifest is empty"):
        load_parseq_manifest("   ")


# ---------------------------------------------------------------- Parseq: overrides

def test_zoom_and_angle_take_deltas_by_default():
    manifest = load_parseq_manifest(PARSEQ_ZOOM)
    frames = manifest["rendered_frames"]
    over = parseq_overrides(manifest)
    assert (over.frame_count, over.fps, over.cadence) == (24, 24, 2)
    assert over.managed == ["zoom", "angle", "prompt", "negative_prompt"]
    np.testing.assert_allclose(over.values["zoom"], [f["zoom_delta"] for f in frames])
    np.testing.assert_allclose(over.values["angle"], [f["angle_delta"] for f in frames])
    assert over.values["zoom"].dtype == np.float64 and over.values["zoom"].shape == (24,)
    assert over.values["zoom"][5] == pytest.approx(1.025)   # 1 + per-frame change of a 1.0 -> 1.3 ramp
    assert set(over.values) == {"zoom", "angle"}             # unmanaged fields fall back to the settings


def test_absolute_values_without_deltas():
    manifest = load_parseq_manifest(PARSEQ_ZOOM)
    over = parseq_overrides(manifest, use_deltas=False)
    np.testing.assert_allclose(over.values["zoom"], [f["zoom"] for f in manifest["rendered_frames"]])
    assert over.values["zoom"][12] == pytest.approx(1.3)
    assert over.values["angle"][3] == pytest.approx(5.0)


def test_prompt_and_negative_split_at_neg():
    over = parseq_overrides(load_parseq_manifest(PARSEQ_ZOOM))
    assert over.strings["prompt"][0] == "a lighthouse at dawn, watercolor"
    assert over.strings["prompt"][12] == "a lighthouse at night, watercolor"
    assert set(over.strings["negative_prompt"]) == {"blurry, text, watermark"}
    assert len(over.strings["prompt"]) == 24


def test_seed_travel_and_absolute_fields():
    manifest = load_parseq_manifest(PARSEQ_SEED)
    frames = manifest["rendered_frames"]
    over = parseq_overrides(manifest)
    assert (over.frame_count, over.fps, over.cadence) == (10, 12, 1)
    np.testing.assert_array_equal(over.values["seed"], [100, 100, 100, 101, 101, 101, 102, 102, 102, 103])
    np.testing.assert_allclose(over.values["strength"], [f["strength"] for f in frames])
    np.testing.assert_allclose(over.values["cfg_scale"], 7.0)                       # Parseq "scale"
    np.testing.assert_allclose(over.values["amount"], 0.1)                          # antiblur_amount
    np.testing.assert_allclose(over.values["transform_center_x"], [f["transform_center_x"] for f in frames])
    np.testing.assert_allclose(over.values["perspective_flip_fv"], 53.0)            # absolute, not a delta
    np.testing.assert_allclose(over.values["translation_x"], [0] + [2.0] * 9)       # motion: delta
    assert over.strings["negative_prompt"] == [""] * 10
    for absent in ("zoom", "angle", "kernel", "sigma", "threshold", "contrast", "steps", "sampler"):
        assert absent not in over.managed


def test_only_fields_in_frame_zero_are_managed():
    manifest = {"options": {}, "rendered_frames": [
        {"frame": 0, "strength": 0.6},
        {"frame": 1, "strength": 0.5, "noise": 0.1, "contrast": 1.1},
    ]}
    over = parseq_overrides(manifest)
    assert over.managed == ["strength"] and (over.fps, over.cadence) == (None, None)


def test_sampler_strings_when_present():
    manifest = {"rendered_frames": [{"frame": 0, "sampler": "Euler a"}, {"frame": 1, "sampler": "DDIM"}]}
    assert parseq_overrides(manifest).strings == {"sampler": ["Euler a", "DDIM"]}


@pytest.mark.parametrize("frames, use_deltas, complaint", [
    ([{"frame": 0, "zoom": 1.0, "zoom_delta": 1.0}, {"frame": 1, "zoom": 1.1}], True,
     r"rendered_frames\[1\]\.zoom_delta is None.*parseq_use_deltas to false"),
    ([{"frame": 0, "strength": 0.6}, {"frame": 1, "strength": "strong"}], True,
     r"rendered_frames\[1\]\.strength is 'strong'"),
    ([{"frame": 0, "deforum_prompt": "a"}, {"frame": 1, "deforum_prompt": 3}], True,
     r"rendered_frames\[1\]\.deforum_prompt is 3; expected text"),
])
def test_bad_frame_values_name_the_frame_and_field(frames, use_deltas, complaint):
    with pytest.raises(SettingsError, match=rf"^my\.json: {complaint}"):
        parseq_overrides({"rendered_frames": frames}, use_deltas, source="my.json")


@pytest.mark.parametrize("options", [{"output_fps": 0}, {"output_fps": "fast"}, {"cadence": 1.5}, {"cadence": -2}])
def test_bad_options(options):
    with pytest.raises(SettingsError, match=r"options\.(output_fps|cadence)"):
        parseq_overrides({"options": options, "rendered_frames": [{"frame": 0}]})


def test_split_negative():
    assert split_negative("a cat --neg dog") == ("a cat", "dog")
    assert split_negative("  a cat  ") == ("a cat", "")
    assert split_negative("a --neg b --neg c") == ("a", "b, c")


def test_extend_to_repeats_the_last_value_or_cuts():
    np.testing.assert_array_equal(extend_to(np.array([1.0, 2.0]), 4), [1.0, 2.0, 2.0, 2.0])
    np.testing.assert_array_equal(extend_to(np.array([1.0, 2.0, 3.0]), 2), [1.0, 2.0])
    assert extend_to(["a", "b"], 3) == ["a", "b", "b"]
    with pytest.raises(ValueError):
        extend_to([], 3)


@pytest.mark.parametrize("weird", [None, [], {"a": 1}, "", "x", -1, 1e308, float("nan"), True])
def test_any_value_of_any_key_gives_settings_or_a_settings_error(weird):
    raw = read(A1111_FULL)
    ignored = set(import_deforum(raw, "x.txt").ignored)
    for key in raw:
        try:
            result = import_deforum({**raw, key: weird}, "x.txt")
        except SettingsError as err:
            assert key not in ignored and f": {key}" in str(err), (key, err)
        else:
            assert isinstance(result.settings, dict)


# ---------------------------------------------------------------- Deforum Studio presets and the 3D camera

STUDIO_FLY = DATA / "studio_3d_fly_through_1024x576.txt"
STUDIO_ORBIT = DATA / "studio_3d_orbit_768x768.txt"
A1111_PARSEQ_KEEP = DATA / "a1111_parseq_keep_settings.txt"
PARSEQ_3D = DATA / "parseq_3d_camera.json"


def load_with_warnings(path: Path, **overrides):
    """(settings, plan, warning messages): the file loaded and planned as `deforum-engine plan` does."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        settings = load_settings(path, overrides)
        plan = build_plan(settings, base_dir=path.parent)
    return settings, plan, [str(w.message) for w in caught]


def one(messages: list[str], *parts: str) -> str:
    """The single message that contains every part."""
    found = [m for m in messages if all(part in m for part in parts)]
    assert len(found) == 1, (parts, messages)
    return found[0]


def test_studio_preset_at_1024x576_plans_with_deforum_studios_values():
    settings, plan, messages = load_with_warnings(STUDIO_FLY)
    assert (settings.W, settings.H, settings.fps, plan.frame_count) == (1024, 576, 12, 240)
    assert settings.animation_mode == "3D" and settings.diffusion_cadence == 2
    assert settings.sampler == "DPM++ 2M SDE Karras"          # sampler, agreeing with sampler_name + karras
    assert settings.init_fit == "resize" and settings.deforum_nan_fill is True
    v = plan.values
    # 2D-only placeholders (zoom 0, transform centre 0) are never read in 3D mode
    assert set(v["zoom"]) == {1.0} and set(v["angle"]) == {0.0} and set(v["transform_center_x"]) == {0.5}
    np.testing.assert_allclose(v["translation_z"][[0, 12, 24, 239]], [1.5, 2.25, 3.0, 3.0])  # leading newlines
    assert set(v["rotation_3d_x"]) == {0.0}                                    # "0:0: (...)" is 0:(0)
    np.testing.assert_allclose(v["rotation_3d_y"][[0, 7, 8, 23, 31, 40, 47]],  # NaN frames filled
                               [0.437539113907, 0.437539113907, 0.437539113907, 0.455311057478,
                                0.458455638019, 0.461993291128, 0.611285110487])
    np.testing.assert_allclose(v["rotation_3d_z"][[0, 12, 24, 100]], [0, 0.25, 0.5, 0.5])  # no comma
    np.testing.assert_allclose(v["strength"][[0, 12, 24, 100, 219, 239]],
                               [0.65, 0.6, 0.55, 0.452564102564, 0.3, 0.3])    # "219: (0).3" is 0.3
    assert set(v["noise"]) == {0.04} and set(v["cfg_scale"]) == {6.0}          # "0: 0.04" without ( )
    path = str(STUDIO_FLY)
    one(messages, path, 'rotation_3d_x: keyframe 1 ("0:0: ((-0.15 * cos(t/5))**0.90 + 0.43)") read as 0:(0) '
                        "as Deforum Studio does")
    one(messages, path, 'strength_schedule: keyframe 3 ("219: (0).3") read as 219:(0.3) as Deforum Studio does')
    one(messages, path, 'rotation_3d_z: keyframe 1 ("0: (0) 24: (0.5)") has no comma between its keyframes')
    one(messages, 'rotation_3d_y: keyframe 1 ("0: ((-0.15 * cos(t/5))**0.90 + 0.43)") gives NaN from frame 0: '
                  "118 of 240 frames filled by linear interpolation")
    assert not [m for m in messages if "zoom" in m or "translation_z" in m or "noise_schedule" in m]


def test_studio_preset_at_768x768_maps_comfyui_sampler_names():
    settings, plan, messages = load_with_warnings(STUDIO_ORBIT)
    assert (settings.W, settings.H, settings.fps, plan.frame_count) == (768, 768, 12, 36)
    assert settings.sampler == "DPM++ 2M Karras"          # sampler_name dpmpp_2m + scheduler karras, alone
    assert set(plan.strings["sampler"]) == {"DPM++ 2M Karras"}
    v = plan.values
    assert set(v["zoom"]) == {1.0} and set(v["translation_z"]) == {2.5}      # "0: 2.5"
    np.testing.assert_allclose(v["translation_x"][[0, 9, 18, 35]], [0, 1, 2, 2])
    np.testing.assert_allclose(v["strength"][[0, 9, 18, 35]], [0.6, 0.55, 0.5, 0.5])
    np.testing.assert_allclose(v["fov"][[0, 9, 18, 35]], [60, 70, 80, 80])    # "\n\t0: (60),\n\t18: (80)\n"
    np.testing.assert_allclose(v["rotation_3d_x"][[0, 6, 12, 13, 19, 25, 26, 35]],   # NaN on frames 13-25
                               [0.0, 0.089106846847, 0.004741632406, 0.005040382606, 0.006832883804,
                                0.008625385001, 0.008924135201, 0.044164897932])
    one(messages, 'rotation_3d_x: keyframe 1 ("0: ((0.2 * sin(t/4))**1.5)") gives NaN from frame 13: 13 of 36')
    one(messages, str(STUDIO_ORBIT), "translation_x: keyframe 1", "no comma")


@pytest.mark.parametrize("path, size, frames", [(STUDIO_FLY, "1024x576", 240), (STUDIO_ORBIT, "768x768", 36)])
def test_plan_command_prints_the_presets_size_and_frame_count(path, size, frames, capsys):
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{frames} frames, {size}, 12 fps" in out.splitlines()[0]
    assert len(out.splitlines()) == frames + 2  # the heading, the column names, one row per frame


def test_native_files_keep_the_strict_rules(tmp_path):
    path = tmp_path / "native.json"
    path.write_text(json.dumps({"animation_mode": "3D", "translation_z": "0: 1.5", "max_frames": 12, "seed": 1,
                                "rotation_3d_y": "0: ((-0.15 * cos(t/5))**0.90 + 0.43)"}), encoding="utf-8")
    settings = load_settings(path)  # not a Deforum file: engine settings only, read natively
    assert (settings.init_fit, settings.deforum_nan_fill) == ("crop", False)
    with pytest.raises(SettingsError, match=r"rotation_3d_y: keyframe 1 .*gives nan at frame 0.*deforum_nan_fill"):
        build_plan(settings)
    with pytest.warns(ScheduleWarning, match="8 of 12 frames filled"):
        plan = build_plan(load_settings(path, {"deforum_nan_fill": True}))
    np.testing.assert_allclose(plan.values["rotation_3d_y"][:9], 0.437539113907)  # frames 0-7 NaN: frame 8's
    assert set(plan.values["translation_z"]) == {1.5}
    path.write_text(json.dumps({"zoom": "0:0: (1)", "max_frames": 4}), encoding="utf-8")
    with pytest.raises(SettingsError, match=r'zoom: keyframe 1 \("0:0: \(1\)"\) : unexpected character \':\''):
        build_plan(load_settings(path))


def test_a_deforum_file_that_sets_init_fit_or_nan_fill_keeps_them():
    s = import_deforum(minimal(init_fit="pad", deforum_nan_fill=False), "x.txt").settings
    assert (s["init_fit"], s["deforum_nan_fill"]) == ("pad", False)
    s = import_deforum(minimal(), "x.txt").settings
    assert (s["init_fit"], s["deforum_nan_fill"]) == ("resize", True)


def test_placeholders_the_3d_mode_never_reads_never_fail(tmp_path):
    raw = read(STUDIO_FLY)
    raw.update(zoom="0: (0)", angle="0:0: (bad(", transform_center_x="nonsense", max_frames=12)
    path = tmp_path / "preset.txt"
    path.write_text(json.dumps(raw), encoding="utf-8")
    settings, plan, _ = load_with_warnings(path)
    assert set(plan.values["zoom"]) == {1.0} and set(plan.values["angle"]) == {0.0}
    with pytest.raises(SettingsError, match="angle"):  # in 2D mode the same placeholder is read, and fails
        load_with_warnings(path, animation_mode="2D")


@pytest.mark.parametrize("mode, expected, note", [
    ("3D", "3D", None), ("2D", "2D", None), ("3d", "3D", None), ("None", "None", "still-image"),
    ("Video Input", "Video Input", None), ("Interpolation", "2D", "2D animation"), ("Warp Drive", "2D", "unknown"),
])
def test_animation_modes(mode, expected, note):
    result = import_deforum(minimal(animation_mode=mode, video_init_path="clips/in.mp4"), "x.txt")
    assert result.settings["animation_mode"] == expected
    notes = " ".join(result.notes)
    assert (note in notes) if note else "animation_mode" not in notes


@pytest.mark.parametrize("keys, sampler, note", [
    ({"sampler_name": "dpmpp_2m_sde_gpu", "scheduler": "karras"}, "DPM++ 2M SDE Karras", None),
    ({"sampler_name": "dpmpp_2m_sde_gpu", "scheduler": "normal"}, "DPM++ 2M SDE", None),
    ({"sampler_name": "euler_ancestral", "scheduler": "normal"}, "Euler a", None),
    ({"sampler_name": "euler", "scheduler": "karras"}, "Euler", None),           # no Karras variant: plain
    ({"sampler_name": "dpmpp_2m", "scheduler": "exponential"}, "DPM++ 2M", "scheduler 'exponential'"),
    ({"sampler_name": "dpmpp_3m_sde_gpu", "scheduler": "karras"}, "DPM++ 2M SDE Karras", "nearest"),
    ({"sampler_name": "DPM++ 2M Karras"}, "DPM++ 2M Karras", None),             # Studio's own default
    ({"sampler_name": "uni_pc"}, "UniPC", None),
    ({"sampler_name": "dpmpp_2m_sde_gpu", "scheduler": "karras", "sampler": "DPM++ 2M SDE Karras"},
     "DPM++ 2M SDE Karras", None),
    ({"sampler_name": "dpmpp_2m", "scheduler": "karras", "sampler": "Euler a"}, "Euler a", "disagree: using sampler"),
    ({"sampler": "euler_ancestral"}, "Euler a", None),
])
def test_samplers_deforums_name_wins_comfyui_names_map_when_alone(keys, sampler, note):
    result = import_deforum(minimal(**keys), "x.txt")
    assert result.settings["sampler"] == sampler
    notes = " ".join(result.notes)
    assert (note in notes) if note else "sampler" not in notes and "scheduler" not in notes
    assert not {"sampler_name", "scheduler"} & set(result.ignored)


def test_an_unknown_comfyui_sampler_keeps_the_default_with_a_note():
    result = import_deforum(minimal(sampler_name="res_multistep", scheduler="beta"), "x.txt")
    assert "sampler" not in result.settings
    assert "sampler_name 'res_multistep' has no equivalent" in " ".join(result.notes)


def test_width_and_height_win_over_stale_w_and_h():
    result = import_deforum(minimal(width=1024, height=576), "x.txt")   # minimal() has W, H = 512
    assert (result.settings["W"], result.settings["H"]) == (1024, 576)
    assert "width 1024 and W 512 disagree: using width" in " ".join(result.notes)
    result = import_deforum({"animation_mode": "3D", "width": 768, "height": 768}, "x.txt")
    assert (result.settings["W"], result.settings["H"]) == (768, 768) and not result.notes


def test_three_d_values_are_checked():
    s = import_deforum(minimal(depth_algorithm="zoe", padding_mode="Reflection", sampling_mode="nearest",
                               midas_weight="0.3", use_depth_warping="false", save_depth_maps=1,
                               aspect_ratio_use_old_formula=True), "x.txt").settings
    assert (s["depth_algorithm"], s["padding_mode"], s["sampling_mode"]) == ("Zoe", "reflection", "nearest")
    assert (s["midas_weight"], s["use_depth_warping"], s["save_depth_maps"]) == (0.3, False, True)
    for key, value, complaint in (("depth_algorithm", "Marigold", "Midas-3-Hybrid"),
                                  ("padding_mode", "mirror", "border, reflection, zeros")):
        with pytest.raises(SettingsError, match=rf"^x\.txt: {key} = .*{complaint}"):
            import_deforum(minimal(**{key: value}), "x.txt")


def test_engine_files_with_3d_settings_are_not_taken_for_deforum_files():
    assert not looks_like_deforum({"animation_mode": "3D", "translation_z": "0:(2)", "use_depth_warping": True,
                                   "rotation_3d_x": "0:(1)", "vae": "tiny"})
    assert looks_like_deforum({"animation_mode": "3D", "width": 768})
    assert looks_like_deforum({"sampler_name": "euler"})


# ---------------------------------------------------------------- Parseq: 3D fields and parseq_non_schedule_overrides

def test_parseq_3d_fields_as_deltas_and_absolute_values():
    over = parseq_overrides(load_parseq_manifest(PARSEQ_3D))
    np.testing.assert_allclose(over.values["translation_z"], [0] + [1.5] * 19)       # delta of 1.5 * f
    np.testing.assert_allclose(over.values["rotation_3d_y"], [0] + [0.5] * 9 + [0] * 10)
    np.testing.assert_allclose(over.values["fov"], [70 - f for f in range(20)])      # absolute
    assert set(over.values["near"]) == {200} and set(over.values["far"]) == {10000}
    absolute = parseq_overrides(load_parseq_manifest(PARSEQ_3D), use_deltas=False)
    np.testing.assert_allclose(absolute.values["translation_z"], [1.5 * f for f in range(20)])


def test_parseq_non_schedule_overrides_false_keeps_the_settings_frames_fps_and_cadence():
    settings, plan, _ = load_with_warnings(A1111_PARSEQ_KEEP)
    assert settings.parseq_non_schedule_overrides is False
    assert (plan.frame_count, plan.settings.fps, plan.settings.diffusion_cadence) == (30, 20, 3)
    v = plan.values
    np.testing.assert_allclose(v["translation_z"], [0] + [1.5] * 29)      # Parseq's 20, the last one repeated
    np.testing.assert_allclose(v["rotation_3d_y"], [0] + [0.5] * 9 + [0] * 20)
    np.testing.assert_allclose(v["fov"], [70 - f for f in range(20)] + [51] * 10)
    assert set(v["strength"]) == {0.6} and set(v["noise"]) == {0.065}    # noise is not Parseq's
    assert plan.diffused_frames == tuple(range(0, 30, 3)) + (29,)
    _, plan, _ = load_with_warnings(A1111_PARSEQ_KEEP, parseq_non_schedule_overrides=True)
    assert (plan.frame_count, plan.settings.fps, plan.settings.diffusion_cadence) == (20, 24, 1)


def test_the_parseq_overrides_switch_is_no_longer_only_a_note():
    result = import_deforum(minimal(parseq_non_schedule_overrides=False), "x.txt")
    assert result.settings["parseq_non_schedule_overrides"] is False
    assert "parseq_non_schedule_overrides" not in " ".join(result.notes) + " ".join(result.ignored)


# ---------------------------------------------------------------- Deforum's enums in native files

@pytest.mark.parametrize("value, expected", [("File", True), ("None", False), ("none", False), (True, True),
                                             (False, False)])
def test_add_soundtrack_takes_deforums_choices_in_native_files(value, expected, tmp_path):
    toml, native_json = tmp_path / "native.toml", tmp_path / "native.json"
    toml.write_text(f"add_soundtrack = {json.dumps(value)}\nmax_frames = 3\n", encoding="utf-8")
    native_json.write_text(json.dumps({"add_soundtrack": value, "max_frames": 3}), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IgnoredSettingsWarning)  # Init Video says why (the next test)
        assert validate_settings({"add_soundtrack": value}).add_soundtrack is expected
        assert load_settings(toml).add_soundtrack is expected
        assert load_settings(native_json).add_soundtrack is expected


def test_add_soundtrack_init_video_takes_the_clips_audio():
    settings = validate_settings({"add_soundtrack": "Init Video", "video_init_path": "clips/in.mp4"})
    assert settings.add_soundtrack is True and str(settings.soundtrack_path) == "clips/in.mp4"
    with pytest.raises(SettingsError, match="add_soundtrack 'Init Video' takes the soundtrack from video_init_path"):
        validate_settings({"add_soundtrack": "Init Video"})
    with pytest.raises(SettingsError, match="add_soundtrack"):
        validate_settings({"add_soundtrack": "Sometimes"})


# ---------------------------------------------------------------- safety of the lenient reading

def test_hostile_stray_text_in_a_deforum_file_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    create = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    for text in (f"0:0: ({create})", f"0: (1) 10: ({create})", f"219: ({create}).3", f"0: {create}",
                 f"0: (1) + {create}"):
        raw = read(STUDIO_ORBIT)
        raw["rotation_3d_y"] = text
        path = tmp_path / "preset.txt"
        path.write_text(json.dumps(raw), encoding="utf-8")
        try:
            _, plan, _ = load_with_warnings(path)
        except SettingsError as err:
            assert "rotation_3d_y" in str(err)
        else:
            assert set(plan.values["rotation_3d_y"]) == {0.0}  # "0:0: (...)": the text after the 2nd ':' is dropped
    assert not marker.exists()


def test_deforum_files_without_newer_keys_get_deforums_defaults():
    """A file saved before the noise multiplier existed renders as the extension renders it today: 1.05."""
    imported = import_deforum({"animation_mode": "2D", "max_frames": 3, "W": 64, "H": 64, "seed": 1,
                               "steps_schedule": "0: (9.9)", "enable_steps_scheduling": True}, "old.txt")
    plan = build_plan(validate_settings(imported.settings))
    assert list(plan.values["noise_multiplier"]) == [1.05] * 3
    assert list(plan.values["steps"]) == [9] * 3  # Deforum's int(), not rounding
    assert plan.settings.color_coherence_source == "first_frame" and plan.settings.init_fit == "resize"
    native = build_plan(validate_settings({"max_frames": 3, "seed": 1}))
    assert list(native.values["noise_multiplier"]) == [1.0] * 3


def test_engine_settings_in_a_deforum_file_are_taken_as_written():
    imported = import_deforum({"animation_mode": "3D", "use_init": False, "depth_normalization": "steady",
                               "depth_model": "/models/dpt", "vae": "tiny", "lora_dirs": ["loras"]}, "mixed.txt")
    assert {key: imported.settings[key] for key in ("depth_normalization", "depth_model", "vae", "lora_dirs")} == \
        {"depth_normalization": "steady", "depth_model": "/models/dpt", "vae": "tiny", "lora_dirs": ["loras"]}
    assert not {"depth_normalization", "depth_model", "vae", "lora_dirs"} & set(imported.ignored)
    assert import_deforum({"use_init": False}, "plain.txt").settings["depth_normalization"] == "per_frame"
