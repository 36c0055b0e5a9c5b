"""Named secrets the harness sends on the agent's behalf, and never shows to anyone else.

An agent file declares ``credentials: {NAME: {env: VARIABLE} | {file: PATH}}``; OpenAPI tools and MCP
servers over HTTP name one (``credential: NAME``) and the harness puts its value into the outbound
request — a header or a query parameter — at the moment the request is made. The value never enters the
model's context, the transcript, a trace, a rule or the audit log: tool arguments do not carry it, and
``Vault.scrub`` replaces it in anything a tool gives back (an API that echoes a header, an error message
with the request's URL) and in every log record of this process (HTTP clients log the URLs they request).

```python
vault = Vault.from_config(config)          # reads nothing yet: values are read when first sent
vault.value("billing")                     # the secret (only for the request being built)
vault.scrub("token=s3cr3t")                # "token=[credential billing]"
```
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from corral.errors import ConfigError


class CredentialError(ConfigError):
    """A credential that is not declared, or whose value cannot be read; the message says which and why."""


class Vault:
    """The agent's credentials: names → where each value is read from. Thread-safe; values cached."""

    def __init__(self, sources: Mapping[str, Any], base_dir: Path | None = None) -> None:
        self.sources = dict(sources)
        self.base_dir = base_dir or Path(".")
        self._values: dict[str, str] = {}
        self._lock = threading.Lock()
        self._registered = False

    @classmethod
    def from_config(cls, config: Any) -> Vault:
        return cls(config.credentials, config.base_dir)

    @property
    def names(self) -> list[str]:
        return sorted(self.sources)

    def problem(self, name: str) -> str | None:
        """Why ``name`` cannot be sent (unknown, unset, unreadable), or None. Never reveals the value."""
        try:
            self.value(name)
        except CredentialError as exc:
            return str(exc)
        return None

    def value(self, name: str) -> str:
        with self._lock:
            if name in self._values:
                return self._values[name]
        source = self.sources.get(name)
        if source is None:
            known = ", ".join(self.names) or "none are declared"
            raise CredentialError(f"unknown credential {name!r} (declared under credentials: {known})")
        env = _get(source, "env")
        if env is not None:
            secret = os.environ.get(env)
            if not secret:
                raise CredentialError(f"credential {name!r}: the environment variable {env} is not set")
        else:
            path = Path(_get(source, "file"))
            if not path.is_absolute():
                path = self.base_dir / path
            try:
                secret = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise CredentialError(f"credential {name!r}: cannot read {path}: {exc.strerror or exc}") from None
            if not secret:
                raise CredentialError(f"credential {name!r}: {path} is empty")
        with self._lock:
            self._values[name] = secret
            self._refresh_filter()
        return secret

    # ---------------------------------------------------------------------------------------- scrubbing

    def scrub(self, value: Any) -> Any:
        """``value`` with every known credential value replaced by ``[credential NAME]`` (strings found
        inside dicts and lists too). Only values that were read — i.e. sent — can be in anything."""
        if not self._values:
            return value
        return _scrub(value, tuple(self._values.items()))

    def _refresh_filter(self) -> None:
        if not self._registered:
            _install_record_factory()
            _VAULTS.add(self)
            self._registered = True

    def close(self) -> None:
        """Forget the values read; log records are no longer scrubbed for this vault."""
        with self._lock:
            self._values.clear()
        _VAULTS.discard(self)
        self._registered = False


def _get(source: Any, key: str) -> Any:
    return source.get(key) if isinstance(source, Mapping) else getattr(source, key, None)


def _scrub(value: Any, secrets: tuple[tuple[str, str], ...]) -> Any:
    if isinstance(value, str):
        for name, secret in secrets:
            if secret in value:
                value = value.replace(secret, f"[credential {name}]")
        return value
    if isinstance(value, dict):
        return {_scrub(k, secrets): _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v, secrets) for v in value)
    return value


_VAULTS: weakref.WeakSet[Vault] = weakref.WeakSet()
_factory_lock = threading.Lock()
_factory_installed = False


def _install_record_factory() -> None:
    """Every log record made in this process, by any logger, has credential values replaced before a
    handler sees it (a filter on one logger would miss its children's records)."""
    global _factory_installed
    with _factory_lock:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            vaults = [v for v in list(_VAULTS) if v._values]
            if vaults:
                try:
                    message = record.getMessage()
                except Exception:
                    return record
                scrubbed = message
                for vault in vaults:
                    scrubbed = vault.scrub(scrubbed)
                if scrubbed != message:
                    record.msg, record.args = scrubbed, None
            return record

        logging.setLogRecordFactory(make_record)
        _factory_installed = True
