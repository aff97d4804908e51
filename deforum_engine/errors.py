"""The engine's error types: one for bad input, one for failures while rendering."""


class SettingsError(ValueError):
    """Bad input: a setting, schedule, keyframe or file. The message names it and says what is allowed."""


class RenderError(RuntimeError):
    """A render could not go on (a model that will not load, ffmpeg failing, NaN frames...).

    Frames already written stay on disk; the message says what failed and what to do.
    """


class RenderCancelled(RenderError):
    """A render stopped on request (its `cancel` event was set). Frames already written stay on disk
    and the folder resumes like any stopped render."""
