"""The ``corral`` console script. ``corral hook claude-code`` runs once per Claude Code tool event, so it
starts here and reaches the hook — the local one, or the thin client of ``--server URL`` — without loading
the CLI framework; everything else (``--help`` included) goes to the full command line."""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv[:2] == ["hook", "claude-code"] and not any(a in ("-h", "--help") for a in argv[2:]):
        if any(a == "--server" or a.startswith("--server=") for a in argv[2:]):
            from corral.integrations.thin_client import hook_main

            sys.exit(hook_main(argv[2:]))
        # the local hook: the kernel and the store, without the CLI framework (one process per tool event)
        from corral.integrations.claude_code.hook import main as local_hook

        sys.exit(local_hook(argv[2:]))
    from corral.cli import main as cli

    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
