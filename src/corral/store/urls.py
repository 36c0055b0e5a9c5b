"""Store URLs: what ``sqlite:///…`` and ``postgresql://…`` mean, and how they are shown in messages.

A bad URL is a configuration error that names the URL and what is wrong with it, raised when the
store is opened, never a connection error later.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from corral.errors import ConfigError
from corral.struct import struct

SQLITE_DEFAULT_TIMEOUT = 5.0


@struct(frozen=True)
class SQLiteURL:
    """``sqlite:///rel/path.db`` (relative to the working directory) or ``sqlite:////abs/path.db``.

    The one query option is ``timeout`` (seconds a writer waits for the database lock, default 5).
    """

    path: str  # absolute, so a later chdir does not move the database
    timeout: float


def parse_sqlite_url(url: str) -> SQLiteURL:
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ConfigError(f"store URL {url!r}: not a sqlite URL (expected sqlite:///path.db)")
    if not url[len(parts.scheme) :].startswith(":///"):
        raise ConfigError(
            f"store URL {url!r}: a SQLite URL has three slashes and no host: "
            "sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    if parts.fragment:
        raise ConfigError(f"store URL {url!r}: a SQLite URL takes no #fragment")
    raw = unquote(parts.path)
    # urlsplit keeps the slash that ends the empty authority: "/rel.db" means rel.db, "//abs.db" means /abs.db
    path = raw[1:]
    if not path or path.endswith("/"):
        raise ConfigError(f"store URL {url!r}: no database file named (expected sqlite:///path.db)")
    if path == ":memory:" or path.startswith("file:"):
        raise ConfigError(
            f"store URL {url!r}: an in-memory SQLite database is not shared between connections; "
            "use memory:// for a store that lives in this process"
        )
    if "\x00" in path:
        raise ConfigError(f"store URL {url!r}: the path contains a NUL character")
    timeout = SQLITE_DEFAULT_TIMEOUT
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ConfigError(f"store URL {url!r}: malformed query string: {exc}") from None
    for key, value in query:
        if key != "timeout":
            raise ConfigError(f"store URL {url!r}: unknown option {key!r} (the one option is timeout=SECONDS)")
        try:
            timeout = float(value)
        except ValueError:
            raise ConfigError(f"store URL {url!r}: timeout must be a number of seconds, got {value!r}") from None
        if not timeout >= 0 or timeout == float("inf"):
            raise ConfigError(f"store URL {url!r}: timeout must be a finite number of seconds ≥ 0, got {value!r}")
    return SQLiteURL(path=os.path.abspath(path), timeout=timeout)


def parse_postgres_url(url: str) -> dict[str, str]:
    """The connection parameters libpq reads from ``url``; a URL libpq rejects is a ``ConfigError``."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in ("postgresql", "postgres") or not url[len(scheme) :].startswith("://"):
        raise ConfigError(f"store URL {redact_url(url)!r}: expected postgresql://user@host:port/database")
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError as exc:  # pragma: no cover - psycopg is a dependency
        raise ConfigError(
            f"store URL {redact_url(url)!r}: PostgreSQL needs psycopg; pip install 'corral[postgres]'"
        ) from exc
    try:
        params = conninfo_to_dict(url)
    except Exception as exc:
        raise ConfigError(f"store URL {redact_url(url)!r}: libpq cannot read it: {_first_line(exc)}") from None
    # libpq checks a port only when it connects; a typo in it is still a bad URL, so say so now
    for port in str(params.get("port") or "").split(","):
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(f"store URL {redact_url(url)!r}: the port {port!r} is not a number from 1 to 65535")
    return {k: str(v) for k, v in params.items() if v is not None}


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        query = parts.query
        if "password=" not in query:
            return url
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostinfo}"
    query = "&".join(
        "password=***" if pair.split("=", 1)[0] == "password" else pair for pair in parts.query.split("&")
    ) if parts.query else parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
