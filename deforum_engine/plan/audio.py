"""Soundtrack -> per-frame features that schedules can use as variables.

Every feature has one value per video frame at the render's fps, scaled to [0, 1]. Frame ``i``
covers the time ``[i/fps, (i+1)/fps)``, so a sound at time ``T`` shows up in frame
``floor(T * fps)``.

- ``amp``: loudness, the RMS of the samples inside the frame, divided by the loudest frame's.
- ``onset``: onset strength (librosa's spectral flux on a log-mel spectrogram), the strongest
  value inside the frame, divided by the song's strongest.
- ``pulse``: a sawtooth that follows the detected beats: 1 on each beat frame, falling linearly
  to 0 at the next beat (after the last beat it falls over one median beat length); 0 before the
  first beat. Shape it in the schedule: ``pulse**3`` gives a sharper kick.
- ``bass`` / ``mid`` / ``treble``: the amplitude (root of the mean power) in 20-250 Hz,
  250-4000 Hz and 4000 Hz-Nyquist, from a 1024-sample Hann STFT averaged over the frame. Each
  band is divided by its own loudest frame so a quiet band still uses the whole range, but a band
  more than 40 dB below the loudest band is treated as silence and is not stretched up.

``bpm`` is the tempo that fits the detected beats (0.0 when none are found, e.g. silence).
Onset and beats are timed on a hop of at most 512 samples (23 ms) and at most half a frame.

Scaling uses the whole song, so trimming a render (``max_frames``) never changes the values of
the frames it keeps. Decoding and the simple features are numpy; onset strength and beat tracking
use librosa (the ``audio`` extra), imported only when a song is analysed. Results are cached on
disk (see ``cache_dir``): librosa's first beat tracking in a process costs several seconds of
numba compilation, and a batch over one song should pay it once.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import math
import os
import subprocess
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deforum_engine.errors import SettingsError

FEATURE_NAMES = ("amp", "onset", "pulse", "bass", "mid", "treble")
BANDS_HZ = {"bass": (20.0, 250.0), "mid": (250.0, 4000.0), "treble": (4000.0, math.inf)}
AUDIO_FORMATS = "any audio file ffmpeg can decode (WAV, MP3, FLAC, M4A/AAC, OGG, OPUS, AIFF, ...)"
SAMPLE_RATE = 22050
N_FFT = 1024          # band-energy STFT window: 46 ms, 21.5 Hz bins at 22050 Hz
MAX_HOP = 512         # STFT / onset hop: 23 ms, or half a video frame when that is shorter
BEAT_HOP = 512        # beat tracking runs at about this hop: its cost grows with the square of the rate
BAND_FLOOR = 0.01     # -40 dB: quieter bands are silence, not stretched to [0, 1]
CACHE_VERSION = 1     # bump when the analysis changes, so old cache entries are not reused


@dataclass(frozen=True, eq=False)
class AudioFeatures:
    """A soundtrack analysed at one fps: tempo, beats and one [0, 1] array per feature."""

    fps: float
    frames: int
    duration: float
    bpm: float
    beat_frames: np.ndarray
    features: dict[str, np.ndarray]

    def variables(self, bpm_override: float | None = None) -> dict[str, np.ndarray | float]:
        """Schedule variables: the six feature arrays and ``bpm`` (the override wins when given)."""
        bpm = self.bpm if bpm_override is None else float(bpm_override)
        return {**self.features, "bpm": bpm}


def decode_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode any audio file to mono float32 at ``sample_rate`` with the ffmpeg from imageio-ffmpeg."""
    import imageio_ffmpeg

    path = _check_audio_path(path)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error",
           "-i", str(path.resolve()), "-vn", "-sn", "-dn",
           "-f", "f32le", "-ac", "1", "-ar", str(int(sample_rate)), "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        reason = reason[-1] if reason else f"ffmpeg exit status {proc.returncode}"
        raise SettingsError(f"soundtrack {path}: cannot decode audio ({reason}). Use {AUDIO_FORMATS}.")
    samples = np.frombuffer(proc.stdout, dtype="<f4", count=len(proc.stdout) // 4)
    if samples.size == 0:
        raise SettingsError(f"soundtrack {path}: no audio in the file. Use {AUDIO_FORMATS}.")
    return samples.astype(np.float32)


def analyse_audio(path: str | os.PathLike, fps: float, bpm: float | None = None,
                  max_frames: int | str | None = None, *, cache: bool = True) -> AudioFeatures:
    """Analyse a soundtrack at ``fps``: ``max_frames`` frames, or the whole song when None/"auto".

    ``bpm``, when given, is used as the tempo for beat tracking and reported as the tempo.
    ``cache=False`` skips the disk cache (reading and writing).
    """
    # 1. Check inputs
    path = _check_audio_path(path)
    fps = _check_positive("fps", fps)
    bpm = None if bpm is None else _check_positive("bpm", bpm)
    frames = _check_max_frames(max_frames)
    # 2. The whole song's features, from the cache when possible
    song = _load_or_analyse(path, fps, bpm, cache)
    # 3. Fit to the requested frame count; pulse follows the beats
    frames = frames or song["amp"].size
    beat_frames = song["beat_frames"][song["beat_frames"] < frames]
    features = {name: _fit(song[name], frames) for name in ("amp", "onset", "bass", "mid", "treble")}
    features["pulse"] = beat_pulse(beat_frames, frames, fps, song["bpm"])
    features = {name: _read_only(features[name]) for name in FEATURE_NAMES}
    return AudioFeatures(fps=fps, frames=frames, duration=song["duration"], bpm=song["bpm"],
                         beat_frames=_read_only(beat_frames), features=features)


def beat_pulse(beat_frames: np.ndarray, frames: int, fps: float, bpm: float) -> np.ndarray:
    """Sawtooth: 1 on each beat frame, linear down to 0 at the next beat; 0 before the first."""
    pulse = np.zeros(frames, dtype=np.float32)
    beats = np.asarray(beat_frames, dtype=np.int64)
    if beats.size == 0 or frames == 0:
        return pulse
    if beats.size > 1:
        last_gap = float(np.median(np.diff(beats)))
    else:
        last_gap = 60.0 / bpm * fps if bpm > 0 else fps
    next_beat = np.append(beats[1:], beats[-1] + max(last_gap, 1.0))
    t = np.arange(frames)
    k = np.searchsorted(beats, t, side="right") - 1
    after = k >= 0
    k = k[after]
    elapsed = t[after] - beats[k]
    pulse[after] = np.clip(1.0 - elapsed / (next_beat[k] - beats[k]), 0.0, 1.0)
    return pulse


def features_to_json(features: AudioFeatures) -> dict:
    """The ``deforum-engine audio --json`` document: tempo, frame count, beats and every feature."""
    return {
        "bpm": round(float(features.bpm), 3),
        "frames": int(features.frames),
        "fps": float(features.fps),
        "duration": round(float(features.duration), 4),
        "beat_frames": [int(b) for b in features.beat_frames],
        "features": {name: np.round(features.features[name].astype(np.float64), 4).tolist()
                     for name in FEATURE_NAMES},
    }


def plot_features(features: AudioFeatures, path: str | os.PathLike) -> Path:
    """Draw every feature against time, beats as vertical lines, to an image file (Agg, no GUI)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 1.5 * len(FEATURE_NAMES) + 1), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(FEATURE_NAMES), 1, sharex=True)
    sec = np.arange(features.frames) / features.fps
    beat_sec = np.asarray(features.beat_frames) / features.fps
    for ax, name in zip(axes, FEATURE_NAMES):
        ax.vlines(beat_sec, 0, 1.05, colors="tab:red", linewidth=0.6, alpha=0.5)
        ax.plot(sec, features.features[name], linewidth=0.9)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(name)
    axes[-1].set_xlabel("time (s); red lines: beats")
    axes[0].secondary_xaxis("top", functions=(lambda s: s * features.fps,
                                              lambda f: f / features.fps)).set_xlabel("frame")
    fig.suptitle(f"{features.bpm:.1f} BPM, {len(features.beat_frames)} beats, "
                 f"{features.frames} frames at {features.fps:g} fps")
    fig.savefig(path, dpi=100)
    return Path(path)


def cache_dir() -> Path:
    """``$DEFORUM_ENGINE_CACHE/audio``, else ``$XDG_CACHE_HOME/deforum-engine/audio``, else ~/.cache/..."""
    root = os.environ.get("DEFORUM_ENGINE_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "deforum-engine")
    return Path(root) / "audio"


# --- analysis -----------------------------------------------------------------------------------

def _analyse_song(path: Path, fps: float, bpm: float | None, sr: int = SAMPLE_RATE) -> dict:
    """Every feature of the whole song (``ceil(duration * fps)`` frames), before pulse and fitting."""
    from tqdm import tqdm

    # The first analysis in a process compiles librosa's code (tens of seconds): say what is running.
    with tqdm(total=3, desc=f"analysing {path.name}", unit="step", leave=False, file=sys.stderr) as progress:
        progress.set_postfix_str("decoding")
        y = decode_audio(path, sr)
        frames = max(1, math.ceil(y.size * fps / sr - 1e-6))
        hop = max(1, min(MAX_HOP, int(sr / (2 * fps))))
        progress.update(1)
        progress.set_postfix_str("onsets and beats (librosa; its first run takes up to a minute)")
        onset, beat_frames, tempo = _onset_and_beats(y, sr, fps, frames, hop, bpm, path)
        progress.update(1)
        progress.set_postfix_str("bass, mid and treble")
        bands = _band_levels(y, sr, fps, frames, hop)
        progress.update(1)
    return {"amp": _peak_normalise(_frame_rms(y, sr, fps, frames)), "onset": _peak_normalise(onset),
            **bands, "beat_frames": beat_frames, "bpm": tempo, "duration": y.size / sr}


def _frame_rms(y: np.ndarray, sr: int, fps: float, frames: int) -> np.ndarray:
    """RMS of the samples inside each frame's time span (a cumulative sum of squares, no copies)."""
    edges = np.minimum(np.round(np.arange(frames + 1) * sr / fps).astype(np.int64), y.size)
    energy = np.concatenate([[0.0], np.cumsum(np.square(y, dtype=np.float64))])
    counts = np.maximum(np.diff(edges), 1)
    return np.sqrt(np.maximum(np.diff(energy[edges]), 0.0) / counts)


def _band_levels(y: np.ndarray, sr: int, fps: float, frames: int, hop: int) -> dict[str, np.ndarray]:
    """bass/mid/treble amplitude per frame: Hann STFT band power, averaged over each frame."""
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sr)
    masks = np.stack([(freqs >= lo) & (freqs < hi) for lo, hi in BANDS_HZ.values()], axis=1)
    window = np.hanning(N_FFT).astype(np.float32)
    padded = np.pad(y, (N_FFT // 2, N_FFT // 2))
    windows = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::hop]  # centred at j*hop
    power = np.concatenate([
        (np.abs(np.fft.rfft(chunk * window, axis=1)) ** 2) @ masks.astype(np.float32)
        for chunk in np.array_split(windows, max(1, len(windows) // 2048))
    ])
    idx = np.minimum((np.arange(len(power)) * hop * fps / sr).astype(np.int64), frames - 1)
    counts = np.maximum(np.bincount(idx, minlength=frames), 1)
    levels = np.stack([np.bincount(idx, power[:, b], minlength=frames) for b in range(len(BANDS_HZ))])
    levels = np.sqrt(levels / counts)
    peaks = levels.max(axis=1)
    scale = np.maximum(peaks, BAND_FLOOR * peaks.max())
    scaled = levels / np.where(scale > 0, scale, 1.0)[:, None]
    return {name: scaled[b].astype(np.float32) for b, name in enumerate(BANDS_HZ)}


def _onset_and_beats(y, sr, fps, frames, hop, bpm, path):
    """Onset strength per frame (librosa, max-pooled), beat frames and the tempo they imply."""
    try:
        import librosa
    except ImportError as exc:
        raise SettingsError(f"soundtrack {path}: onset and beat detection need librosa: "
                            "pip install -c constraints.txt 'deforum-engine[audio]'") from exc
    envelope = librosa.onset.onset_strength(y=y, sr=sr, hop_length=hop)
    # Envelope value j is the rise from STFT frame j-1 to j: date it between the two.
    env_times = (np.arange(envelope.size) - 0.5) * hop / sr
    onset = np.zeros(frames, dtype=np.float64)
    np.maximum.at(onset, _time_to_frame(env_times, fps, frames), envelope)
    tempo, beats = _track_beats(librosa, envelope, sr, hop, bpm)
    beat_times = (beats - 0.5) * hop / sr
    beat_frames = np.unique(_time_to_frame(beat_times, fps, frames))
    if bpm is None:
        bpm = _tempo_from_beats(beat_times, fallback=tempo)
    return onset, beat_frames, bpm


def _track_beats(librosa, envelope: np.ndarray, sr: int, hop: int, bpm: float | None):
    """librosa's beat tracker on a max-pooled copy of the envelope (hop about BEAT_HOP); each beat
    is then moved to the fine envelope value that made the pooled maximum. Returns (tempo, indices)."""
    k = max(1, BEAT_HOP // hop)
    pooled = np.pad(envelope, (0, -envelope.size % k)).reshape(-1, k)
    tempo, beats = librosa.beat.beat_track(onset_envelope=pooled.max(axis=1), sr=sr,
                                           hop_length=hop * k, bpm=bpm)
    beats = np.asarray(beats, dtype=np.int64)
    fine = np.minimum(beats * k + pooled[beats].argmax(axis=1), envelope.size - 1)
    return float(np.atleast_1d(tempo)[0]), fine


def _tempo_from_beats(beat_times: np.ndarray, fallback: float) -> float:
    """BPM from a line fitted through the beat times (skipped beats counted), finer than the hop."""
    if beat_times.size < 4:
        return fallback
    gaps = np.diff(beat_times)
    step = float(np.median(gaps))
    if step <= 0:
        return fallback
    index = np.concatenate([[0.0], np.cumsum(np.maximum(np.rint(gaps / step), 1.0))])
    seconds_per_beat = np.polyfit(index, beat_times, 1)[0]
    return float(60.0 / seconds_per_beat) if seconds_per_beat > 0 else fallback


def _time_to_frame(seconds: np.ndarray, fps: float, frames: int) -> np.ndarray:
    return np.clip(np.floor(seconds * fps), 0, frames - 1).astype(np.int64)


def _peak_normalise(x: np.ndarray) -> np.ndarray:
    peak = float(np.max(x)) if x.size else 0.0
    return (x / peak if peak > 0 else np.zeros_like(x)).astype(np.float32)


def _fit(x: np.ndarray, frames: int) -> np.ndarray:
    """Trim to ``frames``, or pad with silence past the end of the song."""
    return x[:frames] if x.size >= frames else np.pad(x, (0, frames - x.size))


def _read_only(x: np.ndarray) -> np.ndarray:
    x = np.array(x)
    x.flags.writeable = False
    return x


# --- input checks -------------------------------------------------------------------------------

def _check_audio_path(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise SettingsError(f"soundtrack {path}: file not found. Use {AUDIO_FORMATS}.")
    if not path.is_file():
        raise SettingsError(f"soundtrack {path}: not a file. Use {AUDIO_FORMATS}.")
    return path


def _check_positive(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name}: {value!r} is not a number; use a positive number") from None
    if not math.isfinite(value) or value <= 0:
        raise SettingsError(f"{name}: {value!r} must be a positive number")
    return value


def _check_max_frames(max_frames) -> int | None:
    if max_frames is None or max_frames == "auto":
        return None
    if isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)) or max_frames < 1:
        raise SettingsError(f"max_frames: {max_frames!r} must be a positive integer or 'auto'")
    return int(max_frames)


# --- disk cache ---------------------------------------------------------------------------------

_SONG_ARRAYS = ("amp", "onset", "bass", "mid", "treble", "beat_frames")


def _load_or_analyse(path: Path, fps: float, bpm: float | None, cache: bool) -> dict:
    """The song's features from the disk cache, or analysed (and stored) on a miss."""
    if not cache:
        return _analyse_song(path, fps, bpm)
    entry = cache_dir() / f"{_cache_key(path, fps, bpm)}.npz"
    song = _read_cache(entry)
    if song is None:
        song = _analyse_song(path, fps, bpm)
        _write_cache(entry, song)
    return song


def _cache_key(path: Path, fps: float, bpm: float | None) -> str:
    """Content hash + every parameter that changes the result (analysis and librosa versions too)."""
    with open(path, "rb") as f:
        content = hashlib.file_digest(f, "sha256").hexdigest()
    try:
        librosa_version = importlib.metadata.version("librosa")
    except importlib.metadata.PackageNotFoundError:
        librosa_version = "none"
    params = f"{content}|fps={fps!r}|bpm={bpm!r}|sr={SAMPLE_RATE}|v{CACHE_VERSION}|librosa={librosa_version}"
    return hashlib.sha256(params.encode()).hexdigest()[:32]


def _read_cache(entry: Path) -> dict | None:
    """A cached song, or None when absent or unreadable (then it is analysed again)."""
    if not entry.is_file():
        return None
    try:
        with np.load(entry, allow_pickle=False) as data:
            song = {name: data[name] for name in _SONG_ARRAYS}
            bpm, duration = data["scalars"].tolist()
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    return {**song, "bpm": float(bpm), "duration": float(duration)}


def _write_cache(entry: Path, song: dict) -> None:
    """Store atomically (temp file + rename); a cache that cannot be written only costs time."""
    tmp = entry.with_name(f"{entry.stem}.{os.getpid()}.tmp.npz")
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, scalars=np.array([song["bpm"], song["duration"]]),
                 **{name: song[name] for name in _SONG_ARRAYS})
        os.replace(tmp, entry)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        warnings.warn(f"audio analysis cache not written to {entry.parent}: {exc}", stacklevel=3)
