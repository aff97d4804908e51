"""What `deforum-engine serve` was started with, and the data folder's layout."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from pathlib import Path

from deforum_engine.errors import SettingsError

DEFAULT_DATA = Path("studio-data")
TOKEN_ENV = "DEFORUM_ENGINE_TOKEN"


@dataclass(frozen=True)
class StudioConfig:
    """Server options. `preview_only`: no model, every render is a motion preview."""

    data: Path = DEFAULT_DATA
    model: str | None = None  # None: the engine's default model (unless preview_only)
    ip_adapter: str | None = None
    controlnet_models: tuple[str, ...] = ()  # the ControlNet models the units choose among (hub ids, folders, files)
    rife_model: str | None = None  # RIFE weights for interpolation; None: the engine's default
    upscale_model: str | None = None  # a Real-ESRGAN upscaler offered beside Deforum's names (and chosen first)
    preview_only: bool = False
    token: str | None = None
    api_auth: str | None = None  # AUTOMATIC1111's --api-auth: "user:pass[,user2:pass2]", HTTP Basic
    host: str = "127.0.0.1"
    port: int = 7860
    max_body_mb: float = 2.0  # a settings document or batch request; uploads have their own limits
    upload_retention_days: float = 7.0  # uploads no queued or running job uses are deleted after this

    @property
    def renders_dir(self) -> Path:
        return self.data / "renders"

    @property
    def uploads_dir(self) -> Path:
        return self.data / "uploads"

    @property
    def previews_dir(self) -> Path:
        return self.data / "previews"

    @property
    def database(self) -> Path:
        return self.data / "studio.sqlite3"

    def prepare(self) -> StudioConfig:
        """Create the data folders; the paths become absolute so renders never depend on the cwd."""
        config = replace(self, data=Path(self.data).expanduser().resolve())
        for folder in (config.renders_dir, config.uploads_dir, config.previews_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return config


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_api_auth(api_auth: str | None) -> None:
    """--api-auth is one or more user:pass pairs, separated by commas."""
    if api_auth is not None and not all(":" in login and login.split(":", 1)[0] for login in api_auth.split(",")):
        raise SettingsError("serve: --api-auth takes user:password pairs separated by commas, e.g. "
                            "--api-auth alice:s3cret,bob:hunter2")


def check_exposure(host: str, token: str | None, api_auth: str | None = None) -> None:
    """Serving beyond this machine needs a token (or --api-auth logins): anyone who can reach the port could render."""
    check_api_auth(api_auth)
    if not is_loopback(host) and not token and not api_auth:
        raise SettingsError(
            f"serve: --host {host} makes the studio reachable from other machines; give a token with "
            f"--token or the {TOKEN_ENV} environment variable (clients send it as `Authorization: Bearer TOKEN`)"
        )
