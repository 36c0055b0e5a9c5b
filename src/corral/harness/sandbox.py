"""The session sandbox: where the ``shell`` and ``python`` built-ins run a command, and what confines it.

Two isolations, chosen once per process:

- ``bubblewrap`` — used when ``bwrap`` is installed *and a probe run of it works* (it can be present but
  unusable inside containers that forbid user namespaces). The command gets its own user, PID, IPC, UTS
  and network namespaces (no network unless ``network=True``), all capabilities dropped, a read-only
  root with ``/usr``, ``/etc`` and the ``/bin``/``/lib*`` links, a private ``/tmp``, and the workspace
  bound read-write at its own path as the working directory. It cannot write anywhere else, and when it
  ends (or is killed) every process it started dies with its PID namespace.
- ``subprocess`` — the fallback: the workspace as working directory, a clean environment, resource limits
  (CPU seconds, address space, file size, process count where it applies), its own session and process
  group. This limits a runaway command but does not confine it: absolute paths reach the host with this
  user's rights, and the network is open. ``doctor()`` says so. The harness never falls back to it on
  its own: without bubblewrap, ``shell`` and ``python`` refuse to start unless the agent file says
  ``sandbox: unisolated`` (``isolation_problem()`` names the fix).

Both kill a command at its timeout — its whole process group, and in the fallback also every process
that still carries the run's environment marker — and read its output incrementally, keeping at most
``max_output`` bytes of each stream, so neither a flood of output nor a stuck child blocks the harness.

```python
box = Sandbox(Path(".corral/workspaces/s-1"), timeout=10)
box.isolation                       # "bubblewrap" or "subprocess"
r = box.run("ls -la && python3 -c 'print(6*7)'")
r.exit_code, r.stdout, r.truncated, r.timed_out
box.doctor()                        # which isolation is in force, and why
```
"""

from __future__ import annotations

import math
import os
import resource
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BUBBLEWRAP = "bubblewrap"
SUBPROCESS = "subprocess"
AUTO = "auto"
ISOLATIONS = (AUTO, BUBBLEWRAP, SUBPROCESS)

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RUN_MARKER = "CORRAL_SANDBOX_RUN"

_RO_DIRS = ("/usr", "/etc")
_ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_CHUNK = 65536
_DRAIN_GRACE = 2.0  # seconds to collect what is left in the pipes once the command is over
_PROBE_TIMEOUT = 10.0


class SandboxUnavailable(RuntimeError):
    """The isolation that was asked for cannot run here; the message says why and what to do."""


@dataclass(frozen=True)
class ExecResult:
    """What one command did. ``exit_code`` is negative when a signal ended it (``-9`` after a timeout)."""

    exit_code: int
    stdout: str
    stderr: str
    truncated: bool
    timed_out: bool
    duration_ms: int
    isolation: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------ the bwrap probe


@dataclass(frozen=True)
class BubblewrapProbe:
    """Whether ``bwrap`` can run here: its path and version, and what the probe run said."""

    ok: bool
    path: str | None
    version: str | None
    detail: str


_probe_lock = threading.Lock()
_probe_cache: dict[str | None, BubblewrapProbe] = {}

BWRAP_ENV = "CORRAL_BWRAP"
"""Names the bwrap binary to use instead of the one on PATH (a path that does not exist means none)."""


def find_bwrap() -> str | None:
    chosen = os.environ.get(BWRAP_ENV)
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    return shutil.which("bwrap") or next(
        (p for p in ("/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap") if os.access(p, os.X_OK)), None
    )


def probe_bubblewrap(*, refresh: bool = False) -> BubblewrapProbe:
    """Run ``bwrap <the sandbox's own arguments> true`` once per process (per bwrap) and remember it."""
    key = os.environ.get(BWRAP_ENV)
    with _probe_lock:
        if key not in _probe_cache or refresh:
            _probe_cache[key] = _probe()
        return _probe_cache[key]


UNISOLATED_FIX = ("install bubblewrap (apt-get install bubblewrap) and allow unprivileged user namespaces, or "
                  "say `sandbox: unisolated` in the agent file to accept commands that reach the whole host")


