"""Uploaded files: streamed to disk under generated names, then checked exactly as the CLI checks files.

An upload is for one setting (its kind): `image_prompt`, `init_image`, `color_coherence_image`,
`soundtrack_path`, `video_init_path`, a ControlNet unit's input `cn_1_vid_path` .. `cn_5_vid_path`
or `mask_file`. Each kind has a size limit enforced while the body streams in: reading stops at
the limit and the answer is 413. Images are then checked by `images.check_image_file` (format by
content, decompression bombs, truncated data), soundtracks by `output.check_soundtrack` (ffmpeg
decodes the first second), clips by `video.clip.probe_clip`; a control input or mask is a picture
or a clip, told apart by its first bytes. A file that passes is stored as `DATA/uploads/<id><suffix>`
(the suffix tells the render a picture from a clip); settings documents name it by that id, never
by a path.
"""
from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from deforum_engine.config.control_units import UNIT_COUNT, setting_name
from deforum_engine.errors import SettingsError
from deforum_engine.frame.images import ALLOWED_FORMATS, IMAGE_PROMPT_MAX_MB, check_image_file
from deforum_engine.output.video import check_soundtrack
from deforum_engine.studio.database import Database
from deforum_engine.studio.errors import StudioError
from deforum_engine.video.clip import VIDEO_SUFFIXES, probe_clip

MB = 1024 * 1024
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
MULTIPART_SLACK = 64 * 1024  # form boundaries and part headers around the file itself


@dataclass(frozen=True)
class UploadKind:
    """The setting an upload is for, what it holds, and its size limit."""

    setting: str
    media: str  # "image", "audio", "video", or "picture or video" (control inputs, masks)
    max_bytes: int

    @property
    def noun(self) -> str:
        return {"image": "image", "audio": "audio file", "picture or video": "picture or video"}.get(self.media, "video")


UPLOAD_KINDS = {kind.setting: kind for kind in (
    UploadKind("image_prompt", "image", int(IMAGE_PROMPT_MAX_MB * MB)),
    UploadKind("init_image", "image", 50 * MB),
    UploadKind("color_coherence_image", "image", 50 * MB),
    UploadKind("soundtrack_path", "audio", 200 * MB),
    UploadKind("video_init_path", "video", 2000 * MB),
    *(UploadKind(setting_name(number, "vid_path"), "picture or video", 2000 * MB) for number in range(1, UNIT_COUNT + 1)),
    UploadKind("mask_file", "picture or video", 2000 * MB),
)}
# What the first bytes of each accepted image format are (check_image_file also takes MPO, a JPEG).
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG", ".png"), (b"\xff\xd8\xff", "JPEG", ".jpg"), (b"RIFF", "WEBP", ".webp"))
_AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".m4a", ".aac", ".ogg", ".oga", ".opus")


@dataclass(frozen=True)
class Upload:
    """One stored upload."""

    id: str
    kind: str
    filename: str  # the client's name for it, for messages and the page
    path: Path
    size: int
    created: float

    def to_json(self) -> dict:
        return {"id": self.id, "kind": self.kind, "filename": self.filename, "size": self.size,
                "created": self.created, "url": f"/api/uploads/{self.id}/file"}


class UploadTooLarge(Exception):
    """The body passed the kind's limit; reading stopped there."""


class _LimitedFile:
    """A file that refuses to grow past `max_bytes`."""

    def __init__(self, handle, max_bytes: int):
        self.handle, self.max_bytes, self.size = handle, max_bytes, 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise UploadTooLarge
        self.handle.write(data)


