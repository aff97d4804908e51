"""Settings loading and the frame plan: what a user's settings file turns into, frame by frame."""
import json
import warnings

import numpy as np
import pytest

from deforum_engine import SettingsError, build_plan, load_settings
from deforum_engine.config.presets import list_presets, load_preset
from deforum_engine.config.settings import IgnoredSettingsWarning, Settings, validate_settings


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# ----------------------------------------------------------------------------------------- settings


def test_defaults_are_deforums():
    s = Settings()
    assert s.zoom == "0:(1.0025+0.002*sin(1.25*3.14*t/30))"
    assert (s.W, s.H, s.fps, s.diffusion_cadence, s.steps) == (512, 512, 15, 1, 25)
    assert s.strength_schedule == "0:(0.65)" and s.noise_schedule == "0:(0.065)"
    assert s.cfg_scale_schedule == "0:(7)" and s.color_coherence == "LAB"
    assert s.angle == "0:(0)" and s.translation_x == "0:(0)"


def test_unknown_key_suggests_the_right_name(tmp_path):
    path = write(tmp_path, "s.json", {"zoom_schedule": "0:(1.1)"})
    with pytest.raises(SettingsError, match=r"unknown setting `zoom_schedule`: did you mean `zoom`\?"):
        load_settings(path)
    path = write(tmp_path, "t.json", {"strenght_schedule": "0:(0.5)"})
    with pytest.raises(SettingsError, match="did you mean `strength_schedule`"):
        load_settings(path)


def test_json_and_toml_load_and_bare_numbers_are_constant_schedules(tmp_path):
    j = load_settings(write(tmp_path, "a.json", {"zoom": 1.02, "max_frames": 10}))
    t = load_settings(write(tmp_path, "b.toml", "zoom = 1.02\nmax_frames = 10\n"))
    assert j.zoom == t.zoom == "0:(1.02)"
    assert np.allclose(build_plan(j).values["zoom"], 1.02)


def test_paths_resolve_relative_to_the_settings_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = write(tmp_path / "sub", "s.json", {"init_image": "pics/start.png", "soundtrack_path": "../song.wav"})
    settings = load_settings(path)
    assert settings.init_image == (tmp_path / "sub" / "pics" / "start.png").resolve()
    assert settings.soundtrack_path == (tmp_path / "song.wav").resolve()


def test_bad_values_name_the_setting(tmp_path):
    with pytest.raises(SettingsError, match=r"`W`: must be a multiple of 8.*use 496 or 504"):
        validate_settings({"W": 500})
    with pytest.raises(SettingsError, match="border"):
        validate_settings({"border": "mirror"})
    with pytest.raises(SettingsError, match="not valid JSON"):
        load_settings(write(tmp_path, "bad.json", "{nope"))
    with pytest.raises(SettingsError, match="no such settings file"):
        load_settings(tmp_path / "missing.json")


def test_init_strength_and_denoise_are_one_knob_never_both():
    assert Settings().init_strength == 0.8
    assert Settings(strength=0.3).init_strength == 0.3
    assert Settings(init_denoise=0.75).init_strength == pytest.approx(0.25)
    with pytest.raises(SettingsError, match="either `strength`.*or `init_denoise`"):
        validate_settings({"strength": 0.5, "init_denoise": 0.5})


def test_image_prompt_influence_levels_numbers_and_schedules(tmp_path):
    image = tmp_path / "ref.png"
    base = {"max_frames": 4, "image_prompt": str(image)}
    levels = {"very_low": 0.2, "low": 0.4, "medium": 0.6, "high": 0.8, "very_high": 1.0}
    for level, scale in levels.items():
        plan = build_plan(validate_settings({**base, "image_prompt_influence": level}))
        assert np.allclose(plan.values["image_prompt_scale"], scale)
    plan = build_plan(validate_settings({**base, "image_prompt_influence": 0.35}))
    assert np.allclose(plan.values["image_prompt_scale"], 0.35)
    plan = build_plan(validate_settings({**base, "image_prompt_influence": "0:(0), 3:(0.9)"}))
    assert np.allclose(plan.values["image_prompt_scale"], [0, 0.3, 0.6, 0.9])
    with pytest.raises(SettingsError, match="image_prompt_influence"):
        validate_settings({"image_prompt_influence": "extreme"})
    with pytest.raises(SettingsError, match=r"image_prompt_influence: frame 1 has value 2"):
        build_plan(validate_settings({**base, "image_prompt_influence": "0:(t*2)"}))
    assert np.all(build_plan(validate_settings({"max_frames": 3})).values["image_prompt_scale"] == 0)


