"""Batch renders: many jobs in one command, locally or on a Ray cluster.

A job is one settings dict rendered into `<out>/<job name>/`. Every job is validated before any
renders; a failing job is reported with its reason and never stops the others; a re-run skips
finished jobs and resumes stopped ones. A worker keeps its model between jobs (models are cached
per process), so the model loads once per worker.

Jobs files (TOML) render one base settings file over many inputs:

    base = "music_video.json"          # relative to the jobs file
    [matrix]                           # every combination of these values
    soundtrack_path = ["a.mp3", "b.mp3"]
    seed = [1, 2]
    [[jobs]]                           # and/or explicit jobs: overrides, optional name
    name = "intro"
    motion_preset = "zoom_in"
"""
from __future__ import annotations

import itertools
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deforum_engine.backends import make_backend
from deforum_engine.batch.jobs import (
    Job,
    JobResult,
    render_in_lockstep,
    render_job,
    validate_job,
)
from deforum_engine.batch.ray import run_on_ray
from deforum_engine.config.files import resolve_paths
from deforum_engine.config.settings import validate_settings
from deforum_engine.errors import SettingsError
from deforum_engine.limits import Limits, env_name, parse_toml, read_text_file
from deforum_engine.output.folder import RenderFolder


@dataclass(frozen=True)
class BatchReport:
    results: list[JobResult]

    @property
    def ok(self) -> bool:
        return all(result.status != "failed" for result in self.results)

    def summary(self) -> str:
        """One line per job: status, time, and the video or the reason it failed."""
        width = max([len(r.name) for r in self.results] + [3])
        lines = [f"{'job':<{width}}  {'status':<8} {'time':>8}  output / reason"]
        for r in self.results:
            lines.append(f"{r.name:<{width}}  {r.status:<8} {r.seconds:>7.1f}s  {r.error or r.output}")
        failed = sum(r.status == "failed" for r in self.results)
        lines.append(f"{len(self.results)} jobs, {failed} failed")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------- jobs


