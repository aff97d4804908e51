"""Synthetic soundtracks for the audio tests: click tracks at a known tempo, written as WAV."""
import wave

import numpy as np

SR = 44100          # files are written at CD rate; the analysis resamples to 22050
FPS = 24
BPM = 120.0
FIRST_CLICK = 0.3   # 0.3 + 0.5k seconds -> frame 7.2 + 12k: clicks fall inside frames, not on edges
DURATION = 8.01     # 192.24 frames at 24 fps -> 193


def click_track(duration=DURATION, bpm=BPM, first=FIRST_CLICK, sr=SR):
    """Short decaying noise bursts on every beat; returns (samples, click times)."""
    rng = np.random.default_rng(0)
    y = np.zeros(int(round(duration * sr)))
    times = np.arange(first, duration - 0.05, 60.0 / bpm)
    n = int(0.01 * sr)
    burst_env = np.exp(-np.arange(n) / (0.003 * sr))
    for t in times:
        start = int(round(t * sr))
        y[start:start + n] += 0.8 * rng.uniform(-1, 1, n) * burst_env
    return y, times


def write_wav(path, y, sr=SR):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(y, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def click_frames(times, fps=FPS):
    return np.floor(times * fps).astype(int)