# ----------------------------------------------------------------------------------------- presets


def test_shipped_presets_are_many_valid_and_described():
    presets = list_presets()
    assert len(presets) >= 12
    for preset in presets.values():
        assert preset.description
        if preset.name.startswith("audio_"):  # checked with a soundtrack in test_audio_presets
            with pytest.raises(SettingsError, match="soundtrack"):
                build_plan(validate_settings({**preset.settings, "max_frames": 30}, preset.name))
            continue
        plan = build_plan(validate_settings({**preset.settings, "max_frames": 30}, preset.name))
        assert plan.frame_count == 30


def test_preset_is_overridden_by_the_file_and_by_overrides(tmp_path):
    path = write(tmp_path, "s.json", {"motion_preset": "spiral_in", "zoom": "0:(1.5)", "max_frames": 5})
    settings = load_settings(path)
    assert settings.zoom == "0:(1.5)"
    assert settings.angle == load_preset("spiral_in").settings["angle"]
    settings = load_settings(path, {"angle": "0:(-3)"})
    assert settings.angle == "0:(-3)"


def test_unknown_preset_suggests_and_user_folders_add_presets(tmp_path, monkeypatch):
    with pytest.raises(SettingsError, match="did you mean `zoom_in`"):
        load_preset("zoom_inn")
    (tmp_path / "mine.toml").write_text('description = "mine"\n[settings]\nzoom = "0:(1.3)"\n')
    monkeypatch.setenv("DEFORUM_ENGINE_PRESETS", str(tmp_path))
    assert load_settings(None, {"motion_preset": "mine"}).zoom == "0:(1.3)"


# ----------------------------------------------------------------------------------------- plan


def test_plan_has_every_per_frame_value():
    plan = build_plan(validate_settings({"max_frames": 7, "seed": 5}))
    data = plan.to_json()
    for name in ("zoom", "angle", "translation_x", "translation_y", "strength", "noise", "cfg_scale", "steps",
                 "seed", "sampler", "prompt", "negative_prompt", "contrast", "kernel", "sigma", "amount",
                 "threshold", "perspective_flip_fv", "transform_center_x"):
        assert len(data["frames"][name]) == 7, name
    assert data["settings"]["seed"] == 5
    frame = plan.frame(3)
    assert frame.denoise == pytest.approx(0.35) and frame.steps == 25 and frame.sampler == "Euler a"


def test_prompts_hold_split_neg_and_join_globals():
    settings = validate_settings({
        "max_frames": 10,
        "prompts": {"0": "a cat --neg blurry", "max_f/2": "a dog"},
        "positive_prompts": "oil painting,",
        "negative_prompts": "text",
    })
    plan = build_plan(settings)
    assert plan.strings["prompt"][0] == "oil painting, a cat"
    assert plan.strings["negative_prompt"][0] == "blurry text"
    assert plan.strings["prompt"][3] == "oil painting, a cat"
    assert plan.strings["prompt"][4] == "oil painting, a dog"  # max_f/2 = 4.5 -> frame 4
    assert plan.strings["negative_prompt"][9] == "text"


def test_prompt_before_first_key_and_blending():
    plan = build_plan(validate_settings({"max_frames": 8, "prompts": {"2": "a", "6": "b"},
                                         "prompt_blend_frames": 3}))
    assert plan.strings["prompt"][:2] == ["a", "a"]
    assert plan.strings["blend_prompt"][3:6] == ["b", "b", "b"]
    assert np.allclose(plan.values["blend_weight"][3:6], [0.25, 0.5, 0.75])
    assert plan.strings["prompt"][6] == "b" and plan.values["blend_weight"][6] == 0


