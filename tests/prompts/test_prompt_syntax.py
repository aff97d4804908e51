"""Prompts as A1111 / Deforum users write them, read without a model: attention weights, AND,
BREAK, LoRA tags, and Deforum's backtick maths evaluated per frame in the plan."""
import json
import subprocess
import sys
import warnings
import wave

import numpy as np
import pytest

from deforum_engine import SettingsError, build_plan, load_settings
from deforum_engine.prompts.weights import (ActiveLora, LoraTag, PromptWarning, extract_loras, find_lora,
                                           format_number, is_plain, parse_attention, split_composable)
from deforum_engine.config.settings import validate_settings

R, S = 1.1, 1 / 1.1  # A1111's factors for ( ) and [ ]


def weights(text):
    """parse_attention of a BREAK-free text as [(text, weight rounded)]."""
    (section,) = parse_attention(text)
    return [(part, round(weight, 6)) for part, weight in section]


# ------------------------------------------------------------------------------ attention syntax


@pytest.mark.parametrize("text, expected", [
    ("a cat", [("a cat", 1.0)]),
    ("(masterpiece:1.2), a cat", [("masterpiece", 1.2), (", a cat", 1.0)]),
    ("((detailed)) eyes", [("detailed", round(R * R, 6)), (" eyes", 1.0)]),
    ("a [blurry] cat", [("a ", 1.0), ("blurry", round(S, 6)), (" cat", 1.0)]),
    ("[[blurry]]", [("blurry", round(S * S, 6))]),
    ("(a (b:1.5) c:0.5)", [("a ", 0.5), ("b", 0.75), (" c", 0.5)]),  # nested factors multiply
    ("(red (fox))", [("red ", R), ("fox", round(R * R, 6))]),
    ("(a:1.3 b)", [("a:1.3 b", R)]),  # ':number' only weights right before ')': here the ':' is text
    ("a ( b : 0.7 ) c", [("a ", 1.0), (" b ", 0.7), (" c", 1.0)]),
    (r"\(not weighted\) \[nor this\]", [("(not weighted) [nor this]", 1.0)]),
    (r"a \\ b", [("a \\ b", 1.0)]),
    ("(unclosed cat", [("unclosed cat", R)]),  # an open bracket weights the rest
    ("stray) and] closers", [("stray) and] closers", 1.0)]),
    ("time 10:30 here", [("time 10:30 here", 1.0)]),
    ("(x:1.2.3)", [("x:1.2.3", R)]),  # not a number: literal, and the bracket closes at 1.1
    ("", [("", 1.0)]),
])
def test_attention_weights_follow_a1111(text, expected):
    assert weights(text) == expected


def test_break_splits_sections_and_weights_carry_over():
    assert parse_attention("a cat BREAK (a dog:1.4)") == [[("a cat", 1.0)], [("a dog", 1.4)]]
    assert parse_attention("BREAK") == [[("", 1.0)], [("", 1.0)]]
    assert parse_attention("not a BREAKthrough") == [[("not a BREAKthrough", 1.0)]]


def test_composable_sub_prompts_and_weights():
    assert split_composable("a cat:1 AND a dog:0") == [("a cat", 1.0), ("a dog", 0.0)]
    assert split_composable(" (a cat):0.7 AND a dog AND fog : -0.5 ") == [("(a cat)", 0.7), ("a dog", 1.0),
                                                                          ("fog", -0.5)]
    assert split_composable("a cat:1.3") == [("a cat", 1.3)]  # A1111: a lone :weight scales the guidance too
    assert split_composable("(a cat:1.3)") == [("(a cat:1.3)", 1.0)]
    assert split_composable("sand and stone") == [("sand and stone", 1.0)]  # only the capital word


