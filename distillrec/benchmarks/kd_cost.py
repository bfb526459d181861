"""Seconds per training epoch of every KD method next to the scratch student, in one process.

The student, data and teacher come from an experiment config (``configs/experiments/*.yaml``); every
entry (scratch first) gets its own trainer, and the epochs are timed round-robin (scratch, DE, RRD, …,
scratch, DE, …) so that the machine's load affects all entries alike. Each entry is timed at the
start of training (epoch 0: DE/HTD's Gumbel temperature τ = 1, the selection still soft) and late in
training (default epoch 200: τ = 0.01, one-hot selection), because the expert methods' cost depends on
τ. Teacher-side preparation (top-N lists, embeddings) is reported separately: it happens once per
teacher run and is cached on disk.

For the methods with an expert bank (DE, HTD) it also times a **floor**, in the same round-robin: an
epoch of the same batches in which only the work no implementation of the method can skip runs — per
batch and side, the six matrix products of each selected expert on its entities (two forward, four
backward, one expert per entity as once τ has annealed) and the fused Adam step over the experts'
parameters. Everything else (selection network, Gumbel noise, residuals, bias and index work, the
student's own BPR step) is left out, so "floor ÷ scratch" = (scratch epoch + floor) ÷ scratch epoch
is a lower bound on what that method's epoch can cost against the scratch student on this machine.

ConCF, which has no teacher, is timed with its snapshot queues filled first (so its consensus
learning runs in the timed epochs); its periodic refresh (every head's top-N snapshot and the
consensus) is reported apart from the epochs it falls into (``refresh_seconds``).

Usage: ``distillrec bench kd-cost --experiment configs/experiments/citeulike-cost.yaml``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from distillrec.benchmarks.environment import environment, publish


def _teacher_prep(teacher_path: Path, dataset, needs: dict[str, int]) -> dict:
    """Time to load (or compute and cache) the teacher artifacts the entries need."""
    from training.distill.teacher import TeacherArtifacts

    t0 = time.perf_counter()
    artifacts = TeacherArtifacts(teacher_path, dataset)
    times = {"load_teacher_s": time.perf_counter() - t0}
    for kind, n in needs.items():
        t0 = time.perf_counter()
        getattr(artifacts, kind)(n) if n else getattr(artifacts, kind)()
        times[f"{kind}{'-' + str(n) if n else ''}_s"] = time.perf_counter() - t0
    return {"artifacts": artifacts, "times": times}


def floor_batches(users, items, excluded, n_items: int, batch_size: int, negatives: int) -> list:
    """(unique users, unique items of positives ∪ negatives) of each batch of one epoch over the
    training pairs (users[k], items[k]), drawn as the trainer draws them: shuffled pairs and
    ``negatives`` items per pair outside ``excluded`` — the entity sets DE and HTD evaluate."""
    import numpy as np
    import torch

    from training.distill.base import Batch
    from training.distill.topology import batch_entity_set
    from training.sampling import sample_excluding

    rng = np.random.default_rng(0)
    neg = sample_excluding(rng, users, excluded, negatives, unique=False, n_items=n_items)
    order = rng.permutation(len(users))
    u, i, n = (torch.from_numpy(a[order]) for a in (users, items, neg))
    return [
        batch_entity_set(Batch(u[s : s + batch_size], i[s : s + batch_size], n[s : s + batch_size], 0, b))
        for b, s in enumerate(range(0, len(users), batch_size))
    ]


class ExpertFloor:
    """The floor epoch of one trainer's expert banks (module docstring): its sides and a fused Adam
    over shadow copies of the experts' parameters, built once; :meth:`seconds` times one epoch."""

    def __init__(self, sides: list):
        import torch

        self.sides = sides  # (bank, teacher table, 0 for users / 1 for items)
        shadow = [torch.zeros_like(p, requires_grad=True) for bank, _, _ in sides for p in (bank.w1, bank.b1, bank.w2, bank.b2)]
        for p in shadow:
            p.grad = torch.full_like(p, 1e-3)
        self.adam = torch.optim.Adam(shadow, lr=1e-3, weight_decay=1e-3, fused=True)
        self.adam.step()  # allocate its state outside the timing

    @classmethod
    def of(cls, trainer) -> ExpertFloor | None:
        """The floor of ``trainer``'s methods with a gated expert bank (DE, HTD); None without one."""
        from training.distill.experts import ExpertBank

        sides = []
        for method in trainer.methods:
            for side, (bank_name, table) in enumerate((("user_bank", "t_user"), ("item_bank", "t_item"))):
                bank = getattr(method, bank_name, None)
                if isinstance(bank, ExpertBank) and bank.gate is not None:
                    sides.append((bank, getattr(method, table), side))
        return cls(sides) if sides else None

    def seconds(self, batches: list) -> float:
        """Seconds of the experts' products (one expert per entity, the current gate's choice) and
        Adam steps over ``batches`` (from :func:`floor_batches`); the set-up of each batch is not timed."""
        import torch

        total = 0.0
        torch.set_flush_denormal(True)
        with torch.no_grad():
            for entities in batches:
                work = []
                for bank, teacher, side in self.sides:
                    rows = entities[side]
                    expert = bank.gate(teacher[rows]).argmax(1)  # x's rows are taken as sorted by expert
                    counts = torch.bincount(expert, minlength=bank.n_experts).tolist()
                    x = torch.randn(len(rows), bank.d_s)
                    h, o = torch.empty(len(rows), bank.hidden), torch.empty(len(rows), bank.d_t)
                    g_x, g_h = torch.empty_like(x), torch.empty_like(h)
                    g_w1, g_w2 = torch.empty_like(bank.w1), torch.empty_like(bank.w2)
                    start = 0
                    for m, cnt in enumerate(counts):
                        if cnt:
                            sl = slice(start, start + cnt)
                            work.append((x[sl], h[sl], o[sl], g_x[sl], g_h[sl], bank.w1[m], bank.w2[m], g_w1[m], g_w2[m]))
                            start += cnt
                t0 = time.perf_counter()
                for x, h, o, _g_x, _g_h, w1, w2, _g_w1, _g_w2 in work:
                    torch.mm(x, w1, out=h)
                    torch.mm(h, w2, out=o)
                for x, h, o, g_x, g_h, w1, w2, g_w1, g_w2 in work:  # o stands in for the output gradient
                    torch.mm(h.T, o, out=g_w2)
                    torch.mm(o, w2.T, out=g_h)
                    torch.mm(x.T, g_h, out=g_w1)
                    torch.mm(g_h, w1.T, out=g_x)
                self.adam.step()
                total += time.perf_counter() - t0
        torch.set_flush_denormal(False)
        return total


