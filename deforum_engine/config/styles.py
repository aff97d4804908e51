"""Prompt styles: named presets that wrap the text prompt and add negatives.

A style is a template with one `{prompt}` slot plus a negative prompt. `none` leaves both
untouched. With an empty prompt (an image prompt at very high influence, say) the slot and the
words that lead into it are dropped, so "cinematic film still of {prompt}, ..." becomes
"cinematic film still, ..." rather than "cinematic film still of , ...".
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from deforum_engine.errors import SettingsError


@dataclass(frozen=True)
class PromptStyle:
    template: str  # contains "{prompt}" once
    negative: str


_COMMON_NEGATIVE = "lowres, blurry, jpeg artifacts, watermark, signature, text"

STYLES: dict[str, PromptStyle] = {
    "none": PromptStyle("{prompt}", ""),
    "cinematic": PromptStyle(
        "cinematic film still of {prompt}, anamorphic lens, shallow depth of field, film grain, moody lighting",
        f"cartoon, illustration, anime, painting, flat lighting, {_COMMON_NEGATIVE}",
    ),
    "anime": PromptStyle(
        "anime artwork of {prompt}, cel shading, vibrant colours, clean line work, studio anime style",
        f"photo, photorealistic, 3d render, realism, {_COMMON_NEGATIVE}",
    ),
    "photographic": PromptStyle(
        "photograph of {prompt}, 35mm, natural light, sharp focus, highly detailed",
        f"drawing, painting, illustration, cartoon, anime, cgi, {_COMMON_NEGATIVE}",
    ),
    "digital art": PromptStyle(
        "digital artwork of {prompt}, concept art, detailed, vivid colours, trending illustration",
        f"photo, photorealistic, {_COMMON_NEGATIVE}",
    ),
    "fantasy art": PromptStyle(
        "fantasy painting of {prompt}, magical, ethereal glow, epic scale, intricate detail",
        f"photo, modern, mundane, {_COMMON_NEGATIVE}",
    ),
    "neon punk": PromptStyle(
        "neon punk scene of {prompt}, cyberpunk, glowing neon lights, magenta and cyan, rain-slick streets",
        f"daylight, pastel, muted colours, {_COMMON_NEGATIVE}",
    ),
    "line art": PromptStyle(
        "line art drawing of {prompt}, clean ink lines, minimal, monochrome, white background",
        f"colour, shading, photo, photorealistic, 3d, {_COMMON_NEGATIVE}",
    ),
    "comic book": PromptStyle(
        "comic book panel of {prompt}, bold outlines, halftone shading, dynamic composition",
        f"photo, photorealistic, {_COMMON_NEGATIVE}",
    ),
    "3d model": PromptStyle(
        "3d render of {prompt}, octane render, global illumination, soft shadows, highly detailed",
        f"flat, 2d, sketch, painting, {_COMMON_NEGATIVE}",
    ),
    "pixel art": PromptStyle(
        "pixel art of {prompt}, 16-bit, limited palette, crisp pixels, retro game",
        f"smooth, photo, photorealistic, {_COMMON_NEGATIVE}",
    ),
    "watercolor": PromptStyle(
        "watercolor painting of {prompt}, soft washes, paper texture, flowing pigments",
        f"photo, 3d render, hard edges, {_COMMON_NEGATIVE}",
    ),
}
STYLE_NAMES: tuple[str, ...] = tuple(STYLES)

# "{prompt}" with the linking word before it and the separator after it, for empty prompts.
_EMPTY_SLOT = re.compile(r"\s*(?:\b(?:of|with|in)\s+)?\{prompt\}\s*[,.]?")


def canonical_style(name: str, setting: str = "prompt_style") -> str:
    """The known style name for `name` (case, '_' and '-' ignored); SettingsError if unknown."""
    key = " ".join(str(name).replace("_", " ").replace("-", " ").lower().split())
    if key in STYLES:
        return key
    hint = difflib.get_close_matches(key, STYLE_NAMES, n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise SettingsError(f"{setting}: unknown style {name!r}{suggestion}; known styles: {', '.join(STYLE_NAMES)}")


def apply_style(name: str, prompt: str, negative: str) -> tuple[str, str]:
    """Wrap `prompt` in the style's template and append the style's negatives to `negative`."""
    style = STYLES[canonical_style(name)]
    prompt = prompt.strip()
    if prompt:
        styled = style.template.replace("{prompt}", prompt)
    else:
        styled = _EMPTY_SLOT.sub(",", style.template, count=1)
        styled = re.sub(r"\s*,\s*(,\s*)*", ", ", styled).strip(" ,")
    negatives = [part for part in (negative.strip(), style.negative) if part]
    return styled, ", ".join(negatives)
