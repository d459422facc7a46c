"""The listen queue and open-files limit `sluice serve` starts with."""

from __future__ import annotations

import resource

BACKLOG = 4096
"""Connections the kernel queues before a worker accepts them (Linux caps it at net.core.somaxconn, 4096 by
default). granian's own default, 1024, also set its per-worker concurrency: a worker served 1,024 connections
and left the rest waiting unanswered (seen: 2,000 slow calls, 976 never started in 8 s)."""


def raise_open_files_limit(wanted: int) -> int:
    """Raise this process's soft limit on open files towards `wanted` (never past the hard limit, never lower);
    the workers inherit it. Returns the limit in effect."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        except (ValueError, OSError):  # above the kernel's fs.nr_open: keep what we have
            return soft
        return ceiling
    return soft