def _drain_refreshes(trainer) -> list[float]:
    """Seconds of the periodic refreshes (ConCF's snapshots and consensus) the trainer's methods ran
    since the last call; they are reported apart from the epochs they fell into."""
    out = []
    for m in trainer.methods:
        log = getattr(m, "refresh_log", None)
        if log:
            out += log
            log.clear()
    return out


def run(out: Path, experiment: Path, epochs: int, at_epochs: list[int], threads: int | None, only: list[str] | None = None) -> dict:
    import torch

    from training.data import load_dataset
    from training.distill.train_student import build_methods
    from training.experiments.runner import run_config
    from training.experiments.schema import SCRATCH, load_experiment, slug
    from training.models import model_from_config
    from training.run_folder import RunFolder
    from training.sampling import excluded_keys
    from training.trainer import Trainer

    if threads:
        torch.set_num_threads(threads)
    exp = load_experiment(experiment)
    teacher_path = exp.teacher.run or Path("<teacher>")
    if not RunFolder(teacher_path).finished:
        raise SystemExit(f"{teacher_path}: the experiment's teacher is not trained yet; run the experiment (or train it) first.")
    entries = [(SCRATCH, [], [])] + [(e.label, e.methods, e.set) for e in exp.methods]
    if only:
        keep = {slug(o) for o in only} | {SCRATCH}
        entries = [e for e in entries if slug(e[0]) in keep]
    # the methods need the torch loop; the scratch student is timed on the same loop, so each ratio is the method's own cost
    overrides = ["train.engine=torch"] + ([f"train.threads={threads}"] if threads else [])
    base = run_config(exp, SCRATCH, [], overrides, exp.seeds[0], teacher_path)
    dataset = load_dataset(base.data)
    needs = {"embeddings": 0}
    for _, methods, _ in entries:
        for m in methods:
            if m["name"] in ("rrd", "rd", "cd"):
                needs["user_topn"] = max(needs.get("user_topn", 0), int(m.get("topn", m.get("candidates", 500))))
            if m["name"] == "ir":
                needs["item_topn"] = max(needs.get("item_topn", 0), int(m.get("topn", 500)))
    prep = _teacher_prep(teacher_path, dataset, needs)

    rows, trainers, floors = [], [], []
    tmp = tempfile.TemporaryDirectory()
    for i, (label, methods, entry_set) in enumerate(entries):
        cfg = run_config(exp, label, methods, [*entry_set, *overrides], exp.seeds[0], teacher_path)
        torch.manual_seed(0)
        model = model_from_config(cfg.model, dataset.n_users, dataset.n_items, dataset.train)
        t0 = time.perf_counter()
        kd = build_methods(cfg) if methods else []
        trainer = Trainer(cfg, dataset, model, Path(tmp.name) / str(i), methods=kd, teacher=prep["artifacts"])
        rows.append(
            {
                "label": label,
                "methods": methods,
                "setup_s": time.perf_counter() - t0,
                "training_only_parameters": sum(p.numel() for p in trainer.methods.parameters()),
                "student_parameters": model.num_parameters(),
                "epoch_seconds": {str(e): [] for e in at_epochs},
            }
        )
        for m in trainer.methods:  # ConCF: time its epochs with the consensus learning on
            if hasattr(m, "warm_up"):
                m.warm_up(model)
        if refreshes := _drain_refreshes(trainer):
            rows[-1]["refresh_seconds"] = refreshes
        trainers.append(trainer)
        floors.append(ExpertFloor.of(trainer))
        if floors[-1] is not None:
            rows[-1]["floor_seconds"] = {str(e): [] for e in at_epochs}
    if any(floors):
        users, items = dataset.train_pairs()
        batches = floor_batches(users, items, excluded_keys(dataset.train), dataset.n_items, base.train.batch_size, base.train.negatives)
    for start in at_epochs:
        for rep in range(epochs):
            for row, trainer, floor in zip(rows, trainers, floors, strict=True):
                t0 = time.perf_counter()
                trainer._epoch(start + rep)
                refreshes = _drain_refreshes(trainer)
                row["epoch_seconds"][str(start)].append(time.perf_counter() - t0 - sum(refreshes))
                if refreshes:
                    row["refresh_seconds"] += refreshes
                if floor is not None:
                    row["floor_seconds"][str(start)].append(floor.seconds(batches))
                if rep == epochs - 1:
                    row.setdefault("state", {})[str(start)] = {m.name: m.log_state() for m in trainer.methods}
    tmp.cleanup()
    for row in rows:
        row["median_s"] = {e: statistics.median(v) for e, v in row["epoch_seconds"].items()}
        if "refresh_seconds" in row:
            row["refresh_median_s"] = statistics.median(row["refresh_seconds"])
    scratch = rows[0]["median_s"]
    for row in rows:
        row["ratio_to_scratch"] = {e: row["median_s"][e] / scratch[e] for e in scratch}
        if "floor_seconds" in row:
            row["floor_median_s"] = {e: statistics.median(v) for e, v in row["floor_seconds"].items()}
            row["floor_ratio_to_scratch"] = {e: (scratch[e] + row["floor_median_s"][e]) / scratch[e] for e in scratch}

    command = f"distillrec bench kd-cost --experiment {experiment} --epochs {epochs} --at-epochs {','.join(map(str, at_epochs))}" + (
        f" --threads {threads}" if threads else ""
    )
    report = {
        "benchmark": "kd-cost",
        "command": command,
        "experiment": str(experiment),
        "data": dataset.stats(),
        "teacher": str(teacher_path),
        "teacher_preparation_s": prep["times"],
        "environment": environment(),
        "torch_threads": torch.get_num_threads(),
        "rows": rows,
    }
    head = [
        "method",
        *[f"s/epoch @ epoch {e}" for e in at_epochs],
        *[f"× scratch @ {e}" for e in at_epochs],
        *[f"floor ÷ scratch @ {e}" for e in at_epochs],
        "refresh s",
        "training-only params",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        lines.append(
            "| "
            + " | ".join(
                [
                    row["label"],
                    *[f"{row['median_s'][str(e)]:.2f}" for e in at_epochs],
                    *[f"{row['ratio_to_scratch'][str(e)]:.1f}×" for e in at_epochs],
                    *[f"{row['floor_ratio_to_scratch'][str(e)]:.1f}×" if "floor_ratio_to_scratch" in row else "–" for e in at_epochs],
                    f"{row['refresh_median_s']:.2f}" if "refresh_median_s" in row else "–",
                    f"{row['training_only_parameters']:,}" if row["training_only_parameters"] else "–",
                ]
            )
            + " |"
        )
    prep_line = ", ".join(f"{k} {v:.1f} s" for k, v in prep["times"].items())
    lines += [
        "",
        f"{dataset.stats()['name']}: {dataset.n_users:,} users, {dataset.n_items:,} items, {dataset.train.nnz:,} training pairs per epoch, "
        f"batch {base.train.batch_size}, {base.train.negatives} negative(s); median of {epochs} epochs per column, timed round-robin; "
        f"torch threads {torch.get_num_threads()}. Teacher preparation (once per teacher run, cached): {prep_line}.",
        "Floor (DE, HTD): the scratch epoch plus only the experts' matrix products (one expert per entity) and their fused "
        "Adam step, timed in the same round-robin — a lower bound on that method's epoch on this machine.",
        "Refresh (ConCF): one snapshot of every head's top-N lists plus the consensus, median over the warm-up and the timed "
        "epochs; it runs once every `period` epochs and is not counted in the epoch columns.",
    ]
    publish(out, "kd_cost", report, lines)
    return report


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--experiment", default="configs/experiments/citeulike-cost.yaml")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--at-epochs", default="0,200")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", action="append", default=None)
    p.add_argument("--out", default="results/kd-bench-cost")
    a = p.parse_args(argv)
    run(Path(a.out), Path(a.experiment), a.epochs, [int(e) for e in a.at_epochs.split(",")], a.threads, a.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
