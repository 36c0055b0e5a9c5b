"""Real ``corral serve`` processes for the tests (a pytest plugin: ``tests/conftest.py`` loads it): uvicorn on a free port, a real store, real HTTP.

``serve(store_url, *agent_files)`` starts one (more for the many-servers tests) and waits until it
answers ``/v1/health``; each is stopped at the end of the test, by its pid.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.server.identity import add_principal
from corral.store import open_store

AGENTS = Path(__file__).parent / "agents"
CORRAL = str(Path(sys.executable).with_name("corral"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One ``corral serve`` process."""

    def __init__(self, store: str, agents: list[str], cwd: Path, *, lease: float = 30.0, workers: int = 1,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"serve-{self.port}.log"
        command = [CORRAL, "serve", *agents, "--store", store, "--port", str(self.port), "--lease", str(lease),
                   "--workers", str(workers)]
        self.process = subprocess.Popen(command, cwd=cwd, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
                                        env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"corral serve did not come up:\n{self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def client(self, token: str | None = None, **options: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=options.pop("timeout", 30), **options)

    def kill(self) -> None:
        """SIGKILL: the process dies at once, with nothing cleaned up (its leases stay until they run out)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


class Team:
    """Principals in one store, each with a token."""

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self.tokens: dict[str, str] = {}

    def add(self, name: str, *roles: str) -> str:
        store = open_store(self.store_url)
        try:
            _, token = add_principal(store, name, roles)
        finally:
            store.close()
        self.tokens[name] = token
        return token


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The servers' working directory; the test tools write their effects to effects.log there."""
    monkeypatch.setenv("CORRAL_TEST_LOG", str(tmp_path / "effects.log"))
    monkeypatch.setenv("CORRAL_TEST_GATE", str(tmp_path / "gate"))
    return tmp_path


@pytest.fixture
def sqlite_url(work: Path) -> str:
    return f"sqlite:///{work}/corral.db"


@pytest.fixture
def serve(work: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(store: str, *agents: str, **options: Any) -> Server:
        paths = [str(AGENTS / a) if not os.path.isabs(a) else a for a in agents or ("payer.yaml", "browse.yaml",
                                                                                 "ledger.yaml", "gate.yaml")]
        server = Server(store, paths, work, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def effects(work: Path) -> list[str]:
    path = work / "effects.log"
    return path.read_text().splitlines() if path.exists() else []

