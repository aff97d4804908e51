"""Issue 21's rough edges, each as a user meets it: the command, the message it prints."""
import subprocess
import sys

import pytest

from deforum_engine.backends.preview import PreviewBackend
from deforum_engine.plan import build_plan
from deforum_engine.settings import validate_settings
from deforum_engine.summary import describe_plan

SMALL = {"W": 64, "H": 64, "max_frames": 6}


def cli(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "deforum_engine.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def test_a_preview_summary_does_not_talk_about_diffusion():
    summary = describe_plan(build_plan(validate_settings({**SMALL, "diffusion_cadence": 2})), PreviewBackend())
    assert "MOTION PREVIEW" in summary and "4 key frames (cadence 2)" in summary
    for word in ("steps", "denoise", "diffused", "img2img"):
        assert word not in summary, summary
