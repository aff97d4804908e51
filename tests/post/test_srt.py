"""Deforum's gen-info .srt: the text the extension's subtitle writer makes of a settings file.

The expected text is built here from Deforum's documented format (reference notes, "The .srt gen
info file"): blocks `{n}\\n{start} --> {end}\\n{text}\\n\\n`, times from Decimal frame / fps with the
milliseconds truncated, `F#: {i}; Cadence: {c}; Seed: {seed}; ` then the chosen values in Deforum's
fixed order (whole numbers as integers, others with 3 decimals), the trailing "; " stripped. A few
lines are pinned by hand.
"""
from __future__ import annotations

import json
import math
from decimal import Decimal
from pathlib import Path

import pytest

from deforum_engine.cli import main
from deforum_engine.config.importers.deforum import import_deforum
from deforum_engine.config.settings import validate_settings
from deforum_engine.config.srt_labels import GEN_INFO_LABELS
from deforum_engine.errors import SettingsError
from deforum_engine.output.folder import RenderFolder
from deforum_engine.plan.frame_plan import build_plan
from deforum_engine.post.srt import gen_info_srt, srt_time

# A Deforum settings file (the extension's keys), 2D, cadence 1.
FILE = {
    "W": 64, "H": 64, "seed": 11, "seed_behavior": "iter", "seed_iter_N": 1, "sampler": "Euler a", "steps": 20,
    "use_init": False, "animation_mode": "2D", "max_frames": 8, "fps": 15, "diffusion_cadence": 1,
    "prompts": {"0": "a red fox", "4": "a snowy owl --neg blur"},
    "animation_prompts_positive": "oil painting", "animation_prompts_negative": "text",
    "angle": "0:(0), 7:(7)", "zoom": "0: (1.0025+0.002*sin(1.25*3.14*t/30))", "translation_x": "0:(t*0.5)",
    "translation_z": "0: (10)", "noise_schedule": "0: (0.04)", "strength_schedule": "0: (0.65)",
    "enable_steps_scheduling": False, "steps_schedule": "0: (25), 4: (30)",
    "enable_sampler_scheduling": False, "sampler_schedule": '0: ("Euler a"), 5: ("DPM++ 2M")',
    "subseed_schedule": "0:(1)", "subseed_strength_schedule": "0:(0), 7:(0.7)",
    "checkpoint_schedule": '0: ("model1.ckpt"), 6: ("model2.safetensors")',
    "mask_schedule": '0: ("{video_mask}")', "hybrid_comp_alpha_schedule": "0:(0.25)",
    "seed_schedule": '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)',
}


def srt_of(document: dict, labels=GEN_INFO_LABELS) -> str:
    imported = import_deforum(document, "file.txt").settings
    settings = validate_settings({**imported, "deforum_save_gen_info_as_srt": True,
                                  "deforum_save_gen_info_as_srt_params": list(labels)})
    return gen_info_srt(build_plan(settings))


def number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def documented(frame: int, fps, text: str) -> str:
    """One block as Deforum's format documents it."""
    def clock(seconds: Decimal) -> str:
        hours, rest = divmod(seconds, 3600)
        minutes, rest = divmod(rest, 60)
        return f"{int(hours):02d}:{int(minutes):02d}:{int(rest):02d},{int((rest % 1) * 1000):03d}"

    step = Decimal(1) / Decimal(fps)
    return f"{frame + 1}\n{clock(frame * step)} --> {clock((frame + 1) * step)}\n{text}\n\n"


def expected_values(frame: int) -> dict[str, str]:
    """The file's values at `frame`, worked out by hand from its schedules (max_f = 7)."""
    zoom = 1.0025 + 0.002 * math.sin(1.25 * 3.14 * frame / 30)
    prompt = " a red fox --neg text" if frame < 4 else " a snowy owl --neg blur  text"
    return {
        "Angle": number(float(frame)), "Tr.C.X": "0.500", "Tr.C.Y": "0.500", "Zoom": number(zoom),
        "TrX": number(frame * 0.5), "TrY": "0", "TrZ": "10", "RotX": "0", "RotY": "0", "RotZ": "0",
        "PerFlT": "0", "PerFlP": "0", "PerFlG": "0", "PerFlFV": "53", "Noise": "0.040", "StrSch": "0.650",
        "CtrstSch": "1", "CFGSch": "7", "P2PCfgSch": "1.500", "SubSSch": "1", "SubSStrSch": number(frame * 0.1),
        "CkptSch": "model1.ckpt" if frame < 6 else "model2.safetensors",
        "StepsSch": number(25 + 1.25 * min(frame, 4)), "SeedSch": "11" if frame in (0, 6, 7) else "-1",
        "SamplerSchedule": "Euler a" if frame < 5 else "DPM++ 2M", "ClipskipSchedule": "2",
        "NoiseMultiplierSchedule": "1.050", "MaskSchedule": "{video_mask}", "NoiseMaskSchedule": "{video_mask}",
        "AmountSchedule": "0.100", "KernelSchedule": "5", "SigmaSchedule": "1", "ThresholdSchedule": "0",
        "AspectRatioSchedule": "1", "FieldOfViewSchedule": "70", "NearSchedule": "200",
        "CadenceFlowFactorSchedule": "1", "RedoFlowFactorSchedule": "1", "FarSchedule": "10000",
        "HybridCompAlphaSchedule": "0.250", "HybridCompMaskBlendAlphaSchedule": "0.500",
        "HybridCompMaskContrastSchedule": "1", "HybridCompMaskAutoContrastCutoffHighSchedule": "100",
        "HybridCompMaskAutoContrastCutoffLowSchedule": "0", "HybridFlowFactorSchedule": "1",
        "Prompt": "oil painting" + prompt,
    }


