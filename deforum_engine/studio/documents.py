"""Settings documents posted to the studio -> validated Settings, with the same code as the CLI.

A document is what a settings file holds: the engine's setting names, or a Deforum settings file's
(imported by `importers.deforum`, as `deforum-engine render` does). A motion preset is applied
under it and everything is validated by `settings.validate_settings` and `plan.build_plan`, so an
error is the CLI's one-line message.

What a document cannot do is reach into the server's disk:
- files (`image_prompt`, `init_image`, `color_coherence_image`, `soundtrack_path`, `video_init_path`) are named by
  the id of an upload to this server, never by a path;
- `parseq_manifest` is inline JSON (text or an object), never a path;
- the model side (`model`, `model_config_dir`, `ip_adapter`, `tiny_vae_model`, `depth_model`,
  `adabins_model`, `lora_dirs`, `device`, `dtype`, `safety_checker`) is the server's: a document
  may repeat the server's value or leave it out.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deforum_engine.batch.local import read_jobs_file
from deforum_engine.config import files as settings_files
from deforum_engine.config.choices import DEPTH_ALGORITHMS
from deforum_engine.config.frame_values import PER_FRAME_VALUES
from deforum_engine.config.settings import Settings, setting_choices
from deforum_engine.errors import SettingsError
from deforum_engine.plan.frame_plan import build_plan
from deforum_engine.post.srt import gen_info_srt
from deforum_engine.prompts.samplers import SAMPLER_NAMES
from deforum_engine.studio.errors import StudioError
from deforum_engine.studio.uploads import UPLOAD_ID, UploadStore

UPLOAD_FIELDS = ("image_prompt", "init_image", "color_coherence_image", "soundtrack_path", "video_init_path")
SERVER_FIELDS = ("model", "model_config_dir", "ip_adapter", "tiny_vae_model", "depth_model", "adabins_model",
                 "lora_dirs", "device", "dtype", "safety_checker")


@dataclass(frozen=True)
class Document:
    """A checked document: the resolved settings (seed and frame count fixed) and notes for the user."""

    settings: Settings
    notes: list[str]


def server_settings(model: str | None, ip_adapter: str | None) -> dict[str, Any]:
    """The settings the server decides; documents may only repeat them."""
    return {"model": model, "ip_adapter": ip_adapter, "model_config_dir": None, "tiny_vae_model": None,
            "depth_model": None, "adabins_model": None, "lora_dirs": (), "device": None, "dtype": None,
            "safety_checker": True}


def read_document(document: Any, uploads: UploadStore, server: dict[str, Any], source: str = "document") -> Document:
    """Check a posted document and turn it into resolved Settings; StudioError / SettingsError otherwise."""
    if not isinstance(document, dict):
        raise StudioError(400, f"{source}: a settings document is one JSON object of settings, "
                               f"got {type(document).__name__}")
    data, notes = engine_names(document, source)
    _refuse_control_files(data, source)
    data.update(_uploaded_files(data, uploads, source))
    data.update(_server_side(data, server, source))
    settings = settings_files.merge_settings(data, source)
    plan = build_plan(settings)
    if settings.deforum_save_gen_info_as_srt:
        gen_info_srt(plan, frames=0)  # every schedule the .srt reports reads, before the job is queued
    return Document(plan.settings, notes)


def engine_names(document: dict[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    """Deforum's names mapped to the engine's (with what was ignored, as the CLI warns); else as given.

    A Parseq manifest must be inline: the Deforum importer would otherwise read the path it names."""
    if "parseq_manifest" in document:
        document = {**document, "parseq_manifest": _inline_manifest(document["parseq_manifest"], source)}
    return settings_files.engine_names(document, source)


def _inline_manifest(value: Any, source: str) -> str | None:
    """parseq_manifest as inline JSON text; a path (anything else) is refused."""
    if value is None or value == "":
        return None
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, str) and value.lstrip().startswith(("{", "[")):
        return value
    raise StudioError(400, f"{source}: parseq_manifest: the studio takes a Parseq manifest inline (its JSON), "
                           f"not a path or URL ({str(value)[:80]!r})")


def _uploaded_files(data: dict[str, Any], uploads: UploadStore, source: str) -> dict[str, Any]:
    """Each file setting's upload id replaced by the stored file; paths are refused."""
    files = {}
    for setting in UPLOAD_FIELDS:
        value = data.get(setting)
        if value is None or value == "":
            if setting in data:
                files[setting] = None
            continue
        if not isinstance(value, str) or not UPLOAD_ID.match(value):
            raise StudioError(400, f"{source}: {setting}: a settings document sent to the studio names files by upload id, "
                                   f"not by path ({str(value)[:80]!r}); upload the file with "
                                   f"POST /api/uploads/{setting} and give the id it returns")
        try:
            files[setting] = str(uploads.file_for(value, setting))
        except StudioError as error:
            raise StudioError(error.status, f"{source}: {error.message}") from None
    return files


# ControlNet units' models and inputs and the mask file are paths on the server: no document names them
# until the studio takes their uploads (the studio issue); until then they render from the command line.
CONTROL_FILE_FIELDS = ("mask_file", *(f"cn_{n}_{key}" for n in range(1, 6) for key in ("model", "vid_path")))


