"""How every stage of distillrec grows with the data: time and peak memory per size, growth exponents.

For each size a seeded synthetic log (:mod:`distillrec.benchmarks.synthetic`) is written as Parquet,
then every stage runs in a fresh process (so its peak resident memory is its own):

- ``data``: reading the file and splitting it (leave-one-out by time);
- ``teacher`` / ``student``: a training epoch of the shipped BPR-MF teacher (dim 200) and student
  (dim 20) configs on the fused loop with ``train.adam_rows: auto`` (Adam on the rows a mini-batch
  touches once the tables outgrow it), ``student-torch`` the same on the autograd loop (row
  gradients) and ``student-dense-adam`` on the fused loop with ``train.adam_rows: all`` (every row
  in every Adam step, the default);
- ``student-implicit`` (only when asked for; needs the ``peers`` extra): the same epoch of
  implicit 0.7's BPR (dim 20, one thread, one sampled pair per interaction), the fastest peer of
  ``distillrec bench peers``, as a reference for how a per-pair training loop grows on the host;
- ``kd-cache``: the teacher's cached distillation inputs (its top-500 list per user, its embeddings);
- ``rrd`` / ``de``: an epoch of the student distilled with RRD (relaxed ranking distillation, on
  the autograd loop with ``train.adam_rows: auto``) and with DE (distillation experts, the dense
  Adam step);
- ``eval``: full-ranking evaluation of the student on every test user (chunked; the second of two
  calls, the first also loads the compiled top-K);
- ``export``: the student as a bundle (ONNX user tower) with an exact (flat) and an HNSW index;
- ``service``: loading and warming up both bundles through the service's Python API
  (``service.served_models.load_registry``), then in-process ``recommend`` latency p50/p99.

Epoch stages train three epochs (``--epochs N``: N ≥ 2) and report the fewest CPU seconds of the
second to last (the first also loads the compiled loops, whose compilation is paid once, before the
first size; with one thread, CPU seconds are the epoch's own work even where other processes share
the cores, and the wall seconds are recorded too); with two epochs that is the second. They validate once,
after the last epoch, with the sampled protocol (a full-ranking pass at 20 M interactions costs more
than the epoch it would follow and is timed by the ``eval`` stage). The growth exponent of a stage is
the least-squares slope of log(seconds) against
log(interactions) over the MovieLens-shaped sizes. Prints a markdown table, writes scale.json and
scale.png. Usage: ``distillrec bench scale --sizes 100000,1000000 --out results/bench-scale``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from distillrec.benchmarks.environment import environment, fresh_process, peak_rss_mib, publish, pyplot
from distillrec.benchmarks.synthetic import cached_log, data_config, shape_for, write_log
from training.errors import DistillrecError

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "ml-100k"
STAGES = ("data", "teacher", "student", "student-torch", "student-dense-adam", "kd-cache", "rrd", "de", "eval", "export", "service")
OPTIONAL = ("student-implicit",)  # run only when --stages names them
ORDER = (*STAGES[:5], *OPTIONAL, *STAGES[5:])  # the table's row order
NEEDS = {"kd-cache": "teacher", "rrd": "kd-cache", "de": "teacher", "eval": "student", "export": "student", "service": "export"}
MODULE = "distillrec.benchmarks.scale"
# stage: the distillation method, overrides. DE keeps the dense Adam step: its epoch is the experts' work
KD = {"rrd": ({"name": "rrd", "weight": 0.01}, ["train.adam_rows=auto"]), "de": ({"name": "de", "weight": 0.01}, [])}
EPOCHS = 3  # training epochs of the epoch stages; the first is not timed
MIN_SIZE = 1_000  # interactions of the smallest log
TRAINED = {  # stage: shipped config, overrides (the run folder is named after the stage)
    "teacher": ("bpr-teacher.yaml", ["train.engine=fused", "train.adam_rows=auto"]),
    "student": ("bpr-student.yaml", ["train.engine=fused", "train.adam_rows=auto"]),
    "student-torch": ("bpr-student.yaml", ["train.engine=torch", "train.adam_rows=auto"]),
    "student-dense-adam": ("bpr-student.yaml", ["train.engine=fused", "train.adam_rows=all"]),
}


def shipped_config(name: str, work: Path, overrides: list[str]):
    """The shipped MovieLens-100K config ``name`` pointed at the synthetic log in ``work``, with ``overrides``."""
    from training.config import load_config

    data = [f"data.{k}={v}" for k, v in data_config(work / "log.parquet").items()]
    return load_config(CONFIGS / name, [*data, *overrides])


def _config(name: str, work: Path, extra: list[str] = (), epochs: int = EPOCHS):
    return shipped_config(
        name, work, [f"train.epochs={epochs}", f"eval.every={epochs}", "eval.protocol=sampled", "train.progress=false", "train.threads=1", *extra]
    )


def check_arguments(sizes: list[int], wide: list[int], stages: list[str], epochs: int) -> None:
    """Refuses a run the benchmark cannot do, naming the option and the fix."""
    if epochs < 2:
        raise DistillrecError(
            f"--epochs {epochs}: the epoch stages need at least 2 epochs (the first also loads compiled code and is not timed); use --epochs 2 or more"
        )
    unknown = [s for s in stages if s not in ORDER]
    if unknown or not stages:
        raise DistillrecError(f"--stages: unknown stage {unknown[0] if unknown else ''!r}; the stages are {', '.join(ORDER)}")
    if not sizes and not wide:
        raise DistillrecError("--sizes and --wide name no size; give interaction counts, e.g. --sizes 100000,1000000")
    for n in (*sizes, *wide):
        check_size(n, "size")


def check_size(n: int, label: str) -> None:
    """Refuses a log too small for every stage to have users to train and test (``label``: how the
    message names the size)."""
    if n < MIN_SIZE:
        raise DistillrecError(
            f"{label} {n}: a log needs at least {MIN_SIZE:,} interactions for every stage to have users to train and test; give {MIN_SIZE} or more"
        )


def _train(name: str, work: Path, out: str, dataset, extra: list[str] = (), methods: list[dict] | None = None, epochs: int = EPOCHS) -> dict:
    from training.runs import train_run

    observed = np.diff((dataset.train + dataset.valid + dataset.test).tocsr().indptr)
    extra = [f"eval.sampled_negatives={max(1, min(499, dataset.n_items - int(observed.max())))}", *extra]  # small logs: fewer than 499

    cfg = _config(name, work, extra, epochs)
    if methods:
        from training.config import DistillConfig
        from training.distill.train_student import distill_run

        cfg.distill = DistillConfig(teacher=work / "teacher", methods=methods)
        result = distill_run(cfg, work / out, dataset=dataset)
    else:
        result = train_run(cfg, work / out, dataset=dataset)
    records = [json.loads(line) for line in (work / out / "metrics.jsonl").read_text().splitlines()]
    cpu, wall = [r["train_cpu_seconds"] for r in records], [r["train_seconds"] for r in records]
    return {
        "seconds": min(cpu[1:]),
        "wall_seconds": min(wall[1:]),
        "epoch_cpu_seconds": cpu,
        "epoch_seconds": wall,
        "epochs": len(cpu),
        "engine": result.get("engine"),
        "adam_rows": result.get("adam_rows"),
        "pairs": int(dataset.train.nnz) * cfg.train.negatives,  # (user, positive, negative) per epoch
    }


def run_stage(stage: str, work: Path, requests: int = 1000, epochs: int = EPOCHS) -> dict:
    """Runs one stage in this process; returns its seconds (and extras)."""
    from training.data import load_dataset

    t0 = time.perf_counter()
    dataset = load_dataset(_config("bpr-student.yaml", work).data)
    read_s = time.perf_counter() - t0
    info: dict = {"users": dataset.n_users, "items": dataset.n_items, "train_interactions": int(dataset.train.nnz)}
    if stage == "data":
        info["seconds"] = read_s
    elif stage in TRAINED:
        config, extra = TRAINED[stage]
        info.update(_train(config, work, stage, dataset, extra, epochs=epochs))
    elif stage == "student-implicit":
        info.update(_train_implicit(dataset, epochs))
    elif stage == "kd-cache":
        from training.distill.teacher import TeacherArtifacts

        t0 = time.perf_counter()
        artifacts = TeacherArtifacts(work / "teacher", dataset)
        artifacts.user_topn(500)
        artifacts.embeddings()
        info["seconds"] = time.perf_counter() - t0
    elif stage in KD:
        method, extra = KD[stage]
        info.update(_train("bpr-student.yaml", work, stage, dataset, extra, methods=[method], epochs=epochs))
    elif stage == "eval":
        from training.evaluation import TorchScorer, evaluate
        from training.runs import load_run

        model = load_run(work / "student", dataset=dataset).model
        times = []
        for _ in range(2):  # the first call also loads the compiled top-K
            t0 = time.perf_counter()
            res = evaluate(TorchScorer(model), dataset, "test", "full", [10, 20, 50])
            times.append(time.perf_counter() - t0)
        info.update(seconds=times[-1], first_seconds=times[0], ndcg_at_10=res.metrics["ndcg@10"], eval_users=res.users)
    elif stage == "export":
        from training.export import export_run
        from training.export.index_builder import IndexOptions

        parts = {}
        for kind in ("flat", "hnsw"):
            t0 = time.perf_counter()
            export_run(work / "student", work / "models", f"student-{kind}", IndexOptions(kind=kind))
            parts[kind] = time.perf_counter() - t0
        info.update(seconds=sum(parts.values()), flat_seconds=parts["flat"], hnsw_seconds=parts["hnsw"])
    elif stage == "service":
        info.update(serve_in_process(work / "models", dataset.user_ids, requests))
    else:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(ORDER)}")
    return info


def _train_implicit(dataset, epochs: int) -> dict:
    """``epochs`` epochs of implicit's BPR at the student's dimension; the CPU seconds between its
    epoch callbacks, and its training pairs (samples whose negative the user has are skipped)."""
    from distillrec.benchmarks.peer_adapters import train_implicit

    cpu, wall, pairs = [], [], []
    last = [time.process_time()]

    def on_epoch(seconds: float, n_pairs: int, U, I) -> bool:
        now = time.process_time()
        cpu.append(round(now - last[0], 4))
        wall.append(round(seconds, 4))
        pairs.append(n_pairs)
        last[0] = now
        return len(cpu) >= epochs

    train_implicit(dataset, {"dim": 20, "lr": 0.05, "regularization": 0.01, "epochs": epochs, "seed": 0}, on_epoch)
    best = min(range(1, len(cpu)), key=cpu.__getitem__)
    return {"seconds": cpu[best], "wall_seconds": wall[best], "epoch_cpu_seconds": cpu, "epoch_seconds": wall, "epochs": len(cpu), "pairs": pairs[best]}


def serve_in_process(models_dir: Path, user_ids: np.ndarray, requests: int) -> dict:
    """Service start-up (load + warm-up of every bundle) and in-process recommend latency."""
    from service.served_models import load_registry

    t0 = time.perf_counter()
    registry, _ = load_registry(models_dir, ort_threads=1, warmup=32)
    out = {"seconds": time.perf_counter() - t0, "rss_after_load_mib": peak_rss_mib()}
    rng = np.random.default_rng(0)
    for name in sorted(registry.models):
        rec = registry.get(name)
        lat = []
        for u in rng.choice(user_ids, size=requests):
            t1 = time.perf_counter()
            rec.recommend(str(u), 10)
            lat.append(time.perf_counter() - t1)
        kind = name.rsplit("-", 1)[-1]
        out[f"{kind}_p50_ms"] = float(np.percentile(lat, 50) * 1e3)
        out[f"{kind}_p99_ms"] = float(np.percentile(lat, 99) * 1e3)
    return out


def _warm_compiled_kernels(work: Path) -> None:
    """Trains a tiny fused model once so that numba's on-disk cache holds the compiled loops."""
    from distillrec.benchmarks.synthetic import Shape

    write_log(Shape("warm", 50, 200, 3000), work / "log.parquet")
    for stage in ("student", "eval"):
        run_stage(stage, work)