def isolation_for(config: Any) -> str:
    """The isolation an agent file asks of its ``shell`` and ``python`` tools: bubblewrap, required —
    unless the file says ``sandbox: unisolated``, accepting commands unconfined where bubblewrap cannot run."""
    return AUTO if getattr(config, "sandbox", "isolated") == "unisolated" else BUBBLEWRAP


def isolation_problem() -> str | None:
    """Why commands cannot run isolated here, with the fix; None when bubblewrap works."""
    probe = probe_bubblewrap()
    if probe.ok:
        return None
    return f"commands cannot run isolated here ({probe.detail}); {UNISOLATED_FIX}"


def _probe() -> BubblewrapProbe:
    path = find_bwrap()
    if path is None:
        chosen = os.environ.get(BWRAP_ENV)
        if chosen:
            return BubblewrapProbe(False, None, None, f"{BWRAP_ENV}={chosen} is not an executable bwrap")
        return BubblewrapProbe(False, None, None, "bwrap is not installed (apt-get install bubblewrap)")
    version = None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=_PROBE_TIMEOUT)
        version = (out.stdout or out.stderr).strip().removeprefix("bubblewrap").strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    with tempfile.TemporaryDirectory(prefix="corral-probe-") as tmp:
        argv = [*bwrap_args(path, Path(tmp).resolve(), network=False), "true"]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=_PROBE_TIMEOUT, env=_clean_env(tmp),
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return BubblewrapProbe(False, path, version, f"probe `bwrap … true` hung for {_PROBE_TIMEOUT:g}s")
        except OSError as exc:
            return BubblewrapProbe(False, path, version, f"probe could not start bwrap: {exc}")
    if done.returncode != 0:
        why = done.stderr.strip() or f"exit code {done.returncode}"
        return BubblewrapProbe(False, path, version, f"probe `bwrap … true` failed: {why}")
    return BubblewrapProbe(True, path, version, "probe `bwrap --unshare-all … true` exited 0")


def bwrap_args(bwrap: str, workspace: Path, *, network: bool) -> list[str]:
    """The bubblewrap command line (up to and including ``--``) that confines a command to ``workspace``."""
    ws = str(workspace)
    args = [bwrap, "--unshare-all"]
    if network:
        args.append("--share-net")
    args += ["--die-with-parent", "--new-session"]
    if os.geteuid() == 0:
        args += ["--cap-drop", "ALL"]  # as root, bwrap would otherwise keep every capability
    for d in _RO_DIRS:
        if os.path.isdir(d):
            args += ["--ro-bind", d, d]
    for d in _ROOT_LINKS:
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    args += ["--bind", ws, ws, "--chdir", ws, "--remount-ro", "/", "--"]
    return args


def _clean_env(home: str, marker: str | None = None) -> dict[str, str]:
    env = {"PATH": SAFE_PATH, "HOME": home, "LANG": "C.UTF-8", "TMPDIR": "/tmp"}
    if marker is not None:
        env[RUN_MARKER] = marker
    return env


# -------------------------------------------------------------------------------------- the sandbox


