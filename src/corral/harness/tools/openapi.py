"""An OpenAPI 3 document as governed tools: one tool per operation, named ``api.OPERATION_ID``.

```yaml
tools:
  - openapi: {spec: billing.json, base_url: http://127.0.0.1:8000, operations: ["*invoice*"],
              credential: billing}
    effects: {api.void_invoice: read}        # overrides, as for MCP
```

A tool's arguments are the operation's parameters by name (path, query, header) plus ``body`` for a
request body, each with the spec's own schema (``$ref``s resolved, so the model sees a whole schema).
GET and HEAD are ``read``; every other method is ``irreversible`` unless ``effects:`` says otherwise
(``reversible`` needs a ``compensate:`` entry). The credential is sent as the operation's security
scheme says — HTTP bearer as ``Authorization: Bearer …``, an apiKey in its header, query parameter or
cookie — and is never part of the arguments, the trace or the result (``Vault.scrub``).

Everything that can be wrong with the document — not readable, not OpenAPI 3, a ``$ref`` that points
nowhere, a glob that selects nothing, a scheme corral cannot send — is a ``ConfigError`` when the agent
file is checked (``corral validate``), never at the first call. A request that fails (connection
refused, timeout) or a response that is an error (4xx, 5xx) raises ``OpenApiCallError`` with the status
and the body: the loop hands it to the model as the call's result.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from corral.errors import ConfigError
from corral.harness.imports import resolve_import

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
READ_METHODS = ("get", "head")
MAX_BODY_CHARS = 20_000
_NAME = re.compile(r"[^A-Za-z0-9_.-]")
_MAX_REF_DEPTH = 32


class OpenApiCallError(RuntimeError):
    """A request that failed or a response that is an error; ``.status`` is None when no answer came."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Parameter:
    name: str
    where: str  # path | query | header | cookie
    required: bool
    schema: dict[str, Any]


@dataclass(frozen=True)
class Security:
    """How the credential goes out: ``kind`` bearer | header | query | cookie, ``name`` for the latter."""

    kind: str
    name: str = ""


@dataclass(frozen=True)
class Operation:
    """One operation as a tool: its name, HTTP method and path, its arguments' schema, its effect."""

    tool: str
    operation_id: str
    method: str
    path: str
    summary: str
    parameters: tuple[Parameter, ...]
    body_schema: dict[str, Any] | None
    body_required: bool
    body_type: str | None
    security: Security | None
    schema: dict[str, Any] = field(default_factory=dict)

    @property
    def default_effect(self) -> str:
        return "read" if self.method in READ_METHODS else "irreversible"


# ------------------------------------------------------------------------------------------ the spec


