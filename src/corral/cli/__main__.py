"""``python -m corral.cli``: the ``corral`` command line (what the console script runs after its hook fast path)."""

from corral.cli import main

main()
