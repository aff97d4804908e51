"""Issue 22: bounded work for every request, and a queue nothing can stop.

Each hostile input of the issue, through the real app (FastAPI TestClient) or the real CLI. The
inputs that took gigabytes before the limits existed run in a subprocess under an address-space
limit, so a regression fails the test instead of taking the machine's memory.
"""
from __future__ import annotations

import errno
import io
import json
import os
import resource
import sqlite3
import subprocess
import sys
import textwrap
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the studio's extra is not installed (pip install -e '.[studio]')")

from fastapi.testclient import TestClient  # noqa: E402

from deforum_engine import cli  # noqa: E402
from deforum_engine.errors import SettingsError  # noqa: E402
from deforum_engine.output import RenderFolder  # noqa: E402
from deforum_engine.config.settings import validate_settings  # noqa: E402
from deforum_engine.studio.app import create_app  # noqa: E402
from deforum_engine.studio.config import StudioConfig  # noqa: E402
from studio_helpers import encoded, picture, png_bomb, wait_for_job  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SMALL = {"W": 64, "H": 64, "fps": 10}
AS_LIMIT = 2 * 1024 ** 3  # address space of a probe subprocess


@contextmanager
def studio(data: Path, running: bool = True, **options):
    app = create_app(StudioConfig(data=data, **{"preview_only": True, **options}))
    client = TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)
    if running:
        with client:
            yield client
    else:
        yield client


def status_of(client, job_id: str):
    return lambda: client.get(f"/api/jobs/{job_id}").json()


def assert_json_error(answer, status: int, *words: str) -> str:
    assert answer.status_code == status, answer.text[:300]
    assert answer.headers["content-type"].startswith("application/json")
    message = answer.json()["error"]
    assert "\n" not in message and len(message) < 1000
    for word in words:
        assert word in message, message
    return message


def jobs_file(text: str) -> dict:
    return {"jobs_file": text, "base": {**SMALL, "max_frames": 2}}


# ----------------------------------------------------------------------------------------- requests


def test_unknown_keys_are_reported_briefly(tmp_path):
    with studio(tmp_path / "data", running=False) as client:
        message = assert_json_error(client.post("/api/jobs", json={f"k{i}": 0 for i in range(40000)}), 422,
                                    "`k0`", "`k4`", "and 39995 more unknown settings (40000 in all)")
    assert "`k5`" not in message


def test_what_a_deforum_file_ignores_is_listed_briefly(tmp_path):
    document = {"animation_prompts": {"0": "a cat"}, "max_frames": 2, "W": 64, "H": 64,
                **{f"extra{i}": 0 for i in range(40000)}}
    with studio(tmp_path / "data", running=False) as client:
        created = client.post("/api/jobs", json=document)
    assert created.status_code == 201, created.text[:300]
    ignored = created.json()["notes"][0]
    assert "40000 Deforum settings" in ignored and "other 40000 (extra0, extra1, ...)" in ignored and len(ignored) < 600


def test_bodies_over_the_limit_are_refused_while_streaming(tmp_path):
    with studio(tmp_path / "data", running=False, max_body_mb=0.01) as client:
        big = json.dumps({"prompts": {"0": "x" * 20000}})
        assert_json_error(client.post("/api/jobs", content=big, headers={"Content-Type": "application/json"}),
                          413, "0.01 MB limit", "--max-body-mb")

        def chunks():  # no Content-Length: counted as it arrives
            for _ in range(100):
                yield b" " * 1000
        assert_json_error(client.post("/api/jobs", content=chunks(), headers={"Content-Type": "application/json"}),
                          413, "0.01 MB limit")
        # uploads stream under their own per-kind limits, not this one
        stored = client.post("/api/uploads/init_image", files={"file": ("a.png", encoded(picture(256, 256, 3)))})
        assert stored.status_code == 201, stored.text


@pytest.mark.parametrize("body, status, words", [
    ({"max_frames": 10_000_000, "W": 64, "H": 64}, 422, ("`max_frames`", "limit of 100,000", "DEFORUM_ENGINE_MAX_FRAMES")),
    ({"max_frames": 10 ** 28}, 422, ("`max_frames`", "(29 digits)")),
    ({"seed": 10 ** 30, "max_frames": 2}, 422, ("`seed`", "(31 digits)")),
    ({"motion_preset": 5}, 422, ("motion_preset", "got int 5")),
    ({"zoom": ", ".join(f"{i}:(1)" for i in range(10_001))}, 422, ("`zoom`", "10,001 keyframes")),
    ({"prompts": {str(i): "a" for i in range(10_001)}}, 422, ("`prompts`", "10,001 keyframes")),
    (jobs_file("[[jobs]]\nx = " + "[" * 100_000 + "]" * 100_000 + "\n"), 422, ("jobs file", "nested more than 32")),
    (jobs_file("[matrix]\n" + "".join(f"k{i} = [1, 2]\n" for i in range(40))), 422,
     ("more than 1,000 jobs", "2 x 2 x 2", "DEFORUM_ENGINE_MAX_JOBS")),
])
def test_documents_past_a_limit_get_a_json_error(tmp_path, body, status, words):
    path = "/api/batches" if "jobs_file" in body else "/api/jobs"
    with studio(tmp_path / "data", running=False) as client:
        assert_json_error(client.post(path, json=body), status, *words)