@pytest.mark.parametrize(
    "behavior, expected",
    [
        ("iter", [10, 11, 12, 13, 14, 15]),
        ("fixed", [10] * 6),
        ("ladder", [10, 12, 11, 13, 12, 14]),
        ("alternate", [10, 11, 10, 11, 10, 11]),
    ],
)
def test_seed_behaviours(behavior, expected):
    plan = build_plan(validate_settings({"max_frames": 6, "seed": 10, "seed_behavior": behavior}))
    assert list(plan.values["seed"]) == expected


def test_seed_iter_n_random_and_schedule_are_reproducible():
    plan = build_plan(validate_settings({"max_frames": 6, "seed": 10, "seed_iter_N": 2}))
    assert list(plan.values["seed"]) == [10, 11, 11, 12, 12, 13]  # Deforum's next_seed (was 10, 10, 11, 11, ...)
    first = build_plan(validate_settings({"max_frames": 6, "seed": 10, "seed_behavior": "random"}))
    again = build_plan(validate_settings({"max_frames": 6, "seed": 10, "seed_behavior": "random"}))
    assert first.values["seed"][0] == 10 and list(first.values["seed"]) == list(again.values["seed"])
    assert len(set(first.values["seed"])) == 6
    plan = build_plan(validate_settings({"max_frames": 6, "seed": 42, "seed_behavior": "schedule"}))
    seeds = list(plan.values["seed"])
    assert seeds[0] == 42 and seeds[-1] == 42 and seeds[1] != 42


def deforum_seeds(seed: int, behaviour: str, every: int, diffused: int) -> list[int]:
    """The seeds Deforum's render loop gives its diffused frames: seed.py's next_seed after each one,
    with its counter (root.seed_internal) starting at 0."""
    seeds, counter = [], 0
    for _ in range(diffused):
        seeds.append(seed)
        if behaviour == "iter":
            seed += 1 if counter % every == 0 else 0
            counter += 1
        elif behaviour in ("ladder", "alternate"):
            seed += (2 if behaviour == "ladder" else 1) if counter == 0 else -1
            counter = 1 if counter == 0 else 0
    return seeds


@pytest.mark.parametrize("behaviour, every", [("iter", 1), ("iter", 2), ("iter", 3), ("ladder", 1),
                                              ("alternate", 1), ("fixed", 1)])
@pytest.mark.parametrize("cadence", [1, 3])
def test_seeds_of_diffused_frames_follow_deforums_next_seed(behaviour, every, cadence):
    plan = build_plan(validate_settings({"max_frames": 19, "seed": 42, "seed_behavior": behaviour,
                                         "seed_iter_N": every, "diffusion_cadence": cadence}))
    diffused = [f for f in plan.diffused_frames if f % cadence == 0]  # Deforum's keys; the engine adds the last
    assert [int(plan.values["seed"][f]) for f in diffused] == deforum_seeds(42, behaviour, every, len(diffused))


def test_seed_iter_n_2_gives_deforums_sequence():
    plan = build_plan(validate_settings({"max_frames": 7, "seed": 42, "seed_iter_N": 2}))
    assert list(plan.values["seed"]) == [42, 43, 43, 44, 44, 45, 45]


def test_seed_schedule_values_are_truncated_like_deforum():
    # Deforum: args.seed = int(seed_schedule_series[frame]). 0:(10), 4:(12), 8:(15) interpolates to
    # 11.5, 12.75 and 14.25 at frames 3, 5 and 7: int() gives 11, 12, 14 (rounding gave 12, 13, 14).
    plan = build_plan(validate_settings({"max_frames": 10, "seed": 1, "seed_behavior": "schedule",
                                         "seed_schedule": "0:(10), 4:(12), 8:(15)"}))
    assert [int(plan.values["seed"][f]) for f in (3, 5, 7)] == [11, 12, 14]
    # int(-1.5) is -1, Deforum's "random seed"; int(-0.5) is 0.
    plan = build_plan(validate_settings({"max_frames": 4, "seed": 1, "seed_behavior": "schedule",
                                         "seed_schedule": "0:(-1.5), 2:(-0.5)"}))
    seeds = list(plan.values["seed"])
    assert len(set(seeds[:2])) == 2 and seeds[2:] == [0, 0]


