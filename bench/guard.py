"""Regression guard: fail when Sluice's chat throughput relative to the direct upstream drops below 70 % of the
ratio recorded in docs/benchmarks.md (`<!-- guard: sluice_direct_ratio=... -->`, written by `make bench`).

    .venv/bin/python bench/guard.py                      # measure: best of 3 short runs per target
    .venv/bin/python bench/guard.py --from bench/.run/quick.json   # use a finished `make bench-quick`
    .venv/bin/python bench/guard.py --record             # measure and store as the new reference

Exit 0: within bounds; 1: regression; 2: no reference ratio or Sluice could not run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import catalog
import install
import measure
import report

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 0.7


def measure_ratio() -> dict[str, float]:
    """Direct and Sluice, best of 3 short chat runs each, pinned as in bench/run.py."""
    install.system_tools()
    session = measure.Session(ROOT / "bench" / ".run")
    try:
        targets = catalog.build(lambda: session.upstream_url)
        missing = targets["sluice"].unavailable()
        if missing:
            raise RuntimeError(missing)
        best = measure.guard_ratio(session, targets["direct"], targets["sluice"])
    finally:
        session.close()
    measure.log(f"best: direct {best['direct']:,.0f} req/s, Sluice {best['sluice']:,.0f} req/s")
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", metavar="JSON", help="read the ratio from a bench/run.py result")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"), help="where the reference is")
    parser.add_argument("--record", action="store_true", help="measure and write the result as the new reference")
    args = parser.parse_args(argv)
    if args.record:
        best = measure_ratio()
        report.record_guard(Path(args.doc), best["ratio"], best)
        print(f"guard: recorded sluice_direct_ratio={best['ratio']:.4f} in {args.doc}")
        return 0
    reference = report.reference_ratio(Path(args.doc))
    if reference is None:
        print(f"guard: no `<!-- guard: sluice_direct_ratio=... -->` line in {args.doc}; run `make bench`",
              file=sys.stderr)
        return 2
    try:
        ratio = json.loads(Path(args.source).read_text())["guard_ratio"] if args.source else measure_ratio()["ratio"]
    except (RuntimeError, OSError, KeyError, ValueError) as exc:
        print(f"guard: could not measure Sluice: {exc}", file=sys.stderr)
        return 2
    if ratio is None:
        print("guard: the result has no Sluice ÷ direct ratio (was Sluice measured?)", file=sys.stderr)
        return 2
    floor = TOLERANCE * reference
    verdict = "ok" if ratio >= floor else "REGRESSION"
    print(f"guard: Sluice ÷ direct = {ratio:.4f}; reference {reference:.4f}, fails below {floor:.4f}: {verdict}")
    return 0 if ratio >= floor else 1


if __name__ == "__main__":
    sys.exit(main())
