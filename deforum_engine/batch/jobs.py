"""One job of a batch, rendered: validated up front, then rendered, resumed or skipped.

Both executors (local processes in batch.py, Ray actors in ray_executor.py) run jobs through
`render_job`; lockstep groups (several renders sharing one model, see backends/lockstep.py) run
through `render_in_lockstep`. A job's failure is its result, never the batch's end.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deforum_engine.backends.lockstep import LockstepBackend
from deforum_engine.config.files import load_settings
from deforum_engine.config.settings import validate_settings
from deforum_engine.errors import SettingsError
from deforum_engine.post.srt import check_gen_info
from deforum_engine.rendering.inputs import check_inputs
from deforum_engine.rendering.recipe import render, render_or_resume


@dataclass(frozen=True)
class Job:
    """One render of a batch: where its settings come from and what they override."""

    name: str
    settings_path: Path | None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobResult:
    name: str
    status: str  # done | resumed | skipped | failed
    seconds: float = 0.0
    output: str = ""
    error: str = ""


def validate_job(job: Job, model: str | None) -> dict[str, Any]:
    """Load and check a job's settings and inputs; returns its resolved settings as JSON values."""

    overrides = {"name": job.name, **job.overrides}
    if model:
        overrides["model"] = model
    plan = check_inputs(load_settings(job.settings_path, overrides)).plan
    check_gen_info(plan)  # every schedule the .srt reports reads
    return plan.settings.to_json_dict()


def render_job(name: str, settings_json: dict[str, Any], folder: str, preview: bool, quiet: bool = True) -> JobResult:
    """Render one validated job into `folder`: skip it if finished, resume it if stopped."""

    started = time.perf_counter()
    try:
        outcome, result = render_or_resume(validate_settings(settings_json, name), folder, preview=preview, quiet=quiet)
        if result is None:
            return JobResult(name, "skipped", 0.0, folder)
        return JobResult(name, "resumed" if outcome == "resumed" else "done", time.perf_counter() - started,
                         str(result.video))
    except Exception as error:  # noqa: BLE001 - a batch boundary: the job fails with its reason, the others go on
        return JobResult(name, "failed", time.perf_counter() - started, error=f"{type(error).__name__}: {error}")


def render_in_lockstep(jobs: list, inner, quiet: bool = True) -> list:
    """Render `jobs` ((settings, output folder) pairs) together on `inner`'s model, batching their frames.

    Returns, per job, its RenderResult or the exception that stopped it; one failing render never
    stops the others. Image prompts are refused here, before the model loads: their adapter scale
    and embedding belong to one render.
    """

    with_image_prompt = [str(out) for settings, out in jobs if settings.image_prompt is not None]
    if with_image_prompt:
        raise SettingsError(f"lockstep renders cannot use an image prompt ({', '.join(with_image_prompt)}); "
                            "render those one by one")
    shared = LockstepBackend(inner, len(jobs))

    def one(job):
        settings, out = job
        try:
            result = render(settings, out=out, backend=shared, quiet=quiet)
        except Exception as error:  # noqa: BLE001 - reported per job by the caller
            return error
        finally:
            shared.leave()
        return result

    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="lockstep") as pool:
        return list(pool.map(one, jobs))
