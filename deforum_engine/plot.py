"""Motion curves of a plan as a picture: easier to judge than 500 numbers."""
from __future__ import annotations

from pathlib import Path

from .errors import SettingsError
from .plan import FramePlan

MOTION_2D = (
    ("zoom", ("zoom",)),
    ("rotation (deg/frame)", ("angle",)),
    ("translation (px/frame)", ("translation_x", "translation_y")),
)
MOTION_3D = (
    ("3D translation (Deforum units/frame; + moves the camera right, up, in)",
     ("translation_x", "translation_y", "translation_z")),
    ("3D rotation (deg/frame)", ("rotation_3d_x", "rotation_3d_y", "rotation_3d_z")),
    ("field of view (deg)", ("fov",)),
)
FLIP = (("perspective flip (deg)", ("perspective_flip_theta", "perspective_flip_phi", "perspective_flip_gamma")),)
DIFFUSION = (
    ("strength / noise", ("strength", "noise")),
    ("cfg scale / steps", ("cfg_scale", "steps")),
)


def panels(plan: FramePlan) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The panels a plan's animation mode uses: 2D motion, or the 3D camera (with the flip when it is on)."""
    if plan.settings.animation_mode == "3D":
        return MOTION_3D + (FLIP if plan.settings.enable_perspective_flip else ()) + DIFFUSION
    return MOTION_2D + FLIP + DIFFUSION


def plot_plan(plan: FramePlan, path: Path) -> Path:
    """Draw the per-frame motion and diffusion values of `plan` into a PNG at `path`."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SettingsError("plot needs matplotlib: pip install -c constraints.txt 'deforum-engine[plot]'") from None
    frames = range(plan.frame_count)
    chosen = panels(plan)
    figure, axes = plt.subplots(len(chosen), 1, figsize=(10, 2.2 * len(chosen)), sharex=True)
    for axis, (title, names) in zip(axes, chosen):
        for name in names:
            axis.plot(frames, plan.values[name], label=name, linewidth=1.2)
        for key in plan.diffused_frames if plan.settings.diffusion_cadence > 1 else ():
            axis.axvline(key, color="0.85", linewidth=0.5, zorder=0)
        axis.set_title(title, fontsize=9, loc="left")
        axis.legend(fontsize=7, loc="upper right")
        axis.grid(alpha=0.3)
    axes[-1].set_xlabel(f"frame ({plan.settings.fps:g} fps)")
    mode = " (3D camera)" if plan.settings.animation_mode == "3D" else ""
    figure.suptitle(f"{plan.settings.name or 'settings'}: {plan.frame_count} frames{mode}", fontsize=11)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
