"""What the managed-runtime built-ins cost per call: the browser and OpenAPI tools.

- ``browser: navigate + snapshot`` loads a small page served on 127.0.0.1 in the system Chromium and
  reads its text and accessibility tree, through the harness's browser host (the browser is started
  once, outside the timing; each sample is one navigation and one snapshot).
- ``OpenAPI tool call`` is a governed call of a GET operation (``api.get_item``) built from a FastAPI
  app's own ``/openapi.json`` — the decision, the trace, the request with its bearer credential, the
  answer decoded — beside the same request made directly with a pooled ``httpx.Client``: the difference
  is what governing an API call costs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks.registry import Run, Skip, Versus, case
from benchmarks.timing import sample

SECTION = "managed-runtime built-ins (local servers on 127.0.0.1)"
PAGE = ("<!doctype html><html><head><title>Catalogue</title></head><body><h1>Widgets</h1>"
        + "".join(f"<p>Widget {i}: <a href='/w/{i}'>details</a></p>" for i in range(30))
        + "<form><input name=q><button>Search</button></form></body></html>").encode()
TOKEN = "bench-token-0123456789"


def _samples(run: Run, floor: int, ceiling: int) -> int:
    return max(floor, min(ceiling, run.mode.iterations // 20))


# ---------------------------------------------------------------------------------------------- browser


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: Any) -> None:
        pass


def _browser(run: Run) -> tuple[Any, str]:
    def build() -> tuple[Any, str, Any]:
        from corral.harness.tools.browser import BrowserHost, chromium_problem

        problem = chromium_problem()
        if problem:
            raise Skip(f"browser rows: {problem}")
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        host = BrowserHost()
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        t0 = time.perf_counter()
        host.navigate("bench", url)
        run.note(f"browser: Chromium started and first page loaded in {(time.perf_counter() - t0) * 1e3:,.0f} ms "
                 "(once, outside the timing)")
        return host, url, server

    def close(fixture: tuple[Any, str, Any]) -> None:
        host, _, server = fixture
        host.close()
        server.shutdown()
        server.server_close()

    host, url, _ = run.shared("browser", build, close=close)
    return host, url


@case("browser: navigate + snapshot (local page)", section=SECTION, group="browser")
def browser_navigate_snapshot(run: Run) -> list[float]:
    host, url = _browser(run)

    def once() -> None:
        host.navigate("bench", url)
        snap = host.snapshot("bench")
        if "Widget 29" not in snap["text"]:
            run.problem("the snapshot did not hold the page's text")

    return sample(once, _samples(run, 10, 100), warmup=2)


# ---------------------------------------------------------------------------------------------- OpenAPI


def _api(run: Run) -> dict[str, Any]:
    def build() -> dict[str, Any]:
        import httpx
        import uvicorn
        from fastapi import Depends, FastAPI, HTTPException
        from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

        from corral.harness.config import load_agent
        from corral.harness.runtime import Harness

        app = FastAPI(title="Items")
        bearer = HTTPBearer()

        def authed(creds: HTTPAuthorizationCredentials = Depends(bearer)) -> None:  # noqa: B008
            if creds.credentials != TOKEN:
                raise HTTPException(401, "bad token")

        @app.get("/items/{item_id}", operation_id="get_item", dependencies=[Depends(authed)])
        def get_item(item_id: str) -> dict:
            return {"id": item_id, "name": "widget", "price": 9.5}

        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", access_log=False))
        threading.Thread(target=server.run, daemon=True).start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        folder = Path(tempfile.mkdtemp(prefix="corral-bench-api-"))
        (folder / "items.json").write_text(httpx.get(f"{base}/openapi.json").text)
        (folder / "script.yaml").write_text("[]\n")
        (folder / "agent.yaml").write_text(
            "name: bench-api\nmodel: {provider: scripted, script: script.yaml}\n"
            "credentials: {items: {env: CORRAL_BENCH_ITEMS_TOKEN}}\n"
            f"tools:\n  - openapi: {{spec: items.json, base_url: '{base}', credential: items}}\n"
            "governance: {budget: {session: 1000000}}\nstore: 'memory://'\n")
        os.environ["CORRAL_BENCH_ITEMS_TOKEN"] = TOKEN
        harness = Harness(load_agent(folder / "agent.yaml"), principal="bench")
        return {"server": server, "base": base, "harness": harness, "folder": folder,
                "session": harness.governor.session(principal="bench"),
                "client": httpx.Client(headers={"authorization": f"Bearer {TOKEN}"})}

    def close(fixture: dict[str, Any]) -> None:
        fixture["client"].close()
        fixture["harness"].close()
        fixture["server"].should_exit = True
        shutil.rmtree(fixture["folder"], ignore_errors=True)
        os.environ.pop("CORRAL_BENCH_ITEMS_TOKEN", None)

    return run.shared("openapi", build, close=close)


@case("direct HTTP GET (httpx, pooled)", section=SECTION, group="openapi")
def direct_http(run: Run) -> list[float]:
    api = _api(run)
    client, url = api["client"], f"{api['base']}/items/7"

    def once() -> None:
        if client.get(url).json()["id"] != "7":
            run.problem("the direct request got a wrong answer")

    return sample(once, _samples(run, 50, 500), warmup=10)


@case("OpenAPI tool call, governed (api.get_item)", section=SECTION, group="openapi",
      versus=[Versus("direct HTTP GET (httpx, pooled)")])
def openapi_call(run: Run) -> list[float]:
    api = _api(run)
    session = api["session"]

    def once() -> None:
        if session.call("api.get_item", item_id="7")["id"] != "7":
            run.problem("the OpenAPI tool got a wrong answer")

    return sample(once, _samples(run, 50, 500), warmup=10)
