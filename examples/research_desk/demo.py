"""The research desk, end to end and offline.

1. Serve the shop's pages and catalogue API on 127.0.0.1 (``site_app.py``), on a free port.
2. Write what names that address: the catalogue's OpenAPI document (the app's own ``/openapi.json``,
   with the server's URL) and the scripted model's turns.
3. ``corral run agent.yaml "..."``: the agent loads the price-check skill, browses the product page,
   calls ``api.get_product`` with the ``catalogue`` credential, reads a review that tries a prompt
   injection, and is refused the internal page it was told to open.
4. ``corral audit verify``: the proof holds; the token appears nowhere in the store.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
STATE = HERE / ".corral"


def serve(token: str) -> tuple[str, object]:
    import uvicorn

    sys.path.insert(0, str(HERE))
    from site_app import make_app

    server = uvicorn.Server(uvicorn.Config(make_app(token), host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the shop did not start")
        time.sleep(0.02)
    return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}", server


def corral(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    print(f"\n$ corral {' '.join(a if ' ' not in a else repr(a) for a in args)}", flush=True)
    return subprocess.run([sys.executable, "-m", "corral.cli", *args], cwd=HERE, env=env, text=True)


def main() -> int:
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir()
    token = secrets.token_urlsafe(24)
    base, server = serve(token)
    print(f"the shop is served at {base}")
    with urllib.request.urlopen(f"{base}/openapi.json") as answer:
        spec = json.load(answer)
    spec["servers"] = [{"url": base}]
    (STATE / "catalogue.json").write_text(json.dumps(spec, indent=2))
    (STATE / "script.yaml").write_text((HERE / "script.template.yaml").read_text().replace("{base}", base))
    env = {**os.environ, "RESEARCH_DESK_TOKEN": token, "COLUMNS": os.environ.get("COLUMNS", "110")}
    try:
        ran = corral("run", "agent.yaml", "Is the blue widget's price on the web shop right?", env=env)
        if ran.returncode != 0:
            return ran.returncode
        verified = corral("audit", "verify", "--store", "sqlite:///.corral/corral.db", env=env)
        if verified.returncode != 0:
            return verified.returncode
    finally:
        server.should_exit = True
    leaked = token.encode() in (STATE / "corral.db").read_bytes()
    print(f"\nthe catalogue token in the store: {'FOUND (a leak!)' if leaked else 'nowhere'}")
    return 1 if leaked else 0


if __name__ == "__main__":
    sys.exit(main())
