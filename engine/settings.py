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
    directory: str = Field(default="auto", pattern="^(auto|required)$",
                           description="'auto': user and role checks once the directory has a user; 'required': always")
    supervisor_roles: list[str] = Field(
        default_factory=lambda: ["team_supervisor", "department_manager", "service_director", "repair_supervisor",
                                 "credit_manager", "senior_management"],
        description="roles that may assign others' tasks, update any case and cancel cases (JSON list)")
    session_secret: str | None = Field(default=None, description="key signing inbox session cookies")


def get_settings() -> Settings:
    return Settings()
