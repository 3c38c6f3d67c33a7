"""Every setting Backburner reads, in one typed object, read once from env or `.env`.

Settings are passed explicitly to the parts that need them; nothing below this module reads
`os.environ` on its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./backburner.db"


# The kinds of personal data backburner.jobs.pii finds (a unit test keeps the two equal).
PII_KINDS = frozenset({"email", "phone", "card", "iban", "ssn", "ip", "dob"})


class Settings(BaseSettings):
    """Backburner's configuration (`BACKBURNER_*` environment variables)."""

    model_config = SettingsConfigDict(
        env_prefix="BACKBURNER_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str = DEFAULT_DATABASE_URL
    database_pool_size: int = Field(default=10, ge=1)
    # PgBouncer (transaction pooling) in front of PostgreSQL: DATABASE_URL goes through it,
    # nothing prepared is kept; LISTEN needs a direct connection (DATABASE_LISTEN_URL).
    database_transaction_pooler: bool = False
    database_listen_url: str | None = None

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    public_url: str | None = None
    # TLS: serve https with this certificate (PEM) and key; or terminate TLS in a proxy.
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    # Addresses of reverse proxies whose X-Forwarded-For/-Proto are believed (the client
    # address for throttling and logs; https links and Secure cookies). Empty: none.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["127.0.0.1"])

    # Worker
    worker_concurrency: int = Field(default=100, ge=1)
    claim_batch_size: int = Field(default=100, ge=1, le=1000)
    lease_seconds: float = Field(default=30.0, gt=0)
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    reap_interval_seconds: float = Field(default=5.0, gt=0)
    idle_poll_seconds: float = Field(default=1.0, gt=0)
    cancel_check_seconds: float = Field(default=0.5, gt=0)
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    # The longest wait before asking a throttled or failing provider again (the waits grow
    # from 0.5 s, doubling, each shortened at random by up to half).
    provider_retry_max_seconds: float = Field(default=30.0, gt=0)
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
    # A response still `queued` this long after it was submitted (plus the length of a
    # discounted completion window) is stuck at the provider: cancelled and asked again.
    response_queued_limit_seconds: float = Field(default=900.0, gt=0)

    # Job types
    summarize_chunk_chars: int = Field(default=12_000, ge=500)
    classify_batch_size: int = Field(default=25, ge=1, le=500)
    max_parallel_model_calls: int = Field(default=8, ge=1)
    model: str = "gpt-4.1-mini"
    # Per job type, e.g. {"classify_leads": "gpt-4.1-nano"}; other types use `model`.
    models: dict[str, str] = Field(default_factory=dict)

    # Cost. Prices are USD per 1M tokens by model (or "model@service_tier"), merged over
    # the built-in table: {"my-model": {"input": 1.0, "cached_input": 0.25, "output": 4.0}}.
    prices: dict[str, dict[str, float]] = Field(default_factory=dict)
    # OpenAI's discounts for background completion windows (share of the standard price).
    window_discounts: dict[str, float] = Field(default_factory=lambda: {"2h": 0.30, "8h": 0.40})
    # Discounted windows a job with a deadline may use; empty: always "soonest".
    completion_windows: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["2h", "8h"])
    # Sent as `service_tier` on every model call (e.g. "flex"); unset: the API's default.
    service_tier: str | None = None

    # Limits. Requests and tokens per minute by model ("*" for any other), one budget for
    # every worker: {"gpt-4.1-mini": {"rpm": 500, "tpm": 200000}}.
    rate_limits: dict[str, dict[str, int]] = Field(default_factory=dict)
    # Jobs one owner may have running at once, and USD per calendar month (UTC) it may
    # spend on model calls; per-owner values (`backburner owners set`) override these.
    owner_max_running: int | None = Field(default=None, ge=1)
    owner_monthly_budget_usd: float | None = Field(default=None, ge=0)

    # API limits
    max_request_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    max_document_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    # Reading a PDF (in worker processes; see backburner.jobs.parsing): its limits.
    document_parse_seconds: float = Field(default=30.0, gt=0)
    document_parse_memory_mb: int = Field(default=1024, ge=128)
    document_max_pages: int = Field(default=5_000, ge=1)
    document_max_stream_mb: int = Field(default=64, ge=1)
    document_parse_processes: int = Field(default=0, ge=0)  # 0: min(4, CPUs)
    # Pages with no text layer are read with Tesseract (Debian `tesseract-ocr`) in the same
    # worker processes; these are the languages it is given (installed traineddata).
    ocr_languages: str = Field(default="eng", pattern=r"^[A-Za-z_]{3,12}(\+[A-Za-z_]{3,12})*$")
    ocr_max_pages: int = Field(default=200, ge=0)  # 0: never OCR
    ocr_program: str = "tesseract"  # the Tesseract program: a name on PATH, or a path

    # Object storage for originals and large results (backburner.storage): a directory
    # beside the SQLite file unless STORAGE_URL says s3://bucket/prefix or a directory.
    # S3 credentials: these, or the AWS_* environment the S3 client reads itself.
    storage_url: str | None = None
    storage_endpoint: str | None = Field(default=None, pattern=r"^https?://\S+$")
    storage_region: str | None = None
    storage_access_key_id: str | None = None
    storage_secret_access_key: SecretStr | None = None
    # A result larger than this (JSON bytes) is stored as an object and linked (result_url).
    result_inline_bytes: int = Field(default=256 * 1024, ge=1024)
    # How often a worker deletes objects no row names any more (deleted documents, jobs).
    object_sweep_seconds: float = Field(default=30.0, gt=0)
    auth_cache_seconds: float = Field(default=5.0, ge=0)
    # Requests a minute per API key, shared by every API process (0: unlimited); admins set
    # an owner's own with PUT /api/owners/{owner}/limits.
    api_requests_per_minute: int = Field(default=1200, ge=0)
    # Requests with unknown keys from one client address per minute before it is refused.
    auth_failures_per_minute: int = Field(default=30, ge=0)
    max_webhook_endpoints: int = Field(default=20, ge=1)
    # The audit trail: how long its events are kept, and how often workers prune.
    audit_retention_days: int = Field(default=400, ge=1)
    # Personal data masked before the model sees it, per job type: "all" (the default for
    # every type), "none", or a list of kinds (email, phone, card, iban, ssn, ip, dob).
    pii_mask: dict[str, str | list[str]] = Field(default_factory=dict)
    # Finished jobs and documents older than this many days are deleted (unset: kept).
    retention_days: int | None = Field(default=None, ge=1)
    retention_check_seconds: float = Field(default=3600.0, gt=0)

    # Quality. Golden datasets of the built-in types (`<type>.jsonl`); unset: the `evals/`
    # directory of the source checkout Backburner runs from.
    evals_dir: Path | None = None
    # How often workers look for due schedules, and for evaluation runs to score.
    schedule_check_seconds: float = Field(default=5.0, gt=0)
    eval_check_seconds: float = Field(default=2.0, gt=0)

    # Notifications (webhooks, e-mail, Slack, Teams) and their delivery.
    notify_dispatcher: bool = True  # run a dispatcher in `serve` and `worker`
    notify_concurrency: int = Field(default=64, ge=1)
    notify_retry_hours: float = Field(default=24.0, gt=0)
    notify_retry_base_seconds: float = Field(default=5.0, gt=0)
    # A delivery a dispatcher claimed is sent again by another after this long without a
    # result (its dispatcher died mid-send).
    notify_lease_seconds: float = Field(default=60.0, gt=0)
    notify_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    notify_timeout_seconds: float = Field(default=10.0, gt=0)
    # Results larger than this (bytes of JSON) are linked, not inlined, in notifications.
    notify_result_inline_bytes: int = Field(default=64 * 1024, ge=0)
    webhook_secret_overlap_hours: float = Field(default=24.0, ge=0)
    # Hosts or CIDRs let through the SSRF guard (e.g. 127.0.0.1,localhost); off by default.
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_allow_http: bool = False
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_tls: bool = False  # implicit TLS (port 465)
    smtp_from: str = "backburner@localhost"

    # Encryption at rest: `id:base64key,…` (32-byte AES keys), the first seals, all open.
    # Unset: a key file (this path, or beside an SQLite database, created on first start).
    # Secrets below (SMTP password, OpenAI key and webhook secret) may be given sealed.
    encryption_keys: SecretStr | None = None
    encryption_key_file: str | None = None

    # Where a person whose job failed can ask for help: a "Contact support" link on the
    # job page (an https:// or mailto: URL). Unset: no link.
    support_url: str | None = Field(default=None, pattern=r"^(https?://|mailto:)\S+$")

    log_level: str = "INFO"
    log_format: str = Field(default="auto", pattern="^(auto|json|text)$")

    @field_validator("pii_mask")
    @classmethod
    def _known_pii_kinds(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        for job_type, kinds in value.items():
            chosen = {kinds} if isinstance(kinds, str) else set(kinds)
            allowed = PII_KINDS | ({"all", "none"} if isinstance(kinds, str) else set())
            if chosen - allowed:
                raise ValueError(
                    f"pii_mask[{job_type!r}]: unknown {sorted(chosen - allowed)}; use all, "
                    f"none, or a list of {sorted(PII_KINDS)}"
                )
        return value

    @field_validator(
        "plugins", "completion_windows", "webhook_allowed_hosts", "trusted_proxies", mode="before"
    )
    @classmethod
    def _split_list(cls, value: object) -> object:
        # Env values come as text: a JSON list, or friendlier, comma-separated module names.
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("completion_windows")
    @classmethod
    def _known_windows(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - {"2h", "8h"})
        if unknown:
            raise ValueError(f"unknown completion windows {unknown}; choose from 2h, 8h")
        return value

    @field_validator("rate_limits")
    @classmethod
    def _known_limits(cls, value: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        for model, limits in value.items():
            unknown = sorted(set(limits) - {"rpm", "tpm"})
            if unknown or any(v < 1 for v in limits.values()):
                raise ValueError(f"rate_limits[{model!r}]: give rpm and/or tpm, each >= 1")
        return value

    def model_for(self, job_type: str) -> str:
        return self.models.get(job_type, self.model)

    def evals_directory(self) -> Path | None:
        """Where the golden datasets are: `evals_dir`, else the checkout's `evals/`."""
        if self.evals_dir is not None:
            return self.evals_dir
        checkout = Path(__file__).resolve().parents[2] / "evals"
        return checkout if checkout.is_dir() else None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
