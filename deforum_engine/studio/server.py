"""`deforum-engine serve`: the studio's app under uvicorn."""
from __future__ import annotations

import sys

from deforum_engine.studio.config import StudioConfig, check_exposure


def serve(config: StudioConfig) -> None:
    """Run the studio until Ctrl-C; a render running then resumes at the next start."""
    import uvicorn

    from deforum_engine.studio.app import create_app

    check_exposure(config.host, config.token, config.api_auth)
    app = create_app(config)
    shown = f"[{config.host}]" if ":" in config.host and not config.host.startswith("[") else config.host
    url = f"http://{shown}:{config.port}/" + (f"?token={config.token}" if config.token else "")
    mode = "motion previews only" if config.preview_only else f"model {config.model or 'default'}"
    for notice in app.state.studio.notices:
        print(f"warning: {notice}", file=sys.stderr)
    print(f"deforum-engine studio on {url} ({mode}; data in {app.state.studio.config.data})", file=sys.stderr)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", timeout_graceful_shutdown=5)