def growth_exponent(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(ys) against log(xs) (None with fewer than two points)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y and y > 0]
    if len(pts) < 2 or len({p[0] for p in pts}) < 2:
        return None
    return float(np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)[0])


def run(
    out: Path,
    sizes: list[int],
    wide: list[int],
    stages: list[str],
    timeout: float,
    requests: int,
    seed: int = 0,
    cache: Path | None = None,
    epochs: int = EPOCHS,
) -> dict:
    check_arguments(sizes, wide, stages, epochs)
    out.mkdir(parents=True, exist_ok=True)
    _fresh_warm = subprocess.run(
        [sys.executable, "-m", "distillrec.benchmarks.scale", "--warm", "--work", str(out / "work" / "warm")], capture_output=True, text=True
    )
    if _fresh_warm.returncode != 0:
        raise SystemExit(f"warming the compiled kernels failed: {_fresh_warm.stderr.strip()[-500:]}")
    results = []
    for n, is_wide in [(n, False) for n in sizes] + [(n, True) for n in wide]:
        shape = shape_for(n, wide=is_wide)
        work = out / "work" / shape.name
        t0 = time.perf_counter()
        written = cached_log(shape, work / "log.parquet", seed, cache)
        entry = {"size": shape.name, "wide": is_wide, "asked": n, "generate_seconds": time.perf_counter() - t0, **written, "stages": {}}
        for stage in stages:
            need = NEEDS.get(stage)
            if need and need in entry["stages"] and "error" in entry["stages"][need]:
                entry["stages"][stage] = {"stage": stage, "error": f"skipped: {need} failed"}
                continue
            args = ["--stage", stage, "--work", str(work), "--requests", str(requests), "--epochs", str(epochs)]
            entry["stages"][stage] = fresh_process(MODULE, stage, args, timeout)
            row = entry["stages"][stage]
            print(
                f"{shape.name}: {stage}: " + (row["error"] if "error" in row else f"{row['seconds']:.2f} s, peak RSS {row['peak_rss_mib']:.0f} MiB"),
                file=sys.stderr,
            )
            (out / "scale.json").write_text(json.dumps({"sizes": [*results, entry]}, indent=2))  # partial results survive an interrupted run
        results.append(entry)
    return report(out, results, stages, sizes, wide, timeout, requests, cache, epochs)


