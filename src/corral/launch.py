"""The ``corral`` console script. Per-call enforcement points that ask a server — ``corral hook claude-code
--server URL`` runs once per Claude Code tool event — start here and reach the thin client without loading
the CLI framework; everything else goes to the full command line."""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv[:2] == ["hook", "claude-code"] and any(a == "--server" or a.startswith("--server=") for a in argv[2:]):
        from corral.integrations.thin_client import hook_main

        sys.exit(hook_main(argv[2:]))
    from corral.cli import main as cli

    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
