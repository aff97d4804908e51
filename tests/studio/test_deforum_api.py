"""`/deforum_api` as the AUTOMATIC1111 Deforum extension's own clients use it.

The client here is written from the extension's documented shapes (its DeforumJobStatus model, its
phases and messages, its test flow: post a batch with `options_overrides`, poll `/jobs/{id}`, read
`{outdir}/{timestring}.srt` and `.mp4`), against the real app with preview renders.
"""
from __future__ import annotations

import base64
import time
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

pytest.importorskip("fastapi", reason="the studio's extra is not installed (pip install -e '.[studio]')")

from fastapi.testclient import TestClient
from polling import wait_for

from deforum_engine.config.srt_labels import GEN_INFO_LABELS
from deforum_engine.output import probe_video
from deforum_engine.studio.app import create_app
from deforum_engine.studio.config import StudioConfig


class Status(str, Enum):
    ACCEPTED = "ACCEPTED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class Phase(str, Enum):
    QUEUED = "QUEUED"
    PREPARING = "PREPARING"
    GENERATING = "GENERATING"
    POST_PROCESSING = "POST_PROCESSING"
    DONE = "DONE"


class ErrorType(str, Enum):
    NONE = "NONE"
    RETRYABLE = "RETRYABLE"
    TERMINAL = "TERMINAL"


class JobStatus(BaseModel):
    """The extension's job status, field for field (nothing more may come back)."""

    model_config = ConfigDict(extra="forbid")
    id: str
    status: Status
    phase: Phase
    error_type: ErrorType
    phase_progress: float
    started_at: float
    last_updated: float
    execution_time: float
    update_interval_time: float
    updates: int
    message: str | None
    outdir: str | None
    timestring: str | None
    deforum_settings: list[dict[str, Any]] | None
    options_overrides: dict[str, Any] | None


# A Deforum settings file as the extension saves one (the keys that matter here).
DEFORUM = {
    "W": 64, "H": 64, "seed": 7, "sampler": "Euler a", "steps": 1, "seed_behavior": "iter", "use_init": False,
    "animation_mode": "2D", "max_frames": 6, "fps": 12, "diffusion_cadence": 1,
    "prompts": {"0": "a lighthouse", "3": "a harbour --neg fog"},
    "animation_prompts_positive": "", "animation_prompts_negative": "",
    "zoom": "0:(1.0025+0.002*sin(1.25*3.14*t/30))", "angle": "0:(0)", "noise_schedule": "0: (0.04)",
    "strength_schedule": "0: (0.65)", "subseed_schedule": "0:(1), 3:(4)", "hybrid_composite": "None",
    "batch_name": "Deforum_{timestring}",
}
SRT = {"deforum_save_gen_info_as_srt": True, "deforum_save_gen_info_as_srt_params": list(GEN_INFO_LABELS)}
LONG = {**DEFORUM, "W": 256, "H": 256, "max_frames": 400}


def studio(data: Path, **options):
    app = create_app(StudioConfig(data=data, **{"preview_only": True, **options}))
    return TestClient(app, base_url="http://127.0.0.1")


