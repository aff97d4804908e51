"""Hostile inputs (issue 22): time, peak memory and the answer of each probe against the studio and the CLI.

Every probe runs in its own process under an address-space limit (default 3 GB), so a probe that
would take the machine's memory stops with MemoryError instead. The studio probes call the app
in-process (Starlette's TestClient, no worker thread); the CLI probes run `deforum-engine`.
Peak memory is the probe process's peak resident set (`ru_maxrss`), which includes the ~100-200 MB
of imports: compare it with the `baseline` probe.

    python benchmarks/bench_limits.py [--tree PATH] [--limit-gb 3] [--only NAME ...]

`--tree` measures another checkout (e.g. a `git worktree` of an older commit) with the same probes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 120.0

# The studio probes: (name, method, path, how the body is made, headers).
_STUDIO_PROBE = textwrap.dedent("""
    import json, os, resource, sys, tempfile, time
    from fastapi.testclient import TestClient
    from deforum_engine.studio.app import create_app
    from deforum_engine.studio.config import StudioConfig

    method, path, body, headers = sys.argv[1], sys.argv[2], open(sys.argv[3], "rb").read(), json.loads(sys.argv[4])
    app = create_app(StudioConfig(data=tempfile.mkdtemp(prefix="bench-limits-"), preview_only=True))
    client = TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)
    started = time.perf_counter()
    try:
        answer = client.request(method, path, content=body, headers=headers)
        status, text, kind = answer.status_code, answer.text, answer.headers.get("content-type", "")
    except MemoryError:
        status, text, kind = "MemoryError", "", ""
    seconds = time.perf_counter() - started
    print(json.dumps({"status": status, "seconds": seconds, "bytes": len(text), "json": kind.startswith("application/json"),
                      "answer": text[:160]}))
