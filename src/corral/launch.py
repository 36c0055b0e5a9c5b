"""The ``corral`` console script. ``corral hook claude-code`` runs once per Claude Code tool event, so it
starts here and reaches the hook — the local one, or the thin client of ``--server URL`` — without loading
the CLI framework; everything else (``--help`` included) goes to the full command line."""

from __future__ import annotations

import os
import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv[:2] == ["hook", "claude-code"] and not any(a in ("-h", "--help") for a in argv[2:]):
        if any(a == "--server" or a.startswith("--server=") for a in argv[2:]):
            from corral.integrations.thin_client import hook_main

            end_hook_process(hook_main(argv[2:]))
        # the local hook: the kernel and the store, without the CLI framework (one process per tool event)
        from corral.integrations.claude_code.hook import main as local_hook

        end_hook_process(local_hook(argv[2:]))
    from corral.cli import main as cli

    cli()


def end_hook_process(code: int) -> None:
    """End a hook process at once, without the interpreter's teardown of the ~170 modules it loaded
    (about a tenth of a tool event's time). By now everything the hook writes is written: it closed its
    store when it answered. What could still be buffered — audit records of a store left open, log
    handlers, the answer on stdout — is flushed first; only then does the process exit with ``code``."""
    try:
        buffers = sys.modules.get("corral.store.group_commit")
        if buffers is not None:
            buffers.flush_open_buffers()
        if "logging" in sys.modules:
            sys.modules["logging"].shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # a flush that fails is the ordinary exit's business: it reports and exits non-zero
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