def load_spec(path: Path) -> dict[str, Any]:
    """Read an OpenAPI 3 document (JSON or YAML); ``ConfigError`` naming the file and what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the OpenAPI file {path}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                          f"{str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path} is not an OpenAPI document (expected a mapping at the top)")
    version = str(doc.get("openapi", ""))
    if not version.startswith("3."):
        found = f"openapi: {version}" if version else ("swagger: 2.0" if "swagger" in doc else "no `openapi:` key")
        raise ConfigError(f"{path} is not an OpenAPI 3 document ({found})")
    if not isinstance(doc.get("paths"), dict) or not doc["paths"]:
        raise ConfigError(f"{path} declares no paths")
    return doc


class _Resolver:
    """Inlines local ``$ref``s (``#/components/…``); a cycle becomes a plain object, not a loop."""

    def __init__(self, doc: Mapping[str, Any], source: str) -> None:
        self.doc = doc
        self.source = source

    def target(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise ConfigError(f"{self.source}: $ref {ref!r} is not local (only #/… references are supported)")
        node: Any = self.doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or part not in node:
                raise ConfigError(f"{self.source}: $ref {ref!r} points to nothing")
            node = node[part]
        return node

    def inline(self, node: Any, seen: tuple[str, ...] = ()) -> Any:
        if len(seen) > _MAX_REF_DEPTH:
            return {"type": "object"}
        if isinstance(node, Mapping):
            ref = node.get("$ref")
            if isinstance(ref, str):
                if ref in seen:
                    return {"type": "object", "description": f"(recursive: {ref.rsplit('/', 1)[-1]})"}
                merged = self.inline(self.target(ref), (*seen, ref))
                siblings = {k: self.inline(v, seen) for k, v in node.items() if k != "$ref"}
                return {**merged, **siblings} if isinstance(merged, dict) else merged
            return {k: self.inline(v, seen) for k, v in node.items()}
        if isinstance(node, list):
            return [self.inline(v, seen) for v in node]
        return node


def _tool_name(prefix: str, operation_id: str) -> str:
    return prefix + _NAME.sub("_", operation_id)


def _security(doc: Mapping[str, Any], op: Mapping[str, Any], resolver: _Resolver, where: str) -> Security | None:
    requirements = op.get("security", doc.get("security"))
    if not requirements:
        return None
    schemes = (doc.get("components") or {}).get("securitySchemes") or {}
    for requirement in requirements:
        for name in requirement or {}:
            scheme = schemes.get(name)
            if scheme is None:
                raise ConfigError(f"{where}: security scheme {name!r} is not under components.securitySchemes")
            scheme = resolver.inline(scheme)
            kind = scheme.get("type")
            if kind == "http" and str(scheme.get("scheme", "")).lower() == "bearer":
                return Security("bearer")
            if kind == "apiKey" and scheme.get("in") in ("header", "query", "cookie") and scheme.get("name"):
                return Security(scheme["in"], str(scheme["name"]))
            if kind == "oauth2" or kind == "openIdConnect":
                return Security("bearer")  # the credential is the access token
    raise ConfigError(f"{where}: none of its security schemes can carry a credential (corral sends HTTP "
                      "bearer tokens and apiKey headers, query parameters or cookies)")


def operations(source: Any, base_dir: Path) -> tuple[dict[str, Any], list[Operation]]:
    """The spec of an ``openapi:`` entry and the operations it selects, each checked; ``ConfigError``."""
    path = Path(source.spec)
    if not path.is_absolute():
        path = base_dir / path
    doc = load_spec(path)
    resolver = _Resolver(doc, str(path))
    selected: list[Operation] = []
    matched: set[str] = set()
    names: dict[str, str] = {}
    for route, item in doc["paths"].items():
        if not isinstance(item, Mapping):
            raise ConfigError(f"{path}: paths.{route} is not a mapping")
        item = resolver.inline(item) if "$ref" in item else item
        shared = list(item.get("parameters") or [])
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, Mapping):
                continue
            operation_id = _operation_id(op, method, route)
            globs = [g for g in source.operations if fnmatchcase(operation_id, g)]
            if not globs:
                continue
            matched.update(globs)
            where = f"{path}: {method.upper()} {route}"
            tool = _tool_name(source.prefix, operation_id)
            if tool in names:
                raise ConfigError(f"{where}: operation id {operation_id!r} gives the tool name {tool}, "
                                  f"which {names[tool]} has already")
            names[tool] = f"{method.upper()} {route}"
            selected.append(_operation(doc, resolver, op, shared, method, route, operation_id, tool, where))
    unmatched = [g for g in source.operations if g not in matched]
    if unmatched:
        offered = sorted(_all_ids(doc))
        raise ConfigError(f"operations {', '.join(map(repr, unmatched))} select(s) nothing in {path} "
                          f"(its operations: {', '.join(offered) or 'none'})")
    return doc, selected


def _operation_id(op: Mapping[str, Any], method: str, route: str) -> str:
    return re.sub(r"[{}/]+", "_", str(op.get("operationId") or f"{method}_{route}")).strip("_")


def _all_ids(doc: Mapping[str, Any]) -> list[str]:
    return [_operation_id(item[m], m, route) for route, item in doc["paths"].items() if isinstance(item, Mapping)
            for m in METHODS if isinstance(item.get(m), Mapping)]


def _operation(doc: dict[str, Any], resolver: _Resolver, op: Mapping[str, Any], shared: list[Any], method: str,
               route: str, operation_id: str, tool: str, where: str) -> Operation:
    params: dict[tuple[str, str], Parameter] = {}
    for raw in [*shared, *(op.get("parameters") or [])]:
        p = resolver.inline(raw)
        if not isinstance(p, Mapping) or "name" not in p or p.get("in") not in ("path", "query", "header", "cookie"):
            raise ConfigError(f"{where}: a parameter needs `name` and `in` (path, query, header or cookie): {raw!r}")
        schema = dict(p.get("schema") or {})
        if p.get("description") and "description" not in schema:
            schema["description"] = str(p["description"])
        params[(p["in"], p["name"])] = Parameter(str(p["name"]), p["in"], bool(p.get("required")) or
                                                 p["in"] == "path", schema)
    for name in re.findall(r"{([^}]+)}", route):
        if ("path", name) not in params:
            raise ConfigError(f"{where}: path parameter {{{name}}} is not declared under parameters")
    body_schema, body_type, body_required = None, None, False
    body = op.get("requestBody")
    if body is not None:
        body = resolver.inline(body)
        content = body.get("content") or {}
        body_type = next((t for t in content if t == "application/json" or t.endswith("+json")), None)
        if body_type is None and content:
            body_type = next(iter(content))
            if body_type not in ("application/x-www-form-urlencoded", "text/plain"):
                raise ConfigError(f"{where}: request body type {body_type} is not supported (JSON, form or text)")
        body_schema = dict((content.get(body_type) or {}).get("schema") or {}) if body_type else {}
        body_required = bool(body.get("required"))
    by_name: dict[str, Parameter] = {}
    for p in params.values():
        if p.name in by_name or (p.name == "body" and body is not None):
            raise ConfigError(f"{where}: two arguments would be called {p.name!r}")
        by_name[p.name] = p
    properties: dict[str, Any] = {p.name: p.schema for p in by_name.values()}
    required = [p.name for p in by_name.values() if p.required]
    if body is not None:
        properties["body"] = body_schema or {}
        if body_required:
            required.append("body")
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    summary = str(op.get("summary") or op.get("description") or f"{method.upper()} {route}").strip()
    security = _security(doc, op, resolver, where)
    return Operation(tool, operation_id, method, route, summary, tuple(by_name.values()), body_schema,
                     body_required, body_type, security, schema)


def operation_names(source: Any, base_dir: Path) -> list[str]:
    """The tool names an ``openapi:`` entry gives (for ``corral rules check``); ``ConfigError`` if broken."""
    return [o.tool for o in operations(source, base_dir)[1]]


def base_url_of(source: Any, doc: Mapping[str, Any]) -> str:
    if source.base_url:
        return str(source.base_url).rstrip("/")
    servers = doc.get("servers") or []
    url = servers[0].get("url") if servers and isinstance(servers[0], Mapping) else None
    if not url or not str(url).startswith(("http://", "https://")):
        raise ConfigError(f"{source.spec}: give `base_url:` (the spec names no absolute server URL)")
    return str(url).rstrip("/")


# ------------------------------------------------------------------------------------------ the client


class OpenApiClient:
    """Makes the HTTP requests of one ``openapi:`` entry (one pooled ``httpx.Client``, thread-safe)."""

    def __init__(self, base_url: str, *, vault: Any = None, credential: str | None = None,
                 timeout: float = 30.0) -> None:
        import httpx

        self.base_url = base_url
        self.vault = vault
        self.credential = credential
        self.timeout = timeout
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def request(self, op: Operation, args: Mapping[str, Any]) -> Any:
        """Run ``op`` with ``args``; the JSON (or text) answer, or ``OpenApiCallError``."""
        import httpx

        path = op.path
        query: dict[str, Any] = {}
        headers: dict[str, str] = {"accept": "application/json"}
        cookies: dict[str, str] = {}
        for p in op.parameters:
            if p.name not in args:
                continue
            value = args[p.name]
            if p.where == "path":
                path = path.replace("{" + p.name + "}", quote(_scalar(value), safe=""))
            elif p.where == "query":
                query[p.name] = [_scalar(v) for v in value] if isinstance(value, list) else _scalar(value)
            elif p.where == "header":
                headers[p.name] = _scalar(value)
            else:
                cookies[p.name] = _scalar(value)
        if op.security is not None and self.credential is not None and self.vault is not None:
            secret = self.vault.value(self.credential)
            if op.security.kind == "bearer":
                headers["authorization"] = f"Bearer {secret}"
            elif op.security.kind == "header":
                headers[op.security.name] = secret
            elif op.security.kind == "query":
                query[op.security.name] = secret
            else:
                cookies[op.security.name] = secret
        kwargs: dict[str, Any] = {"params": query, "headers": headers}
        if cookies:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        if "body" in args and op.body_type is not None:
            if op.body_type == "application/x-www-form-urlencoded":
                kwargs["data"] = args["body"]
            elif op.body_type == "text/plain":
                kwargs["content"] = str(args["body"]).encode()
                headers["content-type"] = "text/plain"
            else:
                kwargs["content"] = json.dumps(args["body"], ensure_ascii=False).encode()
                headers["content-type"] = op.body_type
        url = self.base_url + path
        what = f"{op.method.upper()} {path}"
        try:
            response = self._client.request(op.method.upper(), url, **kwargs)
        except httpx.TimeoutException:
            raise OpenApiCallError(self._scrub(f"{what}: no answer within {self.timeout:g}s")) from None
        except httpx.HTTPError as exc:
            raise OpenApiCallError(self._scrub(f"{what}: the request failed: {type(exc).__name__}: {exc}")) from None
        body = _decode(response)
        if response.status_code >= 400:
            shown = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
            raise OpenApiCallError(self._scrub(f"{what} answered HTTP {response.status_code}: "
                                               f"{shown[:MAX_BODY_CHARS]}"), response.status_code,
                                   self._scrub(body))
        return self._scrub(body)

    def _scrub(self, value: Any) -> Any:
        return self.vault.scrub(value) if self.vault is not None else value


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _decode(response: Any) -> Any:
    if not response.content:
        return {"status": response.status_code}
    kind = response.headers.get("content-type", "")
    if "json" in kind:
        try:
            return response.json()
        except ValueError:
            pass
    text = response.text
    return text if len(text) <= MAX_BODY_CHARS else text[:MAX_BODY_CHARS] + f"\n[cut at {MAX_BODY_CHARS} chars]"


# ----------------------------------------------------------------------------------------- harness


@dataclass(frozen=True)
class OpenApiToolPlan:
    """One operation as the harness registers it."""

    name: str
    fn: Any
    effect: str
    description: str
    parameters: dict[str, Any]
    compensate: Any = None
    cost: float | None = None
    flow: dict[str, Any] | None = None  # labels, tags, untrusted (§15)


def plan_openapi_tools(entry: Any, base_dir: Path, vault: Any) -> tuple[OpenApiClient, list[OpenApiToolPlan]]:
    """The client and the tools an ``openapi:`` entry gives; every problem is a ``ConfigError``."""
    source = entry.openapi
    doc, ops = operations(source, base_dir)
    base_url = base_url_of(source, doc)
    if source.credential is not None:
        if vault is None or source.credential not in vault.sources:
            known = ", ".join(vault.names) if vault is not None and vault.names else "none are declared"
            raise ConfigError(f"openapi.credential: unknown credential {source.credential!r} "
                              f"(credentials: {known})")
        problem = vault.problem(source.credential)
        if problem:
            raise ConfigError(f"openapi.credential: {problem}")
    names = {o.tool for o in ops} | {o.operation_id for o in ops}
    per_tool = [(key, table) for key, table in (("labels", entry.labels), ("tags", entry.tags))
                if isinstance(table, Mapping)]
    for key, table in (("effects", entry.effects), ("compensate", entry.compensate), ("cost", entry.cost),
                       *per_tool):
        unknown = sorted(set(table) - names)
        if unknown:
            raise ConfigError(f"{key} names {', '.join(unknown)}, which the selected operations do not include "
                              f"(they are: {', '.join(sorted(o.tool for o in ops))})")

    def pick(table: Mapping[str, Any], op: Operation) -> Any:
        return table.get(op.tool, table.get(op.operation_id))

    client = OpenApiClient(base_url, vault=vault, credential=source.credential, timeout=source.timeout)
    plans = []
    for op in ops:
        ref = pick(entry.compensate, op)
        effect = pick(entry.effects, op) or op.default_effect
        if effect == "reversible" and ref is None:
            client.close()
            raise ConfigError(f"effects.{op.tool}: reversible but no compensation under compensate:")
        compensate = resolve_import(ref, base_dir) if ref else None
        plans.append(OpenApiToolPlan(op.tool, _tool_function(client, op), effect,
                                     f"{op.summary} ({op.method.upper()} {op.path})", op.schema, compensate,
                                     pick(entry.cost, op), entry.flow_for(op.tool, op.operation_id)))
    return client, plans


def _tool_function(client: OpenApiClient, op: Operation) -> Any:
    def call(**args: Any) -> Any:
        return client.request(op, args)

    call.__name__ = op.operation_id
    call.__doc__ = op.summary
    return call


def register_openapi(harness: Any, entry: Any) -> OpenApiClient:
    """Register every operation an ``openapi:`` entry selects as a governed tool of ``harness``."""
    client, plans = plan_openapi_tools(entry, harness.config.base_dir, harness.vault)
    harness.resources.append(client)
    for plan in plans:
        harness.expose(plan.name, plan.fn, plan.effect, description=plan.description, parameters=plan.parameters,
                       compensate=plan.compensate, cost=plan.cost, **(plan.flow or {}))
    return client
