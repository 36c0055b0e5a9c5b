"""The console in a real Chromium: Debian's ``/usr/bin/chromium`` driven by Playwright (never a browser
download), against real ``corral serve`` processes on SQLite.

Missing Chromium fails these tests — it never skips them: CI installs it (``.ci/run``). Screenshots go to
``CORRAL_CONSOLE_SCREENSHOTS`` if set, else to a directory of this test run; each is checked not blank.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.server.serving import Server, Team

AGENTS = Path(__file__).parent / "agents"
CHROMIUM = os.environ.get("CORRAL_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--disable-dev-shm-usage"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: the console's tests need it "
                    "(apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("CORRAL_CONSOLE_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ------------------------------------------------------------------------------------- a live console


@dataclass
class Console:
    server: Server
    team: Team
    store_url: str
    work: Path
    contexts: list[Any] = field(default_factory=list)

    def context(self, browser: Any, viewport: dict[str, int] = DESKTOP) -> Any:
        """A browser context (not signed in), closed when the test ends."""
        made = browser.new_context(viewport=viewport)
        self.contexts.append(made)
        return made

    def close_contexts(self) -> None:
        for context in self.contexts:
            context.close()
        self.contexts.clear()

    @property
    def url(self) -> str:
        return self.server.url

    def token(self, name: str) -> str:
        return self.team.tokens[name]

    def api(self, name: str) -> httpx.Client:
        return self.server.client(self.token(name))

    def run_to_approval(self, name: str = "alice") -> tuple[str, str]:
        """Through the JSON API: a desk session of ``name`` that ran until its payment waits; (session, approval)."""
        with self.api(name) as api:
            session = api.post("/v1/sessions", json={"agent": "desk"}).json()["id"]
            answer = api.post(f"/v1/sessions/{session}/messages", json={"text": "Settle invoice INV-7"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["stop_reason"] == "awaiting_approval", answer.json()
            pending = [a for a in api.get("/v1/approvals").json() if a["session"] == session]
        return session, pending[0]["id"]


def _console(serve: Callable[..., Server], sqlite_url: str, work: Path, env: dict[str, str]) -> Iterator[Console]:
    team = Team(sqlite_url)
    team.add("alice", "user")
    team.add("erin", "user")
    team.add("bob", "approver")
    team.add("carol", "auditor")
    team.add("dana", "admin")
    server = serve(sqlite_url, str(AGENTS / "desk.yaml"), env=env)
    console = Console(server, team, sqlite_url, work)
    yield console
    console.close_contexts()  # the pages' live streams end before the server stops


@pytest.fixture
def console(serve: Callable[..., Server], sqlite_url: str, work: Path) -> Iterator[Console]:
    yield from _console(serve, sqlite_url, work, {})


@pytest.fixture
def slow_console(serve: Callable[..., Server], sqlite_url: str, work: Path) -> Iterator[Console]:
    """The same, with a lookup that waits for the file ``work/lookup-gate`` and then takes two seconds: a
    page opens before the run goes on, and has time to watch it."""
    yield from _console(serve, sqlite_url, work, {"CORRAL_TEST_LOOKUP_GATE": str(work / "lookup-gate"),
                                                  "CORRAL_TEST_LOOKUP_SECONDS": "2"})


def sign_in(browser: Any, console: Console, name: str, viewport: dict[str, int] = DESKTOP) -> Any:
    """A fresh browser context signed in as ``name``; returns its page (on the sessions page). The
    context is closed when the test ends, before its server stops."""
    context = browser.new_context(viewport=viewport)
    console.contexts.append(context)
    page = context.new_page()
    page.on("dialog", lambda dialog: pytest.fail(f"a dialog opened: {dialog.message!r} (a script ran)"))
    page.goto(console.url + "/login")
    page.fill("#token", console.token(name))
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(console.url + "/")
    return page


# ------------------------------------------------------------------------------------- screenshots


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB or RGBA PNG (what Chromium writes): width, height, and each row's bytes."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    assert header is not None
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, f"unexpected PNG format {header}"
    step = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * step
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - step] if i >= step else 0
            up = previous[i]
            corner = previous[i - step] if i >= step else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(bytes(line if step == 3 else bytes(b for j, b in enumerate(line) if j % 4 != 3)))
        previous = line
    return width, height, rows


def variance(data: bytes) -> float:
    """The variance of the screenshot's grey levels, sampled: near 0 for a blank (one-colour) page."""
    width, height, rows = png_pixels(data)
    values = []
    for y in range(0, height, 4):
        row = rows[y]
        for x in range(0, width, 4):
            r, g, b = row[x * 3:x * 3 + 3]
            values.append((r * 299 + g * 587 + b * 114) / 1000)
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / len(values)


def shoot(page: Any, folder: Path, name: str) -> Path:
    """Save a full-page screenshot as NAME.png and check that it shows something."""
    path = folder / f"{name}.png"
    data = page.screenshot(path=str(path), full_page=True)
    spread = variance(data)
    assert spread > 50, f"screenshot {name} looks blank (grey-level variance {spread:.1f})"
    return path
