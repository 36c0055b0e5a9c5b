"""``module:function`` references in an agent file, resolved against the file's own directory.

Python tools, compensations and OpenAPI overrides name functions this way; the agent file's directory
goes first on ``sys.path`` so a tool module beside the file is found wherever corral was started.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral.errors import ConfigError


def resolve_import(path: str, base_dir: Path) -> Callable[..., Any]:
    """``module:function`` with the agent file's directory first on ``sys.path``."""
    module_name, _, attr = path.partition(":")
    base = str(base_dir.resolve())
    if base not in sys.path:
        sys.path.insert(0, base)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from None
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"{module_name!r} has no {attr!r}") from None
    if not callable(target):
        raise ConfigError(f"{path} is not callable")
    return target
