"""Batch jobs on a Ray cluster: one actor per GPU (or per CPU slot for previews), each holding its model.

A node that dies mid-batch loses nothing: its actors restart on the nodes left and the jobs they
were rendering run again, resuming from their folders.

Every worker writes into the job's output folder, so on a multi-machine cluster that folder must
be on a filesystem all machines share (NFS, a mounted bucket...). Ray is an optional extra:
`pip install -c constraints.txt 'deforum-engine[ray]'`.
"""
from __future__ import annotations

from typing import Any

from deforum_engine.batch.jobs import JobResult, render_job
from deforum_engine.errors import SettingsError


class _Worker:
    """A Ray actor: renders jobs one after another; its process keeps the model between them."""

    def __init__(self, preview: bool) -> None:
        self.preview = preview

    def run(self, name: str, settings: dict[str, Any], folder: str):
        return render_job(name, settings, folder, self.preview)


def _connect(address: str | None, workers: int):
    import ray

    if ray.is_initialized():
        return ray
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
    return ray


def run_on_ray(valid: list[tuple[str, dict, str]], *, preview: bool, workers: int, address: str | None) -> list:
    """Render validated jobs on Ray actors; GPU jobs on a cluster without GPUs fail at once."""
    try:
        ray = _connect(address, workers)
    except ImportError:
        raise SettingsError("--executor ray needs Ray: pip install -c constraints.txt 'deforum-engine[ray]'") from None
    needs_gpu = not preview and any(settings.get("device") in (None, "cuda") for _, settings, _ in valid)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if needs_gpu and gpus == 0:
        reason = ("the Ray cluster has no GPUs: model renders need one per worker; "
                  "use --preview, or set device = \"cpu\" in the settings to render on CPUs")
        return [JobResult(name, "failed", error=reason) for name, _, _ in valid]
    resources = {"num_gpus": 1, "num_cpus": 1} if needs_gpu else {"num_cpus": 1}
    slots = gpus if needs_gpu else int(ray.cluster_resources().get("CPU", 1))
    count = max(1, min(workers, len(valid), slots))
    # Spread over the nodes; a worker whose node dies is started again elsewhere and its job is sent
    # again: render_job then resumes the job's folder from its last saved frame (the folder must be on
    # storage every node shares).
    actor = ray.remote(max_restarts=-1, max_task_retries=-1, scheduling_strategy="SPREAD", **resources)(_Worker)
    from ray.util import ActorPool

    pool = ActorPool([actor.remote(preview) for _ in range(count)])
    results = list(pool.map_unordered(lambda a, job: a.run.remote(*job), valid))
    by_name = {result.name: result for result in results}
    return [by_name[name] for name, _, _ in valid]