def test_noise_multiplier_is_one_unless_switched_on():
    schedule = {"noise_multiplier_schedule": "0:(1.0), 4:(1.2)", "max_frames": 5}
    off = build_plan(validate_settings(schedule))
    assert list(off.values["noise_multiplier"]) == [1.0] * 5 and off.frame(2).noise_multiplier == 1.0
    on = build_plan(validate_settings(schedule | {"enable_noise_multiplier_scheduling": True}))
    assert np.allclose(on.values["noise_multiplier"], [1.0, 1.05, 1.1, 1.15, 1.2])
    assert on.frame(4).noise_multiplier == pytest.approx(1.2)
    default = build_plan(validate_settings({"max_frames": 2, "enable_noise_multiplier_scheduling": True}))
    assert list(default.values["noise_multiplier"]) == [1.05, 1.05]  # Deforum's value, once switched on
    assert validate_settings({"noise_multiplier_schedule": 1.1}).noise_multiplier_schedule == "0:(1.1)"
    with pytest.raises(SettingsError, match=r"noise_multiplier_schedule: frame 0 has value -0.5"):
        build_plan(validate_settings({"max_frames": 2, "enable_noise_multiplier_scheduling": True,
                                      "noise_multiplier_schedule": "0:(-0.5)"}))


def test_seed_minus_one_is_picked_and_recorded():
    plan = build_plan(validate_settings({"max_frames": 2, "seed": -1}))
    assert plan.settings.seed >= 0
    assert plan.to_json()["settings"]["seed"] == plan.settings.seed


def test_cadence_diffuses_every_nth_frame_and_the_last():
    for cadence in range(1, 6):
        for frames in (1, 7, 10, 13):
            plan = build_plan(validate_settings({"max_frames": frames, "diffusion_cadence": cadence}))
            keys = plan.diffused_frames
            assert keys[0] == 0 and keys[-1] == frames - 1
            assert all(b - a <= cadence for a, b in zip(keys, keys[1:]))


def test_cadence_seeds_advance_per_diffused_frame():
    plan = build_plan(validate_settings({"max_frames": 7, "seed": 1, "diffusion_cadence": 3}))
    assert list(plan.values["seed"]) == [1, 1, 1, 2, 2, 2, 3]


def test_steps_and_sampler_schedules():
    plan = build_plan(validate_settings({"max_frames": 4, "steps_schedule": "0:(10), 3:(40)",
                                         "sampler_schedule": '0:("Euler a"), 2:("DDIM")'}))
    assert list(plan.values["steps"]) == [10, 20, 30, 40]
    assert plan.strings["sampler"] == ["Euler a", "Euler a", "DDIM", "DDIM"]
    with pytest.raises(SettingsError, match="Euler a"):
        build_plan(validate_settings({"max_frames": 4, "sampler": "Eulr a"}))


def test_out_of_range_values_name_setting_and_frame():
    with pytest.raises(SettingsError, match=r"strength_schedule: frame 5 has value 1\.1"):
        build_plan(validate_settings({"max_frames": 8, "strength_schedule": "0:(0.6), 5:(1.1)"}))
    with pytest.raises(SettingsError, match="zoom: frame 0"):
        build_plan(validate_settings({"max_frames": 3, "zoom": "0:(-1)"}))


def test_audio_variable_without_soundtrack_is_a_settings_error():
    with pytest.raises(SettingsError, match="soundtrack"):
        build_plan(validate_settings({"max_frames": 4, "zoom": "0:(1 + 0.1*pulse)"}))


