"""`Change`: what the admin API says of one service instance (imported without the database libraries)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Change:
    """What the admin API says of one (service, instance URL): its weight (None: the config's), removed, draining."""

    weight: float | None = None
    removed: bool = False
    draining: bool = False
