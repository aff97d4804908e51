"""Depth for 3D mode: Deforum's depth_algorithm names on transformers' depth models, and depth -> z.

Models load like the pipeline (models.load_pipeline): once per process, on the render's device and
dtype, from a hub id (the hub cache only, when offline) or a local folder (what `save_pretrained`
or `hf download REPO --local-dir FOLDER` writes). `check_depth_models` tells, before frame 0,
whether they can load at all.

Deforum's algorithms and what loads for them (ALGORITHMS):
- Midas-3-Hybrid: despite the name, Deforum loads dpt_large-midas-2f21e586.pt, DPT-Large, which
  is transformers' Intel/dpt-large. Midas-3.1-BeitLarge: Intel/dpt-beit-large-512. Zoe: Deforum's
  ZoeD_NK, Intel/zoedepth-nyu-kitti. Depth-Anything-V2-Small (Deforum Studio):
  depth-anything/Depth-Anything-V2-Small-hf.
- Leres and AdaBins have no transformers port: ZoeDepth stands in (a warning says so), which
  measures depth the same way they do (distance, not inverse distance).
- "Midas+AdaBins (old)" / "Zoe+AdaBins (old)": the first model blended with the AdaBins stand-in,
  `w * (50 - d) / 19 + (1 - w) * adabins` with w = midas_weight, used as z as it is (Deforum's
  legacy transform); with midas_weight 1 the first model's output alone.

Depth -> z (Deforum's newer transform): scale the map to 0..1, equalise its histogram (1024
bins), then z = 2 - d for models that output inverse depth (MiDaS / DPT / Depth Anything: near is
large) and z = 1 + d for metric ones (ZoeDepth, Depth Anything's metric heads). So z runs from 1
(nearest) to 2 (farthest). A map that is constant or not finite gives flat depth (z = 1).

Deforum normalises every depth map on its own ("per_frame"): when the picture's content shifts,
the same object gets another z and the camera appears to surge. "steady" (the default) uses a
running histogram instead of each frame's own: each new map moves it a quarter of the way
(STEADY_WEIGHT), so a map's z changes smoothly from one diffused frame to the next. The first
map of a render is the same in both.
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deforum_engine.config.choices import (
    DEPTH_ALGORITHM_ALIASES,
    DEPTH_ALGORITHMS,
    allowed_text,
    canonical,
)
from deforum_engine.errors import RenderError, SettingsError
from deforum_engine.models.cache import cached_model
from deforum_engine.models.loading import (
    _offline_by_setting,
    folder_or_hub_id,
    hub_offline,
    resolve_device,
    resolve_dtype,
)

EQUALISATION_BINS = 1024  # Deforum's histogram equalisation of depth maps
STEADY_WEIGHT = 0.25  # how far each new depth map moves the running histogram ("steady" normalisation)
ADABINS_STAND_IN = "Intel/zoedepth-nyu"  # AdaBins_nyu's closest transformers model: metric, trained on NYU


@dataclass(frozen=True)
class Algorithm:
    """What one of Deforum's depth_algorithm names loads here."""

    name: str  # Deforum's spelling
    model: str  # hub id of the model that loads for it
    stands_in_for: str | None = None  # the model Deforum uses, when ours is a substitute
    blends_adabins: bool = False  # the "(old)" combos: blended with the AdaBins stand-in, legacy transform


# What loads for each of Deforum's names (config/choices.DEPTH_ALGORITHMS; the settings checked the name).
ALGORITHMS = {algorithm.name: algorithm for algorithm in (
    Algorithm("Midas-3-Hybrid", "Intel/dpt-large"),
    Algorithm("Midas-3.1-BeitLarge", "Intel/dpt-beit-large-512"),
    Algorithm("Zoe", "Intel/zoedepth-nyu-kitti"),
    Algorithm("Depth-Anything-V2-Small", "depth-anything/Depth-Anything-V2-Small-hf"),
    Algorithm("Leres", "Intel/zoedepth-nyu-kitti", stands_in_for="LeReS (ResNeXt-101)"),
    Algorithm("AdaBins", ADABINS_STAND_IN, stands_in_for="AdaBins (NYU)"),
    Algorithm("Midas+AdaBins (old)", "Intel/dpt-large", blends_adabins=True),
    Algorithm("Zoe+AdaBins (old)", "Intel/zoedepth-nyu-kitti", blends_adabins=True),
)}