def report(
    out: Path,
    results: list[dict],
    stages: list[str],
    sizes: list[int],
    wide: list[int],
    timeout: float,
    requests: int,
    cache: Path | None = None,
    epochs: int = EPOCHS,
    command: str | None = None,
) -> dict:
    """Writes the table, plot and scale.json of ``results``; ``command``: the command line recorded
    (default: the run's own, from the other arguments)."""
    plain = [r for r in results if not r["wide"]]
    exponents = {}
    for stage in stages:
        ok = [r for r in plain if "seconds" in r["stages"].get(stage, {})]
        exponents[stage] = growth_exponent([r["interactions"] for r in ok], [r["stages"][stage]["seconds"] for r in ok])
    command = command or (
        f"distillrec bench scale --sizes {','.join(map(str, sizes))}"
        + (f" --wide {','.join(map(str, wide))}" if wide else "")
        + f" --stages {','.join(stages)} --timeout {timeout:.0f} --requests {requests}"
        + (f" --epochs {epochs}" if epochs != EPOCHS else "")
        + (f" --cache {cache}" if cache else "")
        + f" --out {out}"
    )
    rep = {"benchmark": "scale", "command": command, "environment": environment(), "sizes": results, "exponents": exponents}

    def cell(r: dict, stage: str) -> str:
        row = r["stages"].get(stage, {})
        if "error" in row:
            return "failed" if not row["error"].startswith("skipped") else "–"
        return f"{row['seconds']:.2f} s / {row['peak_rss_mib'] / 1024:.1f} GiB" if row else ""

    head = "| stage | " + " | ".join(f"{r['size']} ({r['interactions']:,} · {r['users']:,} u · {r['items']:,} i)" for r in results) + " | exponent |"
    lines = [head, "|---" * (len(results) + 2) + "|"]
    for stage in stages:
        e = exponents[stage]
        lines.append(f"| {stage} | " + " | ".join(cell(r, stage) for r in results) + f" | {'' if e is None else f'{e:.2f}'} |")
    for stage, label in (("student", "Student epoch, training pairs (user, positive, negative)"), ("student-implicit", "implicit's BPR epoch, training pairs")):
        timed = [r for r in results if "seconds" in r["stages"].get(stage, {})]
        if timed:
            rates = (f"{r['size']}: {_pairs(r['stages'][stage]) / r['stages'][stage]['seconds'] / 1e6:.2f} M" for r in timed)
            lines += ["", f"{label} per CPU second on one thread: " + ", ".join(rates)]
    served = [r for r in results if "flat_p50_ms" in r["stages"].get("service", {})]
    if served:
        lines += [
            "",
            "In-process recommend (k=10) p50 / p99 ms, exact · HNSW index: "
            + ", ".join(
                f"{r['size']}: {s['flat_p50_ms']:.2f} / {s['flat_p99_ms']:.2f} · {s['hnsw_p50_ms']:.2f} / {s['hnsw_p99_ms']:.2f}"
                for r in served
                for s in [r["stages"]["service"]]
            ),
        ]
    repeated = [_repeated(plain, stage) for stage in stages]
    if any(repeated):
        lines += ["", "Medians of repeated runs (each cell from the run with the median time): " + "; ".join(x for x in repeated if x)]
    fewer = [f"{r['size']} {s}" for r in results for s in stages if r["stages"].get(s, {}).get("epochs", EPOCHS) < EPOCHS]
    if fewer:
        lines += ["", f"Timed with fewer than {EPOCHS} epochs (the last one reported): " + ", ".join(fewer)]
    lines += [
        "",
        f"Cells: seconds (epoch stages: CPU seconds of the fewest of epochs 2–{EPOCHS}, one thread) / peak resident memory of the "
        "stage's own process (it also holds the data); exponent: slope of log(seconds) against log(interactions) over the "
        "MovieLens-shaped sizes.",
    ]
    _plot(out / "scale.png", plain, stages)
    publish(out, "scale", rep, lines)
    return rep


