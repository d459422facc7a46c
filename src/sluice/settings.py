"""Process settings from the environment and `.env`: the only place that reads env vars."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _env(name: str) -> AliasChoices:
    """A setting read from a standard variable (no SLUICE_ prefix) that keyword arguments can still set."""
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    """What the process needs before the config file is read."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", env_file=".env", extra="ignore")

    config: str | None = None
    api_keys: Annotated[list[SecretStr], NoDecode] = []
    allow_no_auth: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_concurrency: int = Field(4096, ge=1)
    """SLUICE_MAX_CONCURRENCY: the most connections one worker serves at once (granian's backpressure); more wait
    in the listen queue. Each costs ~60 KB while its request is in flight (docs/benchmarks.md, "Memory")."""
    build: str = "dev"
    sched_slice_us: int = Field(100, ge=0)
    """SLUICE_SCHED_SLICE_US: the scheduler slice a worker's threads ask Linux (6.12+) for, in microseconds, so
    hand-offs between them wait less (sched_slice.py); 0 keeps the kernel's default."""
    phoenix_collector_endpoint: str | None = Field(None, validation_alias=_env("PHOENIX_COLLECTOR_ENDPOINT"))
    """Phoenix's base URL (e.g. http://phoenix:6006): traces go to its OTLP/HTTP endpoint (docs/observability.md)."""
    otel_exporter_otlp_endpoint: str | None = Field(None, validation_alias=_env("OTEL_EXPORTER_OTLP_ENDPOINT"))
    """Any OTLP/HTTP collector's base URL, used when no Phoenix endpoint is set; neither means tracing is off."""
    phoenix_api_key: str | None = Field(None, validation_alias=_env("PHOENIX_API_KEY"))
    """Sent to Phoenix as `authorization: Bearer <key>`, as `phoenix.otel.register()` sends it."""
    phoenix_client_headers: str | None = Field(None, validation_alias=_env("PHOENIX_CLIENT_HEADERS"))
    """Headers for Phoenix (`k=v,k2=v2`, URL-encoded values); else OTEL_EXPORTER_OTLP_HEADERS."""
    otel_exporter_otlp_headers: str | None = Field(None, validation_alias=_env("OTEL_EXPORTER_OTLP_HEADERS"))
    otel_exporter_otlp_traces_headers: str | None = Field(
        None, validation_alias=_env("OTEL_EXPORTER_OTLP_TRACES_HEADERS"))
    """Headers for an OTLP collector's traces endpoint (`k=v,…`); they win over OTEL_EXPORTER_OTLP_HEADERS."""
    otel_exporter_otlp_compression: Literal["gzip", "none"] | None = Field(
        None, validation_alias=_env("OTEL_EXPORTER_OTLP_COMPRESSION"))
    otel_exporter_otlp_traces_compression: Literal["gzip", "none"] | None = Field(
        None, validation_alias=_env("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"))
    """`gzip` compresses the span batches (for a remote collector); the traces setting wins."""
    otel_exporter_otlp_certificate: str | None = Field(None, validation_alias=_env("OTEL_EXPORTER_OTLP_CERTIFICATE"))
    otel_exporter_otlp_traces_certificate: str | None = Field(
        None, validation_alias=_env("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"))
    """A PEM file of the CA certificates that verify an https collector (default: the system's); traces wins."""
    otel_exporter_otlp_client_certificate: str | None = Field(
        None, validation_alias=_env("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"))
    otel_exporter_otlp_traces_client_certificate: str | None = Field(
        None, validation_alias=_env("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE"))
    otel_exporter_otlp_client_key: str | None = Field(None, validation_alias=_env("OTEL_EXPORTER_OTLP_CLIENT_KEY"))
    otel_exporter_otlp_traces_client_key: str | None = Field(
        None, validation_alias=_env("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY"))
    """The PEM certificate chain and key the exporter presents to a collector that asks for one (mutual TLS)."""
    openinference_hide_inputs: bool = Field(False, validation_alias=_env("OPENINFERENCE_HIDE_INPUTS"))
    openinference_hide_outputs: bool = Field(False, validation_alias=_env("OPENINFERENCE_HIDE_OUTPUTS"))
    log_format: Literal["json", "console"] = "json"
    """SLUICE_LOG_FORMAT: JSON lines on stdout, or `console` for people (used only when stdout is a TTY)."""
    prometheus_multiproc_dir: str | None = Field(None, validation_alias=_env("PROMETHEUS_MULTIPROC_DIR"))
    data_dir: str = "./data"
    database_url: str | None = None
    """SQLAlchemy URL of the database; default a SQLite file in `data_dir`."""
    admin_key: SecretStr | None = None
    redis_url: str | None = None
    """SLUICE_REDIS_URL: Redis for limits shared by every instance (with `limits.backend` auto or redis)."""
    key_pepper: SecretStr | None = None
    """SLUICE_KEY_PEPPER: the secret every key (managed and static) is hashed with, and every key id stored or shown
    derived from; default a file `<data_dir>/key-pepper`."""

    @property
    def otlp_tls(self) -> dict[str, str | None]:
        """The span exporter's TLS files, as the OTLP exporter reads them: each traces setting wins."""
        return {"ca": self.otel_exporter_otlp_traces_certificate or self.otel_exporter_otlp_certificate,
                "cert": self.otel_exporter_otlp_traces_client_certificate or self.otel_exporter_otlp_client_certificate,
                "key": self.otel_exporter_otlp_traces_client_key or self.otel_exporter_otlp_client_key}

    @model_validator(mode="after")
    def _tls_files_load(self) -> Settings:
        """A missing or unreadable file stops the start with its name, not every export later."""
        from sluice.telemetry.otlp_sender import tls_context

        tls = self.otlp_tls
        if any(tls.values()):
            try:
                tls_context(**tls)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise ValueError(f"the span exporter's TLS files (OTEL_EXPORTER_OTLP_*CERTIFICATE, "
                                 f"OTEL_EXPORTER_OTLP_*CLIENT_KEY) cannot be used: {exc}") from exc
        return self

    @property
    def database(self) -> str:
        """The database URL in effect: SLUICE_DATABASE_URL, else `<data_dir>/sluice.db` (SQLite)."""
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir.rstrip('/')}/sluice.db"

    @field_validator("key_pepper")
    @classmethod
    def _long_pepper(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("SLUICE_KEY_PEPPER must be at least 16 characters (e.g. openssl rand -base64 32)")
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",")]
        return value

    @field_validator("api_keys")
    @classmethod
    def _no_empty_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        if any(not key.get_secret_value() for key in value):
            raise ValueError("SLUICE_API_KEYS contains an empty key")
        return value