class DepthSubstitutionWarning(UserWarning):
    """A depth algorithm that transformers lacks is rendered with a stand-in model."""


@dataclass(frozen=True)
class DepthChoice:
    """The depth models one render uses, resolved from its settings."""

    algorithm: Algorithm
    model: str  # hub id or absolute local folder
    adabins_model: str | None  # the "(old)" combos' second model, None when it is not used
    normalization: str  # "steady" or "per_frame"; the "(old)" combos use raw depth either way
    midas_weight: float

    @property
    def legacy(self) -> bool:
        """Deforum's legacy transform: the (blended) depth is z as it is, no normalisation."""
        return self.algorithm.blends_adabins

    def describe(self) -> str:
        """One line for the render summary."""
        models = self.model if self.adabins_model is None else f"{self.model} + {self.adabins_model}"
        if self.legacy:
            how = f"raw depth blended with midas_weight {self.midas_weight:g} (Deforum's legacy transform)"
        elif self.normalization == "steady":
            how = "steady normalisation (running histogram)"
        else:
            how = "per-frame normalisation (Deforum's)"
        return f"depth of {self.algorithm.name} ({models}), {how}"


def find_algorithm(name: str) -> Algorithm:
    """Deforum's depth_algorithm name (any case, or an alias) -> Algorithm; SettingsError naming the choices."""
    spelled = canonical(name, DEPTH_ALGORITHMS, DEPTH_ALGORITHM_ALIASES)
    if spelled is None:
        raise SettingsError(f"depth_algorithm: {name!r} is not one of {allowed_text(DEPTH_ALGORITHMS)}; "
                            "or set depth_model to a transformers depth-estimation model (hub id or folder)")
    return ALGORITHMS[spelled]


def depth_choice(settings) -> DepthChoice:
    """The depth models `settings` ask for (depth_model / adabins_model override the mapping)."""
    algorithm = find_algorithm(settings.depth_algorithm)
    if algorithm.stands_in_for and settings.depth_model is None:
        _warn_substitution(algorithm.name, algorithm.stands_in_for, algorithm.model)
    blend = algorithm.blends_adabins and settings.midas_weight < 1.0
    if blend and settings.adabins_model is None:
        _warn_substitution("AdaBins", "AdaBins (NYU)", ADABINS_STAND_IN)
    return DepthChoice(
        algorithm=algorithm,
        model=_resolve_source(settings.depth_model or algorithm.model, "depth_model"),
        adabins_model=_resolve_source(settings.adabins_model or ADABINS_STAND_IN, "adabins_model") if blend else None,
        normalization=settings.depth_normalization,
        midas_weight=settings.midas_weight,
    )


@functools.cache
def _warn_substitution(name: str, original: str, model: str) -> None:
    """Once per process and algorithm."""
    warnings.warn(
        f"depth_algorithm {name}: {original} has no transformers port; {model} (ZoeDepth, metric depth like it) "
        "stands in. Set depth_model to choose another model",
        DepthSubstitutionWarning, stacklevel=4,
    )


def _resolve_source(model: str, setting: str) -> str:
    return folder_or_hub_id(model, setting, "a depth model folder (config.json, preprocessor_config.json, weights)")


# ----------------------------------------------------------------------------------------- loading


@dataclass
class DepthModel:
    """A loaded transformers depth estimator with its image processor."""

    model: Any
    processor: Any
    source: str
    device: str
    dtype: Any
    metric: bool  # True: the output is distance (ZoeDepth, metric heads); False: inverse depth
    padded: bool  # ZoeDepth's processor pads the image by int(sqrt(side / 2) * 3) each side

    def predict(self, image: np.ndarray):
        """The model's depth for an RGB uint8 image, resized back to its H x W (float32, on the device)."""
        import torch

        height, width = image.shape[:2]
        inputs = self.processor(images=image, return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, self.dtype)
        with torch.inference_mode():
            predicted = self.model(pixel_values=pixels).predicted_depth
        return _to_frame_size(predicted.float(), height, width, self.padded)