def job(client, job_id: str) -> JobStatus:
    answer = client.get(f"/deforum_api/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    return JobStatus.model_validate(answer.json())


def as_dict(client, job_id: str) -> dict:
    return job(client, job_id).model_dump(mode="json")


def submit(client, settings, overrides=None) -> dict:
    answer = client.post("/deforum_api/batches", json={"deforum_settings": settings, "options_overrides": overrides})
    assert answer.status_code == 202, answer.text
    return answer.json()


def done(client, job_id: str) -> JobStatus:
    """The extension's wait: poll until the job is no longer ACCEPTED."""
    wait_for(lambda: as_dict(client, job_id), until=lambda s: s["status"] != "ACCEPTED", timeout=120)
    return job(client, job_id)


def test_a_job_goes_through_every_phase_and_leaves_the_srt_beside_its_video(tmp_path):
    events = []
    with studio(tmp_path / "data") as client:
        client.app.state.studio.worker.listen(lambda job_id, event, detail: events.append((job_id, event)))
        blocker = submit(client, LONG)["job_ids"][0]
        wait_for(lambda: as_dict(client, blocker), until=lambda s: s["phase"] == "GENERATING")
        body = submit(client, DEFORUM, {**SRT, "sd_model_checkpoint": "v1-5.safetensors"})
        job_id = body["job_ids"][0]
        queued = job(client, job_id)
        assert client.delete(f"/deforum_api/jobs/{blocker}").json() == {"id": blocker, "message": "Job cancelled."}
        seen = []
        while (status := job(client, job_id)).status == Status.ACCEPTED:
            seen.append((status.phase, status.phase_progress, status.updates))
        final = job(client, job_id)
    assert body["message"] == "Job(s) accepted" and body["job_ids"] == [job_id]
    assert (queued.status, queued.phase, queued.phase_progress, queued.updates) == ("ACCEPTED", "QUEUED", 0.0, 0)
    assert queued.deforum_settings == [DEFORUM] and queued.options_overrides["sd_model_checkpoint"] == "v1-5.safetensors"
    # the worker reports each phase when that work starts: checking and loading, the frames, the video
    mine = [event for owner, event in events if owner == job_id]
    assert mine == ["preparing", "generating", *["frame"] * 6, "post_processing", "end"]
    phases = [phase for phase, _, _ in seen]
    order = ["QUEUED", "PREPARING", "GENERATING", "POST_PROCESSING"]
    assert set(phases) <= set(order) and phases == sorted(phases, key=order.index)
    generating = [progress for phase, progress, _ in seen if phase == "GENERATING"]
    assert generating == sorted(generating) and all(0 <= p <= 1 for p in generating)
    assert [updates for _, _, updates in seen] == sorted(updates for _, _, updates in seen)
    # done: the extension's fields, live times and counts, the folder and its timestring
    assert (final.status, final.phase, final.phase_progress, final.error_type) == ("SUCCEEDED", "DONE", 1.0, "NONE")
    assert final.updates == len(mine) and final.last_updated > final.started_at
    assert final.execution_time == pytest.approx(final.last_updated - final.started_at)
    assert 0 <= final.update_interval_time < final.execution_time
    outdir, timestring = Path(final.outdir), final.timestring
    assert timestring == outdir.name
    video = probe_video(outdir / f"{timestring}.mp4")
    assert (video["frames"], video["fps"], video["width"], video["height"]) == (6, 12, 64, 64)
    srt = (outdir / f"{timestring}.srt").read_text(encoding="utf-8")
    blocks = srt.split("\n\n")
    assert len(blocks) == 7 and blocks[-1] == ""  # 6 blocks, each ending in a blank line
    assert blocks[0].split("\n")[:2] == ["1", "00:00:00,000 --> 00:00:00,083"]
    assert blocks[5].split("\n")[:2] == ["6", "00:00:00,416 --> 00:00:00,500"]
    assert blocks[0].split("\n")[2].startswith("F#: 0; Cadence: false; Seed: 7; Angle: 0; Tr.C.X: 0.500; Tr.C.Y: 0.500; "
                                               "Zoom: 1.002; ")
    # a schedule the engine has no use for, interpolated as Deforum does
    assert [b.split("; SubSSch: ")[1].split(";")[0] for b in blocks[:5]] == ["1", "2", "3", "4", "4"]
    assert blocks[4].endswith("; Prompt:  a harbour --neg fog")
    # the A1111 option the engine lacks is named, in the answer and in the job's message
    assert "sd_model_checkpoint" in body["notes"][job_id][0] and "sd_model_checkpoint" in final.message


def test_cancelling_a_queued_and_a_running_job(tmp_path):
    with studio(tmp_path / "data") as client:
        running, waiting = submit(client, [LONG, DEFORUM])["job_ids"]
        wait_for(lambda: as_dict(client, running), until=lambda s: s["phase"] == "GENERATING"
                 and s["phase_progress"] > 0)
        assert job(client, waiting).phase == Phase.QUEUED
        assert client.delete(f"/deforum_api/jobs/{waiting}").status_code == 200
        cancelled_queued = job(client, waiting)
        again = client.delete(f"/deforum_api/jobs/{waiting}")
        assert client.delete(f"/deforum_api/jobs/{running}").json()["message"] == "Job cancelled."
        cancelled_running = done(client, running)
        time.sleep(0.3)  # the render stops before its next frame; the status stays as it was
        settled = job(client, running)
        unknown = client.delete("/deforum_api/jobs/0123456789ab")
    assert (cancelled_queued.status, cancelled_queued.phase) == ("CANCELLED", "QUEUED")
    assert cancelled_queued.message.startswith("Cancelled due to user request. | ")
    assert "Deforum settings for features this engine does not have were ignored" in cancelled_queued.message
    assert again.status_code == 400
    assert again.json()["message"] == f"Job with ID {waiting} not in a cancellable state. Has it already finished?"
    for status in (cancelled_running, settled):
        assert (status.status, status.phase) == ("CANCELLED", "GENERATING")
        assert status.message.startswith("Cancelled due to user request. | ")
        assert 0 < status.phase_progress < 1
    assert settled.phase_progress >= cancelled_running.phase_progress
    assert unknown.status_code == 404 and unknown.json()["message"] == "Job with ID 0123456789ab not found."


def test_a_bad_file_in_a_batch_fails_alone_and_ignored_settings_are_named(tmp_path):
    bad = {**DEFORUM, "W": 65}
    with_ignored = {**DEFORUM, "max_frames": 2, "use_looper": True, "restore_faces": True}
    with studio(tmp_path / "data") as client:
        body = submit(client, [with_ignored, bad])
        good_id, bad_id = body["job_ids"]
        failed = job(client, bad_id)
        good = done(client, good_id)
        batches = client.get("/deforum_api/batches").json()
        listed = client.get(f"/deforum_api/batches/{body['batch_id']}").json()
        every = client.get("/deforum_api/jobs").json()
        missing = client.get("/deforum_api/jobs/0123456789ab")
        no_batch = client.get("/deforum_api/batches/nope")
        empty = client.post("/deforum_api/batches", json={"deforum_settings": []})
        malformed = client.post("/deforum_api/batches", json={"deforum_settings": 3})
        native = client.post("/api/batches", json={"settings": [with_ignored, bad]})
    assert (failed.status, failed.error_type, failed.phase) == ("FAILED", "TERMINAL", "PREPARING")
    assert failed.message.startswith("document 2: `W`: must be a multiple of 8")
    assert good.status == Status.SUCCEEDED
    ignored = body["notes"][good_id][0]
    assert "use_looper" in ignored and "restore_faces" in ignored and "use_looper" in good.message
    assert batches[body["batch_id"]] == [good_id, bad_id]
    assert [JobStatus.model_validate(s).id for s in listed] == [good_id, bad_id]
    assert set(every) == {good_id, bad_id} and all(JobStatus.model_validate(s) for s in every.values())
    assert missing.status_code == 404 and missing.json()["status"] == "NOT FOUND" and missing.json()["message"]
    assert no_batch.status_code == 404 and no_batch.json()["message"]
    assert empty.status_code == 400 and empty.json()["message"].startswith("No settings files provided.")
    assert malformed.status_code == 422 and malformed.json()["message"] == malformed.json()["error"]
    assert native.status_code == 422  # the native API still refuses the whole batch up front


def test_a1111_api_auth_logins_beside_the_token(tmp_path):
    def basic(login: str) -> dict:
        return {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()}

    with studio(tmp_path / "data", token="t0ken", api_auth="alice:s3cret,bob:pw") as client:
        anonymous = client.get("/deforum_api/jobs")
        wrong = client.get("/deforum_api/jobs", headers=basic("alice:nope"))
        alice = client.get("/deforum_api/jobs", headers=basic("alice:s3cret"))
        bob = client.get("/api/health", headers=basic("bob:pw"))
        token = client.get("/deforum_api/jobs", headers={"Authorization": "Bearer t0ken"})
    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic") and "--api-auth" in anonymous.json()["message"]
    assert alice.status_code == bob.status_code == token.status_code == 200


def test_what_a_client_sent_and_where_its_job_stands_survive_a_restart(tmp_path):
    data = tmp_path / "data"
    with studio(data) as client:
        good = submit(client, {**DEFORUM, "max_frames": 2}, SRT)["job_ids"][0]
        bad = submit(client, DEFORUM, {**SRT, "deforum_save_gen_info_as_srt_params": ["Zooom"]})["job_ids"][0]
        cancelled = submit(client, LONG)["job_ids"][0]
        wait_for(lambda: as_dict(client, cancelled), until=lambda s: s["phase_progress"] > 0)
        client.delete(f"/deforum_api/jobs/{cancelled}")
        before = [done(client, job_id) for job_id in (good, bad, cancelled)]
        wait_for(lambda: client.get(f"/api/jobs/{cancelled}").json(),  # the render has come to its stop
                 until=lambda s: s["status"] in ("finished", "failed", "cancelled"))
        before[2] = job(client, cancelled)
    with studio(data) as client:
        after = [job(client, job_id) for job_id in (good, bad, cancelled)]
    assert after == before
    assert [(s.status, s.phase) for s in after] == [("SUCCEEDED", "DONE"), ("FAILED", "PREPARING"),
                                                    ("CANCELLED", "GENERATING")]
    assert after[0].updates == 2 + 2 + 2 and after[0].deforum_settings == [{**DEFORUM, "max_frames": 2}]
    assert after[2].phase_progress > 0
    # a bad option fails its job alone, with the reason
    assert "deforum_save_gen_info_as_srt_params" in after[1].message and "'Zooom'" in after[1].message
    assert after[1].options_overrides["deforum_save_gen_info_as_srt_params"] == ["Zooom"]