def test_the_srt_equals_deforums_line_by_line():
    got = srt_of(FILE)
    blocks = []
    for frame in range(8):
        values = expected_values(frame)
        text = "; ".join(f"{label}: {value}" for label, value in values.items())
        blocks.append(documented(frame, 15, f"F#: {frame}; Cadence: false; Seed: {11 + frame}; {text}"))
    assert got.split("\n") == "".join(blocks).split("\n")
    # pinned by hand
    lines = got.split("\n")
    assert lines[:2] == ["1", "00:00:00,000 --> 00:00:00,066"]
    assert lines[4:6] == ["2", "00:00:00,066 --> 00:00:00,133"]
    assert lines[2].startswith("F#: 0; Cadence: false; Seed: 11; Angle: 0; Tr.C.X: 0.500; Tr.C.Y: 0.500; Zoom: 1.002; "
                               "TrX: 0; TrY: 0; TrZ: 10; ")
    assert lines[6].startswith("F#: 1; Cadence: false; Seed: 12; Angle: 1; Tr.C.X: 0.500; Tr.C.Y: 0.500; "
                               "Zoom: 1.003; TrX: 0.500; ")
    assert lines[18].endswith("; CkptSch: model1.ckpt; StepsSch: 30; SeedSch: -1; SamplerSchedule: Euler a; "
                              "ClipskipSchedule: 2; NoiseMultiplierSchedule: 1.050; MaskSchedule: {video_mask}; "
                              "NoiseMaskSchedule: {video_mask}; AmountSchedule: 0.100; KernelSchedule: 5; "
                              "SigmaSchedule: 1; ThresholdSchedule: 0; AspectRatioSchedule: 1; FieldOfViewSchedule: 70; "
                              "NearSchedule: 200; CadenceFlowFactorSchedule: 1; RedoFlowFactorSchedule: 1; "
                              "FarSchedule: 10000; HybridCompAlphaSchedule: 0.250; HybridCompMaskBlendAlphaSchedule: "
                              "0.500; HybridCompMaskContrastSchedule: 1; HybridCompMaskAutoContrastCutoffHighSchedule: "
                              "100; HybridCompMaskAutoContrastCutoffLowSchedule: 0; HybridFlowFactorSchedule: 1; "
                              "Prompt: oil painting a snowy owl --neg blur  text")


def test_chosen_values_keep_deforums_order_and_none_chosen_leaves_the_trailing_separator():
    few = srt_of(FILE, ["Prompt", "Seed Sch", "Zoom"]).split("\n")[2]
    none = srt_of(FILE, []).split("\n")[2]
    assert few == "F#: 0; Cadence: false; Seed: 11; Zoom: 1.002; SeedSch: 11; Prompt: oil painting a red fox --neg text"
    assert none == "F#: 0; Cadence: false; Seed: 11; "
    with pytest.raises(SettingsError, match="unknown label.*'Zoomm'"):
        validate_settings({"deforum_save_gen_info_as_srt_params": ["Zoomm"]})
    # Deforum's own unset default matches no label, and prints none
    assert validate_settings({"deforum_save_gen_info_as_srt_params": ["Noise Schedule"]}) \
        .deforum_save_gen_info_as_srt_params == ()


def test_cadence_lines_print_the_next_diffused_frames_seed_and_true_until_each_blocks_last_frame():
    got = srt_of({**FILE, "diffusion_cadence": 3, "max_frames": 8}, []).split("\n\n")[:-1]
    lines = [block.split("\n")[2] for block in got]
    # diffused frames 0, 3, 6 and (the engine's, always) 7 have seeds 11, 12, 13, 14
    assert lines == ["F#: 0; Cadence: True; Seed: 12; ", "F#: 1; Cadence: True; Seed: 12; ",
                     "F#: 2; Cadence: False; Seed: 12; ", "F#: 3; Cadence: True; Seed: 13; ",
                     "F#: 4; Cadence: True; Seed: 13; ", "F#: 5; Cadence: False; Seed: 13; ",
                     "F#: 6; Cadence: True; Seed: 14; ", "F#: 7; Cadence: False; Seed: 14; "]


