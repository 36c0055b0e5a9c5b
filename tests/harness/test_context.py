from pathlib import Path

import pytest

from corral import PhaseError
from corral.harness.context import CURRENT, RunContext, current


def test_a_tool_outside_a_run_is_told_so():
    with pytest.raises(PhaseError, match="this tool runs only inside an agent run"):
        current()


def test_a_tool_inside_a_run_sees_its_own_run(tmp_path: Path):
    ctx = RunContext(harness=None, session="s1", workspace=tmp_path)
    token = CURRENT.set(ctx)
    try:
        assert current() is ctx
        assert current().sandbox is current().sandbox  # made once, on first use
        assert current().sandbox.workspace_dir == tmp_path.resolve()
    finally:
        CURRENT.reset(token)
    with pytest.raises(PhaseError):
        current()