def _repeated(plain: list[dict], stage: str) -> str:
    """How a stage's cells were taken from repeated runs (:func:`merge`): the number of runs, and each
    run's own exponent when every size has them all; '' for a stage measured once."""
    timed = [r for r in plain if "seconds" in r["stages"].get(stage, {})]
    counts = [len(r["stages"][stage].get("runs_seconds", [None])) for r in timed]
    if max(counts, default=0) < 2:
        return ""
    if len(set(counts)) > 1:
        return f"{stage} ({min(counts)}–{max(counts)} runs per size)"
    runs = [growth_exponent([r["interactions"] for r in timed], [r["stages"][stage]["runs_seconds"][k] for r in timed]) for k in range(counts[0])]
    shown = ", ".join(f"{e:.2f}" for e in runs if e is not None)
    return f"{stage} ({counts[0]} runs" + (f"; their own exponents {shown}" if shown else "") + ")"


def _pairs(row: dict) -> int:
    """Training pairs of one epoch as the stage recorded them; scale.json files written before the
    trained stages recorded theirs hold the shipped student's interactions × 4 negatives."""
    return row["pairs"] if "pairs" in row else row["train_interactions"] * 4


def merge_groups(text: str) -> list[list[Path]]:
    """``--merge``'s folders: comma-separated groups, the folders of a group joined by ``+``."""
    return [[Path(x) for x in group.split("+") if x.strip()] for group in text.split(",") if group.strip()]