def _to_frame_size(predicted, height: int, width: int, padded: bool):
    """Bicubic back to H x W (Deforum's MiDaS resize), cutting ZoeDepth's padding off first."""
    import torch.nn.functional as F

    depth = predicted.reshape(1, 1, *predicted.shape[-2:])
    pad_h, pad_w = (int(math.sqrt(height / 2) * 3), int(math.sqrt(width / 2) * 3)) if padded else (0, 0)
    depth = F.interpolate(depth, size=(height + 2 * pad_h, width + 2 * pad_w), mode="bicubic", align_corners=False)
    return depth[0, 0, pad_h:pad_h + height, pad_w:pad_w + width]




def load_depth_model(source: str, *, device: str | None = None, dtype: Any = None) -> DepthModel:
    """Load a depth model once per process (hub id or local folder), on `device` in `dtype`."""
    device = resolve_device(device)
    dtype = resolve_dtype(device, dtype)
    return cached_model("depth", (source, device, str(dtype)), lambda: _load(source, device, dtype))


def _load(source: str, device: str, dtype: Any) -> DepthModel:
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation
    from transformers.utils import is_torchvision_available


    local_only = Path(source).is_dir() or hub_offline()
    backend = None if is_torchvision_available() else "pil"  # no torchvision: PIL, without a warning per load
    try:
        processor = AutoImageProcessor.from_pretrained(source, local_files_only=local_only, backend=backend)
        model = AutoModelForDepthEstimation.from_pretrained(source, local_files_only=local_only, dtype=dtype)
    except (OSError, ValueError) as error:
        raise _load_error(source, error) from error
    config = model.config
    metric = config.model_type == "zoedepth" or getattr(config, "depth_estimation_type", "relative") == "metric"
    padded = config.model_type == "zoedepth" and bool(getattr(processor, "do_pad", False))
    return DepthModel(model=model.to(device).eval(), processor=processor, source=source, device=device,
                      dtype=dtype, metric=metric, padded=padded)


_POINT_LOCAL = ("set depth_model (or adabins_model) to a local folder holding a transformers depth-estimation "
                "model (config.json, preprocessor_config.json and its weights, as save_pretrained or "
                "`hf download {source} --local-dir FOLDER` write them)")


def _load_error(source: str, error: Exception | None) -> RenderError:
    hint = _POINT_LOCAL.format(source=source if not Path(source).is_dir() else "REPO")
    if Path(source).is_dir():
        return RenderError(f"depth model folder {source} could not be loaded ({error}); {hint}")
    if _offline_by_setting():
        return RenderError(f"depth model {source!r} is not in the local Hugging Face cache and the hub is "
                           f"offline (HF_HUB_OFFLINE=1), so it cannot be downloaded; {hint}")
    return RenderError(f"depth model {source!r} could not be loaded from the Hugging Face hub ({error}); {hint}")


def check_depth_models(choice: DepthChoice) -> None:
    """Fail now, before frame 0, if a depth model cannot load: a folder lacking files, or a hub id
    that is not in the cache while the hub is offline."""
    for source in filter(None, (choice.model, choice.adabins_model)):
        if Path(source).is_dir():
            needed = ("config.json", "preprocessor_config.json")
            missing = [name for name in needed if not (Path(source) / name).is_file()]
            if missing or not _has_weights(lambda name: (Path(source) / name).is_file()):
                raise SettingsError(f"depth model folder {source} lacks {', '.join(missing) or 'weights'}; "
                                    + _POINT_LOCAL.format(source="REPO"))
        elif hub_offline():
            from huggingface_hub import try_to_load_from_cache

            def cached(name: str) -> bool:
                return isinstance(try_to_load_from_cache(source, name), str)

            if not (cached("config.json") and cached("preprocessor_config.json") and _has_weights(cached)):
                raise _load_error(source, None)


