"""Finds the project plugins (config `projects:` entries, then `sluice.projects` entry points) and mounts them."""

from __future__ import annotations

import importlib
import logging
import re
from importlib.metadata import entry_points
from types import ModuleType

from fastapi import Depends, FastAPI

from sluice.config import ConfigError, ProjectConfig, SluiceConfig
from sluice.http.limits import address_admission, key_admission
from sluice.projects import ENTRY_POINT_GROUP
from sluice.projects.api import MountedProject, Project, project_guard

logger = logging.getLogger("sluice.projects")

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def load_projects(config: SluiceConfig) -> list[MountedProject]:
    """Every project to mount: the config's entries, then installed entry points whose names are still free."""
    mounted = {entry.name: _from_config(index, entry) for index, entry in enumerate(config.projects)}
    if config.discover_projects:
        for point in entry_points(group=ENTRY_POINT_GROUP):
            if point.name in mounted:
                continue
            if not _NAME.fullmatch(point.name):
                logger.warning("ignoring project entry point %r: names are lower-case letters, digits, - and _",
                               point.name)
                continue
            where = f"entry point {point.name} = {point.value}"
            try:
                loaded = point.load()
            except Exception as exc:
                raise ConfigError(f"{where}: cannot be loaded: {type(exc).__name__}: {exc}") from exc
            mounted[point.name] = _mounted(point.name, plugin_of(loaded, where), None, None)
    return list(mounted.values())


def _from_config(index: int, entry: ProjectConfig) -> MountedProject:
    where = f"projects[{index}].module ({entry.module})"
    try:
        module = importlib.import_module(entry.module)
    except Exception as exc:
        raise ConfigError(f"{where}: cannot be imported: {type(exc).__name__}: {exc}") from exc
    return _mounted(entry.name, plugin_of(module, where), entry.models, entry.providers)


def plugin_of(loaded: object, where: str) -> Project:
    """The `Project` a module exposes as `project` (or an entry point names directly)."""
    candidate = getattr(loaded, "project", None) if isinstance(loaded, ModuleType) else loaded
    if not isinstance(candidate, Project):
        raise ConfigError(f"{where}: not a project plugin (expected a module with `project = Project(...)`, "
                          "see sluice.projects.api)")
    return candidate


def _mounted(name: str, project: Project, models: list[str] | None, providers: list[str] | None
             ) -> MountedProject:
    """The project under `name`; config lists, when given, replace what the plugin declares."""
    chosen_models = models if models is not None else project.models
    chosen_providers = providers if providers is not None else project.providers
    return MountedProject(name, project, None if chosen_models is None else frozenset(chosen_models),
                          None if chosen_providers is None else frozenset(chosen_providers))


def mount_projects(api: FastAPI, projects: list[MountedProject]) -> None:
    """Include each project's router at `/projects/{name}`, behind the key's project scope."""
    for mounted in projects:
        api.include_router(mounted.project.router, prefix=f"/projects/{mounted.name}",
                           tags=[f"project: {mounted.name}"],
                           dependencies=[Depends(address_admission, scope="request"), Depends(project_guard(mounted)),
                                         Depends(key_admission, scope="request")])
        logger.info("mounted project %r at /projects/%s", mounted.name, mounted.name)