def merge(groups: list[list[Path]], out: Path) -> dict:
    """One table, plot and exponents from the scale.json of earlier runs (sizes run one at a time, for
    example); a size measured in several groups keeps the stages of each (the later group wins a
    stage). The folders of one group are repeated runs: each of their cells is the cell of the run
    with the median time (the lower one of an even count), with every run's seconds beside it."""
    by_size: dict[tuple[str, bool], dict] = {}
    stages: list[str] = []
    for group in groups:
        for entry in _median_runs([_sizes(part) for part in group]):
            key = (entry["size"], entry["wide"])
            merged = by_size.setdefault(key, {**entry, "stages": {}})
            merged["stages"].update(entry["stages"])
            stages += [s for s in entry["stages"] if s not in stages]
    results = sorted(by_size.values(), key=lambda r: (r["wide"], r["interactions"]))
    stages = [s for s in ORDER if s in stages]
    out.mkdir(parents=True, exist_ok=True)
    sizes = [r["asked"] for r in results if not r["wide"]]
    wide = [r["asked"] for r in results if r["wide"]]
    spec = ",".join("+".join(map(str, group)) for group in groups)
    return report(out, results, stages, sizes, wide, timeout=3600, requests=1000, command=f"distillrec bench scale --merge {spec} --out {out}")


