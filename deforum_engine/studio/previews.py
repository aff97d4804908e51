"""Motion-preview clips of the motion presets: rendered on demand with the preview backend, then cached.

A clip is a small ordinary preview render (128 x 128, 3 s) whose video is kept as
`DATA/previews/<preset>-<hash>.mp4`; the hash covers the preset's settings, the clip's own and the
user's picture it plays on (an uploaded init image or image prompt, or an input video's first frame,
kept as `DATA/previews/first-<upload>.png`), so an edited preset gets a new clip. Presets that follow a
soundtrack get a generated 120 BPM click track.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import wave
from pathlib import Path

import numpy as np

from deforum_engine.config.presets import Preset, list_presets
from deforum_engine.config.settings import validate_settings
from deforum_engine.errors import SettingsError
from deforum_engine.output.atomic import encode_png
from deforum_engine.rendering.recipe import render
from deforum_engine.studio.errors import StudioError
from deforum_engine.video.clip import VIDEO_SUFFIXES, first_frame, probe_clip

CLIP_SETTINGS = {"W": 128, "H": 128, "max_frames": 45, "fps": 15, "seed": 1, "add_soundtrack": False,
                 "crf": 23, "video_preset": "veryfast"}
CLICK_BPM = 120


class PresetPreviews:
    """Preview clips by preset name; each is rendered once, even when many clients ask at the same time."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def clip(self, name: str, picture: Path | None = None) -> Path:
        """The preset's clip, on `picture` (the user's init image or image prompt, or an input video's
        first frame) when given, else on the preview's default picture."""
        preset = _preset(name)
        key = hashlib.sha256(json.dumps([preset.settings, CLIP_SETTINGS, picture and picture.name],
                                        sort_keys=True, default=str).encode())
        path = self.folder / f"{name}-{key.hexdigest()[:12]}.mp4"
        if path.is_file():
            return path
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if not path.is_file():
                self._render(preset, path, picture)
        return path

    def _render(self, preset: Preset, path: Path, picture: Path | None) -> None:
        work = self.folder / f".work-{path.stem}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            if picture is not None and picture.suffix.lower() in VIDEO_SUFFIXES:
                picture = self._first_frame(picture)
            on_picture = {"init_image": str(picture)} if picture is not None else {}
            settings = validate_settings({**preset.settings, **CLIP_SETTINGS, **on_picture, "name": preset.name,
                                          "soundtrack_path": str(self._click_track())}, f"motion preset {preset.name}")
            result = render(settings, out=work, preview=True, quiet=True)
            os.replace(result.video, path)
        except SettingsError as error:
            raise StudioError(422, f"motion preset {preset.name}: no preview clip: {error}") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _first_frame(self, clip: Path) -> Path:
        """An input video's first frame as a PNG beside the clips (made once per upload)."""
        path = self.folder / f"first-{clip.stem}.png"
        if not path.is_file():
            temp = self.folder / f".{path.stem}-{threading.get_ident()}.tmp"  # one per thread: clips of two presets
            temp.write_bytes(encode_png(first_frame(probe_clip(clip, "picture"))))
            os.replace(temp, path)
        return path

    def _click_track(self) -> Path:
        """A 4 s click track at CLICK_BPM (16-bit mono wav) for presets that follow the music."""
        path = self.folder / f"clicks-{CLICK_BPM}bpm.wav"
        if not path.is_file():
            rate = 22050
            samples = np.zeros(rate * 4, dtype=np.float32)
            click = np.sin(2 * np.pi * 1000 * np.arange(int(rate * 0.03)) / rate) * np.linspace(1, 0, int(rate * 0.03))
            for beat in np.arange(0, 4, 60 / CLICK_BPM):
                start = int(beat * rate)
                samples[start:start + len(click)] += click[: len(samples) - start]
            temp = path.with_suffix(".tmp")
            with wave.open(str(temp), "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(rate)
                out.writeframes((np.clip(samples, -1, 1) * 32000).astype("<i2").tobytes())
            os.replace(temp, path)
        return path


def _preset(name: str) -> Preset:
    presets = list_presets()
    if name not in presets:
        raise StudioError(404, f"motion_preset: no preset named {name!r}; known presets: {', '.join(presets)}")
    return presets[name]
