"""The studio takes a clip as an upload (never a path on the server's disk) and renders Video Input from it."""
import json
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the studio's extra is not installed (pip install -e '.[studio]')")

from fastapi.testclient import TestClient  # noqa: E402

from deforum_engine.studio.app import create_app  # noqa: E402
from deforum_engine.studio.config import StudioConfig  # noqa: E402
from studio_helpers import wait_for_job  # noqa: E402
from video_clips import panned_clip  # noqa: E402

SMALL = {"W": 64, "H": 64, "fps": 10}


@contextmanager
def studio(data: Path):
    with TestClient(create_app(StudioConfig(data=data, preview_only=True)), base_url="http://127.0.0.1") as client:
        yield client


def upload(client, kind: str, data: bytes, filename: str, content_type: str):
    return client.post(f"/api/uploads/{kind}", files={"file": (filename, data, content_type)})


def status_of(client, job_id: str):
    return lambda: client.get(f"/api/jobs/{job_id}").json()


def test_a_clip_upload_renders_in_video_input_mode(tmp_path):
    path, _ = panned_clip(tmp_path, count=5)
    with studio(tmp_path / "data") as client:
        stored = upload(client, "video_init_path", path.read_bytes(), "pan.mp4", "video/mp4")
        assert stored.status_code == 201, stored.text
        job = client.post("/api/jobs", json={**SMALL, "animation_mode": "Video Input",
                                             "video_init_path": stored.json()["id"]}).json()
        done = wait_for_job(status_of(client, job["id"]))
        assert done["status"] == "finished", done


def test_a_clip_is_refused_as_a_path_or_when_it_is_not_a_video(tmp_path):
    with studio(tmp_path / "data") as client:
        answer = client.post("/api/jobs", json={**SMALL, "animation_mode": "Video Input",
                                                "video_init_path": "/etc/hosts"})
        assert answer.status_code == 400
        assert "video_init_path: a settings document sent to the studio names files by upload id" \
            in answer.json()["error"]
        bad = upload(client, "video_init_path", json.dumps({"not": "a video"}).encode(), "clip.mp4", "video/mp4")
        assert bad.status_code == 415 and "video_init_path: clip.mp4" in bad.json()["error"], bad.text