def _sizes(part: Path) -> list[dict]:
    """The sizes of the run whose --out folder is ``part``."""
    if not (part / "scale.json").is_file():
        raise DistillrecError(f"--merge: {part} holds no scale.json; name the --out folders of earlier `distillrec bench scale` runs")
    return json.loads((part / "scale.json").read_text())["sizes"]


def _median_runs(runs: list[list[dict]]) -> list[dict]:
    """The sizes of repeated runs, each stage's cell taken from the run with its median time (cells
    without a time, failed ones, only where no run has one)."""
    if len(runs) == 1:
        return runs[0]
    entries: dict[tuple[str, bool], dict] = {}
    cells: dict[tuple[str, bool], dict[str, list[dict]]] = {}
    for sizes in runs:
        for entry in sizes:
            key = (entry["size"], entry["wide"])
            entries.setdefault(key, entry)
            for stage, cell in entry["stages"].items():
                cells.setdefault(key, {}).setdefault(stage, []).append(cell)
    out = []
    for key, entry in entries.items():
        stages = {}
        for stage, found in cells.get(key, {}).items():
            timed = sorted((c for c in found if "seconds" in c), key=lambda c: c["seconds"])
            if not timed:
                stages[stage] = found[-1]
                continue
            stages[stage] = {**timed[(len(timed) - 1) // 2], "runs_seconds": [c["seconds"] for c in found if "seconds" in c]}
        out.append({**entry, "stages": stages})
    return out


def _plot(path: Path, results: list[dict], stages: list[str]) -> None:
    plt = pyplot()
    if plt is None or len(results) < 2:
        return
    fig, ax = plt.subplots(figsize=(7, 5))
    for i, stage in enumerate(stages):  # past the 10 colours of the cycle, dashed lines
        ok = [r for r in results if "seconds" in r["stages"].get(stage, {})]
        if len(ok) >= 2:
            ax.plot([r["interactions"] for r in ok], [r["stages"][stage]["seconds"] for r in ok], marker="o", linestyle="-" if i < 10 else "--", label=stage)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("interactions")
    ax.set_ylabel("seconds")
    ax.set_title("distillrec stages against data size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """The entry point of the stage processes (``--stage``) and of the compiled-code warm-up (``--warm``);
    users run the benchmark with ``distillrec bench scale``."""
    import argparse

    p = argparse.ArgumentParser(description="One stage of `distillrec bench scale` in a fresh process (internal).")
    p.add_argument("--stage")
    p.add_argument("--warm", action="store_true")
    p.add_argument("--work", required=True)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=EPOCHS)
    a = p.parse_args(argv)
    if a.warm:
        _warm_compiled_kernels(Path(a.work))
        return 0
    if not a.stage:
        p.error("--stage or --warm is required (run the benchmark with `distillrec bench scale`)")
    row = run_stage(a.stage, Path(a.work), a.requests, a.epochs)
    print(json.dumps({"stage": a.stage, **row, "peak_rss_mib": peak_rss_mib()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
