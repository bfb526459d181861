"""Catalogue scaling: exact vs IVF vs HNSW item search on synthetic catalogues, student vs teacher dimension.

``distillrec bench catalogue`` builds, for every catalogue size (10k, 100k, 1M items by default) and
for the student's and the teacher's embedding dimension (20 and 200), the three inner-product
indexes a bundle can hold — ``Flat`` (exact, ``IndexFlatIP``), ``IVF<nlist>,Flat`` and
``HNSW32,Flat`` — and measures for each:

* **recall@10 against exact search**, on evaluation queries the tuning never saw;
* **latency per single query** (one ``index.search`` call for one user vector, FAISS on one thread,
  as the service runs it): p50 / p90 / p99 / mean over ``--queries`` queries after a warm-up;
* **build time** (training + adding) and **memory**: the serialized index size and the process's
  RSS growth while building.

The approximate indexes' search parameter (``nprobe`` / ``efSearch``) is tuned upwards on a separate
set of tuning queries until recall@10 reaches ``--target-recall`` (0.95), the way ``distillrec export``
tunes it; the chosen value and the whole sweep are reported.

**Synthetic data.** Plain i.i.d. Gaussian vectors are the worst case for approximate search (no
structure, intrinsic dimension = dimension) and make IVF/HNSW look far worse than on trained
embeddings. The default ``mixture`` model is calibrated on the BPR-MF embeddings this project trains
on MovieLens-100K (teacher dim 200, RRD student dim 20): a Gaussian mixture with √n clusters of
long-tailed (Pareto) sizes — genres/topics —, a decaying spectrum (axis variance ∝ 1/i, so the
effective rank is a fraction of the dimension, as in trained factors), a shared "popularity"
direction that items and, more strongly, users lean towards, and log-normal norms (log-sd 0.20 for
items, 0.15 for users). Users (the queries) are drawn from the same clusters as the items. The
report prints the effective rank, mean cosine to the mean vector and log-norm spread of the
synthetic vectors; ``--data iid`` gives plain N(0, I) vectors for comparison.

Memory: the item vectors exist once, inside the exact index (generated in chunks straight into it);
IVF and HNSW are built from a view of that storage and freed before the next one, so the peak is
about two copies of the catalogue (1M × 200 float32 = 800 MB per copy).

Needs numpy and faiss only (no torch). Prints markdown and writes ``catalogue.json``, ``catalogue.md``
and ``catalogue.png`` into ``--out``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from distillrec.benchmarks.environment import environment, footer, pyplot, run_conditions
from training.atomic import write_atomic
from training.errors import DistillrecError

K = 10
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (10_000,)
METHODS = ("flat", "ivf", "hnsw")
HNSW_M = 32  # as `distillrec export --index hnsw` (--hnsw-m default)
HNSW_EF_CONSTRUCTION = 200  # as the exporter
EF_SEARCH_GRID = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
CHUNK = 65_536  # rows generated (and added) at a time
COLOURS = {"flat": "tab:red", "ivf": "tab:blue", "hnsw": "tab:green"}


class BenchmarkError(DistillrecError):
    """A benchmark option or result that makes the run meaningless (message says which and why)."""


# ------------------------------------------------------------------------------ synthetic data
@dataclass(frozen=True)
class DataModel:
    """Parameters of the synthetic embedding model (see the module docstring)."""

    kind: str = "mixture"  # "mixture" (calibrated on trained MF embeddings) or "iid" (N(0, I))
    spectrum_decay: float = 1.0  # axis i has variance ∝ i^-decay
    spread: float = 0.7  # within-cluster std relative to the spread of the cluster centres
    item_lean: float = 0.25  # weight of the shared direction in the (unit) item direction
    user_lean: float = 0.55  # ... and in the user direction (users lean more: popular items score high)
    item_log_norm_sd: float = 0.20
    user_log_norm_sd: float = 0.15
    cluster_size_tail: float = 2.0  # Pareto shape of the cluster weights (the largest of 1,000 clusters holds ~6 %)

    def clusters(self, n_items: int) -> int:
        """Number of mixture components: √n (100 for 10k items, 1,000 for 1M)."""
        return max(1, round(math.sqrt(n_items)))


class SyntheticCatalogue:
    """Item and user vectors of one synthetic catalogue (``n_items`` × ``dim``), reproducible from ``seed``.

    Items are generated in chunks (:meth:`item_chunks`) so that the catalogue never needs to exist
    twice in memory; chunk ``i`` depends only on the seed, the catalogue's size and dimension, and ``i``.
    """

    def __init__(self, n_items: int, dim: int, seed: int = 0, model: DataModel = DataModel()):
        if n_items < K or dim < 1:
            raise BenchmarkError(f"a catalogue needs at least {K} items and dimension ≥ 1 (got {n_items} × {dim}).")
        if model.kind not in ("mixture", "iid"):
            raise BenchmarkError(f"--data {model.kind!r}: use 'mixture' or 'iid'.")
        self.n_items, self.dim, self.seed, self.model = n_items, dim, seed, model
        rng = np.random.default_rng([seed, dim, n_items, 0])
        self.scale = np.arange(1, dim + 1, dtype=np.float64) ** (-model.spectrum_decay / 2)
        c = model.clusters(n_items)
        self.centres = rng.standard_normal((c, dim)) * self.scale
        weights = rng.pareto(model.cluster_size_tail, c) + 1.0
        self.weights = weights / weights.sum()
        lean = rng.standard_normal(dim) * self.scale
        self.lean = lean / np.linalg.norm(lean)

    def _draw(self, rng: np.random.Generator, n: int, lean: float, log_norm_sd: float) -> np.ndarray:
        if self.model.kind == "iid":
            return rng.standard_normal((n, self.dim), dtype=np.float32)
        comp = rng.choice(len(self.centres), n, p=self.weights)
        x = self.centres[comp] + self.model.spread * rng.standard_normal((n, self.dim)) * self.scale
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        x += lean * self.lean
        x *= (np.exp(log_norm_sd * rng.standard_normal(n)) / np.linalg.norm(x, axis=1))[:, None]
        return x.astype(np.float32)

    def item_chunks(self, chunk: int = CHUNK):
        """Yields float32 [≤ chunk, dim] blocks of item vectors, in item order."""
        for i, start in enumerate(range(0, self.n_items, chunk)):
            rng = np.random.default_rng([self.seed, self.dim, self.n_items, 1, i])
            yield self._draw(rng, min(chunk, self.n_items - start), self.model.item_lean, self.model.item_log_norm_sd)

    def users(self, n: int, stream: int) -> np.ndarray:
        """float32 [n, dim] user (query) vectors; different ``stream`` values give independent sets."""
        rng = np.random.default_rng([self.seed, self.dim, self.n_items, 2, stream])
        return self._draw(rng, n, self.model.user_lean, self.model.user_log_norm_sd)


def vector_stats(x: np.ndarray) -> dict:
    """Shape statistics of embedding rows ``x`` [n, d]: effective rank (exp of the entropy of the
    normalised spectrum of the centred matrix), mean cosine to the mean vector, sd of log-norms."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1)
    mean = x.mean(axis=0)
    spec = np.linalg.svd(x - mean, compute_uv=False) ** 2
    p = spec[spec > 0] / spec.sum()
    cos = float(np.mean(x @ mean / (norms * np.linalg.norm(mean)))) if np.linalg.norm(mean) > 0 else 0.0
    return {
        "effective_rank": round(float(np.exp(-(p * np.log(p)).sum())), 1),
        "cos_to_mean": round(cos, 3),
        "log_norm_sd": round(float(np.log(norms).std()), 3),
    }


