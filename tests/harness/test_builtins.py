"""The built-in tools: files confined to the workspace and undone by their compensations; shell and python
in the sandbox. Compensations are driven both directly with a ``Call`` and by a real rollback in the kernel.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from corral import Call, ConfigError, Governor, TransactionFailed
from corral.harness.sandbox import BUBBLEWRAP, SUBPROCESS, Sandbox, probe_bubblewrap
from corral.harness.tools import BuiltinTool, files_tools, python_tool, shell_tool
from corral.harness.workspace import Workspace


def require_bubblewrap() -> None:
    probe = probe_bubblewrap()
    if not probe.ok:
        where = "in CI (CI=true)" if os.environ.get("CI") == "true" else "on this machine"
        pytest.fail(f"bubblewrap cannot run {where}: {probe.detail}; install bubblewrap", pytrace=False)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.for_session(tmp_path / "workspaces", "s-1")


@pytest.fixture
def tools(ws: Workspace) -> dict[str, BuiltinTool]:
    return {t.name: t for t in files_tools(ws)}


def undo(tool: BuiltinTool, args: dict, result: dict) -> None:
    """Run ``tool``'s compensation the way the kernel does: with the Call, its result as the log keeps it."""
    assert tool.compensate is not None
    logged = json.loads(json.dumps(result))
    tool.compensate(Call(tool=tool.name, args=args, result=logged, idempotency_key="k-1"))


# ------------------------------------------------------------------------------------------ metadata


def test_the_files_tools_and_their_effects(tools: dict[str, BuiltinTool]) -> None:
    assert list(tools) == ["read_file", "list_files", "write_file", "edit_file"]
    effects = {name: t.effect for name, t in tools.items()}
    assert effects == {"read_file": "read", "list_files": "read", "write_file": "reversible",
                       "edit_file": "reversible"}
    for tool in tools.values():
        assert len(tool.description) > 60
        assert tool.parameters["type"] == "object"
        assert tool.parameters["additionalProperties"] is False
        assert (tool.compensate is not None) == (tool.effect == "reversible")
    assert tools["write_file"].parameters["required"] == ["path", "content"]
    assert tools["edit_file"].parameters["required"] == ["path", "old", "new"]
    assert tools["list_files"].parameters["required"] == []


def test_shell_and_python_are_irreversible_by_default(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path, isolation=SUBPROCESS)
    shell, python = shell_tool(sandbox), python_tool(sandbox)
    assert (shell.name, shell.effect, shell.compensate) == ("shell", "irreversible", None)
    assert (python.name, python.effect, python.compensate) == ("python", "irreversible", None)
    assert shell.parameters["required"] == ["command"] and python.parameters["required"] == ["code"]
    assert "30s" in shell.description and "workspace" in python.description
    assert shell_tool(sandbox, effect="read").effect == "read"
    with pytest.raises(ConfigError, match="no compensation"):
        shell_tool(sandbox, effect="reversible")


# ---------------------------------------------------------------------------------------- read, list


def test_read_and_list(ws: Workspace, tools: dict[str, BuiltinTool]) -> None:
    (ws.root / "docs").mkdir()
    (ws.root / "docs" / "a.md").write_text("# hello\n")
    (ws.root / "top.txt").write_text("top")
    assert tools["read_file"].fn("docs/a.md") == {"path": "docs/a.md", "content": "# hello\n", "size": 8,
                                                    "truncated": False}
    listing = tools["list_files"].fn()
    assert listing["path"] == "."
    assert listing["entries"] == [{"name": "docs", "type": "dir", "size": None},
                                  {"name": "top.txt", "type": "file", "size": 3}]
    assert [e["name"] for e in tools["list_files"].fn("docs")["entries"]] == ["a.md"]
    with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
        tools["read_file"].fn("missing.txt")
    with pytest.raises(IsADirectoryError):
        tools["read_file"].fn("docs")


def test_read_is_capped(ws: Workspace) -> None:
    read_file = {t.name: t for t in files_tools(ws, max_read=10)}["read_file"]
    (ws.root / "big.txt").write_text("0123456789abcdef")
    result = read_file.fn("big.txt")
    assert result["content"] == "0123456789" and result["truncated"] and result["size"] == 16


# ------------------------------------------------------------------------------------- confinement


@pytest.mark.parametrize("path", ["../x", "../../etc/passwd", "a/../../x", "/etc/passwd", "/tmp/x", "~/x"])
def test_files_refuse_paths_outside_the_workspace(
    ws: Workspace, tools: dict[str, BuiltinTool], path: str
) -> None:
    for name, args in [("read_file", {"path": path}), ("list_files", {"path": path}),
                       ("write_file", {"path": path, "content": "x"}),
                       ("edit_file", {"path": path, "old": "a", "new": "b"})]:
        with pytest.raises(ValueError, match=r"outside the workspace|absolute") as info:
            tools[name].fn(**args)
        assert repr(path) in str(info.value)
    assert not (ws.root.parent / "x").exists()