def _has_weights(exists) -> bool:
    return any(exists(name) for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"))


# ----------------------------------------------------------------------------------------- depth -> z


@dataclass(frozen=True)
class SteadyDepth:
    """The running histogram of "steady" normalisation (EQUALISATION_BINS weights summing to 1)."""

    histogram: np.ndarray


def value_range(raw) -> tuple[float, float] | None:
    """The map's (min, max), or None where Deforum would not use it: not finite, or constant (flat depth)."""
    import torch

    low, high = (float(value) for value in torch.aminmax(raw))  # NaN anywhere makes both NaN
    return (low, high) if math.isfinite(low) and math.isfinite(high) and high > low else None


def normalise(raw, value_range: tuple[float, float]):
    """Scale a depth map to 0..1 by its (min, max)."""
    low, high = value_range
    return (raw - low).mul_(1.0 / (high - low))


def histogram_bins(normalised):
    """Each value's bin among EQUALISATION_BINS over 0..1 (the last bin closed, as np.histogram's), and
    its position within the bin (0..1)."""
    position = normalised * EQUALISATION_BINS
    index = position.floor().clamp_(0, EQUALISATION_BINS - 1)
    return index.long(), position.sub_(index).clamp_(0, 1)


def bin_weights(index) -> np.ndarray:
    """The histogram of bin indices as weights summing to 1."""
    import torch

    counts = torch.bincount(index.flatten(), minlength=EQUALISATION_BINS).double()
    return (counts / counts.sum()).cpu().numpy()


def equalise(index, fraction, histogram: np.ndarray):
    """np.interp(d, left bin edges, cumulative histogram), as Deforum equalises, in torch on the map's device."""
    import torch

    cdf = np.cumsum(histogram) / np.sum(histogram)
    # Per bin: the value at its left edge and the slope to the next edge (flat after the last edge).
    start = torch.as_tensor(cdf, dtype=torch.float32, device=index.device)
    slope = torch.as_tensor(np.append(np.diff(cdf), 0.0), dtype=torch.float32, device=index.device)
    return start[index].addcmul_(slope[index], fraction)


def depth_to_z(raw, metric: bool, normalization: str, steady: SteadyDepth | None = None):
    """Deforum's z (1 near .. 2 far) from a model's depth map, and the running state to pass next time.

    Returns (z, state): z is None for a map Deforum would not use (flat depth), and the state is
    None for per-frame normalisation. The first map of a steady render (steady=None) gives the
    same z as per-frame normalisation.
    """
    span = value_range(raw)
    if span is None:
        return None, steady
    index, fraction = histogram_bins(normalise(raw.float(), span))
    own = bin_weights(index)
    if normalization == "per_frame":
        histogram, state = own, None
    else:
        histogram = own if steady is None else (1 - STEADY_WEIGHT) * steady.histogram + STEADY_WEIGHT * own
        state = SteadyDepth(histogram)
    d = equalise(index, fraction, histogram)
    return (d.add_(1.0) if metric else d.neg_().add_(2.0)), state


def legacy_z(raw, adabins=None, midas_weight: float = 1.0):
    """Deforum's legacy z: `w * (50 - d) / 19 + (1 - w) * adabins` (or the raw map with no AdaBins)."""
    z = raw if adabins is None else (50.0 - raw) / 19.0 * midas_weight + adabins * (1.0 - midas_weight)
    return z if value_range(z) is not None else None


# ----------------------------------------------------------------------------------------- per render


@dataclass
class DepthEstimator:
    """A render's depth: its loaded model(s) and how their output becomes z."""

    choice: DepthChoice
    model: DepthModel
    adabins: DepthModel | None = None

    def estimate(self, image: np.ndarray, steady: SteadyDepth | None = None):
        """z for an RGB uint8 frame (H x W float32 numpy, None for flat depth) and the next steady state."""
        raw = self.model.predict(image)
        if self.choice.legacy:
            extra = self.adabins.predict(image) if self.adabins is not None else None
            z, state = legacy_z(raw, extra, self.choice.midas_weight), steady
        else:
            z, state = depth_to_z(raw, self.model.metric, self.choice.normalization, steady)
        return (None if z is None else z.float().cpu().numpy()), state


def load_depth_estimator(choice: DepthChoice, *, device: str | None = None, dtype: Any = None) -> DepthEstimator:
    """Check and load the models of `choice` (each once per process)."""
    check_depth_models(choice)
    adabins = load_depth_model(choice.adabins_model, device=device, dtype=dtype) if choice.adabins_model else None
    return DepthEstimator(choice, load_depth_model(choice.model, device=device, dtype=dtype), adabins)


def depth_image(z: np.ndarray | None, height: int, width: int) -> np.ndarray:
    """A depth map as a grey uint8 image, near white: z 1..2 maps to 255..0 (flat depth is white);
    legacy z outside that range is scaled by its own minimum and maximum."""
    if z is None:
        return np.full((height, width), 255, dtype=np.uint8)
    low, high = float(z.min()), float(z.max())
    if low < 1.0 or high > 2.0:
        z = 1.0 + (z - low) / max(high - low, 1e-8)
    return np.clip(np.rint((2.0 - z) * 255.0), 0, 255).astype(np.uint8)
