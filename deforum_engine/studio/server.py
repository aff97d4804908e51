"""`deforum-engine serve`: the studio's app under uvicorn."""
from __future__ import annotations

import socket
import sys

from deforum_engine.errors import SettingsError
from deforum_engine.studio.app import create_app
from deforum_engine.studio.config import StudioConfig, check_exposure


def serve(config: StudioConfig) -> None:
    """Run the studio until Ctrl-C; a render running then resumes at the next start."""
    import uvicorn


    check_exposure(config.host, config.token, config.api_auth)
    check_port_free(config.host, config.port)
    app = create_app(config)
    shown = f"[{config.host}]" if ":" in config.host and not config.host.startswith("[") else config.host
    url = f"http://{shown}:{config.port}/" + (f"?token={config.token}" if config.token else "")
    mode = "motion previews only" if config.preview_only else f"model {config.model or 'default'}"
    for notice in app.state.studio.notices:
        print(f"warning: {notice}", file=sys.stderr)
    print(f"deforum-engine studio on {url} ({mode}; data in {app.state.studio.config.data})", file=sys.stderr)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", timeout_graceful_shutdown=5)


def check_port_free(host: str, port: int) -> None:
    """A port another program holds is one line, before the studio says where it is."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise SettingsError(f"serve: {host}:{port} is in use or not available ({error.strerror}); "
                                f"stop what holds it or choose another with --port") from None