def _refuse_control_files(data: dict[str, Any], source: str) -> None:
    for setting in CONTROL_FILE_FIELDS:
        value = data.get(setting)
        if value not in (None, "", "None"):
            raise StudioError(422, f"{source}: {setting}: ControlNet models and inputs and mask files are files on the "
                                   f"server, which a studio document cannot name yet; render this one with the "
                                   f"command line (got {str(value)[:80]!r})")


def _server_side(data: dict[str, Any], server: dict[str, Any], source: str) -> dict[str, Any]:
    """The server's model settings, after checking that the document does not ask for others."""
    for setting in SERVER_FIELDS:
        value = data.get(setting)
        if isinstance(value, list):
            value = tuple(value)  # lora_dirs, as JSON gives it
        if setting in data and value is not None and value != server[setting]:
            chosen = server[setting]
            hint = f"it uses {chosen!r}" if chosen is not None else "it uses its own"
            raise StudioError(422, f"{source}: {setting}: the studio decides {setting} when it is started ({hint}); "
                                   f"leave `{setting}` out of the document (got {str(value)[:80]!r})")
    return {setting: value for setting, value in server.items() if value is not None or setting in data}


# ----------------------------------------------------------------------------------------- batches


def jobs_file_documents(text: str, base: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """The documents of a jobs file (TOML: [matrix] and/or [[jobs]], as `deforum-engine batch` reads it)
    over a base document given inline; returns (job name, document) pairs."""
    with tempfile.TemporaryDirectory(prefix="studio-jobs-") as folder:
        root = Path(folder).resolve()
        path = root / "jobs.toml"
        path.write_text(text, encoding="utf-8")
        try:
            jobs = read_jobs_file(path)
        except SettingsError as error:
            raise StudioError(422, str(error).replace(str(path), "jobs file")) from None
        pairs = []
        for job in jobs:
            if job.settings_path is not None:
                raise StudioError(400, "jobs file: `base` names a settings file on the server; send the base "
                                       "settings as the request's `base` document instead")
            overrides = {key: _upload_value(value, root, key) for key, value in job.overrides.items()}
            pairs.append((job.name, {**(base or {}), **overrides, "name": job.name}))
    return pairs


def _upload_value(value: Any, root: Path, key: str) -> Any:
    """read_jobs_file made file settings absolute under the jobs file's folder: take back the id as written."""
    if key not in UPLOAD_FIELDS or not isinstance(value, str):
        return value
    try:
        return str(Path(value).relative_to(root))
    except ValueError:
        return value  # a path outside: refused as a path by read_document


# ----------------------------------------------------------------------------------------- the form

# The schedules the form edits as Deforum text, each drawn as a curve: setting -> the plan's values
# (named by the per-frame table). The seed schedule is drawn as the seeds every frame gets, whatever
# the seed behaviour.
FORM_SCHEDULES = {value.setting: value.name for value in PER_FRAME_VALUES if value.form}
CURVE_POINTS = 2000  # at most this many values per curve (a long render is sampled evenly)


def form_options() -> dict[str, Any]:
    """The choices and defaults of the form's fields beyond the basic ones."""
    defaults = Settings()
    fields = ("seed_behavior", "sampler", "diffusion_cadence", "color_coherence", "border", "animation_mode",
              "use_depth_warping", "depth_algorithm", "padding_mode", "sampling_mode", "enable_perspective_flip",
              *FORM_SCHEDULES)
    choices = {name: list(_literal_choices(name)) for name in
               ("seed_behavior", "color_coherence", "border", "animation_mode", "padding_mode", "sampling_mode")}
    return {"form_defaults": {name: getattr(defaults, name) for name in fields},
            "choices": {**choices, "sampler": list(SAMPLER_NAMES), "depth_algorithm": list(DEPTH_ALGORITHMS)},
            "schedules": list(FORM_SCHEDULES)}


def _literal_choices(name: str) -> tuple[str, ...]:
    return setting_choices(name)


def schedule_curves(document: Any, uploads: UploadStore, server: dict[str, Any]) -> dict[str, Any]:
    """Each form schedule's per-frame values from the plan, and the error of each that fails (at its
    keyframe, as the CLI words it); the other curves are drawn from the rest."""
    if not isinstance(document, dict):
        raise StudioError(400, "a settings document is one JSON object of settings")
    document, errors = dict(document), {}
    for _ in FORM_SCHEDULES:  # each failing schedule is set aside, then the plan is tried again
        try:
            plan = read_document(document, uploads, server, "form").settings
            break
        except SettingsError as error:
            name = _failing_schedule(str(error), document)
            if name is None:
                raise
            errors[name] = str(error).removeprefix("form: ")
            document.pop(name)
    else:
        raise StudioError(422, "; ".join(errors.values()))
    values = build_plan(plan).values
    frames = len(values["zoom"])
    step = max(1, -(-frames // CURVE_POINTS))
    curves = {name: [round(float(v), 6) for v in values[key][::step]] for name, key in FORM_SCHEDULES.items()}
    return {"frames": frames, "step": step, "curves": curves, "errors": errors}


def _failing_schedule(message: str, document: dict[str, Any]) -> str | None:
    """Which of the form's schedules a settings error is about (its message starts with the name)."""
    text = message.removeprefix("form: ").lstrip("`")
    for name in FORM_SCHEDULES:
        if name in document and text.startswith((f"{name}:", f"{name}`")):
            return name
    return None
