"""``python -m benchmarks [--quick] [--json FILE] [--markdown] [--only TEXT] [--profile]``.

Exits 0 when every row ran and Cedar agreed with corral; 1 otherwise. Targets are reported, never
enforced: a missed target is a finding, not a failed build.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from benchmarks import MODES, report, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke mode: fewer iterations, same table")
    parser.add_argument("--mode", choices=sorted(MODES), help="full (default), quick, or tiny (tests)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--only", metavar="TEXT", help="run only the rows whose name contains TEXT")
    parser.add_argument(
        "--profile",
        nargs="?",
        const=1_000,
        type=int,
        metavar="N",
        help="instead of the table: cProfile the governed call with N rules (default 1000)",
    )
    args = parser.parse_args(argv)
    mode = MODES[args.mode or ("quick" if args.quick else "full")]

    if args.profile is not None:
        from benchmarks.profiling import profile_governed_call

        print(profile_governed_call(args.profile, calls=mode.iterations))
        return 0

    progress = None
    if sys.stderr.isatty():

        def progress(name: str) -> None:
            print(f"\r\033[K  running: {name}", end="", file=sys.stderr, flush=True)

    result = run(mode, only=args.only, progress=progress)
    if progress:
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    if args.markdown:
        print(report.markdown(result))
    elif sys.stdout.isatty():
        report.rich_table(result)
    else:
        print(report.plain(result))
    if args.json:
        report.write_json(result, args.json)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