# ------------------------------------------------------------------------------ measuring
def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def index_bytes(index) -> int:
    """Size of the serialized index (what ``items.faiss`` would take on disk), counted without a copy."""
    import faiss

    total = 0

    def count(chunk: bytes) -> int:
        nonlocal total
        total += len(chunk)
        return len(chunk)

    faiss.write_index(index, faiss.PyCallbackIOWriter(count))
    return total


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |found ∩ exact| / |exact| for rows of item ids (-1 = nothing found)."""
    hits = [np.intersect1d(f[f >= 0], e).size / e.size for f, e in zip(found, exact)]
    return float(np.mean(hits))


def time_queries(index, queries: np.ndarray, k: int, warmup: int, repeats: int) -> dict[str, np.ndarray]:
    """Per-query milliseconds of ``index.search`` for each query alone (a batch of one), as the service runs it.

    ``repeats`` passes over all queries (after ``warmup`` untimed searches); returns ``wall`` (the best
    pass per query: the query's own cost, without the moments a shared machine's scheduler took the
    core away), ``wall_first_pass`` (the first pass alone, scheduler noise included) and ``cpu``
    (thread CPU time, best pass).
    """
    for i in range(min(warmup, len(queries))):
        index.search(queries[i : i + 1], k)
    wall = np.empty((repeats, len(queries)))
    cpu = np.empty((repeats, len(queries)))
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    for r in range(repeats):
        for i in range(len(queries)):
            q = queries[i : i + 1]
            c0 = cpu_clock()
            t0 = clock()
            index.search(q, k)
            t1 = clock()
            cpu[r, i] = (cpu_clock() - c0) / 1e6
            wall[r, i] = (t1 - t0) / 1e6
    return {"wall": wall.min(axis=0), "wall_first_pass": wall[0], "cpu": cpu.min(axis=0)}


def latency_summary(t: dict[str, np.ndarray]) -> dict:
    """p50/p90/p99/mean (ms, best pass per query), the first pass's p99, CPU-time p50/p99, single-thread QPS."""
    ms = t["wall"]
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "p99_ms_first_pass": float(np.percentile(t["wall_first_pass"], 99)),
        "cpu_p50_ms": float(np.percentile(t["cpu"], 50)),
        "cpu_p99_ms": float(np.percentile(t["cpu"], 99)),
        "qps_single_thread": float(1000.0 / ms.mean()),
        "timed_queries": int(len(ms)),
    }


