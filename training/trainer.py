"""One training loop for teachers, scratch students and distilled students.

Per epoch: redraw one uniform negative per positive (vectorised rejection sampling against the
training interactions), shuffle, and take Adam steps on ``base_loss_weight × base + Σ weight × KD
term`` over mini-batches; every ``eval.every`` epochs evaluate on validation and keep the best
state; stop after ``eval.patience`` evaluations without improvement; restore the best state and
evaluate on test. Everything lands in the run folder (see :class:`RunFolder`).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from training.config import RunConfig, dump_config
from training.data.dataset import Dataset
from training.distill.base import Batch, KDContext, KDMethod
from training.distill.teacher_protocol import Teacher
from training.distributed import DistContext
from training.errors import TrainingError
from training.evaluation import EvalResult, TorchScorer, evaluate
from training.models.base import TrainableRecommender
from training.run_folder import RunFolder
from training.sampling import excluded_keys, sample_excluding
from training.stopping import improves
from training.threads import ThreadTuner, available_cpus

LAST_SAVE_INTERVAL_S = 30.0


@dataclass
class TrainState:
    epoch: int = 0  # next epoch to run
    best_value: float = -math.inf
    best_epoch: int = -1
    bad_evals: int = 0
    stop_bests: dict = field(default_factory=dict)  # best value of each metric early stopping watches
    train_seconds: float = 0.0
    stopped_early: bool = False
    history: list = field(default_factory=list)


def base_loss(kind: str, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Summed base loss. pos [b], neg [b, n].

    bpr: −Σ log σ(r_ui − r_uj); bce: Σ softplus(−r_ui) + Σ softplus(r_uj) (BCE with logits).
    """
    if kind == "bpr":
        return -F.logsigmoid(pos[:, None] - neg).sum()
    if kind == "bce":
        return F.softplus(-pos).sum() + F.softplus(neg).sum()
    raise ValueError(f"unknown base loss {kind!r}")


def model_checkpoint_meta(model: TrainableRecommender, config: RunConfig, dataset: Dataset, epoch: int) -> dict:
    return {
        "kind": "model",
        "constructor": model.constructor_args(),
        "epoch": epoch,
        "data_fingerprint": dataset.fingerprint(),
        "config": config.model_dump(mode="json"),
    }


