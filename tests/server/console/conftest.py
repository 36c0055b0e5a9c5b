"""The console over real HTTP (httpx against a real ``corral serve``), as a browser would send it."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.e2e.console.conftest import Console, console, slow_console  # noqa: F401  (the fixtures)


class Browser:
    """An httpx client that keeps cookies and fills the console's forms as its pages give them."""

    def __init__(self, served: Console) -> None:
        self.console = served
        self.http = httpx.Client(base_url=served.url, timeout=30, follow_redirects=False)
        self.origin = served.url

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self.http.get(path, **options)

    def csrf(self, path: str = "/") -> str:
        page = self.get(path)
        assert page.status_code == 200, page.text[:300]
        return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)

    def post(self, path: str, data: dict[str, str], *, origin: str | None = "same", **headers: str) -> httpx.Response:
        sent = dict(headers)
        if origin == "same":
            sent["Origin"] = self.origin
        elif origin is not None:
            sent["Origin"] = origin
        return self.http.post(path, data=data, headers=sent)

    def sign_in(self, name: str) -> Browser:
        token = self.csrf("/login")
        answer = self.post("/login", {"token": self.console.token(name), "csrf": token, "next": "/"})
        assert answer.status_code == 303, answer.text[:500]
        return self

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def browse(console: Console):  # noqa: F811
    opened: list[Browser] = []

    def open_as(name: str | None = None) -> Browser:
        browser = Browser(console)
        opened.append(browser)
        return browser.sign_in(name) if name else browser

    yield open_as
    for browser in opened:
        browser.close()
