"""The resume state (`resume.npz`), saved only after its frames are synced, so a killed render resumes cleanly."""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deforum_engine.errors import SettingsError
from deforum_engine.output.atomic import _write_atomic

if TYPE_CHECKING:  # the folder imports this module to read its resume point
    from deforum_engine.output.folder import RenderFolder

_NEXT_FRAME_KEY = "next_frame"
_VALUE_PREFIX = "v:"


@dataclass
class ResumeState:
    """What the loop needs to go on after frame `next_frame - 1`.

    `arrays` holds named numpy arrays and scalars (int, float, bool, str) chosen by the loop;
    0-d arrays come back as Python scalars. Object arrays (e.g. 128-bit ints) are refused:
    store such values as arrays of uint64 words or as strings.
    """

    next_frame: int
    arrays: dict[str, np.ndarray | int | float | bool | str] = field(default_factory=dict)

    def copy(self) -> ResumeState:
        """A deep copy, so the loop may reuse its buffers once the state is queued."""
        arrays = {k: np.array(v, copy=True) if isinstance(v, np.ndarray) else v
                  for k, v in self.arrays.items()}
        return ResumeState(int(self.next_frame), arrays)


def _state_arrays(state: ResumeState) -> dict[str, np.ndarray]:
    arrays = {_NEXT_FRAME_KEY: np.asarray(state.next_frame, dtype=np.int64)}
    for key, value in state.arrays.items():
        array = np.asarray(value)
        if array.dtype == object:
            raise TypeError(f"resume state value {key!r} is not a plain array or scalar "
                            f"({type(value).__name__}); store it as numbers or a string")
        arrays[_VALUE_PREFIX + key] = array
    return arrays


def save_resume_state(folder: RenderFolder, state: ResumeState) -> None:
    """Save the state as one .npz, atomically (temp file, fsync, rename)."""
    arrays = _state_arrays(state)
    _write_atomic(folder.resume_path, lambda f: np.savez(f, **arrays))


_NPZ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def _unreadable_resume(path: Path, error: Exception) -> SettingsError:
    return SettingsError(f"the resume state {path} is unreadable ({type(error).__name__}: {str(error)[:120]}); "
                         "delete it to render from the first frame (the frames on disk are kept and overwritten)")


def _open_npz(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except _NPZ_ERRORS as err:
        raise _unreadable_resume(path, err) from err


def load_resume_state(folder: RenderFolder) -> ResumeState | None:
    """The saved state of a stopped render, or None when it has not saved one."""
    if not folder.resume_path.is_file():
        return None
    with _open_npz(folder.resume_path) as npz:
        try:
            arrays = {}
            for key in npz.files:
                if key.startswith(_VALUE_PREFIX):
                    array = npz[key]
                    arrays[key[len(_VALUE_PREFIX):]] = array.item() if array.ndim == 0 else array
            return ResumeState(int(npz[_NEXT_FRAME_KEY]), arrays)
        except _NPZ_ERRORS as err:  # a damaged member is only noticed when it is read
            raise _unreadable_resume(folder.resume_path, err) from err