class UploadStore:
    """Receives, checks, stores and looks up uploads."""

    def __init__(self, database: Database, folder: Path):
        self.database, self.folder = database, folder

    async def receive(self, kind_name: str, content_type: str, content_length: int | None,
                      chunks: AsyncIterator[bytes], filename: str | None) -> Upload:
        """Stream one upload (a multipart form with a file, or the raw file as the body) to disk and check it."""
        kind = upload_kind(kind_name)
        shown = clean_filename(filename, "the upload")  # until a multipart body names its file
        if content_length is not None and content_length > kind.max_bytes + MULTIPART_SLACK:
            raise _too_large(kind, shown)
        temp = self.folder / f".incoming-{secrets.token_hex(8)}"
        try:
            with open(temp, "wb") as handle:
                sink = _LimitedFile(handle, kind.max_bytes)
                if content_type.lower().startswith("multipart/form-data"):
                    shown = clean_filename(await _read_multipart(content_type, chunks, sink) or filename)
                else:
                    async for chunk in chunks:
                        sink.write(chunk)
            shown = clean_filename(shown)
            suffix = self._check(kind, temp, shown)
            return self._store(kind, temp, shown, suffix)
        except UploadTooLarge:
            raise _too_large(kind, shown) from None
        finally:
            temp.unlink(missing_ok=True)

    def _check(self, kind: UploadKind, temp: Path, shown: str) -> str:
        """The CLI's checks on the stored bytes; returns the suffix to store the file under."""
        is_picture = _image_format(temp)[0] is not None
        try:
            if kind.media == "video" or (kind.media == "picture or video" and not is_picture):
                probe_clip(temp, kind.setting)  # a clip ffmpeg reads (the render checks its frames again)
                suffix = Path(shown).suffix.lower()
                return suffix if suffix in VIDEO_SUFFIXES else ".mp4"
            if kind.media == "audio":
                check_soundtrack(temp)
                suffix = Path(shown).suffix.lower()
                return suffix if suffix in _AUDIO_SUFFIXES else ""
            check_image_file(temp, role=kind.setting, max_bytes=kind.max_bytes)
        except SettingsError as error:
            raise StudioError(_refusal_status(kind, temp), str(error).replace(str(temp), shown)) from None
        return _image_format(temp)[1]

    def _store(self, kind: UploadKind, temp: Path, shown: str, suffix: str) -> Upload:
        upload_id = secrets.token_hex(16)
        path = self.folder / f"{upload_id}{suffix}"
        size = temp.stat().st_size
        os.replace(temp, path)
        created = time.time()
        self.database.execute("INSERT INTO uploads (id, kind, filename, stored, size, created) VALUES (?, ?, ?, ?, ?, ?)",
                              (upload_id, kind.setting, shown, path.name, size, created))
        return Upload(upload_id, kind.setting, shown, path, size, created)

    def get(self, upload_id: str) -> Upload:
        """An upload by id; 404 when there is none."""
        rows = self.database.rows("SELECT * FROM uploads WHERE id = ?", (upload_id,)) if UPLOAD_ID.match(upload_id) else []
        if not rows:
            raise StudioError(404, f"no upload with id {upload_id!r} on this server")
        row = rows[0]
        return Upload(row["id"], row["kind"], row["filename"], self.folder / row["stored"], row["size"], row["created"])

    def label(self, path: Path) -> str:
        """How messages name a stored file: the client's file name and the upload id."""
        rows = self.database.rows("SELECT filename FROM uploads WHERE stored = ?", (Path(path).name,))
        return f"{rows[0]['filename']} (upload {Path(path).stem})" if rows else str(path)

    def file_for(self, upload_id: str, setting: str) -> Path:
        """The stored file of an upload made for `setting`, checked to be a plain file inside the uploads folder."""
        try:
            upload = self.get(upload_id)
        except StudioError:
            raise StudioError(422, f"{setting}: no upload with id {upload_id!r} on this server; upload the file "
                                   f"first (POST /api/uploads/{setting}) and give the id it returns") from None
        if upload.kind != setting:
            raise StudioError(422, f"{setting}: upload {upload_id} ({upload.filename}) was uploaded for {upload.kind}; "
                                   f"upload it again for {setting}")
        if not self.intact(upload):
            raise StudioError(422, f"{setting}: the file of upload {upload_id} ({upload.filename}) is gone; upload it again")
        return upload.path

    def expire(self, older_than: float, in_use: set[str]) -> list[str]:
        """Delete uploads created before `older_than` (a time.time()) whose stored file name is not in `in_use`;
        returns their ids. Left-over `.incoming-*` files of a server that was killed mid-upload go too."""
        expired = []
        for row in self.database.rows("SELECT id, stored FROM uploads WHERE created < ?", (older_than,)):
            if row["stored"] in in_use:
                continue
            path = self.folder / row["stored"]
            if path.parent == self.folder and not path.is_symlink():
                path.unlink(missing_ok=True)
            self.database.execute("DELETE FROM uploads WHERE id = ?", (row["id"],))
            expired.append(row["id"])
        for temp in self.folder.glob(".incoming-*"):
            if temp.stat().st_mtime < older_than:
                temp.unlink(missing_ok=True)
        return expired

    def intact(self, upload: Upload) -> bool:
        """True while the stored file is a plain file (not a symlink) right inside the uploads folder."""
        path = upload.path
        return not path.is_symlink() and path.is_file() and path.resolve().parent == self.folder.resolve()