def test_plain_prompts_are_recognised():
    for text in ("a cat", "a cat, 4k", "", "an ANDROID", "a cat: a study"):
        assert is_plain(text, composable=True), text
    for text in ("(a cat)", "[a cat]", r"\(a cat\)", "a BREAK b", "a AND b", "a cat:0.5"):
        assert not is_plain(text, composable=True), text
    assert is_plain("a cat:0.5")  # in a negative prompt a trailing :weight is text, as in A1111


# ------------------------------------------------------------------------------------ LoRA tags


def test_lora_tags_come_out_of_the_text_with_their_weights():
    text, tags = extract_loras("a cat <lora:ink:0.8>, <lora:film grain>  <lora:x:0.5:0.25> <lora:y:te=0.3:unet=1.5>")
    assert text == "a cat ,"
    assert tags == [LoraTag("ink", 0.8, 0.8), LoraTag("film grain", 1.0, 1.0), LoraTag("x", 0.5, 0.25),
                    LoraTag("y", 0.3, 1.5)]
    assert extract_loras("no tags here ") == ("no tags here ", [])


def test_bad_lora_tags_name_the_prompt():
    with pytest.raises(SettingsError, match=r"prompts\['0'\]: <lora:ink:lots>: 'lots' is not a weight"):
        extract_loras("a <lora:ink:lots>", "prompts['0']")
    with pytest.raises(SettingsError, match="has no LoRA name"):
        extract_loras("a <lora::0.5>", "prompts['0']")
    with pytest.warns(PromptWarning, match="hypernet.*not supported"):
        assert extract_loras("a <hypernet:x:1> cat")[0] == "a  cat"


