"""The thin client: enforcement points that ask a running ``corral serve`` instead of opening the store.

``corral hook claude-code --server URL`` (DESIGN §12) runs once per Claude Code tool event, so this module
imports only the standard library — ``http.client`` and ``json`` — and answers in one round trip:
PreToolUse is ``POST /v1/check``, PostToolUse (and PostToolUseFailure) ``POST /v1/calls/{id}/finish``.
The token comes from ``CORRAL_TOKEN``; it is sent only in the ``Authorization`` header.

Fail closed: a server that cannot be reached, does not answer within the timeout, or answers with an
error means the call is denied (exit status 2, the reason on stderr) — with what to do about it.

The call id of each allowed call is kept until PostToolUse in a small file under the hook's state
directory (``.corral/claude-code/server-calls``, or ``$CORRAL_CLAUDE_CODE_DIR``), named by hashes of the
session and tool-use ids.
"""

from __future__ import annotations

import json
import os
import socket
import sys

TOKEN_ENV = "CORRAL_TOKEN"
DEFAULT_TIMEOUT = 5.0
PRE = "PreToolUse"
POST = "PostToolUse"
POST_FAILURE = "PostToolUseFailure"
RESULT_CHARS = 2000
MAX_ANSWER = 8 * 1024 * 1024


class ServerError(Exception):
    """The server could not decide: the message says why and what to do."""


def _split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an http(s) URL, without urllib (it costs a hook milliseconds)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise ServerError(f"--server {url!r} is not an http:// or https:// URL of a corral server")
    netloc, slash, path = rest.partition("/")
    if "@" in netloc or "?" in rest or "#" in rest:
        raise ServerError(f"--server {url!r}: give the server's address only; the token goes in ${TOKEN_ENV}")
    host, port = netloc, 443 if scheme == "https" else 80
    if netloc.startswith("["):
        host, _, tail = netloc[1:].partition("]")
        if tail.startswith(":"):
            port = _port(url, tail[1:])
    elif ":" in netloc:
        host, _, text = netloc.rpartition(":")
        port = _port(url, text)
    if not host:
        raise ServerError(f"--server {url!r} names no host")
    return scheme, host, port, ("/" + path).rstrip("/") if slash else ""


def _port(url: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ServerError(f"--server {url!r}: the port {text!r} is not a number from 1 to 65535")
    return int(text)


def _dechunk(body: bytes) -> bytes:
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";", 1)[0] or b"0", 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2:]
    return b"".join(out)


