"""The whole pipeline on one synthetic log, step by step: data → teacher → distilled student → export → serving.

On a seeded MovieLens-shaped log (:mod:`distillrec.benchmarks.synthetic`, the scale benchmark's
logs), each step runs in a fresh process through the normal code, as ``distillrec train``,
``distillrec distill``, ``distillrec export`` and ``distillrec serve`` would run it one after the
other:

- ``data``: reading the file and splitting it (leave-one-out by time);
- ``teacher``: the shipped BPR-MF teacher config (dim 200) for ``--teacher-epochs`` epochs on the
  fused loop, validated once after the last epoch; test metrics of every test user;
- ``student``: the shipped BPR-MF student config (dim 20) distilled from that teacher with RRD
  (relaxed ranking distillation; its cached inputs, the teacher's top-500 list per user, are built
  first) for ``--student-epochs`` epochs on the torch loop, validated once after the last epoch;
- ``export``: the student as a bundle (ONNX user tower, exact index);
- ``serve``: the service loading and warming up the bundle, then in-process ``recommend`` p50/p99.

Both training steps run with ``train.adam_rows: auto`` (Adam on the rows a mini-batch touches once
the tables outgrow it). Each step reads the data itself (as the separate commands do); its seconds
include that. Reports each step's seconds and peak resident memory, the teacher's and the student's
test NDCG@10, and the total. Prints a markdown table, writes pipeline.json.
Usage: ``distillrec bench pipeline --size 20000000 --teacher-epochs 3 --student-epochs 3 --out results/bench-pipeline``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from distillrec.benchmarks.environment import environment, fresh_process, peak_rss_mib, publish
from distillrec.benchmarks.scale import KD, check_size, serve_in_process, shipped_config
from distillrec.benchmarks.synthetic import cached_log, shape_for
from training.errors import DistillrecError

STEPS = ("data", "teacher", "student", "export", "serve")


def _config(name: str, work: Path, epochs: int):
    # validated once, after the last epoch: a full-ranking pass over every user is an epoch's worth of work at 20 M
    overrides = [f"train.epochs={epochs}", f"eval.every={epochs}", "train.progress=false", "train.threads=1", "train.engine=auto", "train.adam_rows=auto"]
    return shipped_config(name, work, overrides)


def _trained(result: dict, out: Path) -> dict:
    epochs = [json.loads(line)["train_seconds"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    test = result["test"]
    return {
        "engine": result["engine"],
        "adam_rows": result.get("adam_rows"),
        "epochs": result["epochs"],
        "epoch_seconds": epochs,
        "train_seconds": result["train_seconds"],
        "test_ndcg_at_10": test["metrics"]["ndcg@10"],
        "test_users": test["users"],
    }


def run_step(step: str, work: Path, epochs: int, requests: int = 1000) -> dict:
    """Runs one step in this process; returns its measurements."""
    from training.data import load_dataset

    t0 = time.perf_counter()
    dataset = load_dataset(_config("bpr-student.yaml", work, max(1, epochs)).data)
    info: dict = {"read_seconds": time.perf_counter() - t0, "users": dataset.n_users, "items": dataset.n_items, "train_interactions": int(dataset.train.nnz)}
    if step == "teacher":
        from training.runs import train_run

        info.update(_trained(train_run(_config("bpr-teacher.yaml", work, epochs), work / "teacher", dataset=dataset), work / "teacher"))
    elif step == "student":
        from training.config import DistillConfig
        from training.distill.teacher import TeacherArtifacts
        from training.distill.train_student import distill_run

        t1 = time.perf_counter()
        artifacts = TeacherArtifacts(work / "teacher", dataset)
        artifacts.user_topn(500)
        info["kd_cache_seconds"] = time.perf_counter() - t1
        cfg = _config("bpr-student.yaml", work, epochs)
        cfg.distill = DistillConfig(teacher=work / "teacher", methods=[KD["rrd"][0]])
        info.update(_trained(distill_run(cfg, work / "student", dataset=dataset, teacher_artifacts=artifacts), work / "student"))
    elif step == "export":
        from training.export import export_run

        export_run(work / "student", work / "models", "student-flat")
    elif step == "serve":
        info.update(serve_in_process(work / "models", dataset.user_ids, requests))
    elif step != "data":
        raise ValueError(f"unknown step {step!r}; steps: {', '.join(STEPS)}")
    return info


def run(
    out: Path, size: int, teacher_epochs: int, student_epochs: int, cache: Path | None, timeout: float, requests: int, seed: int = 0, resume: bool = False
) -> dict:
    """Runs the steps; with ``resume``, the steps that finished in an earlier run into ``out`` with the
    same command are kept and the run goes on from the first one that did not."""
    check_size(size, "--size")
    for option, epochs in (("--teacher-epochs", teacher_epochs), ("--student-epochs", student_epochs)):
        if epochs < 1:
            raise DistillrecError(f"{option} {epochs}: train at least 1 epoch")
    out.mkdir(parents=True, exist_ok=True)
    shape = shape_for(size)
    work = out / "work"
    t0 = time.perf_counter()
    log = cached_log(shape, work / "log.parquet", seed, cache)
    rep: dict = {
        "benchmark": "pipeline",
        "command": f"distillrec bench pipeline --size {size} --teacher-epochs {teacher_epochs} --student-epochs {student_epochs}"
        + (f" --cache {cache}" if cache else "")
        + f" --out {out}",
        "environment": environment(),
        "log": {**log, "seconds": time.perf_counter() - t0},
        "steps": {},
    }
    earlier = json.loads((out / "pipeline.json").read_text()) if resume and (out / "pipeline.json").exists() else {}
    if earlier.get("command") == rep["command"]:
        rep["steps"] = {step: row for step, row in earlier["steps"].items() if "error" not in row}
        rep["resumed"] = sorted(rep["steps"])
    for step in STEPS:
        if step in rep["steps"]:
            continue
        epochs = {"teacher": teacher_epochs, "student": student_epochs}.get(step, 1)
        args = ["--step", step, "--work", str(work), "--epochs", str(epochs), "--requests", str(requests)]
        row = fresh_process("distillrec.benchmarks.pipeline", step, args, timeout)
        rep["steps"][step] = row
        print(f"{step}: " + (row["error"] if "error" in row else f"{row['process_seconds']:.1f} s, peak RSS {row['peak_rss_mib']:.0f} MiB"), file=sys.stderr)
        (out / "pipeline.json").write_text(json.dumps(rep, indent=2))  # partial results survive an interrupted run
        if "error" in row:
            break
    rep["total_seconds"] = sum(r.get("process_seconds", 0.0) for r in rep["steps"].values())
    publish(out, "pipeline", rep, _lines(rep))
    return rep


def _lines(rep: dict) -> list[str]:
    steps = rep["steps"]
    lines = ["| step | seconds | peak RSS (GiB) | what |", "|---|---|---|---|"]
    for step, row in steps.items():
        if "error" in row:
            lines.append(f"| {step} | failed | | {row['error']} |")
            continue
        lines.append(f"| {step} | {row['process_seconds']:.1f} | {row['peak_rss_mib'] / 1024:.1f} | {_what(step, row)} |")
    lines.append(f"| **total** | **{rep['total_seconds']:.0f}** ({rep['total_seconds'] / 3600:.2f} h) | | |")
    lines += ["", "Seconds: each step's whole process (reading the data, loading code, the work, writing its outputs)."]
    return lines


def _what(step: str, row: dict) -> str:
    if step == "data":
        return f"{row['train_interactions']:,} training interactions, {row['users']:,} users, {row['items']:,} items (read + split {row['read_seconds']:.0f} s)"
    if step in ("teacher", "student"):
        what = "dim 200" if step == "teacher" else f"dim 20, RRD; the teacher's top-500 lists {row['kd_cache_seconds']:.0f} s"
        return (
            f"{what}; {row['epochs']} epoch(s) on the {row['engine']} loop, median epoch {_median(row['epoch_seconds'])} s; "
            f"test NDCG@10 {row['test_ndcg_at_10']:.4f} ({row['test_users']:,} users)"
        )
    if step == "export":
        return "ONNX user tower + exact index"
    return f"load + warm-up {row['seconds']:.2f} s; recommend (k=10) p50 / p99 {row['flat_p50_ms']:.2f} / {row['flat_p99_ms']:.2f} ms"


def _median(values: list[float] | None) -> str:
    import numpy as np

    return f"{float(np.median(values)):.1f}" if values else "–"


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--step", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--requests", type=int, default=1000)
    a = p.parse_args(argv)
    row = run_step(a.step, Path(a.work), a.epochs, a.requests)
    print(json.dumps({"step": a.step, **row, "peak_rss_mib": peak_rss_mib()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
