"""Configuration from SVCFLOW_* environment variables (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.definition.library import DEFAULT_DIR


class Settings(BaseSettings):
    """Every knob of svcflow; the database defaults to a SQLite file in the working directory."""

    model_config = SettingsConfigDict(env_prefix="SVCFLOW_", extra="ignore")

    database_url: str = Field(default="sqlite:///svcflow.db", description="SQLAlchemy URL of the store")
    process_dir: Path = Field(default=DEFAULT_DIR, description="directory of process definitions")
    display_timezone: str = Field(default="Asia/Shanghai", description="zone the CLI shows times in")
    sweep_interval_seconds: int = Field(default=60, ge=1, description="how often the escalation sweep runs")
    clock: str = Field(default="system", description="'system', or 'accelerated|START|ORIGIN|FACTOR' (demo)")
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_sender: str = "svcflow@localhost"
    role_emails: dict[str, list[str]] = Field(default_factory=dict, description="role -> e-mail addresses (JSON)")


def get_settings() -> Settings:
    return Settings()