class Sandbox:
    """Runs commands in one workspace under the best isolation this machine offers.

    ``isolation="auto"`` picks bubblewrap when its probe works, else the subprocess fallback;
    ``"bubblewrap"`` insists (``SandboxUnavailable`` if it cannot run); ``"subprocess"`` forces the fallback.
    ``memory_mb``, ``file_size_mb`` and ``max_processes`` may be ``None`` to lift that limit.
    """

    def __init__(
        self,
        workspace_dir: str | os.PathLike[str],
        *,
        timeout: float = 30.0,
        max_output: int = 64_000,
        memory_mb: int | None = 512,
        network: bool = False,
        isolation: str = AUTO,
        file_size_mb: int | None = 1024,
        max_processes: int | None = 256,
    ) -> None:
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {', '.join(ISOLATIONS)}, got {isolation!r}")
        self.timeout = _positive(timeout, "timeout")
        if not isinstance(max_output, int) or max_output < 0:
            raise ValueError(f"max_output must be a byte count ≥ 0, got {max_output!r}")
        self.max_output = max_output
        self.memory_mb = None if memory_mb is None else int(_positive(memory_mb, "memory_mb"))
        self.file_size_mb = None if file_size_mb is None else int(_positive(file_size_mb, "file_size_mb"))
        self.max_processes = None if max_processes is None else int(_positive(max_processes, "max_processes"))
        self.network = bool(network)
        path = Path(os.fspath(workspace_dir))
        path.mkdir(parents=True, exist_ok=True)
        self.workspace_dir = path.resolve()
        if self.workspace_dir == Path("/"):
            raise ValueError("the workspace cannot be the root directory")
        self.requested_isolation = isolation
        self._isolation: str | None = SUBPROCESS if isolation == SUBPROCESS else None
        if isolation == BUBBLEWRAP:
            probe = probe_bubblewrap()
            if not probe.ok:
                raise SandboxUnavailable(
                    f"bubblewrap isolation was required but cannot run here: {probe.detail}. Install "
                    "bubblewrap and allow unprivileged user namespaces, or use isolation='auto' (in an agent "
                    "file: `sandbox: unisolated`)."
                )
            self._isolation = BUBBLEWRAP

    def __repr__(self) -> str:
        return f"Sandbox({str(self.workspace_dir)!r}, isolation={self.isolation!r})"

    @property
    def isolation(self) -> str:
        """``"bubblewrap"`` or ``"subprocess"``: what confines the commands this sandbox runs."""
        if self._isolation is None:
            self._isolation = BUBBLEWRAP if probe_bubblewrap().ok else SUBPROCESS
        return self._isolation

    # ------------------------------------------------------------------------------------------ run

    def run(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
    ) -> ExecResult:
        """Run ``command`` (a string goes to ``/bin/sh -c``; a list is exec'd as is) and wait for it."""
        if isinstance(command, str):
            argv = ["/bin/sh", "-c", command]
        else:
            argv = list(command)
            if not argv or not all(isinstance(a, str) for a in argv):
                raise ValueError(f"a command is a string or a non-empty list of strings, got {command!r}")
        limit = self.timeout if timeout is None else _positive(timeout, "timeout")
        isolation = self.isolation
        marker = secrets.token_hex(12)
        ws = str(self.workspace_dir)
        full = argv
        if isolation == BUBBLEWRAP:
            bwrap = probe_bubblewrap().path or "bwrap"
            full = [*bwrap_args(bwrap, self.workspace_dir, network=self.network), *argv]
        data = stdin.encode() if isinstance(stdin, str) else stdin
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                full,
                cwd=ws,
                env=_clean_env(ws, marker),
                stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=self._limits(limit),
                close_fds=True,
            )
        except OSError as exc:  # the program does not exist or may not be executed: what a shell says
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            return ExecResult(code, "", f"{argv[0]}: {exc.strerror or exc}\n", False, False,
                              _ms(started), isolation)
        try:
            out, err, timed_out = self._communicate(proc, data, started + limit, marker, isolation)
        finally:
            if proc.poll() is None:
                self._kill(proc, marker, isolation)
                proc.wait()
        code = proc.returncode
        if timed_out and code == 0:  # it finished in the instant between the deadline and the kill
            timed_out = False
        return ExecResult(
            exit_code=code,
            stdout=out.text(),
            stderr=err.text(timeout=limit if timed_out else None),
            truncated=out.dropped > 0 or err.dropped > 0,
            timed_out=timed_out,
            duration_ms=_ms(started),
            isolation=isolation,
        )

    def _communicate(
        self, proc: subprocess.Popen[bytes], data: bytes | None, deadline: float, marker: str, isolation: str
    ) -> tuple[_Capture, _Capture, bool]:
        """Feed stdin and read both pipes as they fill, until the command is over or its deadline passes."""
        out, err = _Capture(self.max_output), _Capture(self.max_output)
        sel = selectors.DefaultSelector()
        assert proc.stdout is not None and proc.stderr is not None
        for pipe, capture in ((proc.stdout, out), (proc.stderr, err)):
            os.set_blocking(pipe.fileno(), False)
            sel.register(pipe, selectors.EVENT_READ, capture)
        pending = memoryview(data or b"")
        if proc.stdin is not None:
            if pending:
                os.set_blocking(proc.stdin.fileno(), False)
                sel.register(proc.stdin, selectors.EVENT_WRITE, None)
            else:
                proc.stdin.close()
        timed_out = False
        over_at: float | None = None  # when the command ended (by itself or killed)
        try:
            while sel.get_map():
                now = time.monotonic()
                if over_at is None and _exited(proc):
                    self._kill(proc, marker, isolation)  # stragglers it left behind holding our pipes
                    over_at = now
                elif over_at is None and now >= deadline:
                    timed_out = True
                    self._kill(proc, marker, isolation)
                    over_at = now
                if over_at is not None and now - over_at > _DRAIN_GRACE:
                    break
                wait = 0.05 if over_at is not None else max(0.0, min(deadline - now, 0.05))
                for key, _ in sel.select(timeout=wait):
                    if key.data is None:  # stdin
                        try:
                            sent = os.write(key.fd, pending[:_CHUNK])
                            pending = pending[sent:]
                        except (BrokenPipeError, BlockingIOError) as exc:
                            if isinstance(exc, BlockingIOError):
                                continue
                            pending = memoryview(b"")
                        if not pending:
                            sel.unregister(key.fileobj)
                            key.fileobj.close()  # type: ignore[union-attr]
                        continue
                    try:
                        chunk = os.read(key.fd, _CHUNK)
                    except BlockingIOError:
                        continue
                    if chunk:
                        key.data.add(chunk)
                    else:
                        sel.unregister(key.fileobj)
        finally:
            for key in list(sel.get_map().values()):
                sel.unregister(key.fileobj)
            sel.close()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    try:
                        pipe.close()
                    except OSError:
                        pass
        return out, err, timed_out

    def _kill(self, proc: subprocess.Popen[bytes], marker: str, isolation: str) -> None:
        """Kill the command's process group; in the fallback, also whatever still carries its marker.

        The command has not been reaped yet when this runs, so its process group id cannot have been
        reused. Under bubblewrap, killing bwrap takes the sandbox's PID namespace down with it.
        """
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if isolation == SUBPROCESS:
            _sweep(marker)

    def _limits(self, timeout: float) -> Callable[[], None]:
        """The ``preexec_fn`` that lowers the child's resource limits; everything is computed up front."""
        limits: list[tuple[int, int]] = [
            (resource.RLIMIT_CPU, math.ceil(timeout) + 1),
            (resource.RLIMIT_CORE, 0),
        ]
        if self.memory_mb is not None:
            limits.append((resource.RLIMIT_AS, self.memory_mb * 1024 * 1024))
        if self.file_size_mb is not None:
            limits.append((resource.RLIMIT_FSIZE, self.file_size_mb * 1024 * 1024))
        nproc = self._nproc_limit()
        if nproc is not None:
            limits.append((resource.RLIMIT_NPROC, nproc))
        plan = []
        for which, value in limits:
            _soft, hard = resource.getrlimit(which)
            capped = value if hard == resource.RLIM_INFINITY else min(value, hard)
            plan.append((which, (capped, capped)))

        def apply() -> None:
            for which, pair in plan:
                resource.setrlimit(which, pair)

        return apply

    def _nproc_limit(self) -> int | None:
        """RLIMIT_NPROC counts all of a user's processes and never applies to root: allow N more than now."""
        if self.max_processes is None or os.geteuid() == 0:
            return None
        return _count_processes(os.getuid()) + self.max_processes

    # --------------------------------------------------------------------------------------- doctor

    def doctor(self) -> dict[str, Any]:
        """Which isolation is in force, why, and the limits every command runs under."""
        report = _report(self.requested_isolation, self.isolation, self._limits_report(), self.network)
        report["workspace"] = str(self.workspace_dir)
        return report

    def _limits_report(self) -> dict[str, Any]:
        root = os.geteuid() == 0
        return {
            "timeout_seconds": self.timeout,
            "max_output_bytes_per_stream": self.max_output,
            "cpu_seconds": "timeout + 1 (RLIMIT_CPU)",
            "memory_mb": self.memory_mb,
            "file_size_mb": self.file_size_mb,
            "max_processes": (
                "not enforced: RLIMIT_NPROC does not apply to root" if root and self.max_processes else
                self.max_processes
            ),
        }