class Client:
    """``POST /v1/check`` and ``/v1/calls/{id}/finish`` on one server, with a bearer token: one HTTP/1.1
    request per connection over a plain socket (TLS for https), nothing else imported."""

    def __init__(self, url: str, token: str | None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.scheme, self.host, self.port, self.base = _split_url(url)
        if not token:
            raise ServerError(f"no API token: set ${TOKEN_ENV} (an admin creates one with "
                              "`corral principals add NAME --role user`)")
        if any(ch in token for ch in "\r\n"):
            raise ServerError(f"${TOKEN_ENV} holds a line break; it is not a corral token")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _exchange(self, request: bytes) -> bytes:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            if self.scheme == "https":
                import ssl

                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.host)
            sock.sendall(request)
            chunks, size = [], 0
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ANSWER:
                    raise ServerError(f"the answer of {self.url} is larger than {MAX_ANSWER} bytes")
            return b"".join(chunks)
        finally:
            sock.close()

    def post(self, path: str, body: dict) -> dict:
        data = json.dumps(body, ensure_ascii=False, default=str).encode("utf-8")
        host = f"[{self.host}]" if ":" in self.host else self.host
        head = (f"POST {self.base}{path} HTTP/1.1\r\nHost: {host}:{self.port}\r\n"
                f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n"
                f"Accept: application/json\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n")
        try:
            raw = self._exchange(head.encode("latin-1") + data)
        except TimeoutError:
            raise ServerError(f"the corral server at {self.url} did not answer within {self.timeout:g}s, so the "
                              "call is denied; check that it runs and is not overloaded, or raise --timeout") from None
        except OSError as exc:
            raise ServerError(f"cannot reach the corral server at {self.url} ({exc.strerror or exc}), so the call "
                              "is denied; start it (`corral serve AGENT.yaml`) or fix --server") from None
        header, sep, payload = raw.partition(b"\r\n\r\n")
        try:
            status = int(header.split(b" ", 2)[1])
        except (IndexError, ValueError):
            raise ServerError(f"{self.url} did not answer in HTTP; is --server a corral server?") from None
        if not sep:
            raise ServerError(f"the corral server at {self.url} broke off its answer, so the call is denied")
        if b"transfer-encoding: chunked" in header.lower():
            payload = _dechunk(payload)
        try:
            answer = json.loads(payload)
        except ValueError:
            raise ServerError(f"{self.url}{path} answered {status} with something that is not JSON; "
                              "is --server a corral server?") from None
        if status >= 400:
            error = answer.get("error") if isinstance(answer, dict) else None
            message = error.get("message") if isinstance(error, dict) else str(answer)[:200]
            hint = {401: f" (check ${TOKEN_ENV})", 403: " (ask an admin for the user role)"}.get(status, "")
            raise ServerError(f"the corral server refused ({status}): {message}{hint}")
        if not isinstance(answer, dict):
            raise ServerError(f"{self.url}{path} answered with something that is not a JSON object")
        return answer

    def check(self, agent: str, session: str, tool: str, args: dict, effect: str | None = None) -> dict:
        body = {"agent": agent, "session": session, "tool": tool, "args": args}
        if effect is not None:
            body["effect"] = effect
        return self.post("/v1/check", body)

    def finish(self, call_id: str, *, result: object = None, error: str | None = None) -> dict:
        if not call_id.replace("-", "").replace("_", "").replace(".", "").replace(":", "").isalnum():
            raise ServerError(f"call id {call_id!r} is not one the server gave out")
        body = {"error": error} if error is not None else {"result": result}
        return self.post(f"/v1/calls/{call_id}/finish", body)


# ------------------------------------------------------------------------------- the Claude Code hook


def _state_dir() -> str:
    env = os.environ.get("CORRAL_CLAUDE_CODE_DIR")
    return env if env else os.path.join(os.getcwd(), ".corral", "claude-code")


def _safe_name(text: str) -> str:
    """An id as a file name that cannot name a path: its UTF-8 in hex (hashed only when very long — hashlib
    loads OpenSSL, which costs a short-lived hook more than the whole decision)."""
    encoded = text.encode("utf-8").hex()
    if len(encoded) <= 200:
        return encoded
    import hashlib

    return "sha256-" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _call_file(session: str, tool_use: str) -> str:
    return os.path.join(_state_dir(), "server-calls", _safe_name(session), f"{_safe_name(tool_use)}.json")


def _answer(decision: str, reason: str) -> tuple[int, str, str]:
    body = {"hookSpecificOutput": {"hookEventName": PRE, "permissionDecision": decision,
                                   "permissionDecisionReason": reason}}
    return 0, json.dumps(body), ""


def _refuse(reason: str) -> tuple[int, str, str]:
    return 2, "", f"corral: {reason}\n"


def _event(text: str) -> dict:
    try:
        event = json.loads(text)
    except ValueError as exc:
        raise ServerError(f"the hook's input is not JSON ({exc}); the call is denied") from None
    if not isinstance(event, dict):
        raise ServerError("the hook's input is not a JSON object; the call is denied")
    for key in ("hook_event_name", "session_id", "tool_name"):
        if not isinstance(event.get(key), str) or not event[key]:
            raise ServerError(f"the hook's input has no {key!r}; the call is denied")
    if event["hook_event_name"] not in (PRE, POST, POST_FAILURE):
        raise ServerError(f"unknown hook event {event['hook_event_name']!r}")
    return event


