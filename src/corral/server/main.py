"""``corral serve``: load the agents, say where the server listens (and how to get a token when there is
no principal yet), and run uvicorn — one process, or ``--workers N`` sharing the socket.

Kept free of the CLI framework, so the command wrapper is one call: ``serve(ServeOptions(...))``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import TextIO

from corral.server.leases import DEFAULT_TTL

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8421
#: Seconds a stopping server waits for open connections — a console page's live stream never ends on its
#: own — before it closes them; runs go on to their end regardless (``Service.close`` waits for them).
GRACE = 5


@dataclass
class ServeOptions:
    agents: list[str]
    store: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = 1
    lease: float = DEFAULT_TTL
    log_level: str = "warning"
    out: TextIO = field(default=sys.stderr)


def banner(options: ServeOptions, store_url: str, agents: list[str], has_principals: bool) -> str:
    from corral.store.urls import redact_url

    where = f"http://{options.host}:{options.port}"
    lines = [
        f"corral serve: listening on {where} ({options.workers} worker{'s' if options.workers != 1 else ''})",
        f"  agents: {', '.join(agents)}",
        f"  store:  {redact_url(store_url)}",
        f"  API:    {where}/v1/…  (OpenAPI: {where}/openapi.json, docs: {where}/docs)",
    ]
    if not has_principals:
        store = f" --store '{redact_url(store_url)}'" if options.store else ""
        lines += [
            "",
            "No principal can call this server yet. Create one; its token is printed once:",
            f"  corral principals add alice --role user{store}",
            f"  corral principals add bob --role approver{store}",
            "then call the API with 'Authorization: Bearer TOKEN'.",
        ]
    return "\n".join(lines)


def serve(options: ServeOptions) -> int:
    """Run the server until it is stopped; returns the exit status."""
    import uvicorn

    from corral.errors import GovernanceError
    from corral.server.app import ENVIRONMENT, create_app
    from corral.server.identity import has_principals
    from corral.server.service import Service

    try:
        service = Service(options.agents, options.store, lease_ttl=options.lease)
    except GovernanceError as exc:
        print(f"corral serve: {exc}", file=options.out)
        return 1
    text = banner(options, service.store_url, list(service.agents), has_principals(service.store))
    if options.workers > 1:
        os.environ[ENVIRONMENT] = json.dumps({"agents": [os.path.abspath(a) for a in options.agents],
                                              "store": service.store_url, "lease": options.lease})
        service.close()
        print(text, file=options.out, flush=True)
        uvicorn.run("corral.server.app:app_from_environment", factory=True, host=options.host, port=options.port,
                    workers=options.workers, log_level=options.log_level, access_log=False,
                    timeout_graceful_shutdown=GRACE)
        return 0
    print(text, file=options.out, flush=True)
    uvicorn.run(create_app(service), host=options.host, port=options.port, log_level=options.log_level,
                access_log=False, timeout_graceful_shutdown=GRACE)
    return 0