def test_3d_mode_still_reports_the_2d_schedules_and_missing_ones_take_deforums_defaults():
    sparse = {"W": 64, "H": 64, "max_frames": 2, "seed": 3, "animation_mode": "3D", "use_init": False,
              "zoom": "0: (0)", "prompts": {"0": "a cave"}}
    text = srt_of(sparse).split("\n")[2]
    assert "; Zoom: 0; " in text and "; TrZ: 1.750; " in text  # the 3D placeholder zoom is only reported
    assert "; P2PCfgSch: 1.500; SubSSch: 1; SubSStrSch: 0; CkptSch: model1.ckpt; StepsSch: 25; " in text
    assert "; SamplerSchedule: Euler a; ClipskipSchedule: 2; " in text
    assert text.endswith("; HybridFlowFactorSchedule: 1; Prompt:  a cave --neg")


@pytest.mark.parametrize("seconds, shown", [
    (Decimal(1) / Decimal(15), "00:00:00,066"), (3 * (Decimal(1) / Decimal(30)), "00:00:00,099"),
    (Decimal("3725.5"), "01:02:05,500"), (Decimal(0), "00:00:00,000"),
])
def test_times_truncate_the_milliseconds(seconds, shown):
    assert srt_time(seconds) == shown


def test_the_cli_writes_the_srt_beside_the_video(tmp_path):
    path = tmp_path / "fox.txt"
    path.write_text(json.dumps({**FILE, "max_frames": 3}))
    out = tmp_path / "renders" / "fox-1"
    assert main(["render", str(path), "--preview", "--quiet", "--out", str(out),
                 "--set", "deforum_save_gen_info_as_srt=true",
                 "--set", 'deforum_save_gen_info_as_srt_params=["Angle", "Ckpt Sch"]']) == 0
    folder = RenderFolder(out)
    srt = (out / "fox-1.srt").read_text()
    assert folder.video_path == out / "fox-1.mp4" and folder.video_path.is_file()
    assert srt.split("\n")[2] == "F#: 0; Cadence: false; Seed: 11; Angle: 0; CkptSch: model1.ckpt"
    assert srt.count("\n\n") == 3


def test_a_schedule_only_the_srt_reads_is_checked_before_the_render(tmp_path, capsys):
    path = tmp_path / "bad.txt"
    path.write_text(json.dumps({**FILE, "max_frames": 3, "subseed_schedule": "0:(nope)"}))
    assert main(["render", str(path), "--preview", "--quiet", "--out", str(tmp_path / "bad"),
                 "--set", "deforum_save_gen_info_as_srt=true",
                 "--set", 'deforum_save_gen_info_as_srt_params=["Subseed Sch"]']) == 2
    error = capsys.readouterr().err
    assert "srt: subseed_schedule" in error and "nope" in error
    assert not (tmp_path / "bad").exists()


def test_with_parseq_managing_the_seed_the_lines_show_what_deforum_writes():
    manifest = (Path(__file__).resolve().parent.parent / "data" / "importers" / "parseq_seed_travel.json").read_text()
    text = srt_of({**FILE, "seed": 7, "parseq_manifest": manifest}, ["Subseed Sch", "Subseed Str Sch", "Seed Sch",
                                                                      "Prompt"])
    lines = [block.split("\n")[2] for block in text.split("\n\n")[:-1]]
    assert len(lines) == 10  # Parseq's frame count wins
    # frame 0: the settings' seed; then the previous frame's Parseq seed, truncated, moved on by iter's +1
    assert [line.split("; ")[2] for line in lines] == ["Seed: 7", "Seed: 101", "Seed: 101", "Seed: 101",
                                                       "Seed: 102", "Seed: 102", "Seed: 102", "Seed: 103",
                                                       "Seed: 103", "Seed: 103"]
    assert lines[1] == ("F#: 1; Cadence: false; Seed: 101; SubSSch: 101; SubSStrSch: 0.333; SeedSch: 100.333; "
                        "Prompt: a field of sunflowers, impressionist painting")


def test_a_batch_job_writes_its_srt_too(tmp_path):
    path = tmp_path / "fox.txt"
    path.write_text(json.dumps({**FILE, "max_frames": 2}))
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(f'base = "{path.name}"\n\n[[jobs]]\nname = "fox"\ndeforum_save_gen_info_as_srt = true\n'
                    'deforum_save_gen_info_as_srt_params = ["Zoom"]\n')
    assert main(["batch", str(jobs), "--preview", "--quiet", "--out", str(tmp_path / "out")]) == 0
    written = list((tmp_path / "out").glob("*/*.srt"))
    assert len(written) == 1 and written[0].stem == written[0].parent.name
    assert written[0].read_text().split("\n")[2] == "F#: 0; Cadence: false; Seed: 11; Zoom: 1.002"
