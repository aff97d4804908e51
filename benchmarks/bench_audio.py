"""Time analyse_audio on a synthetic 3-minute song: cold (numba JIT), fresh process, warm, cached.

Run: PYTHONPATH=. python benchmarks/bench_audio.py [--seconds 180] [--fps 15]

librosa compiles its numba beat-tracking kernels when ``librosa.beat`` is first imported in a
process; numba keeps a disk cache of them, so the cost differs between a machine's very first run
(empty numba cache, measured here with a throwaway NUMBA_CACHE_DIR) and later processes.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

SR = 44100


def synth_song(seconds: float, bpm: float = 128.0, seed: int = 0) -> np.ndarray:
    """Kick on every beat, hi-hat off-beats, a bass line and a melody: mono float in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    beat = 60.0 / bpm
    song = np.zeros_like(t)
    kick_t = np.arange(int(0.15 * SR)) / SR
    kick = np.sin(2 * np.pi * (50 + 80 * np.exp(-kick_t / 0.03)) * kick_t) * np.exp(-kick_t / 0.08)
    hat = np.diff(rng.standard_normal(int(0.04 * SR) + 1)) * np.exp(-np.arange(int(0.04 * SR)) / (0.008 * SR))
    for k in range(int(seconds / beat)):
        for start, sound, gain in ((k * beat, kick, 0.9), ((k + 0.5) * beat, hat, 0.15)):
            i = int(start * SR)
            n = min(sound.size, t.size - i)
            song[i:i + n] += gain * sound[:n]
    bar = (t / (4 * beat)).astype(int)
    bass_hz = np.array([55.0, 55.0, 65.4, 49.0])[bar % 4]
    song += 0.3 * np.sin(2 * np.pi * np.cumsum(bass_hz) / SR)
    note = (t / (beat / 2)).astype(int)
    melody_hz = 440.0 * 2 ** (np.array([0, 3, 7, 10, 12, 10, 7, 3])[note % 8] / 12)
    phase = 2 * np.pi * np.cumsum(melody_hz) / SR
    song += 0.12 * (np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase))
    return song / np.abs(song).max() * 0.9


def write_wav(path: Path, y: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((y * 32767).astype("<i2").tobytes())
    return path


def child(path: str, fps: float) -> None:
    """In a fresh process: librosa.beat import (JIT) and one uncached analysis, as JSON."""
    start = time.perf_counter()
    import librosa.beat  # noqa: F401  (compiles or loads the numba kernels)
    imported = time.perf_counter()
    from deforum_engine.plan.audio import analyse_audio
    analyse_audio(path, fps, cache=False)
    done = time.perf_counter()
    print(json.dumps({"import_librosa_beat": imported - start, "analyse": done - imported}))


def run_child(path: Path, fps: float, env_extra: dict) -> dict:
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, __file__, "--child", str(path), "--fps", str(fps)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.fps)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        song = write_wav(tmp / "song.wav", synth_song(args.seconds))
        print(f"song: {args.seconds:.0f} s synthetic, 128 BPM, 44.1 kHz WAV; fps {args.fps:g}")

        cold = run_child(song, args.fps, {"NUMBA_CACHE_DIR": str(tmp / "numba")})
        print(f"fresh process, empty numba cache: import librosa.beat {cold['import_librosa_beat']:.2f} s"
              f" (JIT) + analyse {cold['analyse']:.2f} s")
        fresh = run_child(song, args.fps, {})
        print(f"fresh process, numba cache warm:  import librosa.beat {fresh['import_librosa_beat']:.2f} s"
              f" + analyse {fresh['analyse']:.2f} s")

        os.environ["DEFORUM_ENGINE_CACHE"] = str(tmp / "cache")
        from deforum_engine.plan.audio import analyse_audio, decode_audio
        analyse_audio(song, args.fps, cache=False)  # imports and JIT out of the way
        decode_s, _ = timed(decode_audio, song)
        warm_s, features = timed(analyse_audio, song, args.fps, cache=False)
        miss_s, _ = timed(analyse_audio, song, args.fps)
        hit_s, _ = timed(analyse_audio, song, args.fps)
        print(f"warm process, no disk cache:      analyse {warm_s:.2f} s (of which ffmpeg decode {decode_s:.2f} s)")
        print(f"disk cache miss (analyse + store): {miss_s:.2f} s")
        print(f"disk cache hit:                    {hit_s * 1000:.0f} ms")
        print(f"result: {features.frames} frames, {features.bpm:.2f} BPM, {len(features.beat_frames)} beats")


if __name__ == "__main__":
    main()