""")


def _studio_bodies() -> list[tuple[str, str, str, bytes, dict]]:
    js = {"Content-Type": "application/json"}
    jobs_file = lambda text: json.dumps({"jobs_file": text, "base": {"max_frames": 2, "W": 64, "H": 64}}).encode()
    matrix = "[matrix]\n" + "".join(f"{key} = [1, 2]\n" for key in ["seed", "steps", *(f"k{i}" for i in range(38))])
    multipart = {"Content-Type": "multipart/form-data; boundary=xyz"}
    return [
        ("baseline", "GET", "/api/health", b"", {}),
        ("unknown_keys_40k", "POST", "/api/jobs", json.dumps({f"k{i}": 0 for i in range(40000)}).encode(), js),
        ("body_20MB", "POST", "/api/jobs", json.dumps({f"k{i}": "x" * 100 for i in range(200000)}).encode(), js),
        ("max_frames_1e7", "POST", "/api/jobs", b'{"max_frames":10000000,"W":64,"H":64}', js),
        ("max_frames_29_digits", "POST", "/api/jobs", b'{"max_frames":' + b"9" * 29 + b'}', js),
        ("seed_31_digits", "POST", "/api/jobs", b'{"seed":' + b"9" * 31 + b', "max_frames": 2}', js),
        ("motion_preset_5", "POST", "/api/jobs", b'{"motion_preset": 5}', js),
        ("json_nested_100k", "POST", "/api/jobs", b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}", js),
        ("toml_dotted_40k", "POST", "/api/batches", jobs_file("[[jobs]]\n" + ".".join(["a"] * 40000) + " = 1\n"), js),
        ("toml_nested_100k", "POST", "/api/batches", jobs_file("[[jobs]]\nx = " + "[" * 100000 + "]" * 100000 + "\n"), js),
        ("matrix_2^40", "POST", "/api/batches", jobs_file(matrix), js),
        ("multipart_malformed", "POST", "/api/uploads/init_image", b"--xyz\r\nnot a header\r\n\r\n\x00\x01--", multipart),
        ("multipart_header_3MB", "POST", "/api/uploads/init_image",
         b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nX-Pad: " + b"a" * 3_000_000
         + b"\r\n\r\nabc\r\n--xyz--\r\n", multipart),
    ]


def _cli_files(folder: Path) -> list[tuple[str, list[str]]]:
    """The CLI probes: (name, arguments), writing the files they read into `folder`."""
    nested = folder / "nested.json"
    nested.write_text('{"a": ' + "[" * 100000 + "]" * 100000 + "}")
    big = folder / "big.json"
    with open(big, "w") as handle:  # 300 MB: one long string value
        handle.write('{"name": "')
        for _ in range(300):
            handle.write("x" * (1 << 20))
        handle.write('"}')
    dotted = folder / "dotted.toml"
    dotted.write_text(".".join(["a"] * 100000) + " = 1\n")  # 200 KB
    matrix = folder / "matrix.toml"
    matrix.write_text("[matrix]\n" + "".join(f"k{i} = [1, 2]\n" for i in range(40)))
    image = folder / "huge.png"
    import numpy as np
    from PIL import Image

    Image.fromarray(np.zeros((8000, 8000, 3), np.uint8)).save(image, optimize=True)  # 64 MP, ~190 KB
    init = folder / "init.json"
    init.write_text(json.dumps({"init_image": str(image), "max_frames": 2, "W": 64, "H": 64, "use_init": True}))
    return [
        ("cli_nested_100k", ["plan", str(nested)]),
        ("cli_settings_300MB", ["plan", str(big)]),
        ("cli_toml_dotted_100k", ["plan", str(dotted)]),
        ("cli_matrix_2^40", ["batch", str(matrix), "--preview", "--out", str(folder / "out")]),
        ("cli_init_image_64MP", ["render", str(init), "--preview", "--quiet", "--out", str(folder / "init-out")]),
    ]


def _probe(command: list[str], limit: int, tree: Path) -> dict:
    """Run one probe in a fresh process whose own peak memory is measured (wait4)."""
    wrapper = [sys.executable, "-c", textwrap.dedent("""
        import json, os, resource, subprocess, sys, time
        limit = int(sys.argv[1])
        def cap():
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        started = time.perf_counter()
        child = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=cap)
        try:
            out, err = child.communicate(timeout=float(os.environ["PROBE_TIMEOUT"]))
            timed_out = False
        except subprocess.TimeoutExpired:
            child.kill(); out, err = child.communicate(); timed_out = True
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(json.dumps({"rc": child.returncode, "out": out.decode(errors="replace")[-2000:],
                          "err": err.decode(errors="replace")[-600:], "wall": time.perf_counter() - started,
                          "timed_out": timed_out, "peak_mb": peak}))
    """), str(limit), *command]
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PROBE_TIMEOUT": str(TIMEOUT)}
    return json.loads(subprocess.run(wrapper, env=env, capture_output=True, check=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default=str(REPO), help="the checkout to measure (default: this one)")
    parser.add_argument("--limit-gb", type=float, default=3.0, help="address-space limit per probe")
    parser.add_argument("--only", nargs="*", help="probe names to run")
    args = parser.parse_args()
    tree, limit = Path(args.tree).resolve(), int(args.limit_gb * 1024 ** 3)
    print(f"tree {tree}, address-space limit {args.limit_gb:g} GB per probe, timeout {TIMEOUT:.0f} s")
    print(f"{'probe':<24} {'seconds':>8} {'peak MB':>8}  answer")
    with tempfile.TemporaryDirectory(prefix="bench-limits-") as scratch:
        folder = Path(scratch)
        script = folder / "studio_probe.py"
        script.write_text(_STUDIO_PROBE)
        for name, method, path, body, headers in _studio_bodies():
            if args.only and name not in args.only:
                continue
            body_file = folder / "body"
            body_file.write_bytes(body)
            result = _probe([sys.executable, str(script), method, path, str(body_file), json.dumps(headers)], limit, tree)
            _show(name, result, studio=True)
        for name, arguments in _cli_files(folder):
            if args.only and name not in args.only:
                continue
            result = _probe([sys.executable, "-m", "deforum_engine.cli", *arguments], limit, tree)
            _show(name, result, studio=False)


def _show(name: str, result: dict, studio: bool) -> None:
    if result["timed_out"]:
        answer, seconds = f"still running after {TIMEOUT:.0f} s (killed)", result["wall"]
    elif studio and result["rc"] == 0:
        probe = json.loads(result["out"].strip().splitlines()[-1])
        seconds = probe["seconds"]
        kind = "JSON" if probe["json"] else "text"
        answer = f"{probe['status']} {kind} {probe['bytes']} B: {probe['answer'][:90]!r}"
    else:
        seconds = result["wall"]
        lines = [line for line in (result["err"] or result["out"]).strip().splitlines() if line.strip()]
        last = lines[-1] if lines else ""
        answer = f"exit {result['rc']}, {len(lines)} stderr lines: {last[:100]!r}"
    print(f"{name:<24} {seconds:>8.2f} {result['peak_mb']:>8.0f}  {answer}", flush=True)


if __name__ == "__main__":
    main()
