"""The hardware/software line every benchmark table carries."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def environment(packages: tuple[str, ...] = ("torch", "numpy", "faiss-cpu", "onnxruntime", "fastapi")) -> dict:
    """CPU, cores, memory, Python and library versions, as a JSON-ready dict."""
    versions = {}
    for p in packages:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _mem_gib(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
    }


def environment_line(env: dict | None = None) -> str:
    env = env or environment()
    libs = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    return f"{env['cpu']}, {env['cores']} cores, {env['memory_gib']} GiB; Python {env['python']}; {libs}"
