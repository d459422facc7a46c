"""Project plugins: small FastAPI apps mounted at `/projects/{name}` that call upstreams through the gateway."""

from __future__ import annotations

from importlib.metadata import entry_points

from sluice.config import SluiceConfig

ENTRY_POINT_GROUP = "sluice.projects"


def any_to_mount(config: SluiceConfig) -> bool:
    """Whether the config or an installed entry point names a project, without importing one."""
    return bool(config.projects) or (config.discover_projects and bool(entry_points(group=ENTRY_POINT_GROUP)))
