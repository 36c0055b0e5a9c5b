"""The session sandbox, with real bubblewrap and real processes: confinement, timeouts, truncation, limits.

The bubblewrap tests need ``bwrap`` to work on this machine (``apt-get install bubblewrap``). Where it
cannot run they fail, loudly, with the probe's reason — they are never skipped.
"""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path

import pytest

from corral.harness.sandbox import (
    BUBBLEWRAP,
    SUBPROCESS,
    ExecResult,
    Sandbox,
    doctor,
    probe_bubblewrap,
)

REPO = Path(__file__).resolve().parents[2]
BOTH = [BUBBLEWRAP, SUBPROCESS]


def require_bubblewrap() -> None:
    probe = probe_bubblewrap()
    if not probe.ok:
        where = "in CI (CI=true)" if os.environ.get("CI") == "true" else "on this machine"
        pytest.fail(
            f"bubblewrap cannot run {where}: {probe.detail}. The sandbox tests need a working bwrap: "
            "install it (apt-get install -y bubblewrap) and allow user namespaces.",
            pytrace=False,
        )


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


def box(ws: Path, isolation: str, **options: object) -> Sandbox:
    if isolation == BUBBLEWRAP:
        require_bubblewrap()
    sandbox = Sandbox(ws, isolation=isolation, **options)  # type: ignore[arg-type]
    assert sandbox.isolation == isolation
    return sandbox


def unique() -> int:
    return random.randint(100_000, 999_999)


def processes_with(needle: bytes) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``needle``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(name))
    return found


def sleep_needle(seconds: int) -> bytes:
    return b"sleep\0" + str(seconds).encode() + b"\0"


