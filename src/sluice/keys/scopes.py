"""Checks a key's settings against the config: scopes name real models, providers, projects and services; expiry
is ahead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points

from sluice.config import SluiceConfig
from sluice.errors import InvalidRequest
from sluice.keys.records import KeySettings

PROJECT_ENTRY_POINTS = "sluice.projects"


def known_names(config: SluiceConfig) -> dict[str, set[str]]:
    """What each scope may name: public model names and aliases, providers, mountable projects, and services."""
    projects = {project.name for project in config.projects}
    if config.discover_projects:
        projects.update(point.name for point in entry_points(group=PROJECT_ENTRY_POINTS))
    return {
        "models": {name for model in config.models for name in (model.name, *model.aliases)},
        "providers": set(config.providers),
        "projects": projects,
        "services": set(config.services),
    }


def check_settings(settings: KeySettings, config: SluiceConfig, *, now: datetime | None = None) -> None:
    """InvalidRequest (400) naming the field that refers to something this gateway does not have."""
    for field, known in known_names(config).items():
        unknown = sorted(set(getattr(settings, field) or ()) - known)
        if unknown:
            listed = ", ".join(sorted(known)) or "none"
            raise InvalidRequest(f"Invalid value for '{field}': unknown {field[:-1]} {unknown[0]!r} (known: {listed}).",
                                 param=field, code="unknown_scope")
    if settings.expires_at is not None and settings.expires_at <= (now or datetime.now(UTC)):
        raise InvalidRequest("Invalid value for 'expires_at': the time is in the past.", param="expires_at")


def expiry(expires_at: datetime | None, expires_in_days: float | None, now: datetime | None = None
           ) -> datetime | None:
    """The expiry time from either form (not both); naive times are UTC."""
    if expires_at is not None and expires_in_days is not None:
        raise InvalidRequest("Give 'expires_at' or 'expires_in_days', not both.", param="expires_in_days")
    if expires_in_days is not None:
        try:
            return (now or datetime.now(UTC)) + timedelta(days=expires_in_days)
        except OverflowError:  # past datetime's year 9999 (or timedelta's range)
            raise InvalidRequest("Invalid value for 'expires_in_days': the time would be past the year 9999.",
                                 param="expires_in_days") from None
    if expires_at is not None and expires_at.tzinfo is None:
        return expires_at.replace(tzinfo=UTC)
    return expires_at
