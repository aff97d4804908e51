"""A running studio in the test process (FastAPI TestClient) and its upload call, for the studio's tests."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from deforum_engine.studio.app import create_app
from deforum_engine.studio.config import StudioConfig


@contextmanager
def studio(data: Path, **options):
    """A running studio (its lifespan: the worker thread) and a client that talks to it as localhost."""
    app = create_app(StudioConfig(data=data, **{"preview_only": True, **options}))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


def upload(client, kind: str, data: bytes, filename: str = "picture.png", content_type: str = "image/png"):
    return client.post(f"/api/uploads/{kind}", files={"file": (filename, data, content_type)})