def doctor(isolation: str = AUTO) -> dict[str, Any]:
    """What ``Sandbox(…, isolation=isolation)`` would use on this machine, with the default limits."""
    if isolation not in ISOLATIONS:
        raise ValueError(f"isolation must be one of {', '.join(ISOLATIONS)}, got {isolation!r}")
    probe = probe_bubblewrap()
    chosen = SUBPROCESS if isolation == SUBPROCESS or not probe.ok else BUBBLEWRAP
    with tempfile.TemporaryDirectory(prefix="corral-doctor-") as tmp:
        limits = Sandbox(tmp, isolation=SUBPROCESS)._limits_report()
    return _report(isolation, chosen, limits, False)


def _report(requested: str, chosen: str, limits: dict[str, Any], network: bool) -> dict[str, Any]:
    probe = probe_bubblewrap()
    if chosen == BUBBLEWRAP:
        reason = f"bwrap {probe.version or '(unknown version)'} at {probe.path} works: {probe.detail}"
        confinement = {
            "filesystem": "read-only root (/usr, /etc, /bin, /lib*), private /tmp, the workspace read-write",
            "network": "shared with the host" if network else "none (own network namespace)",
            "processes": "own PID namespace; everything dies with the command or at its timeout",
            "privileges": "all capabilities dropped" if os.geteuid() == 0 else "unprivileged user namespace",
        }
    else:
        reason = (
            "forced by isolation='subprocess'" if requested == SUBPROCESS
            else f"bubblewrap unavailable: {probe.detail}"
        )
        confinement = {
            "filesystem": "NOT confined: cwd is the workspace, but absolute paths reach the host with "
                          "this user's rights",
            "network": "NOT confined",
            "processes": "own session and process group, killed at the timeout with every process "
                         "that still carries the run's environment marker",
            "privileges": "those of this process (running as root)" if os.geteuid() == 0 else
                          "those of this user",
        }
    return {
        "isolation": chosen,
        "requested": requested,
        "reason": reason,
        "bubblewrap": {"path": probe.path, "version": probe.version, "probe_ok": probe.ok,
                       "probe": probe.detail},
        "confinement": confinement,
        "environment": {"PATH": SAFE_PATH, "HOME": "<workspace>", "LANG": "C.UTF-8"},
        "limits": limits,
    }


