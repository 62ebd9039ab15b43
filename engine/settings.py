"""Configuration from SVCFLOW_* environment variables (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
    # signed webhooks (flows/notify.py WebhookNotifier): warnings, breaches and escalations as JSON POSTs
    webhook_urls: Annotated[list[str], NoDecode] = Field(default_factory=list,
                                                         description="comma-separated URLs to POST to")
    webhook_secret: SecretStr | None = Field(default=None, description="HMAC-SHA256 key shared with the receivers")
    webhook_attempts: int = Field(default=5, ge=1, description="tries per delivery before it is dropped")
    webhook_backoff_seconds: float = Field(default=1.0, ge=0, description="first retry delay; doubles each time")
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, description="per request")
    webhook_queue_size: int = Field(default=1000, ge=1, description="deliveries waiting; more are dropped")
    # input limits (engine/run/limits.py): refused with a clear error before anything is stored
    max_value_chars: int = Field(default=10_000, ge=1, description="one field value: characters of text or JSON")
    max_data_chars: int = Field(default=200_000, ge=1, description="a case's whole data, as JSON characters")
    max_name_chars: int = Field(default=100, ge=1, le=100, description="actor, assignee and role names")
    max_id_chars: int = Field(default=64, ge=1, le=64, description="case ids, message names, field names")

    # the user directory (engine/access.py)
    directory: str = Field(default="auto", pattern="^(auto|required)$",
                           description="'auto': user and role checks once the directory has a user; 'required': always")
    supervisor_roles: list[str] = Field(
        default_factory=lambda: ["team_supervisor", "department_manager", "service_director", "repair_supervisor",
                                 "credit_manager", "senior_management"],
        description="roles that may assign others' tasks, update any case and cancel cases (JSON list)")
    session_secret: str | None = Field(default=None, description="key signing inbox session cookies")
    token_cache_seconds: float = Field(
        default=5.0, ge=0, le=300,
        description="the server re-reads a live API token at most this often: a revocation by another process "
                    "(svcflow tokens revoke) is refused within this time (0: every request reads it)")

    @field_validator("webhook_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        """SVCFLOW_WEBHOOK_URLS=https://a/hook,https://b/hook (a JSON list works too)."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value


def get_settings() -> Settings:
    return Settings()
