"""Renders that stop at a known frame, so kill and Ctrl-C tests never race the clock.

`stopped_render` runs `python tests/stopping.py --after N --marker FILE CLI-ARGS...`, which is
`deforum-engine CLI-ARGS` with its backend wrapped in `StopAfter`: after N frames have been
generated, the render writes FILE and waits (the frame writer keeps going) until the test kills
or interrupts it.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from polling import wait_for


class StopAfter:
    """A backend that behaves like `inner` for `frames` generate calls, then blocks for good."""

    def __init__(self, inner, frames: int, marker: Path) -> None:
        self.inner, self.frames, self.marker = inner, frames, marker
        self.name, self.is_preview = inner.name, inner.is_preview

    def begin(self, context) -> None:
        self.inner.begin(context)

    def generate(self, request):
        if self.frames == 0:
            self.marker.write_text(str(request.index))
            while True:  # until SIGKILL or SIGINT (KeyboardInterrupt is raised out of the sleep)
                time.sleep(3600)
        self.frames -= 1
        return self.inner.generate(request)


def stopped_render(folder: Path, settings_path: Path, after: int, *extra: str, env=None) -> subprocess.Popen:
    """`deforum-engine render` that blocks for good once `after` frames are generated (so it can
    never finish before the test stops it); returns once it is blocked."""
    marker = folder.with_name(folder.name + ".stopped")
    process = subprocess.Popen([sys.executable, __file__, "--after", str(after), "--marker", str(marker),
                                "render", str(settings_path), "--out", str(folder), *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_for(lambda: marker.exists() or process.poll() is not None)
    assert process.poll() is None, process.communicate()[1]
    return process



def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--after", type=int, required=True)
    parser.add_argument("--marker", type=Path, required=True)
    args, cli_args = parser.parse_known_args(argv)

    from deforum_engine import cli

    from deforum_engine.rendering import recipe as rendering

    make = rendering.make_backend
    rendering.make_backend = lambda settings, preview: StopAfter(make(settings, preview), args.after, args.marker)
    return cli.main(cli_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