# --------------------------------------------------------------------------------------- internals


class _Capture:
    """One output stream: the first ``limit`` bytes kept, the rest counted and dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]
        self.dropped += max(0, len(chunk) - max(room, 0))

    def text(self, *, timeout: float | None = None) -> str:
        text = self.kept.decode("utf-8", errors="replace")
        if self.dropped:
            text += f"\n[output truncated: {self.dropped} more bytes not shown]\n"
        if timeout is not None:
            text += f"\n[killed: the command did not finish within {timeout:g}s]\n"
        return text


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Has the command exited? Asked without reaping it, so its pid stays reserved until we kill its group."""
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _sweep(marker: str) -> None:
    """Kill every process whose environment still carries ``marker`` (the fallback's escaped children)."""
    needle = f"{RUN_MARKER}={marker}".encode()
    me = os.getpid()
    for _ in range(20):
        found = False
        for pid in _pids():
            if pid == me:
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as fh:
                    environ = fh.read()
            except OSError:
                continue
            if needle in environ.split(b"\0"):
                found = True
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if not found:
            return
        time.sleep(0.01)  # a child may have been forking while we looked: look again


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def _count_processes(uid: int) -> int:
    count = 0
    for pid in _pids():
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                count += 1
        except OSError:
            continue
    return count


def _positive(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a positive number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{what} must be a positive number, got {value!r}")
    return number


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
