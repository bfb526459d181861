"""Epoch time of the shipped training configs on an idle host and on a host busy with other work.

For each config, ``distillrec train`` runs exactly as a user runs it (the default thread count, timed
on the first batches; no ``train.threads`` override, ``OMP_NUM_THREADS`` removed from its
environment) for a few epochs in a fresh process; the epoch time is the median of the ``train_seconds`` its metrics.jsonl records
(training only, without the per-epoch evaluation). The same run is repeated with ``--burners``
CPU-bound background processes (pure-Python busy loops at the same priority, started before the
run and killed after it), idle and loaded alternating round by round. The report is each config's
median loaded ÷ idle epoch time.

Usage: ``distillrec bench train-load --out results/bench-train-load``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from distillrec.benchmarks.environment import conditions_line, environment, publish, run_conditions
from distillrec.commands.common import positive

REPO = Path(__file__).resolve().parents[2]
CONFIGS = ("configs/ml-100k/bpr-teacher.yaml", "configs/ml-100k/bpr-student.yaml", "configs/ml-100k/lightgcn-teacher.yaml")
DESCRIPTION = (
    "Median seconds per training epoch of the shipped configs with the default thread settings, on an idle host and with "
    "--burners busy-looping background processes (default: one per core), alternating idle and loaded; reports loaded ÷ idle."
)


def start_burners(n: int) -> list[subprocess.Popen]:
    """``n`` busy-looping Python processes (the caller kills them with :func:`stop_burners`)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_burners(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def default_env() -> dict[str, str]:
    """This environment without the thread settings a user would not have set."""
    return {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}


def epoch_seconds(config: str, epochs: int, threads: int | None = None) -> dict:
    """Trains ``config`` for ``epochs`` epochs through the command line; its per-epoch training seconds and threads."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "distillrec.cli", "train", "--config", str(REPO / config), "--out", tmp]
        cmd += ["--set", f"train.epochs={epochs}", "--set", "train.progress=false"] + (["--set", f"train.threads={threads}"] if threads else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, env=default_env(), cwd=REPO)
        if proc.returncode != 0:
            raise SystemExit(f"{config}: training failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        records = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines() if line.strip()]
        result = json.loads((Path(tmp) / "result.json").read_text())
    seconds = [r["train_seconds"] for r in records if "train_seconds" in r]
    return {"epoch_seconds": seconds, "median": statistics.median(seconds), "threads": result.get("threads")}


REFERENCE = "reference: one-thread Python loop"
LOOP = "import time; t = time.perf_counter(); x = 0\nfor i in range(20_000_000): x += i\nprint(time.perf_counter() - t)"


def reference_seconds() -> dict:
    """A fixed single-threaded pure-Python loop in a fresh process: what the host gives one thread."""
    out = subprocess.run([sys.executable, "-c", LOOP], check=True, capture_output=True, text=True).stdout
    seconds = float(out.strip().splitlines()[-1])
    return {"epoch_seconds": [seconds], "median": seconds, "threads": 1}


def summarise(runs: dict[tuple[str, str], list[dict]]) -> list[dict]:
    """One row per config: median idle and loaded epoch seconds over rounds and their ratio."""
    rows = []
    for config in dict.fromkeys(c for c, _ in runs):
        idle = statistics.median(r["median"] for r in runs[(config, "idle")])
        loaded = statistics.median(r["median"] for r in runs[(config, "loaded")])
        rows.append(
            {
                "config": config,
                "threads_idle": sorted({r["threads"] for r in runs[(config, "idle")]}),
                "threads_loaded": sorted({r["threads"] for r in runs[(config, "loaded")]}),
                "idle_seconds": idle,
                "loaded_seconds": loaded,
                "ratio": loaded / idle,
                "idle_rounds": [r["median"] for r in runs[(config, "idle")]],
                "loaded_rounds": [r["median"] for r in runs[(config, "loaded")]],
            }
        )
    return rows


def _counts(values: list) -> str:
    return ",".join(map(str, values))


def run(out: Path, configs: list[str], epochs: int, rounds: int, burners: int, threads: int | None = None) -> dict:
    runs: dict[tuple[str, str], list[dict]] = {}
    for r in range(rounds):
        for config in [REFERENCE, *configs]:
            for state in ("idle", "loaded") if r % 2 == 0 else ("loaded", "idle"):
                procs = start_burners(burners) if state == "loaded" else []
                try:
                    if procs:
                        time.sleep(0.5)  # let the burners reach the run queue
                    measure = reference_seconds() if config == REFERENCE else epoch_seconds(config, epochs, threads)
                    runs.setdefault((config, state), []).append(measure)
                finally:
                    stop_burners(procs)
    rows = summarise(runs)
    command = (
        f"distillrec bench train-load --configs {','.join(configs)} --epochs {epochs} --rounds {rounds} --burners {burners}"
        + (f" --threads {threads}" if threads else "")
        + f" --out {out}"
    )
    report = {"benchmark": "train-load", "command": command, "environment": {**environment(), **run_conditions()}, "burners": burners, "rows": rows}
    publish(
        out,
        "train_load",
        report,
        [
            "| config | torch threads idle / loaded | idle s/epoch | loaded s/epoch | loaded ÷ idle |",
            "|---|---|---|---|---|",
            *(
                f"| {r['config']} | {_counts(r['threads_idle'])} / {_counts(r['threads_loaded'])} | {r['idle_seconds']:.3f} | {r['loaded_seconds']:.3f} | {r['ratio']:.2f} |"
                for r in rows
            ),
            "",
            f"Loaded: {burners} busy-looping background process(es) at the same priority; "
            + (f"train.threads={threads}" if threads else "default thread settings (no train.threads)")
            + f", OMP_NUM_THREADS unset; median training seconds of {epochs} epochs per run, median over {rounds} alternating round(s).",
            f"Conditions: {conditions_line(report['environment'])}.",
        ],
    )
    return report


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated training configs (default {','.join(CONFIGS)})")
    p.add_argument("--epochs", type=positive, default=5, help="epochs per run; the median epoch time is used (default 5)")
    p.add_argument("--rounds", type=positive, default=3, help="alternating idle/loaded rounds; medians over rounds are reported (default 3)")
    p.add_argument("--burners", type=positive, default=os.cpu_count() or 1, help="busy-looping background processes when loaded (default: the number of cores)")
    p.add_argument("--threads", type=positive, default=None, help="set train.threads (default: unset, the shipped default thread count)")
    p.add_argument("--out", default="results/bench-train-load", help="folder for train_load.json / .md")


def _run_args(args) -> int:
    report = run(Path(args.out), args.configs.split(","), args.epochs, args.rounds, args.burners, args.threads)
    return 0 if all(r["ratio"] <= 2.0 for r in report["rows"]) else 1


def register_cli(bsub) -> None:
    """``distillrec bench train-load``."""
    p = bsub.add_parser("train-load", help="epoch time of the shipped configs idle vs with busy-looping background processes", description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(handler=_run_args)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m distillrec.benchmarks.train_load", description=DESCRIPTION)
    add_arguments(p)
    return _run_args(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