def _slug(value: Any) -> str:
    text = Path(str(value)).stem if isinstance(value, str) and ("/" in value or "." in value) else str(value)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def read_jobs_file(path: Path) -> list[Job]:
    """Jobs from a TOML jobs file: a `base` settings file, a `[matrix]` of values and/or `[[jobs]]`."""
    data = parse_toml(read_text_file(path, "jobs file"), str(path))
    unknown = sorted(set(data) - {"base", "matrix", "jobs"})
    if unknown:
        shown = ", ".join(repr(key[:40]) for key in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise SettingsError(f"{path}: unknown keys {shown}; a jobs file has base, [matrix] and [[jobs]]")
    if "base" in data and not isinstance(data["base"], str):
        raise SettingsError(f"{path}: `base` is the path of a settings file, got {type(data['base']).__name__}")
    base = (path.parent / data["base"]).resolve() if "base" in data else None
    prefix = base.stem if base else path.stem
    jobs_list, matrix = data.get("jobs", []), data.get("matrix", {})
    if not isinstance(jobs_list, list) or not all(isinstance(job, dict) for job in jobs_list) or not isinstance(matrix, dict):
        raise SettingsError(f"{path}: [matrix] is a table of setting = [values] and [[jobs]] a list of tables")
    _check_job_count(path, len(jobs_list), matrix)
    overrides = [resolve_paths(job, path.parent) for job in jobs_list]
    if matrix:
        keys = list(matrix)
        for combination in itertools.product(*(_as_list(matrix[key]) for key in keys)):
            overrides.append(resolve_paths(dict(zip(keys, combination)), path.parent))
    if not overrides:
        overrides = [{}]
    jobs = []
    for index, job in enumerate(overrides):
        name = str(job.pop("name", "")) or "-".join([prefix, *(_slug(v) for v in job.values())]) or f"{prefix}-{index}"
        jobs.append(Job(name=name, settings_path=base, overrides=job))
    return _unique_names(jobs)


def _check_job_count(path: Path, listed: int, matrix: dict[str, Any]) -> None:
    """The number of jobs ([[jobs]] plus the [matrix] product), refused above the limit before any is made."""
    limit = Limits.from_env().max_jobs
    total = listed
    product = 1
    for values in matrix.values():
        product *= max(len(_as_list(values)), 1)
        if listed + product > limit:
            break
    total += product if matrix else 0
    if total > limit:
        sizes = " x ".join(str(len(_as_list(values))) for values in list(matrix.values())[:12])
        more = " x ..." if len(matrix) > 12 else ""
        raise SettingsError(f"{path}: the jobs file makes more than {limit:,} jobs ({listed} [[jobs]]"
                            + (f" and a [matrix] of {sizes}{more} combinations" if matrix else "")
                            + f"); split it into several files, or raise the limit with {env_name('max_jobs')}")


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _unique_names(jobs: list[Job]) -> list[Job]:
    seen: dict[str, int] = {}
    unique = []
    for job in jobs:
        count = seen.get(job.name, 0)
        seen[job.name] = count + 1
        unique.append(job if count == 0 else Job(f"{job.name}-{count + 1}", job.settings_path, job.overrides))
    return unique


def collect_jobs(paths: list[Path]) -> list[Job]:
    """Settings files become one job each; `.toml` files with `base`/`matrix`/`jobs` expand to many."""
    jobs: list[Job] = []
    for path in paths:
        if path.suffix.lower() == ".toml" and _is_jobs_file(path):
            jobs.extend(read_jobs_file(path))
        else:
            jobs.append(Job(name=path.stem, settings_path=path))
        limit = Limits.from_env().max_jobs
        if len(jobs) > limit:
            raise SettingsError(f"{path}: the batch makes more than {limit:,} jobs; split it into several batches, "
                                f"or raise the limit with {env_name('max_jobs')}")
    return _unique_names(jobs)


def _is_jobs_file(path: Path) -> bool:
    try:
        data = parse_toml(read_text_file(path, "settings file"), str(path))
    except SettingsError as error:
        if "not valid TOML" in str(error):
            return False  # read again (and refused with its message) as a settings file
        raise
    return bool({"base", "matrix", "jobs"} & set(data))


# ----------------------------------------------------------------------------------------- work


def run_batch(
    paths: list[Path],
    out: Path = Path("renders"),
    *,
    preview: bool = False,
    model: str | None = None,
    executor: str = "local",
    address: str | None = None,
    workers: int = 1,
    quiet: bool = True,
    lockstep: int = 1,
) -> BatchReport:
    """Validate every job, then render the valid ones on the chosen executor.

    `lockstep` > 1 (model renders, local executor) renders that many jobs together on one model,
    each UNet call denoising a frame of each (see backends/lockstep.py).
    """
    jobs = collect_jobs(paths)
    results: dict[str, JobResult] = {}
    valid: list[tuple[str, dict, str]] = []
    for job in jobs:
        try:
            valid.append((job.name, validate_job(job, model), str(out / job.name)))
        except SettingsError as error:
            results[job.name] = JobResult(job.name, "failed", error=f"invalid: {error}")
    if valid and lockstep > 1 and not preview and executor == "local":
        for result in _run_in_lockstep(valid, lockstep, quiet):
            results[result.name] = result
    elif valid:
        run = _run_on_ray if executor == "ray" else _run_locally
        for result in run(valid, preview, workers, address, quiet):
            results[result.name] = result
    return BatchReport([results[job.name] for job in jobs])


def _run_locally(valid, preview: bool, workers: int, address, quiet: bool) -> list[JobResult]:
    if workers <= 1:
        return [render_job(name, settings, folder, preview, quiet) for name, settings, folder in valid]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(render_job, name, settings, folder, preview, quiet) for name, settings, folder in valid]
        return [future.result() for future in futures]


def _run_on_ray(valid, preview: bool, workers: int, address: str | None, quiet: bool) -> list[JobResult]:
    return run_on_ray(valid, preview=preview, workers=workers, address=address)


def _run_in_lockstep(valid, group_size: int, quiet: bool) -> list[JobResult]:
    """New jobs that share a model and canvas, in groups of `group_size` on one shared model.

    Finished, stopped and image-prompt jobs (an image prompt belongs to one render's adapter set-up)
    are rendered one by one as usual.
    """
    buckets: dict[tuple, list] = {}
    solo = []
    for job in valid:
        settings = job[1]
        if RenderFolder(job[2]).status() is not None or settings.get("image_prompt"):
            solo.append(job)
        else:
            buckets.setdefault(tuple(str(settings.get(key)) for key in _SHARED_MODEL_KEYS), []).append(job)
    results = [render_job(name, settings, folder, False, quiet) for name, settings, folder in solo]
    for bucket in buckets.values():
        for start in range(0, len(bucket), group_size):
            results.extend(_lockstep_group(bucket[start:start + group_size], quiet))
    return results


# Settings that must be equal for renders to share one model and batch their frames.
_SHARED_MODEL_KEYS = ("model", "model_config_dir", "device", "dtype", "vae", "tiny_vae_model", "safety_checker",
                      "compile_unet", "W", "H")


def _lockstep_group(group, quiet: bool) -> list[JobResult]:

    jobs = [(validate_settings(settings, name), folder) for name, settings, folder in group]
    started = time.perf_counter()
    outcomes = render_in_lockstep(jobs, make_backend(jobs[0][0], preview=False), quiet)
    seconds = time.perf_counter() - started
    return [
        JobResult(name, "failed", seconds, error=f"{type(outcome).__name__}: {outcome}")
        if isinstance(outcome, Exception) else JobResult(name, "done", seconds, str(outcome.video))
        for (name, _, _), outcome in zip(group, outcomes)
    ]
