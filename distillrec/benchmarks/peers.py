"""BPR-MF training side by side with RecBole and implicit on the identical MovieLens-100K split.

Every library trains BPR matrix factorisation at one dimension on one thread on the training part of
the split of the shipped configs (leave-one-out by time); after every epoch its user and item tables
are evaluated by distillrec's own evaluator (full ranking, training and test items excluded,
validation NDCG@10), the best epoch's tables are kept and training stops after ``patience`` epochs
without improvement (or at ``epochs``); the kept tables are then evaluated on test. Only training
time counts: *seconds to best* is the sum of the training seconds of the epochs up to the best one,
excluding evaluation. A *training pair* is one (user, positive, negative) triple scored and updated:
distillrec processes ``interactions × 4`` per epoch (4 negatives per positive), RecBole
``interactions × sample_num`` (1 by default), implicit draws ``interactions`` triples with
replacement and skips those whose negative the user has in training. Pairs per second is an
epoch's pairs over its median training seconds.

Each (library, round) runs in a fresh subprocess; rounds alternate over the libraries (the order
rotates every round), round r uses seed r, and the report gives medians over rounds.
Usage: ``distillrec bench peers --out results/bench-peers`` (RecBole and implicit:
``pip install 'distillrec[peers]'``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from distillrec.benchmarks.environment import conditions_line, environment, fresh_process, publish, run_conditions
from distillrec.commands.common import positive

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "ml-100k" / "bpr-student.yaml"
LIBRARIES = ("distillrec-fused", "distillrec-torch", "recbole", "implicit")
VERSIONS = {"distillrec-fused": "distillrec", "distillrec-torch": "distillrec", "recbole": "recbole", "implicit": "implicit"}
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
DESCRIPTION = (
    "BPR-MF (matrix factorisation, Bayesian Personalized Ranking loss) trained on one thread by distillrec's fused and torch loops, "
    "RecBole 1.2.1 and implicit 0.7 on the identical MovieLens-100K split, each library in fresh processes, alternating: "
    "training pairs per second, training seconds to the best validation NDCG@10 (normalised discounted cumulative gain), "
    "and test NDCG@10 at that epoch, all evaluated by distillrec's evaluator."
)


class NumpyScorer:
    """Scores from plain user and item tables: score(u, i) = U[u] · I[i]."""

    def __init__(self, U: np.ndarray, I: np.ndarray):
        self.U, self.I = U, I

    def score_all(self, users: np.ndarray) -> np.ndarray:
        return self.U[users] @ self.I.T

    def score_candidates(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.einsum("bd,bcd->bc", self.U[users], self.I[items])


@dataclass
class Tracker:
    """The evaluation schedule shared by every library: validate after each epoch, keep the best
    tables, stop after ``patience`` epochs without a better validation value."""

    validate: object  # (U, I) -> validation NDCG@10
    patience: int
    seconds: list[float] = field(default_factory=list)
    pairs: list[int] = field(default_factory=list)
    valid: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_tables: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, seconds: float, pairs: int, U: np.ndarray, I: np.ndarray) -> bool:
        self.seconds.append(seconds)
        self.pairs.append(pairs)
        self.valid.append(float(self.validate(U, I)))
        if self.best_epoch < 0 or self.valid[-1] > self.valid[self.best_epoch]:
            self.best_epoch = len(self.valid) - 1
            self.best_tables = (U.copy(), I.copy())
        return len(self.valid) - 1 - self.best_epoch >= self.patience

    def summary(self) -> dict:
        median = statistics.median(self.seconds)
        return {
            "epochs": len(self.seconds),
            "best_epoch": self.best_epoch,
            "best_valid_ndcg@10": self.valid[self.best_epoch],
            "seconds_to_best": sum(self.seconds[: self.best_epoch + 1]),
            "train_seconds": sum(self.seconds),
            "median_epoch_seconds": median,
            "first_epoch_seconds": self.seconds[0],
            "pairs_per_epoch": statistics.median(self.pairs),
            "pairs_per_second": statistics.median(self.pairs) / median,
            "epoch_seconds": self.seconds,
            "valid_ndcg@10": self.valid,
        }


def run_one(library: str, seed: int, lr: float | None, epochs: int, patience: int) -> dict:
    """Trains one library in this process; returns its summary (see :class:`Tracker`) and test NDCG@10."""
    from training.config import load_config
    from training.data import load_dataset
    from training.evaluation import evaluate_full

    overrides = [f"train.seed={seed}", f"train.epochs={epochs}", "train.threads=1", "train.progress=false"]
    if library.startswith("distillrec-"):
        overrides += [f"train.engine={library.removeprefix('distillrec-')}"] + ([f"train.lr={lr}"] if lr is not None else [])
    config = load_config(CONFIG, overrides)
    dataset = load_dataset(config.data)
    dim = config.model.dim
    tracker = Tracker(lambda U, I: evaluate_full(NumpyScorer(U, I), dataset, "valid", [10]).metrics["ndcg@10"], patience)
    from distillrec.benchmarks import peer_adapters as pa

    with tempfile.TemporaryDirectory() as tmp:
        if library.startswith("distillrec-"):
            settings = pa.train_distillrec(dataset, config, tracker, Path(tmp))
        elif library == "recbole":
            settings = pa.train_recbole(dataset, {"dim": dim, "lr": lr or 0.001, "epochs": epochs, "seed": seed}, tracker, Path(tmp))
        elif library == "implicit":
            settings = pa.train_implicit(dataset, {"dim": dim, "lr": lr or 0.01, "regularization": 0.01, "epochs": epochs, "seed": seed}, tracker)
        else:
            raise SystemExit(f"unknown library {library!r}; choose from {', '.join(LIBRARIES)}")
    assert tracker.best_tables is not None
    test = evaluate_full(NumpyScorer(*tracker.best_tables), dataset, "test", [10]).metrics["ndcg@10"]
    return {
        "library": library,
        "version": metadata.version(VERSIONS[library]),
        "seed": seed,
        "dim": dim,
        "settings": settings,
        "test_ndcg@10": test,
        **tracker.summary(),
    }


def aggregate(runs: list[dict]) -> dict:
    """Medians over the rounds of one library (its per-round values kept)."""
    row = {k: runs[0][k] for k in ("library", "version", "dim", "settings")}
    for key in ("pairs_per_epoch", "pairs_per_second", "median_epoch_seconds", "seconds_to_best", "test_ndcg@10", "best_valid_ndcg@10", "epochs", "best_epoch"):
        row[key] = statistics.median(r[key] for r in runs)
    row["rounds"] = [{k: r[k] for k in ("seed", "pairs_per_second", "seconds_to_best", "test_ndcg@10", "best_epoch", "epochs")} for r in runs]
    return row


def targets(rows: dict[str, dict]) -> dict[str, bool]:
    """The comparisons the benchmark reports, for every distillrec loop present."""
    out = {}
    for loop in ("distillrec-fused", "distillrec-torch"):
        if loop not in rows:
            continue
        ours = rows[loop]
        if "recbole" in rows:
            rb = rows["recbole"]
            out[f"{loop} more pairs/s than recbole"] = ours["pairs_per_second"] > rb["pairs_per_second"]
            out[f"{loop} sooner to best than recbole"] = ours["seconds_to_best"] < rb["seconds_to_best"]
            out[f"{loop} higher test NDCG@10 than recbole"] = ours["test_ndcg@10"] > rb["test_ndcg@10"]
        if "implicit" in rows:
            out[f"{loop} pairs/s within 1.5x of implicit"] = rows["implicit"]["pairs_per_second"] <= 1.5 * ours["pairs_per_second"]
    return out


def _label(row: dict) -> str:
    s = row["settings"]
    return f"{row['library']} {row['version']} ({s['optimizer']}, lr {s['lr']:g}, batch {s['batch_size']}, {s['negatives']} neg.)"


def _one(args: list[str]) -> dict:
    """One library's run in a fresh one-thread process (``run_one``'s JSON)."""
    row = fresh_process("distillrec.benchmarks.peers", args[1], args, None, env=ONE_THREAD)
    if "error" in row:
        raise SystemExit(f"{' '.join(args)}: {row['error']}")
    return row


def run(out: Path, libraries: list[str], rounds: int, epochs: int, patience: int, lrs: dict[str, float]) -> dict:
    runs: dict[str, list[dict]] = {}
    if "distillrec-fused" in libraries:  # compile the fused loop into numba's cache first, untimed
        _one(["--one", "distillrec-fused", "--epochs", "1", "--patience", "1"])
    for r in range(rounds):
        for library in libraries[r % len(libraries) :] + libraries[: r % len(libraries)]:
            args = ["--one", library, "--seed", str(r), "--epochs", str(epochs), "--patience", str(patience)]
            runs.setdefault(library, []).append(_one(args + (["--lr", str(lrs[library])] if library in lrs else [])))
    rows = {lib: aggregate(done) for lib, done in runs.items()}
    checks = targets(rows)
    lr_args = "".join(f" --lr {lib}={v:g}" for lib, v in lrs.items())
    command = f"distillrec bench peers --libraries {','.join(libraries)} --rounds {rounds} --epochs {epochs} --patience {patience}{lr_args} --out {out}"
    report = {"benchmark": "peers", "command": command, "environment": {**environment(("torch", "numpy", "numba", "recbole", "implicit")), **run_conditions()}}
    report |= {"rows": list(rows.values()), "targets": checks, "runs": runs}
    first = next(iter(runs.values()))[0]
    publish(
        out,
        "peers",
        report,
        [
            "| library (optimiser, lr, batch, negatives) | training pairs/s | median s/epoch | best epoch | s to best (training only) | valid NDCG@10 | test NDCG@10 |",
            "|---|---|---|---|---|---|---|",
            *(
                f"| {_label(r)} | {r['pairs_per_second'] / 1e6:.2f} M | {r['median_epoch_seconds']:.3f} | {r['best_epoch']:.0f} | {r['seconds_to_best']:.2f} | "
                f"{r['best_valid_ndcg@10']:.4f} | {r['test_ndcg@10']:.4f} |"
                for r in rows.values()
            ),
            "",
            f"BPR-MF at dim {first['dim']}, one thread, MovieLens-100K leave-one-out by time; every epoch evaluated on validation by the same "
            f"evaluator, patience {patience}, at most {epochs} epochs; medians over {rounds} alternating round(s) (seed = round); "
            "each run a fresh process with OMP_NUM_THREADS, MKL_NUM_THREADS and OPENBLAS_NUM_THREADS at 1.",
            *(f"- {name}: {'met' if ok else 'missed'}" for name, ok in checks.items()),
            f"Conditions: {conditions_line(report['environment'])}.",
        ],
    )
    return report


def _lrs(values: list[str]) -> dict[str, float]:
    out = {}
    for v in values:
        lib, _, lr = v.partition("=")
        if lib not in LIBRARIES or not lr:
            raise SystemExit(f"--lr {v!r}: expected LIBRARY=RATE with LIBRARY one of {', '.join(LIBRARIES)}, e.g. --lr recbole=0.005")
        out[lib] = float(lr)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--libraries", default=",".join(LIBRARIES), help=f"comma-separated libraries (default {','.join(LIBRARIES)})")
    p.add_argument("--rounds", type=positive, default=3, help="alternating rounds, each library in a fresh process per round, seed = round (default 3)")
    p.add_argument("--epochs", type=positive, default=300, help="most epochs per run (default 300, as the shipped configs)")
    p.add_argument(
        "--patience", type=positive, default=20, help="epochs without a better validation NDCG@10 before stopping (default 20, as the shipped configs)"
    )
    p.add_argument(
        "--lr",
        action="append",
        default=[],
        metavar="LIBRARY=RATE",
        help="learning rate of one library (repeatable; defaults: distillrec the shipped config's, recbole 0.001, implicit 0.01)",
    )
    p.add_argument("--out", default="results/bench-peers", help="folder for peers.json / .md")


def _run_args(args) -> int:
    run(Path(args.out), args.libraries.split(","), args.rounds, args.epochs, args.patience, _lrs(args.lr))
    return 0


def register_cli(bsub) -> None:
    """``distillrec bench peers``."""
    p = bsub.add_parser("peers", help="BPR-MF training throughput and quality against RecBole and implicit on the same split", description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(handler=_run_args)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m distillrec.benchmarks.peers", description=DESCRIPTION)
    add_arguments(p)
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        lr = float(args.lr[0]) if args.lr else None
        print(json.dumps(run_one(args.one, args.seed, lr, args.epochs, args.patience)))
        return 0
    return _run_args(args)


if __name__ == "__main__":
    sys.exit(main())
