"""`sluice serve` sets the native allocators' memory settings, without overriding an operator's own."""

from __future__ import annotations

from sluice.serve.allocators import ALLOCATOR_DEFAULTS, apply_allocator_defaults


def test_defaults_fill_an_empty_environment() -> None:
    environ: dict[str, str] = {}
    apply_allocator_defaults(environ)
    assert environ == ALLOCATOR_DEFAULTS
    assert environ["MIMALLOC_ALLOW_THP"] == "0"


def test_an_operator_setting_wins() -> None:
    environ = {"_RJEM_MALLOC_CONF": "narenas:1", "MIMALLOC_PURGE_DELAY": "-1"}
    apply_allocator_defaults(environ)
    assert environ["_RJEM_MALLOC_CONF"] == "narenas:1"
    assert environ["MIMALLOC_PURGE_DELAY"] == "-1"
    assert environ["MIMALLOC_ALLOW_THP"] == "0"