def test_find_lora_in_folders_and_subfolders(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    (second / "styles").mkdir(parents=True)
    first.mkdir()
    (second / "styles" / "ink.safetensors").write_bytes(b"x")
    (first / "ink.safetensors").write_bytes(b"x")
    (second / "only_here.safetensors").write_bytes(b"x")
    assert find_lora("ink", [first, second]) == (first / "ink.safetensors").resolve()  # the first folder wins
    assert find_lora("ink", [second]) == (second / "styles" / "ink.safetensors").resolve()
    assert find_lora("styles/ink", [second]) == (second / "styles" / "ink.safetensors").resolve()
    assert find_lora("only_here.safetensors", [first, second]) == (second / "only_here.safetensors").resolve()
    assert find_lora("../b/only_here", [first]) is None  # a name never leaves its folder
    assert find_lora("missing", [first, second]) is None


def test_numbers_in_prompts_are_plain_decimals():
    assert [format_number(v) for v in (1, 0.0, -0.0, 0.25, 1 / 3, 30.0, 1e7, -2.5e-7)] == [
        "1", "0", "0", "0.25", "0.333333", "30", "10000000", "0"]


# ------------------------------------------------------------------------- the plan: backticks


def plan(prompts, **values):
    return build_plan(validate_settings({"max_frames": 60, "seed": 1, "prompts": prompts, **values}))


def test_backtick_weights_are_evaluated_per_frame():
    result = plan({"0": "a cat:`where(t<30, 1, 0)` AND a dog:`where(t>=30, 1, 0)` --neg blurry:`t/100`"})
    prompts, negatives = result.strings["prompt"], result.strings["negative_prompt"]
    assert prompts[0] == prompts[29] == "a cat:1 AND a dog:0"
    assert prompts[30] == prompts[59] == "a cat:0 AND a dog:1"
    assert (negatives[0], negatives[25], negatives[59]) == ("blurry:0", "blurry:0.25", "blurry:0.59")
    assert len(prompts.table) == 60  # one (prompt, negative) pair per distinct set of values


def test_backticks_use_the_schedule_variables_and_hold_per_key():
    result = plan({"0": "`max_f - t` birds", "40": "fish `round(sec)`", "50": "no maths"}, fps=10)
    prompts = result.strings["prompt"]
    assert (prompts[0], prompts[39]) == ("59 birds", "20 birds")
    assert (prompts[40], prompts[49]) == ("fish 4", "fish 5")
    assert prompts[50] == prompts[59] == "no maths"


def test_backticks_in_added_prompts_and_before_the_first_key():
    result = plan({"10": "a cat"}, positive_prompts="(gold:`1 + t/10`)")
    assert result.strings["prompt"][0] == "(gold:1) a cat"  # before the first key its prompt holds, live
    assert result.strings["prompt"][25] == "(gold:3.5) a cat"


def test_unsafe_backtick_expressions_are_refused_naming_the_prompt_key():
    with pytest.raises(SettingsError, match=r"""prompts\['30'\]: backtick expression 1 \("__import__\('os'\)"\)"""):
        plan({"0": "a cat", "30": "a dog:`__import__('os')`"})
    with pytest.raises(SettingsError, match=r"prompts\['0'\]: backtick expression 2 .*unknown variable 'frame'"):
        plan({"0": "a cat:`t` AND a dog:`frame`"})
    with pytest.raises(SettingsError, match=r"prompts\['0'\].*gives inf at frame 3"):
        plan({"0": "a cat:`1/(t-3)`"})


def test_audio_variables_in_backticks_analyse_the_soundtrack(tmp_path, monkeypatch):
    with pytest.raises(SettingsError, match="'pulse' needs a soundtrack"):
        plan({"0": "a cat:`pulse`"})
    pytest.importorskip("librosa")
    monkeypatch.setenv("DEFORUM_ENGINE_CACHE", str(tmp_path / "cache"))
    rate, clicks = 22050, np.zeros(22050 * 3)
    for second in (0.5, 1.0, 1.5, 2.0, 2.5):  # 120 bpm clicks
        start = int(second * rate)
        clicks[start:start + 200] = np.random.default_rng(0).uniform(-0.8, 0.8, 200)
    song = tmp_path / "clicks.wav"
    with wave.open(str(song), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(rate)
        out.writeframes((clicks * 32767).astype("<i2").tobytes())
    result = plan({"0": "a cat:`pulse`"}, max_frames=40, fps=10, soundtrack_path=str(song))
    weights = [float(text.split(":")[1]) for text in result.strings["prompt"]]
    assert np.allclose(weights, result.audio.variables(None)["pulse"], atol=1e-6)
    assert max(weights) == 1.0 and min(weights) < 0.5


def test_a_100000_frame_plan_with_backticks_stays_compact():
    result = build_plan(validate_settings({"max_frames": 100_000, "seed": 1, "prompts": {
        "0": "a cat:`where(t%240 < 120, 1, 0)` AND a dog:`where(t%240 < 120, 0, 1)`", "50000": "the sea"}}))
    prompts = result.strings["prompt"]
    assert len(prompts.table) == 3 and prompts.codes.dtype == np.int32
    assert prompts[119] == "a cat:1 AND a dog:0" and prompts[120] == "a cat:0 AND a dog:1"
    assert prompts[99_999] == "the sea"


# -------------------------------------------------------------------------- the plan: LoRA tags


@pytest.fixture
def lora_folder(tmp_path):
    folder = tmp_path / "loras"
    folder.mkdir()
    for name in ("ink", "film"):
        (folder / f"{name}.safetensors").write_bytes(b"not read by the plan")
    return folder


def test_lora_tags_are_stripped_and_resolved_per_frame(lora_folder):
    result = plan({"0": "a cat <lora:ink:0.8> --neg blurry <lora:film:0.5:0.2>", "30": "a dog",
                   "40": "a fox <lora:ink:`t/100`>"}, lora_dirs=[str(lora_folder)])
    ink, film = str(lora_folder / "ink.safetensors"), str(lora_folder / "film.safetensors")
    frame = result.frame(0)
    assert (frame.prompt, frame.negative_prompt) == ("a cat", "blurry")
    assert frame.loras == (ActiveLora(film, 0.5, 0.2), ActiveLora(ink, 0.8, 0.8))
    assert result.frame(30).loras == () and result.frame(30).prompt == "a dog"
    assert result.frame(50).loras == (ActiveLora(ink, 0.5, 0.5),) and result.frame(50).prompt == "a fox"
    assert json.loads(json.dumps(result.to_json()))["frames"]["loras"][0] == [[film, 0.5, 0.2], [ink, 0.8, 0.8]]


def test_lora_blend_targets_are_stripped_too(lora_folder):
    result = plan({"0": "a cat", "10": "a dog <lora:ink:1>"}, lora_dirs=[str(lora_folder)], prompt_blend_frames=4)
    assert result.strings["blend_prompt"][8] == "a dog"
    assert result.frame(8).loras == () and len(result.frame(10).loras) == 1  # the LoRA starts at its key


def test_missing_lora_names_the_prompt_the_lora_and_the_folders(lora_folder, tmp_path):
    with pytest.raises(SettingsError, match=(r"prompts\['12'\]: LoRA 'watercolor' not found: no watercolor.safetensors "
                                             rf"in {lora_folder}, {tmp_path / 'more'}; .*`lora_dirs`")):
        plan({"0": "a cat", "12": "a <lora:watercolor:0.7> dog"}, lora_dirs=[str(lora_folder), str(tmp_path / "more")])
    with pytest.raises(SettingsError, match="LoRA 'ink' not found: no ink.safetensors because no LoRA folders are set"):
        plan({"0": "a cat <lora:ink>"})


def test_lora_dirs_are_relative_to_the_settings_file(lora_folder, tmp_path):
    path = tmp_path / "sub" / "render.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"max_frames": 5, "prompts": {"0": "a cat <lora:ink:0.6>"}, "lora_dirs": "../loras"}))
    settings = load_settings(path)
    assert settings.lora_dirs == (lora_folder.resolve(),)
    assert build_plan(settings).frame(4).loras == (ActiveLora(str(lora_folder / "ink.safetensors"), 0.6, 0.6),)
    with pytest.raises(SettingsError, match="lora_dirs"):
        validate_settings({"lora_dirs": 5})


def test_lora_check_happens_before_any_model_loads(tmp_path):
    """`deforum-engine plan` (which never imports torch) already refuses a missing LoRA."""
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"max_frames": 5, "prompts": {"0": "a cat <lora:nowhere:1>"},
                                "lora_dirs": [str(tmp_path)]}))
    code = ("import sys, runpy; sys.argv = ['deforum-engine', 'plan', sys.argv[1]]\n"
            "try:\n    runpy.run_module('deforum_engine.cli', run_name='__main__')\n"
            "finally:\n    print('torch' in sys.modules, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "LoRA 'nowhere' not found" in result.stderr and result.stderr.strip().endswith("False")


def test_plain_prompts_plan_as_before():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = plan({"0": "a forest --neg fog", "30": "a city"})
    assert result.strings["prompt"].table == ("a forest", "a city")
    assert result.strings["loras"].table == ((), ())


def test_parseq_prompts_get_backticks_and_lora_tags_read_too(tmp_path):
    (tmp_path / "style.safetensors").write_bytes(b"weights")
    frames = [{"frame": i, "deforum_prompt": "a cat:`t/4` AND a dog <lora:style:0.5> --neg blurry"} for i in range(3)]
    frames += [{"frame": 3, "deforum_prompt": "a plain field --neg dull"}]
    plan = build_plan(validate_settings({"parseq_manifest": json.dumps({"rendered_frames": frames}), "seed": 1,
                                         "lora_dirs": [str(tmp_path)], "prompts": {"0": "ignored"}}))
    assert list(plan.strings["prompt"]) == ["a cat:0 AND a dog", "a cat:0.25 AND a dog", "a cat:0.5 AND a dog",
                                            "a plain field"]
    assert list(plan.strings["negative_prompt"]) == ["blurry"] * 3 + ["dull"]
    assert [tuple(lora.path for lora in loras) for loras in plan.strings["loras"]] == \
        [(str(tmp_path / "style.safetensors"),)] * 3 + [()]