def decide(client: Client, agent: str, event: dict) -> tuple[int, str, str]:
    """One hook event through the server: (exit status, stdout, stderr)."""
    session, tool, tool_use = event["session_id"], event["tool_name"], str(event.get("tool_use_id") or "")
    path = _call_file(session, tool_use)
    if event["hook_event_name"] == PRE:
        args = event.get("tool_input")
        answer = client.check(agent, session, tool, args if isinstance(args, dict) else {})
        decision, reason, call = answer.get("decision"), answer.get("reason", ""), answer.get("call_id")
        where = f" [trace {call}]" if call else ""
        if decision in ("allowed", "flagged", "approved"):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                json.dump({"call_id": call}, handle)
            return _answer("allow", f"corral: {decision}: {reason}{where}")
        if decision == "pending":
            approval = answer.get("approval")
            return _answer("deny", f"corral needs a person's approval: {reason}. What to do: another approver "
                                   f"approves it (`corral approvals approve {approval}` or the console), then "
                                   f"retry the same call; it runs once.{where}")
        return _answer("deny", f"corral blocked this call: {reason}.{where}")
    try:
        with open(path, encoding="utf-8") as handle:
            call = json.load(handle)["call_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return _refuse(f"{tool} ran, but no allowed PreToolUse decision is on file for tool use {tool_use!r}: "
                       "it was not governed (is the PreToolUse hook installed with the same --server?)")
    failed = event["hook_event_name"] == POST_FAILURE
    response = event.get("tool_response")
    if not failed and isinstance(response, dict) and (response.get("isError") or response.get("is_error")):
        failed = True
    if failed:
        client.finish(call, error=str(event.get("error") or event.get("error_message") or "the tool failed"))
    else:
        text = json.dumps(response, default=str, ensure_ascii=False) if response is not None else None
        client.finish(call, result=text[:RESULT_CHARS] if text is not None and len(text) > RESULT_CHARS else response)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return 0, "", ""


def _agent_name(value: str) -> str:
    """A served agent's name; an agent file's path is read for its top-level ``name:`` (no YAML parser
    needed for that one line)."""
    if not value.endswith((".yaml", ".yml")):
        return value
    try:
        with open(value, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise ServerError(f"--agent {value}: cannot read it ({exc.strerror or exc})") from None
    for line in lines:
        if line.startswith("name:"):
            name = line[5:].split("#", 1)[0].strip().strip("'\"")
            if name:
                return name
    raise ServerError(f"--agent {value}: no top-level 'name:' line; give the served agent's name instead")


USAGE = """usage: corral hook claude-code --server URL --agent NAME [--timeout SECONDS]

Ask a running `corral serve` to decide each Claude Code tool call (token from $CORRAL_TOKEN).
--agent is the served agent's name (or its agent file, whose name: is read).
An unreachable or slow server means the call is denied (exit status 2, the reason on stderr).
"""


def hook_main(argv: list[str], stdin: object = None, stdout: object = None, stderr: object = None) -> int:
    """``corral hook claude-code --server URL --agent NAME [--timeout S]``: one event from stdin."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    options = {"--server": None, "--agent": None, "--timeout": str(DEFAULT_TIMEOUT)}
    rest = list(argv)
    while rest:
        flag = rest.pop(0)
        if flag in ("-h", "--help"):
            stdout.write(USAGE)
            return 0
        key, _, value = flag.partition("=")
        if key not in options:
            stderr.write(f"corral: unknown option {flag!r}\n{USAGE}")
            return 2
        if not value:
            if not rest:
                stderr.write(f"corral: {key} needs a value\n{USAGE}")
                return 2
            value = rest.pop(0)
        options[key] = value
    try:
        if not options["--server"] or not options["--agent"]:
            raise ServerError("--server URL and --agent NAME are both needed")
        try:
            timeout = float(options["--timeout"] or DEFAULT_TIMEOUT)
        except ValueError:
            raise ServerError(f"--timeout {options['--timeout']!r} is not a number of seconds") from None
        client = Client(options["--server"], os.environ.get(TOKEN_ENV), timeout)
        code, out, err = decide(client, _agent_name(options["--agent"]), _event(stdin.read()))
    except ServerError as exc:
        code, out, err = _refuse(str(exc))
    except Exception as exc:  # fail closed on anything else too
        code, out, err = _refuse(f"governance fault, so the call is refused: {type(exc).__name__}: {exc}")
    if out:
        stdout.write(out)
    if err:
        stderr.write(err)
    return code


def main(argv: list[str] | None = None) -> int:
    """The fast path's entry: ``argv`` as after ``corral hook claude-code``."""
    return hook_main(sys.argv[1:] if argv is None else argv)


__all__ = ["Client", "ServerError", "decide", "hook_main", "main"]
