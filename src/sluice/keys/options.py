"""The `keys:` section of sluice.yaml: managed keys (in the database) and how long lookups are cached."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class KeysConfig(BaseModel):
    """Managed API keys live in the request log's database (`request_log.database_url` or SLUICE_DATABASE_URL)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    managed: bool = True
    """Accept keys created with `sluice keys create` or `POST /admin/keys`; false accepts only static keys."""
    cache_ttl_seconds: float = Field(5.0, ge=0, le=300)
    """How long a lookup (hit or miss) is reused; a revocation reaches every instance within this time."""
    cache_size: int = Field(10_000, ge=1)
    """Entries kept per kind (known keys, unknown keys); unknown keys beyond it evict the oldest ones."""
    lookup_timeout_seconds: float = Field(2.0, gt=0, le=30)
    """A lookup that takes longer answers 503 rather than hold the request."""
