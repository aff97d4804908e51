"""A batch on a two-node Ray cluster on this machine (issue 22): the second node is killed mid-batch
and every job still finishes, the interrupted one resumed from its folder, with every frame on disk.

The head and the second node are started with `ray start` on 127.0.0.1 (as the README shows), each
in its own process group, so that killing the second node's group takes its raylet and its
workers down at once, as a machine that dies would.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from deforum_engine.output import RenderFolder, probe_video

pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[2]
RAY = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
ENV = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
       "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
JOBS, FRAMES = 4, 300


@contextmanager
def ray_node(log: Path, *arguments: str):
    """`ray start --block ...` in its own process group; the whole group is stopped at the end."""
    with open(log, "w") as output:
        process = subprocess.Popen([RAY, "start", "--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
                                    *arguments], env=ENV, start_new_session=True, stdout=output,
                                   stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                time.sleep(2 if sig == signal.SIGTERM else 0)
            process.wait(30)


def alive_nodes(address: str) -> list[str]:
    probe = (f"import json, ray; ray.init(address={address!r}, log_to_driver=False); "
             "print(json.dumps([n['NodeManagerAddress'] for n in ray.nodes() if n['Alive']]))")
    done = subprocess.run([sys.executable, "-c", probe], check=False, env=ENV, capture_output=True, text=True, timeout=60)
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 and done.stdout.strip() else []


def frames_on_disk(out: Path) -> int:
    return sum(len(RenderFolder(out / f"job{i}").frame_indices()) for i in range(JOBS))


@pytest.mark.slow
def test_a_batch_survives_losing_a_node(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    paths = []
    for i in range(JOBS):
        paths.append(tmp_path / f"job{i}.json")
        paths[-1].write_text(json.dumps({"max_frames": FRAMES, "W": 256, "H": 256, "seed": i, "motion_preset": "zoom_in"}))
    out = tmp_path / "out"
    # its own temp dir (short: Unix socket paths are limited): `ray start --head` writes the cluster's address
    # there, not in /tmp/ray where every later `ray.init()` on this machine would find and join it
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    try:
        _run_and_kill(tmp_path, paths, out, address, port, temp_dir)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    for i in range(JOBS):  # nothing rendered is lost: every frame, and a video of them all
        folder = RenderFolder(out / f"job{i}")
        assert folder.status() == "finished" and folder.frame_indices() == list(range(FRAMES))
        assert probe_video(folder.video_path)["frames"] == FRAMES


def _run_and_kill(tmp_path: Path, paths: list[Path], out: Path, address: str, port: int, temp_dir: str) -> None:
    with ray_node(tmp_path / "head.log", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                  f"--temp-dir={temp_dir}"):
        with ray_node(tmp_path / "node.log", f"--address={address}", "--num-cpus=1") as second:
            deadline = time.monotonic() + 60
            while len(nodes := alive_nodes(address)) < 2:
                assert time.monotonic() < deadline, (tmp_path / "node.log").read_text()[-2000:]
                time.sleep(1)
            batch = subprocess.Popen([sys.executable, "-m", "deforum_engine.cli", "batch", *map(str, paths), "--preview",
                                      "--executor", "ray", "--address", address, "--workers", "2", "--out", str(out)],
                                     env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            while frames_on_disk(out) < FRAMES * JOBS // 4 and batch.poll() is None:
                time.sleep(0.1)
            os.killpg(second.pid, signal.SIGKILL)  # the second node dies mid-batch
            killed_at = frames_on_disk(out)
            summary, errors = batch.communicate(timeout=180)
    assert batch.returncode == 0, summary + errors[-3000:]
    assert killed_at < FRAMES * JOBS
    lines = {line.split()[0]: line.split()[1] for line in summary.splitlines() if line.startswith("job") and
             not line.startswith("job ")}
    assert len(lines) == JOBS and set(lines.values()) <= {"done", "resumed"} and "resumed" in lines.values(), summary
    print(f"nodes {nodes}; the second node was killed with {killed_at} of {FRAMES * JOBS} frames on disk")
