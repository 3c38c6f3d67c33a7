"""Every setting Backburner reads, in one typed object, read once from env or `.env`.

Settings are passed explicitly to the parts that need them; nothing below this module reads
`os.environ` on its own.
"""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./backburner.db"


class Settings(BaseSettings):
    """Backburner's configuration (`BACKBURNER_*` environment variables)."""

    model_config = SettingsConfigDict(
        env_prefix="BACKBURNER_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str = DEFAULT_DATABASE_URL
    database_pool_size: int = Field(default=10, ge=1)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    public_url: str | None = None

    # Worker
    worker_concurrency: int = Field(default=100, ge=1)
    claim_batch_size: int = Field(default=100, ge=1, le=1000)
    lease_seconds: float = Field(default=30.0, gt=0)
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    reap_interval_seconds: float = Field(default=5.0, gt=0)
    idle_poll_seconds: float = Field(default=1.0, gt=0)
    cancel_check_seconds: float = Field(default=0.5, gt=0)
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    # Modules with a `register(registry)` function, e.g. BACKBURNER_PLUGINS=myapp.jobs,other
    plugins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Offline engine (the default provider)
    offline_latency_s: float = Field(default=2.0, ge=0)

    # OpenAI: the SDK's own variable names. With a key, model calls go to OpenAI (or to
    # OPENAI_BASE_URL, e.g. `backburner emulator`); without one, to the offline engine.
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "openai_api_key")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "openai_base_url")
    )
    openai_timeout_seconds: float = Field(default=60.0, gt=0)
    # With a secret, POST /webhooks/openai accepts OpenAI's signed response.* events and
    # wakes the job at once; polling stays as the safety net.
    openai_webhook_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("OPENAI_WEBHOOK_SECRET", "openai_webhook_secret"),
    )

    # Provider tracking
    poll_initial_seconds: float = Field(default=0.25, gt=0)
    poll_max_seconds: float = Field(default=5.0, gt=0)
    poll_budget_per_second: float = Field(default=100.0, gt=0)

    # Job types
    summarize_chunk_chars: int = Field(default=12_000, ge=500)
    classify_batch_size: int = Field(default=25, ge=1, le=500)
    max_parallel_model_calls: int = Field(default=8, ge=1)
    model: str = "gpt-4.1-mini"

    # API limits
    max_request_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    max_document_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    auth_cache_seconds: float = Field(default=5.0, ge=0)

    log_level: str = "INFO"
    log_format: str = Field(default="auto", pattern="^(auto|json|text)$")

    @field_validator("plugins", mode="before")
    @classmethod
    def _split_plugins(cls, value: object) -> object:
        # Env values come as text: a JSON list, or friendlier, comma-separated module names.
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