class Trainer:
    """Trains ``model`` on ``dataset`` as ``config`` says, writing into ``out_dir``."""

    def __init__(
        self,
        config: RunConfig,
        dataset: Dataset,
        model: TrainableRecommender,
        out_dir: str | Path,
        methods: list[KDMethod] | None = None,
        extra_result: dict | None = None,
        teacher: Teacher | None = None,
    ):
        self.config, self.dataset, self.model = config, dataset, model
        self.folder = RunFolder(out_dir)
        self.methods = nn.ModuleList(methods or [])
        self.extra_result = extra_result or {}
        self.loss_kind = config.base_loss()
        self.dist = DistContext.from_env()  # data-parallel under torchrun, else a no-op
        tc = config.train
        self.cpus = available_cpus()
        torch.set_num_threads(tc.threads or self.cpus)
        torch.manual_seed(tc.seed)
        self.rng = np.random.default_rng(tc.seed)
        ctx = KDContext(dataset=dataset, student=model, teacher=teacher, rng=self.rng, max_epochs=tc.epochs, methods=tuple(self.methods))
        for m in self.methods:
            m.setup(ctx)  # may create trainable parts (experts), so before the optimizer exists
        self.params = list(model.parameters()) + list(self.methods.parameters())
        params = self.params
        # fused Adam: one kernel per step, ~5× faster than the default on CPU for large embedding tables
        self.optimizer = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay, fused=True)
        self.state = TrainState()
        self._best_state: dict | None = None  # in-memory copy of the best weights
        self.fused = self._fused_engine()
        if self.fused is None:  # the torch loop's pairs and excluded keys (the fused loop draws its own)
            self.users, self.items = dataset.train_pairs()
            self.train_keys = excluded_keys(dataset.train)
        # without train.threads the torch loop times its first batches at the available CPUs and fewer
        # threads and keeps the fastest (the fused loop runs on one thread whatever torch's count)
        tune = tc.threads is None and self.fused is None and self.cpus > 1
        self.tuner = ThreadTuner(self.cpus, torch.set_num_threads) if tune else None
        self._tuning_reported = False
        self.row_tables = self._row_tables()

    @property
    def threads(self) -> int:
        """Torch's thread count now (during the tuning: the count being timed)."""
        return self.tuner.threads if self.tuner is not None else self.config.train.threads or self.cpus

    @property
    def adam_rows(self) -> str:
        """Which embedding rows an Adam step updates: 'all' or 'batch' (see ``train.adam_rows``)."""
        if self.fused is not None:
            return self.fused.adam_rows
        return "batch" if self.row_tables else "all"

    def _row_tables(self) -> list[torch.Tensor]:
        """The embedding tables the torch loop updates per row (``train.adam_rows`` resolving to
        'batch'), marked for row gradients; else none."""
        tc = self.config.train
        if self.fused is not None or tc.adam_rows_for(self.dataset.n_users, self.dataset.n_items) != "batch":
            return []
        asked = f"train.adam_rows is '{tc.adam_rows}'" + (" (the per-row step for these tables)" if tc.adam_rows == "auto" else "")
        if self.dist.world_size > 1:
            raise TrainingError(
                f"{asked} but training is distributed over several processes (the per-row step needs each process's row "
                "gradients, which are not summed across processes); set train.adam_rows to 'all'."
            )
        for m in self.methods:
            if m.table_gradients():
                raise TrainingError(
                    f"{asked} but distillation method '{m.name}' {m.table_gradients()}, which the per-row step's row "
                    "gradients do not provide; set train.adam_rows to 'all'."
                )
        from training.models.row_grads import mark_row_grads

        return mark_row_grads(self.model)

    def _fused_engine(self):
        """The fused BPR-MF loop when ``train.engine`` asks for it (or 'auto' and it applies), else None."""
        engine = self.config.train.engine
        if engine == "torch":
            return None
        from training import fused_bpr

        reason = fused_bpr.eligible(self.model, self.methods, self.config, self.dist)
        if reason is None:
            return fused_bpr.FusedBPR(self.model, self.optimizer, self.dataset, self.config)
        if engine == "fused":
            raise TrainingError(f"train.engine is 'fused' but {reason}; set train.engine to 'auto' or 'torch'.")
        return None

    # ----------------------------------------------------------------------------------- state
    def _full_state(self) -> tuple[dict, dict]:
        tensors, model_skel = flatten_state("model", self.model.state_dict())
        t2, methods_skel = flatten_state("methods", self.methods.state_dict())
        t3, optim_skel = flatten_state("optim", self.optimizer.state_dict())
        tensors.update(t2)
        tensors.update(t3)
        tensors["torch_rng"] = torch.get_rng_state()
        meta = {
            "kind": "resume",
            "model": model_skel,
            "methods": methods_skel,
            "optim": optim_skel,
            "numpy_rng": self.rng.bit_generator.state,
            "state": self.state.__dict__,
            "data_fingerprint": self.dataset.fingerprint(),
        }
        return tensors, meta

    def save_last(self) -> None:
        if not self.dist.is_main:
            return
        tensors, meta = self._full_state()
        save_checkpoint(self.folder.last, tensors, meta)

    def resume(self) -> bool:
        """Loads ``last.ckpt.npz`` if present; returns whether training resumes from it."""
        if not self.folder.last.exists():
            return False
        tensors, meta = load_checkpoint(self.folder.last)
        if meta["data_fingerprint"] != self.dataset.fingerprint():
            raise TrainingError(f"{self.folder.last}: was trained on different data (fingerprint mismatch); use a new --out folder.")
        self.model.load_state_dict(unflatten_state(meta["model"], tensors))
        self.methods.load_state_dict(unflatten_state(meta["methods"], tensors))
        self.optimizer.load_state_dict(unflatten_state(meta["optim"], tensors))
        torch.set_rng_state(tensors["torch_rng"])
        self.rng.bit_generator.state = meta["numpy_rng"]
        self.state = TrainState(**meta["state"])
        return True

    def save_model(self, path: Path, epoch: int) -> None:
        if not self.dist.is_main:
            return
        save_checkpoint(path, self.model.state_dict(), model_checkpoint_meta(self.model, self.config, self.dataset, epoch))

    # ------------------------------------------------------------------------------- the loop
    def _log(self, record: dict) -> None:
        if not self.dist.is_main:
            return
        with self.folder.metrics.open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    def evaluate(self, part: str) -> EvalResult:
        ec = self.config.eval
        return evaluate(TorchScorer(self.model), self.dataset, part, ec.protocol, ec.ks, ec.sampled_negatives, ec.seed)

    def _batch_loss(self, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Unweighted terms and the weighted total of one batch (representations computed once)."""
        reps = self.model.representations()
        terms: dict[str, torch.Tensor] = {}
        total = torch.zeros(())
        if self.config.train.base_loss_weight > 0:
            p = self.model.score_pairs(batch.users, batch.pos, reps=reps)
            n = self.model.score_candidates(batch.users, batch.neg, reps=reps)
            terms["base"] = base_loss(self.loss_kind, p, n)
            total = total + self.config.train.base_loss_weight * terms["base"]
        for m in self.methods:
            for key, value in m(batch, self.model, reps).items():
                name = f"{m.name}.{key}" if key else m.name
                terms[name] = value
                total = total + m.weight * value
        return terms, total

    def _epoch(self, epoch: int) -> dict[str, float]:
        # Subnormal floats (|x| < 1.2e-38) appear in some KD gradients (DE's experts) and make CPU matmuls
        # up to 50x slower; they are flushed to zero while an epoch runs. The setting is process-wide, so
        # it is restored afterwards (the service tests and other callers in this process see the default).
        torch.set_flush_denormal(True)
        try:
            return self._train_epoch(epoch)
        finally:
            torch.set_flush_denormal(False)

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        tc = self.config.train
        self.model.train()
        if self.fused is not None:
            with torch.no_grad():
                return self.fused.epoch(self.rng)
        for m in self.methods:
            m.on_epoch_start(epoch, self.model)
        neg = sample_excluding(self.rng, self.users, self.train_keys, tc.negatives, unique=False, n_items=self.dataset.n_items)
        order = self.rng.permutation(len(self.users))
        users = torch.from_numpy(self.users[order])
        pos = torch.from_numpy(self.items[order])
        negs = torch.from_numpy(neg[order])
        sums: dict[str, float] = {}
        n_batches = 0
        for b, start in enumerate(range(0, len(order), tc.batch_size)):
            if self.tuner is not None:
                self.tuner.before_batch()
            sl = self.dist.shard(start, min(start + tc.batch_size, len(order)))
            self.optimizer.zero_grad(set_to_none=True)
            if sl.stop > sl.start:
                terms, total = self._batch_loss(Batch(users[sl], pos[sl], negs[sl], epoch, b))
                total.backward()
            else:  # a last batch smaller than the number of ranks
                terms, total = {}, torch.zeros(())
            global_total = self.dist.sum_gradients(self.params, total)
            if not torch.isfinite(global_total):
                bad = [k for k, v in terms.items() if not torch.isfinite(v)]
                raise TrainingError(
                    f"non-finite loss at epoch {epoch}, batch {b} (terms: {', '.join(bad) or 'total'}). "
                    "Lower train.lr or the KD weights, or check the teacher artifacts."
                )
            if self.row_tables:
                from training.row_adam import row_adam_step

                row_adam_step(self.optimizer, self.row_tables)
            self.optimizer.step()
            terms["total"] = total
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            n_batches += 1
        if self.tuner is not None:
            self.tuner.pause()
        sums = self.dist.sum_values(sums)
        return {k: v / max(1, n_batches) for k, v in sums.items()}

    def fit(self, resume: bool = False) -> dict:
        """Runs the loop (optionally resuming), restores the best state, evaluates, writes result.json."""
        self._prepare_folder(resumed=resume and self.resume())
        tc, ec = self.config.train, self.config.eval
        bar = self._progress_bar()
        last_save = time.monotonic()
        try:
            while self.state.epoch < tc.epochs and not self.state.stopped_early:
                epoch = self.state.epoch
                record = self._train_epoch_record(epoch)
                if (epoch + 1) % ec.every == 0 or epoch + 1 == tc.epochs:
                    self._validate(epoch, record)
                if tc.checkpoint_every and (epoch + 1) % tc.checkpoint_every == 0:
                    self.save_model(self.folder.periodic(epoch), epoch)
                self._log(record)
                self.state.epoch = epoch + 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{record['loss'].get('total', 0):.4g}", **{f"best_{ec.select}": f"{self.state.best_value:.4f}"})
                if time.monotonic() - last_save > LAST_SAVE_INTERVAL_S:
                    self.save_last()
                    last_save = time.monotonic()
        except KeyboardInterrupt:
            self.save_last()
            raise
        finally:
            if bar is not None:
                bar.close()
        self.save_last()
        return self.finish()

    def _prepare_folder(self, resumed: bool) -> None:
        """Creates the run folder, starts a fresh metrics.jsonl unless resuming, writes config.yaml."""
        if not self.dist.is_main:
            return
        self.folder.root.mkdir(parents=True, exist_ok=True)
        if not resumed:
            self.folder.metrics.write_text("")
        self.folder.config.write_text(dump_config(self.config))
        print(
            f"{self.config.name or 'train'}: {self._thread_plan()}; "
            f"training loop: {'torch' if self.fused is None else 'fused'} (train.engine); Adam updates {self.adam_rows} rows per step (train.adam_rows)",
            file=sys.stderr,
        )

    def _thread_plan(self) -> str:
        """The start-up line's account of the thread count."""
        if self.config.train.threads:
            return f"{self.threads} torch thread(s) (train.threads)"
        if self.tuner is None:
            return f"{self.threads} torch thread(s) (the CPUs available to this process; set train.threads to change)"
        counts = ", ".join(map(str, self.tuner.candidates))
        return f"torch threads timed on the first batches among {counts} (the CPUs available to this process: {self.cpus}; set train.threads to fix the count)"

    def _progress_bar(self):
        """A tqdm bar over the epochs (None without ``train.progress`` or off the main rank)."""
        if not (self.config.train.progress and self.dist.is_main):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.config.train.epochs, initial=self.state.epoch, desc=self.config.name or "train", unit="ep", file=sys.stderr, dynamic_ncols=True)

    def _train_epoch_record(self, epoch: int) -> dict:
        """Trains one epoch; returns its metrics.jsonl record (losses, time, the methods' state)."""
        t0, c0 = time.perf_counter(), time.process_time()
        losses = self._epoch(epoch)
        train_s = time.perf_counter() - t0
        self.state.train_seconds += train_s
        # CPU seconds of this process: the epoch's own work, also where other processes share the cores
        record = {
            "epoch": epoch,
            "loss": losses,
            "train_seconds": round(train_s, 4),
            "train_cpu_seconds": round(time.process_time() - c0, 4),
            "threads": self.threads,
        }
        self._report_tuning()
        for m in self.methods:
            if m.log_state():
                record.setdefault("kd_state", {})[m.name] = m.log_state()
        return record

    def _report_tuning(self) -> None:
        """Says once which thread count the tuning chose, and the timings it chose by."""
        if self.tuner is None or self.tuner.chosen is None or self._tuning_reported or not self.dist.is_main:
            return
        self._tuning_reported = True
        timings = ", ".join(f"{n}: {ms:.2f} ms" for n, ms in self.tuner.report()["ms_per_batch"].items())
        print(
            f"{self.config.name or 'train'}: {self.tuner.chosen} torch thread(s) from here on (median per batch with {timings}; set train.threads to fix the count)",
            file=sys.stderr,
        )

    def _validate(self, epoch: int, record: dict) -> None:
        """Evaluates on validation into ``record``; keeps the best state; counts evaluations without
        improvement of the stopping metrics and stops after ``eval.patience`` of them."""
        ec = self.config.eval
        t1 = time.perf_counter()
        res = self.evaluate("valid")
        value = res.metrics[ec.select]
        record["valid"] = res.metrics
        record["eval_seconds"] = round(time.perf_counter() - t1, 4)
        if self.state.best_epoch >= 0 and not self.state.stop_bests:  # resumed from a checkpoint without them
            self.state.stop_bests[ec.select] = self.state.best_value
        if value > self.state.best_value:
            self.state.best_value, self.state.best_epoch = value, epoch
            self._best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.save_model(self.folder.best, epoch)
        if improves(self.state.stop_bests, res.metrics, ec.stop_metrics):
            self.state.bad_evals = 0
        else:
            self.state.bad_evals += 1
            if self.state.bad_evals >= ec.patience:
                self.state.stopped_early = True

    def finish(self) -> dict:
        """Restores the best checkpoint, evaluates valid and test, and writes ``result.json``."""
        if self._best_state is None and self.state.best_epoch >= 0:  # resumed: the best weights are on disk
            if self.dist.enabled:
                torch.distributed.barrier()  # rank 0 has finished writing them
            self._best_state, _ = load_checkpoint(self.folder.best)
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        valid, test = self.evaluate("valid"), self.evaluate("test")
        n_epochs = self.state.epoch
        result = {
            "name": self.config.name,
            "dataset": self.dataset.stats(),
            "model": {**self.model.constructor_args(), "parameters": self.model.num_parameters()},
            "base_loss": self.loss_kind,
            "select": self.config.eval.select,
            "best_epoch": self.state.best_epoch,
            "epochs": n_epochs,
            "stopped_early": self.state.stopped_early,
            "train_seconds": round(self.state.train_seconds, 3),
            "seconds_per_epoch": round(self.state.train_seconds / max(1, n_epochs), 4),
            "threads": self.threads,
            **({"thread_tuning": self.tuner.report()} if self.tuner is not None else {}),
            "engine": "torch" if self.fused is None else "fused",
            "adam_rows": self.adam_rows,
            "kd": [{"name": m.name, "weight": m.weight, "training_only_parameters": sum(p.numel() for p in m.parameters())} for m in self.methods],
            "valid": valid.to_dict(),
            "test": test.to_dict(),
            **self.extra_result,
        }
        if self.dist.world_size > 1:
            result["distributed"] = {"world_size": self.dist.world_size, "backend": torch.distributed.get_backend()}
        if self.dist.is_main:
            self.folder.result.write_text(json.dumps(result, indent=2))
        return result
