"""One settings object, read from the environment (prefix ``AGENTLEDGER_``) and passed
explicitly to whatever needs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTLEDGER_", extra="ignore")

    home: Path = Field(
        default=Path(".agentledger"), description="where the ledger and sandbox live"
    )
    db: Path | None = Field(default=None, description="the SQLite ledger (default: HOME/ledger.db)")
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    sqlite_busy_timeout_s: float = Field(
        default=30.0, ge=0, description="how long to wait for a ledger another process locks"
    )
    sandbox: Path | None = Field(
        default=None, description="tools' file sandbox (default: HOME/sandbox)"
    )

    # Override the workflow's default model without editing the file.
    model_provider: str | None = None
    model_name: str | None = None
    model_base_url: str | None = None
    model_api_key_env: str | None = None
    prices_file: Path | None = None

    clickhouse_url: str | None = None

    # Whether the primary log keeps raw personal data and secrets (a workflow may say too).
    primary_log: Literal["masked", "raw"] = "masked"
    vault: Path | None = Field(
        default=None, description="raw values behind log placeholders (default: HOME/vault.db)"
    )

    # Guard-rail defaults; a workflow file may set its own per agent and per task.
    warn_iterations: int = 10
    max_iterations: int = 15
    # Task-wide ceilings no plan, repair or retry can raise (workflow `limits` may set them).
    max_llm_calls: int = Field(default=500, ge=1)
    max_events: int = Field(default=5000, ge=1)
    # A task with a cost budget making a call no price is known for: warn once, or refuse.
    unpriced_calls: Literal["warn", "refuse"] = "warn"

    # Ownership and shutdown of a run (docs/operations.md).
    lease_stale_after_s: float = Field(
        default=30.0, gt=0, description="a task lease not renewed for this long may be taken"
    )
    shutdown_grace_s: float = Field(
        default=10.0, ge=0, description="on SIGTERM/SIGINT, how long in-flight calls may finish"
    )
    max_goal_chars: int = Field(
        default=20_000, ge=1, le=200_000, description="the longest goal `run` accepts"
    )

    @property
    def ledger_path(self) -> Path:
        return self.db if self.db is not None else self.home / "ledger.db"

    @property
    def vault_path(self) -> Path:
        return self.vault if self.vault is not None else self.home / "vault.db"

    @property
    def sandbox_dir(self) -> Path:
        return self.sandbox if self.sandbox is not None else self.home / "sandbox"

    def model_overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.model_provider:
            out["provider"] = self.model_provider
        if self.model_name:
            out["model"] = self.model_name
        if self.model_base_url:
            out["base_url"] = self.model_base_url
        if self.model_api_key_env:
            out["api_key_env"] = self.model_api_key_env
        return out
