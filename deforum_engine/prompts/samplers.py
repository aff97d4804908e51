"""Deforum / AUTOMATIC1111 sampler names mapped to diffusers schedulers.

Light at import: diffusers is imported inside `make_scheduler` only, so the plan can check every
frame's sampler (`check_sampler`) without loading torch.

Each name maps to a diffusers scheduler class plus config overrides; "Karras" variants set
`use_karras_sigmas`, the DPM++ family picks the solver with `algorithm_type`. Approximations,
where diffusers has no exact twin: "DPM++ 2S a" is the (non-ancestral) single-step DPM-Solver++,
"PLMS" is PNDM without its Runge-Kutta warm-up. "DPM fast" and "DPM adaptive" have no diffusers
equivalent and are refused with a suggestion.
"""
from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass, field
from typing import Any

from deforum_engine.errors import SettingsError


@dataclass(frozen=True)
class SamplerSpec:
    scheduler: str  # diffusers class name
    overrides: dict[str, Any] = field(default_factory=dict)
    needs: str | None = None  # an optional package the scheduler imports


def _karras(scheduler: str, karras: bool, **overrides: Any) -> SamplerSpec:
    return SamplerSpec(scheduler, {"use_karras_sigmas": karras, **overrides})


_DPMPP = {"algorithm_type": "dpmsolver++", "solver_order": 2}
_DPMPP_SDE = {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}

