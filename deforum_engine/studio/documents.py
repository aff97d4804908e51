"""Settings documents posted to the studio -> validated Settings, with the same code as the CLI.

A document is what a settings file holds: the engine's setting names, or a Deforum settings file's
(imported by `importers.deforum`, as `deforum-engine render` does). A motion preset is applied
under it and everything is validated by `settings.validate_settings` and `plan.build_plan`, so an
error is the CLI's one-line message.

What a document cannot do is reach into the server's disk:
- files (`image_prompt`, `init_image`, `color_coherence_image`, `soundtrack_path`, `video_init_path`,
  `mask_file`, the ControlNet units' `cn_N_vid_path`) are named by the id of an upload to this server,
  never by a path;
- `parseq_manifest` is inline JSON (text or an object), never a path;
- the model side (`model`, `model_config_dir`, `ip_adapter`, `tiny_vae_model`, `depth_model`,
  `adabins_model`, `lora_dirs`, `device`, `dtype`, `safety_checker`, `rife_model`) is the server's: a
  document may repeat the server's value or leave it out;
- the ControlNet units' models (`cn_N_model`) and the upscaler (`r_upscale_model`) are chosen among
  what the server offers (`serve --controlnet`, `--upscale-model`; the upscaler also among Deforum's
  names); left out, they are the first it offers. A motion preview on a server without ControlNet
  models leaves enabled units out, with a note (a preview never uses them).
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
from deforum_engine.config.control_units import CONTROL_MODES, MODULES, UNIT_COUNT, UNIT_DEFAULTS, setting_name
from deforum_engine.config.frame_values import PER_FRAME_VALUES
from deforum_engine.config.settings import Settings, setting_choices
from deforum_engine.errors import SettingsError
from deforum_engine.plan.frame_plan import FramePlan, build_plan
from deforum_engine.post.srt import check_gen_info
from deforum_engine.post.upscalers import DEFORUM_UPSCALERS
from deforum_engine.prompts.samplers import SAMPLER_NAMES
from deforum_engine.studio.errors import StudioError
from deforum_engine.studio.uploads import UPLOAD_ID, UploadStore

UNITS = range(1, UNIT_COUNT + 1)
UPLOAD_FIELDS = ("image_prompt", "init_image", "color_coherence_image", "soundtrack_path", "video_init_path",
                 "mask_file", *(setting_name(n, "vid_path") for n in UNITS))
SERVER_FIELDS = ("model", "model_config_dir", "ip_adapter", "tiny_vae_model", "depth_model", "adabins_model",
                 "lora_dirs", "device", "dtype", "safety_checker", "rife_model")
# What an empty file setting becomes: None for the path settings, "" for the units' inputs (text in Deforum).
_NO_FILE = {setting: Settings.model_fields[setting].default for setting in UPLOAD_FIELDS}
_NO_MODEL = (None, "", "None", "none")


@dataclass(frozen=True)
class Document:
    """A checked document: its plan, whose settings are resolved (seed and frame count fixed), and notes
    for the user."""

    plan: FramePlan
    notes: list[str]

    @property
    def settings(self) -> Settings:
        return self.plan.settings


def server_settings(model: str | None, ip_adapter: str | None, controlnet_models: tuple[str, ...] = (),
                    rife_model: str | None = None, upscale_model: str | None = None) -> dict[str, Any]:
    """The settings the server decides (SERVER_FIELDS: documents may only repeat them), and the models it
    offers: `controlnet_models` for the units, `upscale_models` (its own first, then Deforum's names)."""
    return {"model": model, "ip_adapter": ip_adapter, "model_config_dir": None, "tiny_vae_model": None,
            "depth_model": None, "adabins_model": None, "lora_dirs": (), "device": None, "dtype": None,
            "safety_checker": True, "rife_model": rife_model, "controlnet_models": tuple(controlnet_models),
            "upscale_models": tuple(dict.fromkeys([*([upscale_model] if upscale_model else []), *DEFORUM_UPSCALERS]))}


def read_document(document: Any, uploads: UploadStore, server: dict[str, Any], source: str = "document",
                  preview: bool = False) -> Document:
    """Check a posted document and turn it into resolved Settings; StudioError / SettingsError otherwise.
    `preview`: for a motion preview (ControlNet units need no model there)."""
    if not isinstance(document, dict):
        raise StudioError(400, f"{source}: a settings document is one JSON object of settings, "
                               f"got {type(document).__name__}")
    data, notes = engine_names(document, source)
    data.update(_uploaded_files(data, uploads, source))
    data.update(_server_side(data, server, source))
    data.update(_offered_models(data, server, source, preview, notes))
    settings = settings_files.merge_settings(data, source)
    plan = build_plan(settings)
    check_gen_info(plan)  # every schedule the .srt reports reads, before the job is queued
    return Document(plan, notes)


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
                files[setting] = _NO_FILE[setting]
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


def _offered_models(data: dict[str, Any], server: dict[str, Any], source: str, preview: bool,
                    notes: list[str]) -> dict[str, Any]:
    """The units' models and the upscaler, chosen among what the server offers (the first when left out).
    Enabled units on a server without ControlNet models: left out of a preview (with a note), else refused."""
    chosen = {"r_upscale_model": _offered(data, "r_upscale_model", server["upscale_models"], "upscalers",
                                          "--upscale-model", source)}
    dropped, unused = [], []
    for number in UNITS:
        enabled, model = setting_name(number, "enabled"), setting_name(number, "model")
        on = _is_on(data.get(enabled, UNIT_DEFAULTS["enabled"]))
        if on and not server["controlnet_models"]:
            if not preview:
                raise StudioError(422, f"{source}: {enabled}: the unit needs a ControlNet model and "
                                       "this studio offers none (start it with `serve --controlnet MODEL`); switch "
                                       "the unit off, or make a motion preview")
            chosen[enabled] = False
            dropped.append(number)
        value = _offered(data, model, server["controlnet_models"], "ControlNet models", "--controlnet", source)
        given = data.get(model)
        chosen[model] = value if on and value is not None else UNIT_DEFAULTS["model"] if given in _NO_MODEL else given
        if on and preview and server["controlnet_models"]:
            unused.append(number)
    if dropped:
        notes.append(f"ControlNet unit(s) {', '.join(map(str, dropped))} left out: this studio has no ControlNet "
                     "model (`serve --controlnet MODEL`), and a motion preview does not use units anyway.")
    if unused:
        notes.append(f"ControlNet unit(s) {', '.join(map(str, unused))} are kept in the settings but not used by a "
                     "motion preview (no model runs).")
    return chosen


def _offered(data: dict[str, Any], setting: str, offered: tuple[str, ...], what: str, option: str,
             source: str) -> str | None:
    """The document's choice when the server offers it; the first offered when left out; else a 422."""
    value = data.get(setting)
    if value in _NO_MODEL:
        return offered[0] if offered else None
    if value not in offered:
        have = f"it offers {', '.join(map(repr, offered))}" if offered else "it offers none"
        raise StudioError(422, f"{source}: {setting}: the studio offers the {what} it was started with "
                               f"(`serve {option}`; {have}); choose one of them or leave `{setting}` out "
                               f"(got {str(value)[:80]!r})")
    return value


def _is_on(value: Any) -> bool:
    """A switch as the settings model reads it (true, "true", 1, "yes", "on")."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on", "t", "y")
    return bool(value)


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
    return {setting: server[setting] for setting in SERVER_FIELDS if server[setting] is not None or setting in data}


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


# The form's fixed-set fields whose words the settings model lists, and its other fields with a default.
FORM_CHOICES = ("seed_behavior", "color_coherence", "border", "animation_mode", "padding_mode", "sampling_mode",
                "hybrid_composite", "hybrid_motion", "hybrid_flow_method", "optical_flow_cadence",
                "frame_interpolation_engine", "r_upscale_factor")
FORM_FIELDS = ("sampler", "diffusion_cadence", "use_depth_warping", "depth_algorithm", "enable_perspective_flip",
               "extract_nth_frame", "extract_from_frame", "extract_to_frame", "frame_interpolation_x_amount",
               "r_upscale_video", "r_upscale_model", "seamless_loop")
UNIT_FORM_KEYS = ("enabled", "module", "weight", "guidance_start", "guidance_end", "control_mode", "model", "vid_path")


def form_options(server: dict[str, Any] | None = None) -> dict[str, Any]:
    """The choices and defaults of the form's fields beyond the basic ones; the models `server` offers."""
    defaults = Settings()
    server = server or server_settings(None, None)
    choices = {name: list(setting_choices(name)) for name in FORM_CHOICES}
    return {"form_defaults": {name: getattr(defaults, name) for name in (*FORM_CHOICES, *FORM_FIELDS, *FORM_SCHEDULES)},
            "choices": {**choices, "sampler": list(SAMPLER_NAMES), "depth_algorithm": list(DEPTH_ALGORITHMS),
                        "cn_module": list(MODULES), "cn_control_mode": list(CONTROL_MODES),
                        "cn_model": list(server["controlnet_models"]), "r_upscale_model": list(server["upscale_models"])},
            "schedules": list(FORM_SCHEDULES),
            "control_units": {"count": UNIT_COUNT, "defaults": {key: UNIT_DEFAULTS[key] for key in UNIT_FORM_KEYS}}}


def schedule_curves(document: Any, uploads: UploadStore, server: dict[str, Any]) -> dict[str, Any]:
    """Each form schedule's per-frame values from the plan, and the error of each that fails (at its
    keyframe, as the CLI words it); the other curves are drawn from the rest."""
    if not isinstance(document, dict):
        raise StudioError(400, "a settings document is one JSON object of settings")
    document, errors = dict(document), {}
    for _ in FORM_SCHEDULES:  # each failing schedule is set aside, then the plan is tried again
        try:
            plan = read_document(document, uploads, server, "form", preview=True).plan
            break
        except SettingsError as error:
            name = _failing_schedule(str(error), document)
            if name is None:
                raise
            errors[name] = str(error).removeprefix("form: ")
            document.pop(name)
    else:
        raise StudioError(422, "; ".join(errors.values()))
    values = plan.values
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
