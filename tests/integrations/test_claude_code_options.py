"""The hook's own option parser (the per-call process does without argparse)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from corral.integrations.claude_code.hook import DEADLINE, HookInputError, parse_options


def test_options_in_both_spellings_and_repeated_roles() -> None:
    options = parse_options(["--agent", "a.yaml", "--store=sqlite:///x.db", "--as", "alice", "--role", "dev",
                             "--role=ops", "--timeout", "2.5"])
    assert options == {"agent": "a.yaml", "store": "sqlite:///x.db", "principal": "alice", "roles": ["dev", "ops"],
                       "timeout": 2.5}
    assert parse_options(["--agent=a.yaml"])["timeout"] == DEADLINE


@pytest.mark.parametrize(("argv", "message"), [
    ([], "--agent is required"),
    (["--agent"], "--agent needs a value"),
    (["--agent", "a.yaml", "--verbose"], "unknown option '--verbose'"),
    (["--agent", "a.yaml", "--timeout", "soon"], "--timeout expects seconds, got 'soon'"),
])
def test_a_bad_command_line_names_the_problem(argv: list[str], message: str) -> None:
    with pytest.raises(HookInputError, match=message):
        parse_options(argv)


def test_the_module_exits_2_with_the_usage_and_loads_no_argparse() -> None:
    code = ("import sys\nfrom corral.integrations.claude_code.hook import main\ncode = main(['--timeout', '1'])\n"
            "print(code, 'argparse' in sys.modules, 'logging' in sys.modules, 'socket' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["2", "False", "False", "False"], out.stdout + out.stderr
    assert "--agent is required" in out.stderr and "usage: corral hook claude-code" in out.stderr