SAMPLERS: dict[str, SamplerSpec] = {
    "Euler a": SamplerSpec("EulerAncestralDiscreteScheduler"),
    "Euler": _karras("EulerDiscreteScheduler", False),
    "LMS": _karras("LMSDiscreteScheduler", False),
    "LMS Karras": _karras("LMSDiscreteScheduler", True),
    "Heun": _karras("HeunDiscreteScheduler", False),
    "DPM2": _karras("KDPM2DiscreteScheduler", False),
    "DPM2 Karras": _karras("KDPM2DiscreteScheduler", True),
    "DPM2 a": _karras("KDPM2AncestralDiscreteScheduler", False),
    "DPM2 a Karras": _karras("KDPM2AncestralDiscreteScheduler", True),
    "DPM++ 2S a": _karras("DPMSolverSinglestepScheduler", False, lower_order_final=True, **_DPMPP),
    "DPM++ 2S a Karras": _karras("DPMSolverSinglestepScheduler", True, lower_order_final=True, **_DPMPP),
    "DPM++ 2M": _karras("DPMSolverMultistepScheduler", False, **_DPMPP),
    "DPM++ 2M Karras": _karras("DPMSolverMultistepScheduler", True, **_DPMPP),
    "DPM++ SDE": SamplerSpec("DPMSolverSDEScheduler", {"use_karras_sigmas": False}, needs="torchsde"),
    "DPM++ SDE Karras": SamplerSpec("DPMSolverSDEScheduler", {"use_karras_sigmas": True}, needs="torchsde"),
    "DPM++ 2M SDE": _karras("DPMSolverMultistepScheduler", False, **_DPMPP_SDE),
    "DPM++ 2M SDE Karras": _karras("DPMSolverMultistepScheduler", True, **_DPMPP_SDE),
    "DDIM": SamplerSpec("DDIMScheduler"),
    "PLMS": SamplerSpec("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": _karras("UniPCMultistepScheduler", False),
    "DEIS": _karras("DEISMultistepScheduler", False),
    "LCM": SamplerSpec("LCMScheduler"),
}
SAMPLER_NAMES: tuple[str, ...] = tuple(SAMPLERS)

# Other spellings users paste: Deforum notebook / k-diffusion function names, Stability SDK names.
_ALIASES = {
    "euler_a": "Euler a", "euler_ancestral": "Euler a", "k_euler_ancestral": "Euler a",
    "euler": "Euler", "k_euler": "Euler",
    "lms": "LMS", "klms": "LMS", "k_lms": "LMS",
    "heun": "Heun", "k_heun": "Heun",
    "dpm2": "DPM2", "k_dpm_2": "DPM2",
    "dpm2_a": "DPM2 a", "dpm2_ancestral": "DPM2 a", "k_dpm_2_ancestral": "DPM2 a",
    "dpmpp_2s_a": "DPM++ 2S a", "dpmpp_2s_ancestral": "DPM++ 2S a", "k_dpmpp_2s_ancestral": "DPM++ 2S a",
    "dpmpp_2m": "DPM++ 2M", "k_dpmpp_2m": "DPM++ 2M",
    "dpmpp_sde": "DPM++ SDE", "dpmpp_2m_sde": "DPM++ 2M SDE",
    "ddim": "DDIM", "plms": "PLMS", "unipc": "UniPC", "deis": "DEIS", "lcm": "LCM",
}
_NO_EQUIVALENT = {"dpm fast", "dpm adaptive", "dpm_fast", "dpm_adaptive", "k_dpm_fast", "k_dpm_adaptive"}

_BY_KEY = {name.lower(): name for name in SAMPLER_NAMES} | _ALIASES


def check_sampler(name: str, setting: str = "sampler") -> str:
    """The canonical sampler name for `name` (case-insensitive); SettingsError naming `setting` if unknown."""
    key = " ".join(str(name).split()).lower()
    canonical = _BY_KEY.get(key)
    if canonical is None:
        raise SettingsError(_unknown_message(name, key, setting))
    needs = SAMPLERS[canonical].needs
    if needs and importlib.util.find_spec(needs) is None:
        raise SettingsError(
            f"{setting}: {canonical!r} needs the {needs} package (pip install {needs}); "
            "or use 'DPM++ 2M SDE', which needs nothing extra"
        )
    return canonical


def _unknown_message(name: str, key: str, setting: str) -> str:
    known = ", ".join(SAMPLER_NAMES)
    if key in _NO_EQUIVALENT:
        return f"{setting}: {name!r} has no diffusers equivalent; use 'DPM++ 2M Karras'. Known samplers: {known}"
    hint = difflib.get_close_matches(key, list(_BY_KEY), n=1)
    suggestion = f" (did you mean {_BY_KEY[hint[0]]!r}?)" if hint else ""
    return f"{setting}: unknown sampler {name!r}{suggestion}; known samplers: {known}"


def make_scheduler(name: str, base_config: Any):
    """Build the diffusers scheduler for sampler `name` from a pipeline's scheduler config."""
    import diffusers

    spec = SAMPLERS[check_sampler(name)]
    scheduler_class = getattr(diffusers, spec.scheduler)
    return scheduler_class.from_config(base_config, **spec.overrides)


class SchedulerCache:
    """One scheduler object per sampler name, built from one pipeline's base scheduler config."""

    def __init__(self, base_config: Any):
        self.base_config = base_config
        self._schedulers: dict[str, Any] = {}

    def get(self, name: str):
        """The cached scheduler for `name`, built on first use."""
        scheduler = self._schedulers.get(name)
        if scheduler is None:
            scheduler = self._schedulers[name] = make_scheduler(name, self.base_config)
        return scheduler


def step_counts(steps: int, denoise: float) -> tuple[int, int]:
    """(length of the noise schedule, denoising steps that really run) for an img2img frame.

    AUTOMATIC1111's count, which Deforum renders with (img2img_fix_steps off): a schedule of `steps`
    steps of which the last t_enc + 1 run, t_enc = int(min(denoise, 0.999) * steps). Never zero: at
    denoise 0 the last, least noisy step still runs. The default strength 0.65 (denoise 0.35) runs
    int(8.75) + 1 = 9 of 25 steps.
    """
    steps = max(int(steps), 1)
    t_enc = max(int(min(float(denoise), 0.999) * steps), 0)
    return steps, t_enc + 1
