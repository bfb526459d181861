"""What every benchmark shares: the hardware/software line its table carries, the latency percentiles
it records, publishing its JSON and markdown, running a measurement in a fresh process."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

#: the latency percentiles the benchmarks record (for their CDF plots)
LATENCY_PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
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


def run_conditions() -> dict:
    """What makes latency numbers noisy on a shared machine: load average, niceness, OpenMP threads."""
    out: dict = {}
    try:
        out["load_average"] = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except (OSError, AttributeError):
        pass
    out["nice"] = os.nice(0) if hasattr(os, "nice") else None
    out["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS")
    return out


def conditions_line(env: dict) -> str:
    """``load average at start …; nice …; OMP_NUM_THREADS=…`` for the keys of :func:`run_conditions` in ``env``."""
    parts = []
    if "load_average" in env:
        parts.append(f"load average at start {env['load_average']}")
    if "nice" in env:
        parts.append(f"nice {env['nice']}")
    if "omp_num_threads" in env:
        parts.append(f"OMP_NUM_THREADS={env['omp_num_threads'] or 'unset'}")
    return "; ".join(parts)


def publish(out, stem: str, report: dict, lines: list[str]) -> str:
    """Writes OUT/STEM.json (the report) and OUT/STEM.md (``lines`` + hardware and command lines), prints the markdown."""
    from pathlib import Path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    table = "\n".join([*lines, f"Hardware: {environment_line(report['environment'])}", f"Command: `{report['command']}`"])
    (out / f"{stem}.md").write_text(table + "\n")
    print(table)
    return table


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is not installed (the serve extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def footer(report: dict) -> list[str]:
    """The hardware line (with the run conditions when recorded) and the command line of a benchmark table."""
    env = report["environment"]
    extra = conditions_line(env)
    return [f"Hardware: {environment_line(env)}" + (f"; {extra}" if extra else ""), f"Command: `{report['command']}`"]


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports ``ru_maxrss`` in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fresh_process(module: str, name: str, args: list[str], timeout: float | None, env: dict[str, str] | None = None) -> dict:
    """Runs ``python -m module args`` (the stage or step ``name``; ``env``: this environment's
    variables plus these) and returns the JSON its last stdout line holds, with its wall seconds
    (``process_seconds``), or ``{"stage": name, "error": …}``."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return {"stage": name, "error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"stage": name, "error": f"exit {proc.returncode}: {' | '.join(tail)}"}
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["process_seconds"] = time.perf_counter() - t0
    return row