def test_trimming_a_render_keeps_the_motion_of_the_frames_it_keeps():
    long = build_plan(validate_settings({"max_frames": 100, "zoom": "0:(1), 90:(2)", "seed": 1}))
    short = build_plan(validate_settings({"max_frames": 30, "zoom": "0:(1), 90:(2)", "seed": 1}))
    assert np.allclose(long.values["zoom"][:30], short.values["zoom"])


# ----------------------------------------------------------------------------------------- imports


DATA = __import__("pathlib").Path(__file__).parents[1] / "data" / "importers"


def test_deforum_files_load_with_one_warning_for_ignored_keys():
    files = sorted(DATA.glob("*.txt"))
    assert files
    for path in files:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            settings = load_settings(path)
        ignored = [w for w in caught if issubclass(w.category, IgnoredSettingsWarning) and "ignored" in str(w.message)]
        assert len(ignored) <= 1
        assert build_plan(settings.model_copy(update={"max_frames": 12})).frame_count == 12


def test_parseq_manifest_drives_the_plan(tmp_path):
    manifests = sorted(DATA.glob("*parseq*.json"))
    assert manifests
    manifest = json.loads(manifests[0].read_text())
    settings = validate_settings({"parseq_manifest": str(manifests[0]), "max_frames": 500, "fps": 30,
                                  "noise_schedule": "0:(0.02)"})
    plan = build_plan(settings)
    frames = manifest["rendered_frames"]
    assert plan.frame_count == len(frames)
    if manifest.get("options", {}).get("output_fps"):
        assert plan.settings.fps == manifest["options"]["output_fps"]
    if "zoom_delta" in frames[0]:
        assert np.allclose(plan.values["zoom"], [f["zoom_delta"] for f in frames])
    if "noise" not in frames[0]:
        assert np.allclose(plan.values["noise"], 0.02)  # unmanaged fields fall back to the settings


def test_each_animation_mode_evaluates_only_the_schedules_it_uses():
    # Deforum Studio presets hold placeholders such as zoom 0 in 3D mode: Deforum never reads them.
    three_d = build_plan(validate_settings({"animation_mode": "3D", "zoom": "0: (0)", "angle": "0: (bad(",
                                            "translation_z": "0:(2), 4:(4)", "max_frames": 5, "seed": 1}))
    assert list(three_d.values["zoom"]) == [1.0] * 5 and list(three_d.values["angle"]) == [0.0] * 5
    assert list(three_d.values["translation_z"]) == [2.0, 2.5, 3.0, 3.5, 4.0]
    two_d = build_plan(validate_settings({"translation_z": "0: (bad(", "max_frames": 3, "seed": 1}))
    assert list(two_d.values["translation_z"]) == [0.0] * 3
    with pytest.raises(SettingsError, match="zoom"):
        build_plan(validate_settings({"zoom": "0: (0)", "max_frames": 3, "seed": 1}))


def test_planning_is_pure_once_its_inputs_are_loaded(tmp_path):
    from deforum_engine.plan.frame_plan import plan_frames
    from deforum_engine.plan.plan_inputs import load_plan_inputs

    lora = tmp_path / "styles" / "ink.safetensors"
    lora.parent.mkdir()
    lora.write_bytes(b"weights")
    settings = validate_settings({"seed": -1, "seed_behavior": "random", "max_frames": 6, "lora_dirs": [str(tmp_path)],
                                  "prompts": {"0": "a cat <lora:ink:0.5>", "3": "a dog"}})
    inputs = load_plan_inputs(settings)
    assert inputs.settings.seed != -1  # drawn once, here, and recorded
    assert inputs.lora_files == {"ink": str(lora.resolve())}
    lora.unlink()  # planning reads no file and draws nothing: the same inputs give the same plan
    first, second = plan_frames(inputs), plan_frames(inputs)
    assert first.to_json() == second.to_json()
    assert first.frame(0).loras == ((str(lora.resolve()), 0.5, 0.5),) and first.frame(3).loras == ()
    with pytest.raises(SettingsError, match=r"prompts\['0'\]: LoRA 'ink' not found"):
        build_plan(settings)  # build_plan loads its inputs itself: now the file is gone
