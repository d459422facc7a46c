"""Settings for the native allocators linked into the server's Rust extensions, set before those load.

pyreqwest (the upstream client) links mimalloc 3 and granian (the server) links jemalloc; both keep freed memory
by default, so a gateway that once held 2,000 slow requests stayed ~70 MB above its idle size for good. Measured
in docs/benchmarks.md ("Memory"): these settings cut that and the peak, at no measurable throughput cost. A value
already in the environment wins, so an operator can still tune either allocator.
"""

from __future__ import annotations

from collections.abc import MutableMapping

ALLOCATOR_DEFAULTS = {
    # mimalloc (pyreqwest): no transparent huge pages (each 2 MiB page counted resident as soon as touched),
    # commit arena memory as used rather than up front, and give freed pages back after 50 ms instead of 1 s (a
    # purge only runs when the allocator is next used, so with 1 s an idle gateway kept a burst's pages; 0 cost
    # ~4 % of throughput in madvise calls, 50 ms nothing measurable).
    "MIMALLOC_ALLOW_THP": "0",
    "MIMALLOC_ARENA_EAGER_COMMIT": "0",
    "MIMALLOC_PURGE_DELAY": "50",
    # jemalloc (granian, built with the `_rjem_` prefix): return dirty pages after 1 s instead of 10 s and skip
    # the lazy "muzzy" stage, whose pages still count as resident until the kernel needs them.
    "_RJEM_MALLOC_CONF": "dirty_decay_ms:1000,muzzy_decay_ms:0",
}


def apply_allocator_defaults(environ: MutableMapping[str, str]) -> None:
    """Put the allocator settings into `environ` (normally os.environ) unless already set; call before granian or
    pyreqwest is imported, since each allocator reads its settings once, when it starts."""
    for name, value in ALLOCATOR_DEFAULTS.items():
        environ.setdefault(name, value)
