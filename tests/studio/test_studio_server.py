"""The studio as a real server process (`deforum-engine serve`) on a loopback port: many clients at once,
a client that hangs up mid-stream, an upload stopped at its limit over a socket, and a server killed
with SIGKILL mid-render whose render resumes from its last frame when it comes back."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx", reason="the studio's test client (httpx) is not installed")
pytest.importorskip("fastapi", reason="the studio's extra is not installed (pip install -e '.[studio]')")

from deforum_engine import render  # noqa: E402
from deforum_engine.output import RenderFolder, probe_video  # noqa: E402
from deforum_engine.config.settings import validate_settings  # noqa: E402
from studio_helpers import read_frames, wait_for_job  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serve(data: Path, port: int | None = None):
    """`deforum-engine serve --preview` in its own process; yields (base URL, process)."""
    port = port or free_port()
    log = open(data.parent / f"server-{port}.log", "ab")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "deforum_engine.cli", "serve", "--preview", "--data", str(data),
                                "--port", str(port)], stdout=log, stderr=log, env=env, cwd=data.parent)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not start: {(data.parent / f'server-{port}.log').read_text()}")
            time.sleep(0.1)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()


def job_status(url: str, job_id: str):
    return lambda: httpx.get(f"{url}/api/jobs/{job_id}", timeout=10).json()


def stream_events(url: str, job_id: str, stop_after_frames: int | None = None) -> list[tuple[str, dict]]:
    received, name = [], None
    with httpx.stream("GET", f"{url}/api/jobs/{job_id}/events", timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                received.append((name, json.loads(line[len("data: "):])))
                frames = sum(1 for event, _ in received if event == "frame")
                if stop_after_frames is not None and frames >= stop_after_frames:
                    break  # hang up mid-stream
    return received


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the tests that do not kill it."""
    data = tmp_path_factory.mktemp("studio") / "data"
    data.mkdir()
    port = free_port()
    with serve(data, port) as (url, _):
        yield url, port, data


def test_twenty_clients_at_once_and_one_that_hangs_up(server):
    url, _, _ = server
    job = httpx.post(f"{url}/api/jobs", json={"W": 128, "H": 128, "max_frames": 150}).json()
    outcomes: dict[str, object] = {}

    def streamer(number: int) -> None:
        outcomes[f"stream {number}"] = stream_events(url, job["id"])

    def poller(number: int) -> None:
        seen = []
        with httpx.Client(base_url=url, timeout=10) as client:
            while True:
                status = client.get(f"/api/jobs/{job['id']}").json()
                picture = client.get(f"/api/jobs/{job['id']}/frames/latest?format=jpeg")
                seen.append((status["status"], status["frames_done"], picture.status_code))
                if status["status"] == "finished":
                    break
                time.sleep(0.02)
        outcomes[f"poll {number}"] = seen

    def quitter() -> None:
        outcomes["hung up"] = stream_events(url, job["id"], stop_after_frames=2)

    threads = [threading.Thread(target=streamer, args=(n,)) for n in range(10)]
    threads += [threading.Thread(target=poller, args=(n,)) for n in range(9)]
    threads.append(threading.Thread(target=quitter))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(outcomes) == 20, sorted(outcomes)
    for name, result in outcomes.items():
        if name.startswith("stream"):
            assert result[-1] == ("end", {"status": "finished", "error": None}), name
            frames = [event["index"] for kind, event in result if kind == "frame"]
            assert frames == sorted(frames) and frames[-1] == 149, name
        elif name.startswith("poll"):
            assert result[-1][:2] == ("finished", 150)
            assert all(code in (200, 404) for _, done, code in result)  # 404 only before frame 0
            assert all(code == 200 for _, done, code in result if done)
    assert sum(1 for kind, _ in outcomes["hung up"] if kind == "frame") == 2
    # Still healthy: it answers, and renders the next job.
    assert httpx.get(f"{url}/api/health").json()["ok"]
    again = httpx.post(f"{url}/api/jobs", json={"W": 64, "H": 64, "max_frames": 5}).json()
    assert wait_for_job(job_status(url, again["id"]))["status"] == "finished"
    assert RenderFolder(Path(job["folder"])).frame_indices() == list(range(150))


def test_an_oversize_upload_is_cut_off_at_the_limit_on_the_wire(server):
    url, port, data = server
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(f"POST /api/uploads/image_prompt?filename=huge.png HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                           "Content-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b"\x89PNG\r\n\x1a\n" + bytes(1024 * 1024 - 8)
        sent, answer = 0, b""
        connection.settimeout(0.2)
        for _ in range(40):  # 40 MB offered, unless the server answers first
            try:
                connection.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
                answer += connection.recv(65536)
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if answer:
                break
        status_line = answer.split(b"\r\n")[0]
        assert status_line.startswith(b"HTTP/1.1 413"), answer[:200]
        assert sent < 12 * 1024 * 1024  # the server stopped reading soon after 5 MB
        assert list((data / "uploads").iterdir()) == []


def test_a_render_running_when_the_server_is_killed_resumes_when_it_comes_back(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    document = {"W": 128, "H": 128, "max_frames": 160, "seed": 21, "motion_preset": "spiral_in"}
    with serve(data) as (url, process):
        job = httpx.post(f"{url}/api/jobs", json=document).json()
        wait_for_job(job_status(url, job["id"]), until=lambda s: s["frames_done"] >= 20, every=0.005)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    folder = RenderFolder(Path(job["folder"]))
    kept = folder.frame_indices()
    first = os.stat(folder.frame_path(0))
    assert 1 <= len(kept) < 160 and folder.status() == "rendering"  # (the writer trails the loop a little)
    with serve(data) as (url, _):
        done = wait_for_job(job_status(url, job["id"]), timeout=120)
        assert done["status"] == "finished", done
        video = tmp_path / "video.mp4"
        video.write_bytes(httpx.get(f"{url}/api/jobs/{job['id']}/video").content)
    again = os.stat(folder.frame_path(0))
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)  # resumed, not started over
    assert probe_video(video)["frames"] == 160
    settings = validate_settings(json.loads(folder.settings_path.read_text()), "settings")
    render(settings, out=tmp_path / "uninterrupted", preview=True, quiet=True)
    resumed, whole = read_frames(folder.root), read_frames(tmp_path / "uninterrupted")
    assert len(resumed) == 160 and all(np.array_equal(a, b) for a, b in zip(resumed, whole, strict=True))