def gone_soon(needle: bytes, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not processes_with(needle):
            return True
        time.sleep(0.05)
    return False


# -------------------------------------------------------------------------------------- isolation


def test_auto_picks_bubblewrap_when_its_probe_works(ws: Path) -> None:
    require_bubblewrap()
    probe = probe_bubblewrap()
    assert probe.path and probe.path.endswith("bwrap")
    assert probe.version
    assert Sandbox(ws).isolation == BUBBLEWRAP
    assert Sandbox(ws).run("true").isolation == BUBBLEWRAP


def test_isolation_must_be_known(ws: Path) -> None:
    with pytest.raises(ValueError, match="isolation must be one of"):
        Sandbox(ws, isolation="docker")
    with pytest.raises(ValueError, match="timeout"):
        Sandbox(ws, timeout=0)


@pytest.mark.parametrize("isolation", BOTH)
def test_runs_in_the_workspace_with_a_clean_environment(ws: Path, isolation: str) -> None:
    os.environ["CORRAL_TEST_SECRET"] = "leak"
    try:
        result = box(ws, isolation).run("pwd; echo HOME=$HOME; env; echo oops >&2; exit 3")
    finally:
        del os.environ["CORRAL_TEST_SECRET"]
    assert isinstance(result, ExecResult)
    assert result.exit_code == 3
    assert result.stdout.splitlines()[0] == str(ws.resolve())
    assert f"HOME={ws.resolve()}" in result.stdout
    assert "CORRAL_TEST_SECRET" not in result.stdout
    assert "PYTEST_CURRENT_TEST" not in result.stdout
    assert result.stderr == "oops\n"
    assert (result.truncated, result.timed_out, result.isolation) == (False, False, isolation)


@pytest.mark.parametrize("isolation", BOTH)
def test_a_list_command_and_stdin(ws: Path, isolation: str) -> None:
    sandbox = box(ws, isolation)
    assert sandbox.run(["python3", "-c", "print(6 * 7)"]).stdout == "42\n"
    assert sandbox.run(["cat"], stdin="hello").stdout == "hello"
    big = "x" * 1_000_000  # larger than a pipe: fed while the output is read, no deadlock
    result = sandbox.run(["cat"], stdin=big)
    assert result.truncated and result.stdout.startswith("x" * 64_000)


def test_a_missing_program_is_a_failed_result_not_an_exception(ws: Path) -> None:
    result = box(ws, SUBPROCESS).run(["no-such-program-here"])
    assert result.exit_code == 127 and "No such file" in result.stderr


# -------------------------------------------------------------------------------- confinement


def test_bubblewrap_writes_only_inside_the_workspace(ws: Path) -> None:
    sandbox = box(ws, BUBBLEWRAP)
    n = unique()
    targets = [
        Path(f"/etc/corral-escape-{n}"),
        Path(f"/tmp/../root/corral-escape-{n}"),
        REPO / f"corral-escape-{n}",
        Path(f"/usr/corral-escape-{n}"),
        Path(f"/corral-escape-{n}"),
    ]
    try:
        for target in targets:
            result = sandbox.run(f"echo pwned > {target}")
            assert result.exit_code != 0, f"writing {target} succeeded inside the sandbox"
            assert not Path(os.path.normpath(target)).exists(), f"{target} appeared on the host"
        # mkdir / cp / python all fail the same way
        made = sandbox.run(f"mkdir -p {REPO}/corral-dir-{n}")
        if not str(REPO).startswith("/tmp/"):  # under /tmp it lands in the sandbox's private /tmp instead
            assert made.exit_code != 0
        code = f"open('/etc/corral-py-{n}', 'w').write('x')"
        assert sandbox.run(["python3", "-c", code]).exit_code != 0
        assert not (REPO / f"corral-dir-{n}").exists() and not Path(f"/etc/corral-py-{n}").exists()
    finally:
        for target in [*targets, REPO / f"corral-dir-{n}", Path(f"/etc/corral-py-{n}")]:
            p = Path(os.path.normpath(target))
            if p.is_dir():
                p.rmdir()
            else:
                p.unlink(missing_ok=True)

    # /tmp is private: writable inside, invisible outside
    result = sandbox.run(f"echo t > /tmp/corral-tmp-{n} && cat /tmp/corral-tmp-{n}")
    assert result.exit_code == 0 and result.stdout == "t\n"
    assert not Path(f"/tmp/corral-tmp-{n}").exists()

    # ...and the workspace is where writes land
    result = sandbox.run("mkdir -p out && echo kept > out/file.txt")
    assert result.exit_code == 0, result.stderr
    assert (ws / "out" / "file.txt").read_text() == "kept\n"


def test_bubblewrap_cannot_regain_privileges(ws: Path) -> None:
    result = box(ws, BUBBLEWRAP).run("mount -o remount,rw / ; echo x > /etc/corral-remount")
    assert result.exit_code != 0
    assert not Path("/etc/corral-remount").exists()


CONNECT = """
import socket, sys
s = socket.socket()
s.settimeout(3)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError as exc:
    print("refused:", exc)
    sys.exit(1)
print("connected")
"""


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


def test_bubblewrap_has_no_network(ws: Path, listener: int) -> None:
    # The same program, the same port: it connects from outside, and not from inside the sandbox.
    with socket.create_connection(("127.0.0.1", listener), timeout=3):
        pass
    outside = box(ws, SUBPROCESS).run(["python3", "-c", CONNECT, str(listener)])
    assert outside.exit_code == 0 and outside.stdout == "connected\n", outside.stderr

    inside = box(ws, BUBBLEWRAP).run(["python3", "-c", CONNECT, str(listener)])
    assert inside.exit_code == 1, inside.stdout + inside.stderr
    assert inside.stdout.startswith("refused:")

    shared = box(ws, BUBBLEWRAP, network=True).run(["python3", "-c", CONNECT, str(listener)])
    assert shared.stdout == "connected\n", shared.stderr


# -------------------------------------------------------------------------------- runaway commands


@pytest.mark.parametrize("isolation", BOTH)
def test_a_runaway_command_is_killed_at_its_timeout(ws: Path, isolation: str) -> None:
    n = unique()
    started = time.monotonic()
    result = box(ws, isolation, timeout=30).run(f"sleep {n}", timeout=1)
    elapsed = time.monotonic() - started
    assert result.timed_out
    assert result.exit_code != 0
    assert 0.9 <= elapsed < 5, elapsed
    assert "did not finish within 1s" in result.stderr
    assert gone_soon(sleep_needle(n))


@pytest.mark.parametrize("isolation", BOTH)
def test_children_die_with_the_command_even_outside_its_process_group(ws: Path, isolation: str) -> None:
    n = unique()
    # one child in the command's process group, one that escapes it with setsid; both announce themselves
    command = f"sleep {n} & setsid sleep {n + 1} & echo started > started; sleep {n + 2}"
    result = box(ws, isolation).run(command, timeout=1.5)
    assert result.timed_out and result.exit_code != 0
    assert (ws / "started").read_text() == "started\n"
    for seconds in (n, n + 1, n + 2):
        assert gone_soon(sleep_needle(seconds)), f"sleep {seconds} outlived the sandbox"


@pytest.mark.parametrize("isolation", BOTH)
def test_a_background_child_does_not_hold_a_finished_command_open(ws: Path, isolation: str) -> None:
    n = unique()
    started = time.monotonic()
    # the child leaves the process group (setsid) and keeps stdout open; we wait until it has escaped
    command = (
        f"setsid sh -c 'echo escaped > escaped; exec sleep {n}' & "
        "while [ ! -f escaped ]; do sleep 0.01; done; echo done"
    )
    result = box(ws, isolation, timeout=20).run(command)
    assert time.monotonic() - started < 5
    assert result.exit_code == 0 and not result.timed_out
    assert result.stdout == "done\n"
    assert gone_soon(sleep_needle(n))


@pytest.mark.parametrize("isolation", BOTH)
def test_huge_output_is_truncated_and_returns_quickly(ws: Path, isolation: str) -> None:
    sandbox = box(ws, isolation, max_output=64_000)
    started = time.monotonic()
    result = sandbox.run("yes | head -c 50000000; yes err | head -c 5000000 >&2")
    assert time.monotonic() - started < 10
    assert result.exit_code == 0 and not result.timed_out
    assert result.truncated
    assert result.stdout.startswith("y\n" * 1000)
    assert len(result.stdout) < 64_000 + 200
    assert "[output truncated: 49936000 more bytes not shown]" in result.stdout
    assert "[output truncated: 4936000 more bytes not shown]" in result.stderr


@pytest.mark.parametrize("isolation", BOTH)
def test_endless_output_stops_at_the_timeout(ws: Path, isolation: str) -> None:
    started = time.monotonic()
    result = box(ws, isolation).run("yes", timeout=1)
    assert time.monotonic() - started < 5
    assert result.timed_out and result.truncated and result.exit_code != 0


@pytest.mark.parametrize("isolation", BOTH)
def test_memory_and_file_size_limits(ws: Path, isolation: str) -> None:
    sandbox = box(ws, isolation, memory_mb=256, file_size_mb=1)
    result = sandbox.run(["python3", "-c", "b = bytearray(1024 * 1024 * 1024)"])
    assert result.exit_code != 0 and "MemoryError" in result.stderr
    result = sandbox.run("head -c 3000000 /dev/zero > big.bin")
    assert result.exit_code != 0
    assert (ws / "big.bin").stat().st_size <= 1024 * 1024
    assert sandbox.run(["python3", "-c", "print('small is fine')"]).stdout == "small is fine\n"


# -------------------------------------------------------------------------------------------- doctor


def test_doctor_reports_bubblewrap(ws: Path) -> None:
    report = box(ws, BUBBLEWRAP).doctor()
    assert report["isolation"] == BUBBLEWRAP
    assert report["workspace"] == str(ws.resolve())
    assert report["bubblewrap"]["probe_ok"] is True
    assert report["bubblewrap"]["path"].endswith("bwrap") and report["bubblewrap"]["version"]
    assert "bwrap" in report["reason"]
    assert report["confinement"]["network"].startswith("none")
    assert report["limits"]["timeout_seconds"] == 30.0
    assert doctor()["isolation"] == BUBBLEWRAP


def test_doctor_reports_the_fallback_and_its_limits(ws: Path) -> None:
    report = Sandbox(ws, isolation=SUBPROCESS, timeout=5, memory_mb=128).doctor()
    assert report["isolation"] == SUBPROCESS
    assert report["requested"] == SUBPROCESS
    assert "forced" in report["reason"]
    assert report["limits"]["memory_mb"] == 128 and report["limits"]["timeout_seconds"] == 5.0
    assert "NOT confined" in report["confinement"]["network"]
    assert doctor(SUBPROCESS)["isolation"] == SUBPROCESS