def upload_kind(name: str) -> UploadKind:
    if name not in UPLOAD_KINDS:
        raise StudioError(404, f"uploads are for one of {', '.join(UPLOAD_KINDS)}, not {name!r}")
    return UPLOAD_KINDS[name]


def clean_filename(name: str | None, default: str = "upload") -> str:
    """The client's file name reduced to a short, printable base name (it never becomes a path)."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(char for char in base if char.isprintable()).strip()
    return base[:120] or default


def _too_large(kind: UploadKind, shown: str) -> StudioError:
    limit = f"{kind.max_bytes / MB:.3g} MB"
    return StudioError(413, f"{kind.setting}: {shown} is larger than the {limit} limit for {kind.setting} uploads; "
                            f"use a smaller {kind.noun}")


def _image_format(path: Path) -> tuple[str | None, str]:
    """The accepted image format the file's first bytes announce, and its suffix; (None, '') for others."""
    with open(path, "rb") as handle:
        head = handle.read(12)
    for magic, name, suffix in _IMAGE_MAGIC:
        if head.startswith(magic) and (name != "WEBP" or head[8:12] == b"WEBP"):
            return name, suffix
    return None, ""


def _refusal_status(kind: UploadKind, path: Path) -> int:
    """415 for a file of another type, 422 for an accepted type that is broken (empty, truncated, a bomb)."""
    if kind.media in ("audio", "video") or (kind.media == "picture or video" and _image_format(path)[0] is None):
        return 415 if path.stat().st_size else 422
    if path.stat().st_size == 0:
        return 422
    name, _ = _image_format(path)
    return 422 if name in ALLOWED_FORMATS else 415


async def _read_multipart(content_type: str, chunks: AsyncIterator[bytes], sink: _LimitedFile) -> str | None:
    """Stream the first file part of a multipart/form-data body into `sink`; returns its file name."""
    from python_multipart.multipart import parse_options_header

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise StudioError(400, "the multipart upload has no boundary in its Content-Type")
    from python_multipart.exceptions import FormParserError

    reader = _FirstFilePart(boundary, sink)
    try:
        async for chunk in chunks:
            reader.parser.write(chunk)
        reader.parser.finalize()
    except FormParserError as error:
        raise StudioError(400, f"the multipart upload is malformed ({str(error)[:100]}); send the file as the form "
                               "field `file`, or the raw file as the body with ?filename=") from None
    if not reader.found:
        raise StudioError(400, "the upload holds no file: send it as the form field `file`")
    return reader.filename


MAX_PART_HEADER = 16 * 1024  # bytes of one header line of a form part


def _bounded_header(data: bytes) -> bytes:
    if len(data) > MAX_PART_HEADER:
        raise StudioError(400, f"the multipart upload has a part header longer than {MAX_PART_HEADER // 1024} KB; "
                               "send the file as the form field `file`")
    return data


class _FirstFilePart:
    """python-multipart callbacks that pass the data of the first part with a file name to a sink."""

    def __init__(self, boundary: bytes, sink: _LimitedFile):
        from python_multipart.multipart import MultipartParser

        self.sink, self.filename, self.found = sink, None, False
        self._header, self._value, self._disposition = b"", b"", b""
        self._active = False
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self._begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._data,
            "on_part_end": self._end,
        })

    def _begin(self) -> None:
        self._disposition, self._active = b"", False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header = _bounded_header(self._header + data[start:end])

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value = _bounded_header(self._value + data[start:end])

    def _header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition = self._value
        self._header, self._value = b"", b""

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._disposition)
        if not self.found and b"filename" in options:
            self.found, self._active = True, True
            self.filename = options[b"filename"].decode("utf-8", "replace")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._active:
            self.sink.write(data[start:end])

    def _end(self) -> None:
        self._active = False