def test_files_refuse_a_symlink_that_escapes(ws: Workspace, tools: dict[str, BuiltinTool], tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    os.symlink(outside, ws.root / "door")
    os.symlink(outside / "secret.txt", ws.root / "secret-link")
    for call in (
        lambda: tools["read_file"].fn("door/secret.txt"),
        lambda: tools["read_file"].fn("secret-link"),
        lambda: tools["list_files"].fn("door"),
        lambda: tools["write_file"].fn("door/new.txt", "x"),
        lambda: tools["write_file"].fn("secret-link", "overwritten"),
        lambda: tools["edit_file"].fn("secret-link", "secret", "x"),
    ):
        with pytest.raises(ValueError, match="through a symlink"):
            call()
    assert (outside / "secret.txt").read_text() == "secret"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_a_symlink_inside_the_workspace_is_followed(ws: Workspace, tools: dict[str, BuiltinTool]) -> None:
    (ws.root / "real").mkdir()
    (ws.root / "real" / "f.txt").write_text("inner")
    os.symlink("real", ws.root / "alias")
    assert tools["read_file"].fn("alias/f.txt")["content"] == "inner"
    assert tools["read_file"].fn("real/../real/f.txt")["path"] == "real/f.txt"


def test_session_ids_cannot_name_a_directory_elsewhere(tmp_path: Path) -> None:
    for bad in ("../x", ".hidden", "a/b", "", "-rf"):
        with pytest.raises(ValueError, match="session id"):
            Workspace.for_session(tmp_path, bad)
    ws = Workspace.for_session(tmp_path / "base", "s-2")
    assert not (tmp_path / "base").exists()  # created on demand
    assert ws.root == (tmp_path / "base" / "s-2").resolve() and ws.root.is_dir()


# ------------------------------------------------------------------------------- write, edit, undo


def test_write_then_undo_restores_the_previous_content(ws: Workspace, tools: dict[str, BuiltinTool]) -> None:
    target = ws.root / "notes.txt"
    target.write_bytes(b"old\x00bytes\n")
    os.chmod(target, 0o640)
    args = {"path": "notes.txt", "content": "new content"}
    result = tools["write_file"].fn(**args)
    assert result["path"] == "notes.txt" and result["created"] is False and result["bytes_written"] == 11
    assert target.read_text() == "new content"
    undo(tools["write_file"], args, result)
    assert target.read_bytes() == b"old\x00bytes\n"
    assert oct(target.stat().st_mode & 0o777) == oct(0o640)
    undo(tools["write_file"], args, result)  # compensations may run again after a crash: idempotent
    assert target.read_bytes() == b"old\x00bytes\n"


def test_write_then_undo_deletes_a_file_that_did_not_exist(ws: Workspace, tools: dict[str, BuiltinTool]) -> None:
    (ws.root / "keep").mkdir()
    args = {"path": "keep/new/deeper/file.txt", "content": "hello"}
    result = tools["write_file"].fn(**args)
    assert result["created"] is True
    assert (ws.root / "keep/new/deeper/file.txt").read_text() == "hello"
    undo(tools["write_file"], args, result)
    assert not (ws.root / "keep" / "new").exists()  # the file and the directories the write created
    assert (ws.root / "keep").is_dir()  # but not what was there before
    undo(tools["write_file"], args, result)
    assert not (ws.root / "keep" / "new").exists()


def test_edit_replaces_exactly_once_and_undo_restores(ws: Workspace, tools: dict[str, BuiltinTool]) -> None:
    target = ws.root / "app.py"
    original = "def f():\n    return 1\n\ndef g():\n    return 2\n"
    target.write_text(original)
    args = {"path": "app.py", "old": "return 1", "new": "return 10"}
    result = tools["edit_file"].fn(**args)
    assert result["replacements"] == 1
    assert target.read_text() == original.replace("return 1", "return 10")
    undo(tools["edit_file"], args, result)
    assert target.read_text() == original


def test_edit_refuses_absent_ambiguous_and_empty_text(ws: Workspace, tools: dict[str, BuiltinTool]) -> None:
    target = ws.root / "a.txt"
    target.write_text("x = 1\nx = 1\n")
    edit = tools["edit_file"].fn
    with pytest.raises(ValueError, match="not found"):
        edit("a.txt", "y = 2", "z")
    with pytest.raises(ValueError, match="occurs 2 times"):
        edit("a.txt", "x = 1", "x = 2")
    with pytest.raises(ValueError, match="non-empty"):
        edit("a.txt", "", "x")
    with pytest.raises(FileNotFoundError):
        edit("missing.txt", "a", "b")
    assert target.read_text() == "x = 1\nx = 1\n"


def test_a_compensation_without_a_snapshot_fails_loudly(tools: dict[str, BuiltinTool]) -> None:
    with pytest.raises(ValueError, match="no snapshot id"):
        tools["write_file"].compensate(Call(tool="write_file", args={"path": "a"}, result=None))


def test_snapshots_survive_the_process_and_stay_out_of_the_sandbox(ws: Workspace, tmp_path: Path) -> None:
    (ws.root / "f.txt").write_text("v1")
    write = {t.name: t for t in files_tools(ws)}["write_file"]
    result = write.fn("f.txt", "v2")
    # recovery runs in a new process: a new Workspace on the same directory finds the snapshot
    again = Workspace.for_session(tmp_path / "workspaces", "s-1")
    undo({t.name: t for t in files_tools(again)}["write_file"], {"path": "f.txt"}, result)
    assert (ws.root / "f.txt").read_text() == "v1"
    assert not any(p.name.endswith((".json", ".bin")) for p in ws.root.rglob("*"))


def test_the_kernel_rolls_file_writes_back(ws: Workspace, tools: dict[str, BuiltinTool]) -> None:
    (ws.root / "ledger.txt").write_text("balance: 10\n")
    gov = Governor(agent="files")
    for tool in tools.values():
        tool.register(gov)
    s = gov.session(principal="alice")
    assert s.call("read_file", path="ledger.txt")["content"] == "balance: 10\n"
    with s.decide():
        pass
    with pytest.raises(TransactionFailed) as info:
        with s.commit() as tx:
            tx.call("edit_file", path="ledger.txt", old="10", new="0")
            tx.call("write_file", path="receipts/r1.txt", content="paid 10")
            assert (ws.root / "ledger.txt").read_text() == "balance: 0\n"
            raise RuntimeError("payment provider down")
    assert isinstance(info.value.__cause__, RuntimeError)
    assert tx.state == "rolled_back"
    assert (ws.root / "ledger.txt").read_text() == "balance: 10\n"
    assert not (ws.root / "receipts").exists()


# ------------------------------------------------------------------------------------- shell, python


def test_shell_runs_in_the_bubblewrap_sandbox(ws: Workspace, tools: dict[str, BuiltinTool]) -> None:
    require_bubblewrap()
    sandbox = Sandbox(ws, timeout=2)
    assert sandbox.isolation == BUBBLEWRAP
    shell = shell_tool(sandbox)
    tools["write_file"].fn("data.csv", "a,b\n1,2\n")
    result = shell.fn("wc -l < data.csv && echo x > /etc/corral-shell-test; echo done")
    assert set(result) == {"exit_code", "stdout", "stderr", "truncated", "timed_out"}
    assert result["stdout"] == "2\ndone\n"
    assert "Read-only file system" in result["stderr"]
    assert not Path("/etc/corral-shell-test").exists()
    slow = shell.fn("sleep 30")
    assert slow["timed_out"] and slow["exit_code"] != 0


def test_python_runs_in_the_sandbox(ws: Workspace, tools: dict[str, BuiltinTool]) -> None:
    require_bubblewrap()
    sandbox = Sandbox(ws, timeout=3, max_output=1000)
    python = python_tool(sandbox)
    tools["write_file"].fn("helpers.py", "def double(x):\n    return 2 * x\n")
    result = python.fn("import os, helpers\nprint(helpers.double(21), os.getcwd())\n")
    assert result == {"exit_code": 0, "stdout": f"42 {ws.root}\n", "stderr": "", "truncated": False,
                      "timed_out": False}
    failed = python.fn("raise SystemExit('bad input')")
    assert failed["exit_code"] == 1 and "bad input" in failed["stderr"]
    long_program = "x = 0\n" + "x += 1\n" * 50_000 + "print(x)\n"  # longer than one argv string may be
    assert python.fn(long_program)["stdout"] == "50000\n"
    assert python.fn("print('y' * 5000)")["truncated"]
    assert python.fn("while True: pass")["timed_out"]


def test_shell_through_the_kernel_is_deferred_until_commit(ws: Workspace) -> None:
    gov = Governor(agent="shell")
    shell_tool(Sandbox(ws, isolation=SUBPROCESS)).register(gov)
    s = gov.session(principal="alice")
    with s.decide():
        pass
    with s.commit() as tx:
        tx.defer("shell", command="echo ran > ran.txt")
        assert not (ws.root / "ran.txt").exists()
    assert tx.state == "committed"
    assert (ws.root / "ran.txt").read_text() == "ran\n"
