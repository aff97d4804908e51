"""Batch renders: every job validated first, broken jobs named, others finish; re-runs skip and resume."""
import json

import pytest

from deforum_engine.batch.local import collect_jobs, run_batch
from deforum_engine.cli import main
from deforum_engine.output import probe_video

BASE = {"W": 64, "H": 64, "max_frames": 6, "seed": 3, "video_preset": "ultrafast", "zoom": "0:(1.02)"}


@pytest.fixture()
def jobs(tmp_path):
    good = []
    for name, extra in (("calm", {}), ("spin", {"angle": "0:(3)"})):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({**BASE, **extra}))
        good.append(path)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**BASE, "zoom": "0:(1.02+"}))
    return good, broken


def check_report(report, out):
    by_name = {r.name: r for r in report.results}
    assert not report.ok
    assert by_name["broken"].status == "failed" and "zoom" in by_name["broken"].error
    for name in ("calm", "spin"):
        assert by_name[name].status == "done", by_name[name].error
        assert probe_video(out / name / f"{name}.mp4")["frames"] == 6
    assert "broken" in report.summary() and "1 failed" in report.summary()


def test_local_batch_with_a_broken_job(tmp_path, jobs):
    good, broken = jobs
    out = tmp_path / "out"
    check_report(run_batch([good[0], broken, good[1]], out, preview=True), out)


def test_rerun_skips_finished_and_resumes_stopped(tmp_path, jobs):
    good, broken = jobs
    out = tmp_path / "out"
    run_batch(good, out, preview=True)
    info = out / "spin" / "render.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "status": "rendering"}))
    report = run_batch(good, out, preview=True)
    assert {r.name: r.status for r in report.results} == {"calm": "skipped", "spin": "resumed"}
    assert report.ok
    assert probe_video(out / "spin" / "spin.mp4")["frames"] == 6


def test_jobs_file_renders_one_base_over_many_inputs(tmp_path, jobs):
    good, _ = jobs
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text(
        f'base = "{good[0].name}"\n[matrix]\nseed = [1, 2]\nmotion_preset = ["zoom_in", "sway"]\n'
        '[[jobs]]\nname = "special"\nangle = "0:(5)"\n'
    )
    names = [job.name for job in collect_jobs([jobs_file])]
    assert names == ["special", "calm-1-zoom_in", "calm-1-sway", "calm-2-zoom_in", "calm-2-sway"]
    assert main(["batch", str(jobs_file), "--preview", "--quiet", "--out", str(tmp_path / "out")]) == 0
    assert probe_video(tmp_path / "out" / "calm-2-sway" / "calm-2-sway.mp4")["frames"] == 6
    saved = json.loads((tmp_path / "out" / "calm-2-sway" / "settings.json").read_text())
    assert saved["seed"] == 2 and saved["motion_preset"] == "sway"


def test_cli_batch_exit_status_is_non_zero_when_a_job_fails(tmp_path, jobs, capsys):
    good, broken = jobs
    status = main(["batch", str(good[0]), str(broken), "--preview", "--out", str(tmp_path / "out")])
    assert status == 1
    assert "broken" in capsys.readouterr().out


@pytest.mark.slow
def test_ray_batch_with_a_broken_job(tmp_path, jobs):
    ray = pytest.importorskip("ray")
    good, broken = jobs
    out = tmp_path / "out"
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    try:
        check_report(run_batch([good[0], broken, good[1]], out, preview=True, executor="ray", workers=2), out)
        # Model jobs need GPUs: on this cluster they fail at once with a clear reason, never hang.
        report = run_batch([good[0]], tmp_path / "gpu", executor="ray", model="some/model")
        assert report.results[0].status == "failed" and "no GPUs" in report.results[0].error
    finally:
        ray.shutdown()


def test_paths_in_a_jobs_file_are_relative_to_it(tmp_path, jobs):
    good, _ = jobs
    (tmp_path / "songs").mkdir()
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text(f'base = "{good[0].name}"\n[[jobs]]\nname = "a"\nsoundtrack_path = "songs/a.wav"\n'
                         'lora_dirs = ["loras", "more"]\n')
    (job,) = collect_jobs([jobs_file])
    assert job.overrides["soundtrack_path"] == str(tmp_path / "songs" / "a.wav")
    assert job.overrides["lora_dirs"] == [str(tmp_path / "loras"), str(tmp_path / "more")]
