"""The render folder: `frames/000000.png ...`, `settings.json`, `resume.npz`, `<name>.mp4`, and its paths."""
from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from deforum_engine.config.settings import validate_settings
from deforum_engine.errors import SettingsError
from deforum_engine.limits import parse_json, read_text_file
from deforum_engine.output.atomic import _replace_atomic
from deforum_engine.output.resume import (
    _NEXT_FRAME_KEY,
    _NPZ_ERRORS,
    _open_npz,
    _unreadable_resume,
)

if TYPE_CHECKING:
    from deforum_engine.config.settings import Settings


_FRAME_NAME = re.compile(r"^(\d{6,})\.png$")


@dataclass(frozen=True)
class RenderFolder:
    """Paths of one render folder, plus small queries about what is in it."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def frames_dir(self) -> Path:
        return self.root / "frames"

    @property
    def depth_dir(self) -> Path:
        """Depth maps (save_depth_maps), one PNG per frame named like the frame."""
        return self.root / "depth"

    @property
    def settings_path(self) -> Path:
        return self.root / "settings.json"

    @property
    def resume_path(self) -> Path:
        return self.root / "resume.npz"

    @property
    def video_path(self) -> Path:
        return self.root / f"{self.root.name}.mp4"

    @property
    def info_path(self) -> Path:
        return self.root / "render.json"

    def info(self) -> dict:
        """What the render recorded about itself (backend, preview, status...); {} when nothing yet."""
        if not self.info_path.is_file():
            return {}
        info = _read_record(self.info_path, "the render's record (status, backend)")
        if not isinstance(info, dict):
            raise SettingsError(f"{self.info_path}: the render's record is not a JSON object; restore it from a "
                                f"backup, or delete the folder and render again")
        return info

    def update_info(self, **values) -> None:
        """Merge `values` into render.json, atomically."""
        info = {**self.info(), **values}
        _replace_atomic(self.info_path, (json.dumps(info, indent=2) + "\n").encode())

    def status(self) -> str | None:
        """'finished', 'rendering' (running or stopped), or None when the folder holds no render."""
        return self.info().get("status", "rendering") if self.info_path.is_file() else None

    def frame_path(self, index: int) -> Path:
        return self.frames_dir / f"{index:06d}.png"

    def depth_path(self, index: int) -> Path:
        return self.depth_dir / f"{index:06d}.png"

    def frame_indices(self) -> list[int]:
        """Indices of the frame files on disk, sorted (temp files are not counted)."""
        if not self.frames_dir.is_dir():
            return []
        found = (_FRAME_NAME.match(p.name) for p in self.frames_dir.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def is_render(self) -> bool:
        return self.settings_path.is_file()

    def finished_frames(self) -> int:
        """How many frames are done, from the resume state (0 when there is none)."""
        if not self.resume_path.is_file():
            return 0
        with _open_npz(self.resume_path) as npz:
            try:
                return int(npz[_NEXT_FRAME_KEY])
            except _NPZ_ERRORS as err:
                raise _unreadable_resume(self.resume_path, err) from err

    def read(self) -> tuple[dict, "Settings"]:
        """The render's recorded info and its resolved settings; SettingsError if it holds no render."""
        if not self.is_render() or self.status() is None:
            raise SettingsError(
                f"{self.root}: not a render folder (no settings.json / render.json); "
                "give the folder that `deforum-engine render` wrote"
            )
        return self.info(), self.saved_settings()

    def saved_settings(self) -> "Settings":
        """The resolved settings in settings.json, validated as any settings are."""
        values = _read_record(self.settings_path, "the render's settings")
        if not isinstance(values, dict):
            raise SettingsError(f"{self.settings_path}: the render's settings are not a JSON object; restore the "
                                f"file from a backup, or delete the folder and render again")
        return validate_settings(values, str(self.settings_path))

    def ensure_writable(self) -> None:
        """Create the folders and check that files can be written there."""
        for folder in (self.root, self.frames_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryFile(dir=folder):
                    pass
            except OSError as err:
                raise SettingsError(
                    f"cannot write to the render folder {folder}: {err.strerror or err}. "
                    "Choose another output folder or fix its permissions."
                ) from err


def default_folder(name: str | None, preview: bool, renders_dir: Path = Path("renders")) -> RenderFolder:
    """`renders/<name>-<time>/`, with `-preview` for motion previews."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    label = "-preview" if preview else ""
    return RenderFolder(renders_dir / f"{name or 'render'}{label}-{stamp}")


def _read_record(path: Path, what: str):
    """A JSON file the engine wrote into a render folder; damage is a SettingsError naming it and the way out."""
    try:
        return parse_json(read_text_file(path, "render file"), str(path))
    except SettingsError as error:
        raise SettingsError(f"{error}; it holds {what}: restore it from a "
                            "backup, or delete the folder and render again") from None
