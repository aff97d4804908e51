"""Motion curves of a plan as a picture: easier to judge than 500 numbers."""
from __future__ import annotations

from pathlib import Path

from deforum_engine.config.frame_values import read_by
from deforum_engine.errors import SettingsError
from deforum_engine.plan.frame_plan import FramePlan

_TRANSLATION_UNITS = {"2D": "px/frame", "3D": "Deforum units/frame; + moves the camera right, up, in"}


def panels(plan: FramePlan) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The panels a plan's animation mode uses, from the table of per-frame values: its motion (the
    perspective flip in 3D only when it is on), then strength / noise and cfg / steps."""
    mode = plan.settings.animation_mode
    grouped: dict[str, list[str]] = {}
    for value in read_by(mode):
        flip_off = value.name.startswith("perspective_flip") and mode == "3D" and not plan.settings.enable_perspective_flip
        if value.panel and not flip_off:
            grouped.setdefault(value.panel, []).append(value.name)
    titles = {"translation": f"translation ({_TRANSLATION_UNITS['3D' if mode == '3D' else '2D']})"}
    return tuple((titles.get(title, title), tuple(names)) for title, names in grouped.items())


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
