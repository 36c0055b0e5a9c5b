"""What the numbers were measured on: printed as the table's header line and kept in the JSON."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any


def describe() -> dict[str, Any]:
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu": _cpu_model(),
        "cores": cores,
        "usable_cores": usable,
        "corral": _version("corral"),
        "cedarpy": _version("cedarpy"),
        "gil": _gil(),
    }


def header(machine: dict[str, Any], mode: str) -> str:
    cores = f"{machine['usable_cores']} cores" + (
        f" (of {machine['cores']})" if machine["usable_cores"] != machine["cores"] else ""
    )
    cpu = f" · {machine['cpu']}" if machine.get("cpu") else ""
    return (
        f"corral {machine['corral']} benchmarks ({mode}) · {machine['implementation']} {machine['python']}"
        f" · {machine['platform']}{cpu} · {cores} · cedarpy {machine['cedarpy']}"
    )


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or None


def _gil() -> str:
    check = getattr(sys, "_is_gil_enabled", None)
    return "on" if check is None or check() else "off"