def default_nlist(n_items: int) -> int:
    """IVF lists: ≈ 4·√n, at least 39 items per list — the rule of ``distillrec export --index ivf``."""
    return max(1, min(int(round(4 * math.sqrt(n_items))), n_items // 39))


def nprobe_grid(nlist: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12 … (steps of about √2) up to ``nlist``."""
    grid = sorted({v for p in range(0, int(math.log2(nlist)) + 1) for v in (2**p, 3 * 2 ** (p - 1) if p else 1) if v <= nlist} | {nlist})
    return grid


# ------------------------------------------------------------------------------ indexes
def build_exact(cat: SyntheticCatalogue):
    """``IndexFlatIP`` filled chunk by chunk from the generator: the only copy of the item vectors."""
    import faiss

    index = faiss.IndexFlatIP(cat.dim)
    for block in cat.item_chunks():
        index.add(block)
    return index


def stored_vectors(flat) -> np.ndarray:
    """A read-only numpy view [n, d] of a flat index's vectors (no copy; valid while ``flat`` lives)."""
    import faiss

    view = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * flat.d).reshape(flat.ntotal, flat.d)
    view.flags.writeable = False
    return view


def build_approximate(method: str, vectors: np.ndarray, seed: int, train_points_per_list: int):
    """(index, factory string, parameter name, build details) for ``ivf`` or ``hnsw`` over ``vectors``."""
    import faiss

    n, d = vectors.shape
    if method == "ivf":
        nlist = default_nlist(n)
        factory = f"IVF{nlist},Flat"
        index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
        # k-means on a sample of train_points_per_list·nlist items (FAISS asks for ≥ 39 per list);
        # FAISS's own default (256 per list) costs minutes at 1M × 200 on one core for no recall gain here
        sample = min(n, max(39, train_points_per_list) * nlist)
        rows = np.sort(np.random.default_rng(seed).choice(n, sample, replace=False)) if sample < n else slice(None)
        index.cp.seed = seed
        index.train(np.ascontiguousarray(vectors[rows]))
        index.add(vectors)
        return index, factory, "nprobe", {"nlist": nlist, "train_points": int(sample)}
    if method == "hnsw":
        factory = f"HNSW{HNSW_M},Flat"
        index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.add(vectors)
        return index, factory, "efSearch", {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION}
    raise BenchmarkError(f"unknown approximate index {method!r}: use ivf or hnsw.")


def set_param(index, name: str, value: int) -> None:
    """Sets ``nprobe`` / ``efSearch`` the way the service does (FAISS ParameterSpace)."""
    import faiss

    faiss.ParameterSpace().set_index_parameter(index, name, int(value))


def tune(index, name: str, grid: list[int], queries: np.ndarray, exact: np.ndarray, target: float, k: int) -> tuple[int | None, list[dict]]:
    """Smallest grid value whose recall@k on ``queries`` reaches ``target`` (None if none does), and the sweep."""
    sweep = []
    for value in grid:
        set_param(index, name, value)
        t0 = time.perf_counter()
        found = index.search(queries, k)[1]
        batch_ms = (time.perf_counter() - t0) * 1000 / len(queries)
        recall = recall_at_k(found, exact)
        sweep.append({name: int(value), "recall_at_10": round(recall, 4), "batch_ms_per_query": round(batch_ms, 4)})
        if recall >= target:
            return int(value), sweep
    return None, sweep


# ------------------------------------------------------------------------------ one catalogue
@dataclass(frozen=True)
class CatalogueSettings:
    """Run options (the CLI's flags)."""

    sizes: tuple[int, ...] = DEFAULT_SIZES
    student_dim: int = 20
    teacher_dim: int = 200
    methods: tuple[str, ...] = METHODS
    queries: int = 2000
    tune_queries: int = 1000
    exact_queries: int = 1000
    warmup: int = 100
    repeats: int = 3
    target_recall: float = 0.95
    build_threads: int = 1
    train_points_per_list: int = 64
    seed: int = 0
    data: str = "mixture"
    #: acceptance limit (``--max-p99-ms``): the run fails when the student's best approximate index at the
    #: largest catalogue is slower than this at p99 (or none reaches ``target_recall``); None: no check
    max_p99_ms: float | None = None

    def check(self) -> None:
        """Raises :class:`BenchmarkError` on options that cannot give a meaningful run."""
        if not self.sizes or min(self.sizes) < 1000:
            raise BenchmarkError(f"--sizes {self.sizes}: every catalogue needs at least 1000 items.")
        if not 1 <= self.student_dim <= 4096 or not 1 <= self.teacher_dim <= 4096:
            raise BenchmarkError("--student-dim and --teacher-dim must be between 1 and 4096.")
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise BenchmarkError(f"--methods {','.join(self.methods)}: choose from {', '.join(METHODS)}.")
        if min(self.queries, self.tune_queries, self.exact_queries) < 10:
            raise BenchmarkError("--queries, --tune-queries and --exact-queries must be at least 10 (use ≥ 1000 for percentiles you report).")
        if not 1 <= self.repeats <= 20:
            raise BenchmarkError(f"--repeats {self.repeats}: must be between 1 and 20.")
        if not 0 < self.target_recall <= 1:
            raise BenchmarkError(f"--target-recall {self.target_recall}: must be in (0, 1].")
        if self.data not in ("mixture", "iid"):
            raise BenchmarkError(f"--data {self.data!r}: use 'mixture' or 'iid'.")


def measure_catalogue(n_items: int, dim: int, role: str, s: CatalogueSettings, log=print) -> list[dict]:
    """All rows (one per index kind) for one catalogue of ``n_items`` × ``dim``."""
    import faiss

    cat = SyntheticCatalogue(n_items, dim, s.seed, DataModel(kind=s.data))
    tune_q, eval_q = cat.users(s.tune_queries, stream=0), cat.users(s.queries, stream=1)
    base = {"n_items": n_items, "dim": dim, "role": role, "clusters": DataModel().clusters(n_items) if s.data == "mixture" else None}

    faiss.omp_set_num_threads(s.build_threads)
    rss0, t0 = rss_bytes(), time.perf_counter()
    flat = build_exact(cat)
    flat_build = {"build_s": time.perf_counter() - t0, "rss_delta_bytes": rss_bytes() - rss0}
    vectors = stored_vectors(flat)
    stats = {
        "items": vector_stats(vectors[np.random.default_rng(s.seed).choice(n_items, min(n_items, 2000), replace=False)]),
        "users": vector_stats(eval_q[:2000]),
    }
    # ground truth: exact top-k of every tuning and evaluation query (batched: the BLAS path)
    exact_tune, exact_eval = flat.search(tune_q, K)[1], flat.search(eval_q, K)[1]

    rows = []
    faiss.omp_set_num_threads(1)  # every timed search runs on one thread, as in the service
    if "flat" in s.methods:
        # a full scan costs the same for every query: fewer timed queries suffice (and 1M × 200 scans are slow)
        timings = time_queries(flat, eval_q[: s.exact_queries], K, s.warmup, s.repeats)
        rows.append(
            {
                **base,
                "method": "flat",
                "factory": "Flat",
                "params": {},
                "recall_at_10": 1.0,
                "recall_at_10_tuning": 1.0,
                **latency_summary(timings),
                **flat_build,
                "index_bytes": index_bytes(flat),
                "data_stats": stats,
            }
        )
        log(_progress(rows[-1]))
    for method in (m for m in s.methods if m != "flat"):
        faiss.omp_set_num_threads(s.build_threads)
        rss0, t0 = rss_bytes(), time.perf_counter()
        index, factory, pname, details = build_approximate(method, vectors, s.seed, s.train_points_per_list)
        build = {"build_s": time.perf_counter() - t0, "rss_delta_bytes": rss_bytes() - rss0}
        faiss.omp_set_num_threads(1)
        grid = nprobe_grid(details["nlist"]) if method == "ivf" else list(EF_SEARCH_GRID)
        chosen, sweep = tune(index, pname, grid, tune_q, exact_tune, s.target_recall, K)
        row = {**base, "method": method, "factory": factory, "build_params": details, "sweep": sweep, **build, "index_bytes": index_bytes(index)}
        if chosen is None:
            row.update(
                {
                    "params": {},
                    "recall_at_10": None,
                    "recall_at_10_tuning": sweep[-1]["recall_at_10"],
                    "error": f"no {pname} in {grid[0]}…{grid[-1]} reaches recall@10 ≥ {s.target_recall}",
                }
            )
        else:
            set_param(index, pname, chosen)
            row.update(
                {
                    "params": {pname: chosen},
                    "recall_at_10": round(recall_at_k(index.search(eval_q, K)[1], exact_eval), 4),
                    "recall_at_10_tuning": sweep[-1]["recall_at_10"],
                }
            )
            row.update(latency_summary(time_queries(index, eval_q, K, s.warmup, s.repeats)))
        rows.append(row)
        log(_progress(row))
        del index
    del vectors, flat
    return rows


def _progress(r: dict) -> str:
    params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"
    lat = f"p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms" if "p99_ms" in r else r.get("error", "")
    rec = "n/a" if r["recall_at_10"] is None else f"{r['recall_at_10']:.3f}"
    return f"  {r['n_items']:>9,} × {r['dim']:<4} {r['method']:<5} {params:<13} recall@10 {rec}  {lat}  build {r['build_s']:.1f} s"


# ------------------------------------------------------------------------------ report
def headline(rows: list[dict], s: CatalogueSettings) -> dict:
    """The comparison at the largest catalogue: the student's fastest approximate index that reaches
    the target recall vs exact search at the teacher's (and the student's) dimension, and whether it
    stays within ``s.max_p99_ms`` (None when no limit was given)."""
    n = max(r["n_items"] for r in rows)
    at = [r for r in rows if r["n_items"] == n]
    ok = [r for r in at if r["role"] == "student" and r["method"] != "flat" and r["recall_at_10"] is not None and r["recall_at_10"] >= s.target_recall]
    best = min(ok, key=lambda r: r["p99_ms"]) if ok else None
    exact = {r["role"]: r for r in at if r["method"] == "flat"}
    out = {"n_items": n, "student": None, "teacher_exact": None, "student_exact": None, "within_p99_limit": None}
    if best:
        out["student"] = {
            k: best[k] for k in ("method", "factory", "params", "recall_at_10", "p50_ms", "p99_ms", "p99_ms_first_pass", "cpu_p99_ms", "index_bytes")
        }
    for role in ("teacher", "student"):
        if role in exact:
            out[f"{role}_exact"] = {k: exact[role][k] for k in ("p50_ms", "p99_ms", "index_bytes")}
            if best:
                out[f"speedup_vs_{role}_exact"] = {q: exact[role][q] / best[q] for q in ("p50_ms", "p99_ms")}
    if s.max_p99_ms is not None:
        out["within_p99_limit"] = bool(best and best["p99_ms"] <= s.max_p99_ms)
    return out


def _mib(b: int | None) -> str:
    return "–" if b is None else f"{b / 2**20:,.1f}"


def render_markdown(report: dict) -> str:
    """The markdown report: main table, headline comparison, data statistics, environment, command."""
    s, rows, h = report["settings"], report["rows"], report["headline"]
    lines = [
        "| items | dim (role) | index | search param | recall@10 | p50 ms | p90 ms | p99 ms | p99 ms, 1 pass | CPU p99 ms | QPS (1 thread) | build s | index MiB | RSS Δ MiB |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or ("exact" if r["method"] == "flat" else "—")
        rec = "—" if r["recall_at_10"] is None else f"{r['recall_at_10']:.3f}"
        if "p99_ms" in r:
            lat = f"{r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['p99_ms']:.3f} | {r['p99_ms_first_pass']:.3f} | {r['cpu_p99_ms']:.3f} | {r['qps_single_thread']:,.0f}"
        else:
            lat = "— | — | — | — | — | —"
        lines.append(
            f"| {r['n_items']:,} | {r['dim']} ({r['role']}) | {r['factory']} | {params} | {rec} | {lat} | {r['build_s']:.1f} | {_mib(r['index_bytes'])} | {_mib(r['rss_delta_bytes'])} |"
        )
    lines += ["", f"**At {h['n_items']:,} items:**"]
    if h["student"]:
        st = h["student"]
        p = ", ".join(f"{k}={v}" for k, v in st["params"].items())
        lines.append(
            f"- student (dim {s['student_dim']}), {st['factory']} ({p}): recall@10 {st['recall_at_10']:.3f}, p50 {st['p50_ms']:.3f} ms, p99 {st['p99_ms']:.3f} ms per query, one thread "
            f"(first pass alone: p99 {st['p99_ms_first_pass']:.3f} ms; CPU time p99 {st['cpu_p99_ms']:.3f} ms)."
        )
        for role, dim in (("teacher", s["teacher_dim"]), ("student", s["student_dim"])):
            if h.get(f"{role}_exact"):
                ex, sp = h[f"{role}_exact"], h[f"speedup_vs_{role}_exact"]
                lines.append(
                    f"- exact search at the {role}'s dimension ({dim}): p50 {ex['p50_ms']:.3f} ms, p99 {ex['p99_ms']:.3f} ms, index {_mib(ex['index_bytes'])} MiB — "
                    f"the student's approximate index is **{sp['p50_ms']:,.0f}× faster at p50, {sp['p99_ms']:,.0f}× at p99**."
                )
    else:
        lines.append(f"- no approximate student index reached recall@10 ≥ {s['target_recall']}.")
    if h["within_p99_limit"] is not None:
        lines.append(
            f"- limit `--max-p99-ms {s['max_p99_ms']}` (student, approximate index at recall@10 ≥ {s['target_recall']}, one thread): **{'within' if h['within_p99_limit'] else 'EXCEEDED'}**."
        )
    stats = {(r["n_items"], r["dim"]): r["data_stats"] for r in rows if "data_stats" in r}
    if stats:
        lines += ["", "Synthetic vectors (2,000-row samples): effective rank / mean cosine to the mean vector / sd of log-norms —"]
        lines.append(
            "; ".join(
                f"{n:,}×{d}: items {v['items']['effective_rank']} / {v['items']['cos_to_mean']} / {v['items']['log_norm_sd']}, users {v['users']['effective_rank']} / {v['users']['cos_to_mean']} / {v['users']['log_norm_sd']}"
                for (n, d), v in sorted(stats.items())
            )
        )
    lines += [
        "",
        f"Data: `{s['data']}` synthetic catalogues (see docs/benchmarks.md); queries: {s['tune_queries']:,} for tuning, {s['queries']:,} other ones for recall and timing "
        f"({s['exact_queries']:,} of them for the exact scans); every query searched alone, in {s['repeats']} passes after {s['warmup']} warm-up searches: "
        f"p50/p90/p99 take each query's best pass, 'p99 ms, 1 pass' the first pass only (scheduler noise included), 'CPU p99' the thread's CPU time; "
        f"k = {K}; target recall@10 {s['target_recall']}; FAISS search on 1 thread, index build on {s['build_threads']}; "
        f"IVF nlist ≈ 4·√n trained on {s['train_points_per_list']} items per list, HNSW M={HNSW_M}, efConstruction={HNSW_EF_CONSTRUCTION}.",
        *footer(report),
    ]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> bool:
    """p50/p99 latency vs catalogue size per (dim, index) on log-log axes; False if matplotlib is missing."""
    plt = pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    series: dict[tuple, list] = {}
    for r in report["rows"]:
        if "p99_ms" in r:
            series.setdefault((r["dim"], r["role"], r["method"]), []).append(r)
    for ax, q in zip(axes, ("p50_ms", "p99_ms")):
        for (dim, role, method), rs in sorted(series.items()):
            rs = sorted(rs, key=lambda r: r["n_items"])
            ax.plot(
                [r["n_items"] for r in rs],
                [r[q] for r in rs],
                marker="o" if role == "student" else "s",
                color=COLOURS[method],
                linestyle="-" if role == "student" else "--",
                label=f"{role} d={dim} {method}",
            )
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":", label="1 ms")
        ax.set(xscale="log", yscale="log", xlabel="items in the catalogue", title=f"{q[:3]} per query, 1 thread")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms")
    axes[1].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Item search: exact vs IVF vs HNSW (recall@10 ≥ {report['settings']['target_recall']} for the approximate ones)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def command_line(s: CatalogueSettings, out: Path) -> str:
    """The ``distillrec bench catalogue`` command that reproduces a run with settings ``s``."""
    d = CatalogueSettings()
    parts = ["distillrec bench catalogue", "--sizes " + ",".join(str(n) for n in s.sizes)]
    for flag, value, default in (
        ("--student-dim", s.student_dim, d.student_dim),
        ("--teacher-dim", s.teacher_dim, d.teacher_dim),
        ("--methods", ",".join(s.methods), ",".join(d.methods)),
        ("--queries", s.queries, d.queries),
        ("--tune-queries", s.tune_queries, d.tune_queries),
        ("--exact-queries", s.exact_queries, d.exact_queries),
        ("--warmup", s.warmup, d.warmup),
        ("--repeats", s.repeats, d.repeats),
        ("--target-recall", s.target_recall, d.target_recall),
        ("--build-threads", s.build_threads, d.build_threads),
        ("--train-points-per-list", s.train_points_per_list, d.train_points_per_list),
        ("--seed", s.seed, d.seed),
        ("--data", s.data, d.data),
        ("--max-p99-ms", s.max_p99_ms, d.max_p99_ms),
    ):
        if value != default:
            parts.append(f"{flag} {value}")
    parts.append(f"--out {out}")
    return " ".join(parts)


def run_environment() -> dict:
    """:func:`environment` plus what makes latency numbers noisy: load, niceness, OpenMP threads."""
    return {**environment(("numpy", "faiss-cpu")), **run_conditions(), "machine": platform.machine()}


def run(out: Path, s: CatalogueSettings, log=print) -> dict:
    """Runs the whole grid, writes ``catalogue.json`` / ``.md`` / ``.png`` into ``out``, prints the table; returns the report."""
    s.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "catalogue",
        "command": command_line(s, out),
        "environment": run_environment(),
        "settings": {**asdict(s), "k": K},
        "data_model": asdict(DataModel(kind=s.data)),
        "rows": [],
    }
    started = time.perf_counter()
    for n in sorted(s.sizes):
        for role, dim in (("student", s.student_dim), ("teacher", s.teacher_dim)):
            log(f"catalogue {n:,} items × dim {dim} ({role}) …")
            report["rows"] += measure_catalogue(n, dim, role, s, log)
            _write(out, report, started)  # partial results survive an interrupted long run
    report["headline"] = headline(report["rows"], s)
    report["plot"] = plot(report, out / "catalogue.png")
    _write(out, report, started)
    text = render_markdown(report)
    (out / "catalogue.md").write_text(text + "\n")
    log(text)
    return report


def _write(out: Path, report: dict, started: float) -> None:
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_atomic(out / "catalogue.json", json.dumps(report, indent=2))