def test_deep_json_and_broken_multipart_get_a_json_error(tmp_path):
    with studio(tmp_path / "data", running=False) as client:
        deep = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        assert_json_error(client.post("/api/jobs", content=deep, headers={"Content-Type": "application/json"}),
                          400, "nested more than 32")
        unterminated = b'{"a": "' + b'\\"' * 500_000  # 1 MB in one string that never ends: scanned once
        assert_json_error(client.post("/api/jobs", content=unterminated, headers={"Content-Type": "application/json"}),
                          400, "request")
        form = {"Content-Type": "multipart/form-data; boundary=xyz"}
        assert_json_error(client.post("/api/uploads/init_image", content=b"--xyz\r\nnot a header\r\n\r\n\x00--",
                                      headers=form), 400, "multipart upload is malformed")
        long_header = (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nX-Pad: '
                       + b"a" * 3_000_000 + b"\r\n\r\nabc\r\n--xyz--\r\n")
        assert_json_error(client.post("/api/uploads/init_image", content=long_header, headers=form), 400, "multipart")


def test_a_batch_of_more_jobs_than_the_limit_is_refused_and_the_limit_can_be_raised(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFORUM_ENGINE_MAX_JOBS", "3")
    documents = {"settings": [{**SMALL, "max_frames": 2}] * 4}
    with studio(tmp_path / "data", running=False) as client:
        assert_json_error(client.post("/api/batches", json=documents), 422, "4 jobs", "--max-batch-jobs")
        monkeypatch.setenv("DEFORUM_ENGINE_MAX_JOBS", "4")
        assert client.post("/api/batches", json=documents).status_code == 201


def test_the_frame_limit_can_be_raised(monkeypatch):
    monkeypatch.setenv("DEFORUM_ENGINE_MAX_FRAMES", "50")
    with pytest.raises(SettingsError, match="limit of 50 frames"):
        validate_settings({"max_frames": 51})
    monkeypatch.setenv("DEFORUM_ENGINE_MAX_FRAMES", "51")
    assert validate_settings({"max_frames": 51}).max_frames == 51


def test_an_unexpected_error_is_a_json_answer_and_a_full_disk_is_507(tmp_path, monkeypatch):
    from deforum_engine.studio import service

    with studio(tmp_path / "data", running=False) as client:
        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device", "settings.json")
        monkeypatch.setattr(service, "save_settings", full)
        assert_json_error(client.post("/api/jobs", json={**SMALL, "max_frames": 2}), 507, "disk is full")
        monkeypatch.setattr(service, "save_settings", lambda *a: 1 / 0)
        assert_json_error(client.post("/api/jobs", json={**SMALL, "max_frames": 2}), 500,
                          "internal error: ZeroDivisionError")


# The requests that took gigabytes before the limits, in a process that cannot take more than AS_LIMIT.
_HEAVY = textwrap.dedent("""
    import json, sys, tempfile, time
    from fastapi.testclient import TestClient
    from deforum_engine.studio.app import create_app
    from deforum_engine.studio.config import StudioConfig
    app = create_app(StudioConfig(data=tempfile.mkdtemp(), preview_only=True))
    client = TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)
    base = {"W": 64, "H": 64, "max_frames": 2}
    probes = [
        ("/api/jobs", {"max_frames": 1_000_000_000, "W": 64, "H": 64}),
        ("/api/batches", {"jobs_file": "[[jobs]]\\n" + ".".join(["a"] * 40000) + " = 1\\n", "base": base}),
        ("/api/batches", {"jobs_file": "[matrix]\\n" + "".join(f"k{i} = [1, 2]\\n" for i in range(40)), "base": base}),
    ]
    for path, body in probes:
        started = time.perf_counter()
        answer = client.post(path, json=body)
        print(json.dumps([answer.status_code, answer.headers["content-type"], time.perf_counter() - started]))
    print(json.dumps(client.get("/api/health").json()["ok"]))
""")


def _limited(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run(command, check=False, capture_output=True, text=True, env=env, preexec_fn=cap, timeout=120, **kwargs)


def test_the_gigabyte_requests_are_refused_within_the_memory_limit():
    done = _limited([sys.executable, "-c", _HEAVY])
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    for line in lines[:-1]:
        status, kind, _seconds = json.loads(line)
        assert status == 422 and kind.startswith("application/json")
    assert lines[-1] == "true"  # and the server still answers


# ----------------------------------------------------------------------------------------- the CLI


def _cli(*arguments: str) -> subprocess.CompletedProcess:
    return _limited([sys.executable, "-m", "deforum_engine.cli", *arguments])


def test_the_cli_refuses_bad_files_in_one_line_with_exit_2(tmp_path):
    nested = tmp_path / "nested.json"
    nested.write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    big = tmp_path / "big.json"
    with open(big, "wb") as handle:  # 1 GB, sparse: never read
        handle.truncate(1024 ** 3)
    dotted = tmp_path / "dotted.toml"
    dotted.write_text(".".join(["a"] * 100_000) + " = 1\n")
    matrix = tmp_path / "matrix.toml"
    matrix.write_text("[matrix]\n" + "".join(f"k{i} = [1, 2]\n" for i in range(40)))
    image = tmp_path / "huge.png"
    image.write_bytes(png_bomb(8000, 8000))  # 64 megapixels in its header
    init = tmp_path / "init.json"
    init.write_text(json.dumps({"init_image": str(image), "use_init": True, "max_frames": 2, **SMALL}))
    cases = [(["plan", str(init), "--set", "zoom=" + "[" * 100_000], "--set zoom: nested more than 32"),
             (["plan", str(nested)], "nested more than 32"), (["plan", str(big)], "1024.0 MB, larger than the 16 MB"),
             (["plan", str(dotted)], "nested more than 32"), (["batch", str(matrix), "--preview"], "more than 1,000 jobs"),
             (["render", str(init), "--preview", "--out", str(tmp_path / "out")], "over the 40 megapixel limit")]
    for arguments, words in cases:
        done = _cli(*arguments)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and words in lines[0], (arguments, done.stderr[-1500:])


# ----------------------------------------------------------------------------------------- the worker


def _finished_job(client) -> dict:
    job = client.post("/api/jobs", json={**SMALL, "max_frames": 4, "motion_preset": "zoom_in"}).json()
    return wait_for_job(status_of(client, job["id"]))


def _as_if_killed(data: Path, job: dict) -> RenderFolder:
    """The job's folder and row as a server killed mid-render leaves them."""
    folder = RenderFolder(Path(job["folder"]))
    folder.update_info(status="rendering")
    with sqlite3.connect(data / "studio.sqlite3") as connection:
        connection.execute("UPDATE jobs SET status = 'running' WHERE id = ?", (job["id"],))
    return folder


@pytest.mark.parametrize("damage, words", [
    (lambda folder: folder.resume_path.write_bytes(b"PK\x03\x04 garbage"), ("resume.npz", "unreadable", "delete it")),
    (lambda folder: folder.settings_path.write_text('{"max_frames": '), ("settings.json", "not valid JSON",
                                                                          "restore it")),
    (lambda folder: folder.info_path.write_text("{"), ("render.json", "not valid JSON", "restore it")),
])
def test_a_damaged_job_fails_with_its_file_named_and_the_queue_goes_on(tmp_path, damage, words):
    data = tmp_path / "data"
    with studio(data) as client:
        job = _finished_job(client)
    damage(_as_if_killed(data, job))
    with studio(data) as client:  # the restart: the damaged job is resumed first
        failed = wait_for_job(status_of(client, job["id"]), ("failed",), timeout=30)
        for word in words:
            assert word in failed["error"], failed["error"]
        after = _finished_job(client)
        assert after["status"] == "finished"
        health = client.get("/api/health").json()
        assert health["worker_alive"] and health["queued"] == 0
        assert client.delete(f"/api/jobs/{job['id']}").status_code == 204


def test_a_job_resumes_once_its_damaged_resume_state_is_deleted(tmp_path):
    data = tmp_path / "data"
    with studio(data) as client:
        job = _finished_job(client)
    folder = _as_if_killed(data, job)
    folder.resume_path.write_bytes(os.urandom(300))
    with studio(data) as client:
        failed = wait_for_job(status_of(client, job["id"]), ("failed",), timeout=30)
        assert "resume.npz" in failed["error"]
        folder.resume_path.unlink()
        assert client.post(f"/api/jobs/{job['id']}/resume").status_code == 200
        assert wait_for_job(status_of(client, job["id"]))["status"] == "finished"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_worker_is_reported_and_restarted(tmp_path, monkeypatch):
    with studio(tmp_path / "data") as client:
        worker = client.app.state.studio.worker
        original = worker._next_job

        def die():
            monkeypatch.setattr(worker, "_next_job", original)
            raise SystemExit("a worker killed from inside")
        monkeypatch.setattr(worker, "_next_job", die)
        worker._thread.join(5)
        health = client.get("/api/health").json()
        assert health["worker_alive"] is False and health["worker_restarted"] is True
        assert _finished_job(client)["status"] == "finished"
        assert client.get("/api/health").json()["worker_alive"] is True


def test_a_full_disk_fails_the_one_job_and_says_so(tmp_path, monkeypatch):
    from deforum_engine.studio import worker as worker_module

    real_render = worker_module.render_or_resume
    calls = []

    def render(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device", "frames/000001.png")
        return real_render(*args, **kwargs)
    monkeypatch.setattr(worker_module, "render_or_resume", render)
    with studio(tmp_path / "data") as client:
        first = client.post("/api/jobs", json={**SMALL, "max_frames": 2}).json()
        failed = wait_for_job(status_of(client, first["id"]))
        assert failed["status"] == "failed" and "disk is full" in failed["error"] and "resume" in failed["error"]
        assert _finished_job(client)["status"] == "finished"


# ----------------------------------------------------------------------------------------- storage


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_damaged_job_database_is_set_aside_and_no_render_is_orphaned(tmp_path, damage):
    data = tmp_path / "data"
    with studio(data) as client:
        job = _finished_job(client)
    database = data / "studio.sqlite3"
    content = database.read_bytes()
    for side in ("studio.sqlite3-wal", "studio.sqlite3-shm"):
        (data / side).unlink(missing_ok=True)
    database.write_bytes({"garbage": b"SQLite format 3\x00" + os.urandom(4000), "truncated": content[:1500],
                          "empty": b""}[damage])
    with studio(data) as client:
        notices = client.app.state.studio.notices
        listed = client.get("/api/jobs").json()
    assert [j["id"] for j in listed] == [job["id"]] and listed[0]["status"] == "finished"
    assert any("render folder(s)" in notice for notice in notices)
    if damage != "empty":  # SQLite takes an empty file for an empty database
        assert "studio.sqlite3 is not a readable SQLite database" in notices[0] and "damaged-" in notices[0]
        assert len(list(data.glob("studio.sqlite3.damaged-*"))) == 1


def test_only_plain_files_inside_the_render_folder_are_served(tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(encoded(picture()))
    with studio(tmp_path / "data") as client:
        job = _finished_job(client)
        folder = RenderFolder(Path(job["folder"]))
        folder.frame_path(2).unlink()
        folder.frame_path(2).symlink_to(secret)
        assert client.get(f"/api/jobs/{job['id']}/frames/2").status_code == 404
        names = zipfile.ZipFile(io.BytesIO(client.get(f"/api/jobs/{job['id']}/frames.zip").content)).namelist()
        assert len(names) == 3 and not any(name.endswith("000002.png") for name in names)
        folder.settings_path.rename(folder.root / "real.json")
        folder.settings_path.symlink_to(folder.root / "real.json")
        assert client.get(f"/api/jobs/{job['id']}/settings").status_code == 404
    assert not list(folder.root.glob(".*.ffmpeg.log"))  # the encoder's log went with the render


def test_uploads_expire_unless_an_unfinished_job_uses_them(tmp_path):
    with studio(tmp_path / "data", running=False, upload_retention_days=1) as client:
        ids = [client.post("/api/uploads/init_image", files={"file": ("a.png", encoded(picture(seed=i)))}).json()["id"]
               for i in range(2)]
        queued = client.post("/api/jobs", json={**SMALL, "max_frames": 2, "init_image": ids[0], "use_init": True})
        assert queued.status_code == 201, queued.text
        studio_ = client.app.state.studio
        studio_.database.execute("UPDATE uploads SET created = ?", (time.time() - 2 * 86400,))
        studio_.worker._sweep_uploads()
        assert client.get(f"/api/uploads/{ids[0]}").status_code == 200
        assert client.get(f"/api/uploads/{ids[1]}").status_code == 404
        assert not list((tmp_path / "data" / "uploads").glob(f"{ids[1]}*"))


def test_serve_prints_the_host_it_was_given(tmp_path, monkeypatch, capsys):
    import uvicorn

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append(app))
    monkeypatch.setenv("DEFORUM_ENGINE_MAX_FRAMES", "100000")  # restored after the test
    assert cli.main(["serve", "--preview", "--host", "127.0.0.2", "--port", "7999", "--data", str(tmp_path),
                     "--max-frames", "7", "--max-body-mb", "0.5"]) == 0
    assert "http://127.0.0.2:7999/" in capsys.readouterr().err
    client = TestClient(served[0], base_url="http://127.0.0.1")
    assert_json_error(client.post("/api/jobs", json={**SMALL, "max_frames": 8}), 422, "limit of 7 frames")
    assert_json_error(client.post("/api/jobs", content=b" " * 600_000, headers={"Content-Type": "application/json"}),
                      413, "0.5 MB limit")
