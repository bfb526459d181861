"""``distillrec bench``: benchmark scripts (tables + JSON; not tests)."""

from __future__ import annotations

from distillrec.commands.common import counts, non_negative, positive


def register(sub) -> None:
    p = sub.add_parser("bench", help="run a benchmark (prints tables, writes JSON)", description="Benchmarks print markdown tables and write JSON into --out.")
    bsub = p.add_subparsers(dest="bench_command", metavar="BENCHMARK", required=True)
    tc = bsub.add_parser(
        "train-cost",
        help="epoch time, training pairs/s and peak memory of BPR-MF training on MovieLens-100K (torch and fused loops)",
        description="Epoch time, training pairs per second and peak resident memory (RSS) of BPR-MF (matrix factorisation, Bayesian Personalized Ranking loss) training on MovieLens-100K, with the torch and the fused training loops, each dimension in a fresh process.",
    )
    tc.add_argument("--dims", default="20,200", help="comma-separated embedding dimensions (default 20,200)")
    tc.add_argument("--epochs", type=positive, default=5, help="epochs to time per dimension (median reported)")
    tc.add_argument(
        "--threads",
        type=positive,
        default=None,
        help="torch threads (default: the training default, timed on the first batches among the CPUs available and fewer)",
    )
    tc.add_argument("--engines", default="torch,fused", help="comma-separated training loops to time (train.engine: torch, fused; default both)")
    tc.add_argument("--rounds", type=positive, default=1, help="alternating rounds of fresh processes; medians over rounds are reported (default 1)")
    tc.add_argument("--out", default="results/bench-train-cost", help="folder for train_cost.json / .md")
    tc.set_defaults(handler=run_train_cost)
    kc = bsub.add_parser(
        "kd-cost",
        help="seconds per epoch of every knowledge-distillation method next to the scratch student, and the expert methods' floor",
        description=(
            "Seconds per training epoch of the scratch student and every method entry of an experiment config, timed round-robin in one process, "
            "early (epoch 0) and late (epoch 200) in training. For DE and HTD (Distillation Experts, Hierarchical Topology Distillation) "
            "it also times a floor: the same batches with only the experts' matrix products and their Adam step, a lower bound on what "
            "those methods can cost on this machine."
        ),
    )
    kc.add_argument("--experiment", default="configs/experiments/citeulike-cost.yaml", help="experiment config whose student, teacher and methods are timed")
    kc.add_argument("--epochs", type=positive, default=3, help="epochs timed per entry and phase (median reported)")
    kc.add_argument("--at-epochs", default="0,200", help="comma-separated epoch indices to time from (they set DE/HTD's temperature)")
    kc.add_argument("--threads", type=positive, default=1, help="torch threads (default 1: comparable on a shared machine)")
    kc.add_argument("--only", action="append", default=None, metavar="LABEL", help="time only these entries (plus scratch); repeatable")
    kc.add_argument("--out", default="results/kd-bench-cost", help="folder for kd_cost.json / .md")
    kc.set_defaults(handler=run_kd_cost)
    sv = bsub.add_parser(
        "service",
        help="REST latency on 127.0.0.1 (wrk/hey, one uvicorn worker) of the student and the teachers at several concurrencies, and /v1/benchmark",
        description=(
            "Starts `uvicorn service.main:app` (one worker) on 127.0.0.1 over --models-dir. Times Recommender.recommend "
            "in-process for the student and each teacher. Over HTTP, first the headline: GET /healthz and POST /v1/recommend "
            "(the student) in --rounds alternating rounds at concurrency 16 (or the largest of --concurrency); then a sweep: "
            "GET /healthz and POST /v1/recommend for the student and every --teachers bundle (the body names the model) at "
            "every --concurrency, --sweep-rounds runs each. Finally compares the student with the teachers through "
            "POST /v1/benchmark. Prints markdown and writes service_latency.json/.md/.png into --out; exits 1 if a target is missed."
        ),
    )
    sv.add_argument("--models-dir", default="models", help="model repository holding the bundles (default: models)")
    sv.add_argument("--student", required=True, help="student bundle name (the model under load)")
    sv.add_argument("--teachers", default="", help="comma-separated teacher bundles, loaded over HTTP and in /v1/benchmark (NeuMF, ensemble ...)")
    sv.add_argument("--tool", choices=["wrk", "hey"], default="wrk", help="load generator (default wrk: a random user per request)")
    sv.add_argument("--duration", type=positive, default=10, help="seconds per load run (default 10)")
    sv.add_argument(
        "--concurrency",
        default="1,4,16",
        help="comma-separated concurrent connections of the sweep (default 1,4,16); the headline targets are measured at 16 if listed, else at the largest",
    )
    sv.add_argument("--rounds", type=positive, default=3, help="healthz/student rounds at the headline concurrency; medians are reported (default 3)")
    sv.add_argument("--sweep-rounds", type=positive, default=1, help="load runs per (model, concurrency) of the sweep; medians are reported (default 1)")
    sv.add_argument("--bench-requests", type=positive, default=1000, help="requests per model in /v1/benchmark (default 1000)")
    sv.add_argument(
        "--in-process-requests",
        type=positive,
        default=5000,
        help="in-process recommendations timed for the student (default 5000; teachers: a fifth, at least 200)",
    )
    sv.add_argument("--ort-threads", type=positive, default=1, help="ONNX Runtime intra-op threads in the server (default 1)")
    sv.add_argument("--out", default="results/bench-service", help="folder for service_latency.json / .md / .png")
    sv.set_defaults(handler=run_service)
    register_catalogue(bsub)
    register_pareto(bsub)
    from distillrec.commands.bench_compare import register as register_compare

    register_compare(bsub)

    from distillrec.benchmarks.reliability import register_cli as register_reliability

    register_reliability(bsub)

    from distillrec.benchmarks.peers import register_cli as register_peers
    from distillrec.benchmarks.train_load import register_cli as register_train_load

    register_peers(bsub)
    register_train_load(bsub)

    register_scale(bsub)
    register_pipeline(bsub)


def register_scale(bsub) -> None:
    """``distillrec bench scale``: every stage's time and peak memory against the data size."""
    from distillrec.benchmarks.scale import OPTIONAL, STAGES

    sc = bsub.add_parser(
        "scale",
        help="time and peak memory of every stage (data, training, distillation, evaluation, export, serving) on synthetic logs of growing size",
        description=(
            "Writes seeded synthetic interaction logs shaped like MovieLens (power-law item popularity and user activity, "
            "timestamps) as Parquet, and runs every stage on each in a fresh process: reading + splitting, an epoch of the BPR-MF "
            "teacher (dim 200) and student (dim 20), an epoch of RRD (relaxed ranking distillation) and DE (distillation experts), "
            "the teacher's cached distillation inputs, full-ranking evaluation, export (ONNX, exact and HNSW index), service "
            "start-up and in-process recommend latency. Fits each stage's growth exponent against interactions; writes "
            "scale.json, scale.md and scale.png into --out."
        ),
    )
    sc.add_argument(
        "--sizes",
        default="100000,300000,1000000",
        help="comma-separated interaction counts of the MovieLens-shaped logs (default 100000,300000,1000000; MovieLens-20M is 20000000)",
    )
    sc.add_argument("--wide", default="", help="comma-separated interaction counts of wide-catalogue logs (1,000,000 items); default none")
    sc.add_argument(
        "--stages",
        default=",".join(STAGES),
        help=f"comma-separated stages to run (default all: {','.join(STAGES)}; also {','.join(OPTIONAL)}: implicit's BPR epoch, with the peers extra)",
    )
    sc.add_argument("--timeout", type=float, default=3600, help="seconds one stage may run before it is reported as failed (default 3600)")
    sc.add_argument("--requests", type=positive, default=1000, help="in-process recommendations timed per bundle (default 1000)")
    sc.add_argument("--out", default="results/bench-scale", help="folder for scale.json / .md / .png and the generated logs (under work/)")
    sc.add_argument("--cache", default=None, help="folder that keeps the generated logs for later runs (default: none, each run writes them under --out)")
    sc.add_argument(
        "--epochs",
        type=positive,
        default=3,
        help="training epochs of the epoch stages (teacher, students, RRD, DE; default 3, at least 2): the first also loads "
        "compiled code, the fewest CPU seconds of the others are reported (with 2, the second epoch's)",
    )
    sc.add_argument(
        "--merge",
        default="",
        help="comma-separated --out folders of earlier runs (for example one size each): write one table, plot and exponents from "
        "their scale.json into --out instead of running; a later folder wins a stage both measured at a size. Folders joined by "
        "'+' are repeated runs of the same stages: each cell is the run with the median time (with every run's seconds in scale.json)",
    )
    sc.set_defaults(handler=run_scale)


def register_pipeline(bsub) -> None:
    """``distillrec bench pipeline``: the whole pipeline on one synthetic log, each step's time and peak memory."""
    from distillrec.benchmarks.pipeline import STEPS

    pl = bsub.add_parser(
        "pipeline",
        help="the whole pipeline (data, dim-200 teacher, RRD-distilled dim-20 student, export, serving) on one synthetic log, timed step by step",
        description=(
            "Writes (or reuses from --cache) a seeded synthetic log shaped like MovieLens of --size interactions and runs, each in a "
            "fresh process through the normal code: reading + splitting the data; the shipped BPR-MF teacher config (dim 200) "
            "for --teacher-epochs epochs; the shipped BPR-MF student config (dim 20) distilled from it with RRD (relaxed "
            "ranking distillation) for --student-epochs epochs; export (ONNX, exact index); service start-up and in-process "
            f"recommend latency (steps: {', '.join(STEPS)}). Both models are validated once, after their last epoch, and "
            "tested on every test user. Reports each step's seconds and peak resident memory, the models' test NDCG@10 "
            "(normalised discounted cumulative gain) and the total; writes pipeline.json and pipeline.md into --out."
        ),
    )
    pl.add_argument("--size", default="1000000", help="interactions of the log (default 1000000; 1e6 allowed; MovieLens-20M is 20000000)")
    pl.add_argument("--teacher-epochs", type=positive, default=3, help="training epochs of the teacher (default 3)")
    pl.add_argument("--student-epochs", type=positive, default=3, help="training epochs of the distilled student (default 3)")
    pl.add_argument("--cache", default=None, help="folder that keeps the generated logs for later runs (default: none)")
    pl.add_argument("--timeout", type=float, default=7200, help="seconds one step may run before it is reported as failed (default 7200)")
    pl.add_argument("--requests", type=positive, default=1000, help="in-process recommendations timed (default 1000)")
    pl.add_argument("--out", default="results/bench-pipeline", help="folder for pipeline.json / .md and the runs (under work/)")
    pl.add_argument(
        "--resume", action="store_true", help="keep the steps an earlier run of the same command into --out finished, and go on from the first that did not"
    )
    pl.set_defaults(handler=run_pipeline)


def run_pipeline(args) -> int:
    from pathlib import Path

    from distillrec.benchmarks.pipeline import run
    from training.errors import DistillrecError

    sizes = counts(args.size, "--size", "interaction count")
    if len(sizes) != 1:
        raise DistillrecError(f"--size {args.size!r}: give one interaction count, e.g. --size 1e6")
    cache = Path(args.cache) if args.cache else None
    run(Path(args.out), sizes[0], args.teacher_epochs, args.student_epochs, cache, args.timeout, args.requests, resume=args.resume)
    return 0


def run_scale(args) -> int:
    from pathlib import Path

    from distillrec.benchmarks.scale import merge, merge_groups, run

    if args.merge:
        merge(merge_groups(args.merge), Path(args.out))
        return 0
    cache = Path(args.cache) if args.cache else None
    run(
        Path(args.out),
        counts(args.sizes, "--sizes", "interaction count"),
        counts(args.wide, "--wide", "interaction count"),
        args.stages.split(","),
        args.timeout,
        args.requests,
        cache=cache,
        epochs=args.epochs,
    )
    return 0


def register_pareto(bsub) -> None:
    """``distillrec bench pareto``: offline accuracy vs parameters vs in-process latency of every bundle."""
    pa = bsub.add_parser(
        "pareto",
        help="accuracy vs parameters vs latency of the teachers and students in a models dir (table + Pareto plot)",
        description=(
            "For every bundle in --models-dir (or the --bundles listed), reads the manifest (role, family, dimension, "
            "inference-time parameters, offline test metric with its protocol) and times Recommender.recommend in-process "
            "through the service's own loading and recommend code (same sampled users for every bundle, k=10, seen items "
            "excluded, ONNX Runtime and FAISS on one thread, bundles rotated in blocks). Reports p50/p95/p99 latency, the "
            "speed-up over the slowest bundle, the accuracy ratio to the best teacher and which bundles are Pareto-optimal. "
            "Writes pareto.json/.md/.png into --out. Needs no torch."
        ),
    )
    pa.add_argument("--models-dir", default="models", help="model repository holding the bundles (default: models)")
    pa.add_argument("--bundles", default=None, help="comma-separated bundle names to compare (default: every bundle in --models-dir)")
    pa.add_argument("--requests", type=positive, default=2000, help="timed recommendations per bundle (default 2000)")
    pa.add_argument("--rounds", type=positive, default=5, help="blocks the requests are split into; the bundles' order rotates per block (default 5)")
    pa.add_argument(
        "--warmup", type=non_negative, default=20, help="untimed requests per bundle before each block, and per-bundle warm-up at load (default 20)"
    )
    pa.add_argument("--metric", default="ndcg@10", help="offline metric from the manifests for the accuracy axis (default ndcg@10)")
    pa.add_argument("--part", choices=["test", "valid"], default="test", help="which offline split's metric to use (default test)")
    pa.add_argument("--k", type=positive, default=10, help="recommendations per request (default 10)")
    pa.add_argument("--ort-threads", type=positive, default=1, help="ONNX Runtime intra-op threads (default 1, as the service)")
    pa.add_argument("--seed", type=int, default=0, help="seed of the sampled users (default 0)")
    pa.add_argument("--out", default="results/bench-pareto", help="folder for pareto.json / .md / .png")
    pa.set_defaults(handler=run_pareto)


def register_catalogue(bsub) -> None:
    """``distillrec bench catalogue``: exact vs IVF vs HNSW item search on synthetic catalogues."""
    ct = bsub.add_parser(
        "catalogue",
        help="exact vs IVF (inverted file) vs HNSW (navigable small-world graph) item search on synthetic 10k/100k/1M-item catalogues, student vs teacher dimension",
        description=(
            "Builds Flat (exact), IVF and HNSW inner-product indexes over synthetic item catalogues (a Gaussian mixture "
            "calibrated on trained MF embeddings) at the student's and the teacher's dimension; tunes nprobe/efSearch to "
            "--target-recall against exact search; reports recall@10, single-query p50/p90/p99 on one thread, build time "
            "and memory. Writes catalogue.json/.md/.png into --out. Run the full grid with OMP_NUM_THREADS=1 on a quiet machine."
        ),
    )
    ct.add_argument("--sizes", default=None, help="comma-separated catalogue sizes, e.g. 10000,100000,1000000 (the default); 10k, 1M suffixes allowed")
    ct.add_argument("--quick", action="store_true", help="a run of seconds: 10k items, 300 queries (overridden by --sizes/--queries)")
    ct.add_argument("--student-dim", type=positive, default=20, help="the student's embedding dimension (default 20)")
    ct.add_argument("--teacher-dim", type=positive, default=200, help="the teacher's embedding dimension (default 200)")
    ct.add_argument("--methods", default="flat,ivf,hnsw", help="indexes to measure (default flat,ivf,hnsw)")
    ct.add_argument("--queries", type=positive, default=None, help="evaluation queries, each timed alone (default 2000; 300 with --quick)")
    ct.add_argument("--tune-queries", type=positive, default=None, help="separate queries that tune nprobe/efSearch (default 1000; 300 with --quick)")
    ct.add_argument("--exact-queries", type=positive, default=1000, help="of those, how many time the exact scans (default 1000; every scan costs the same)")
    ct.add_argument("--warmup", type=non_negative, default=100, help="untimed searches before timing (default 100)")
    ct.add_argument("--repeats", type=positive, default=3, help="timing passes; each query's best pass is reported, the first pass's p99 too (default 3)")
    ct.add_argument("--target-recall", type=float, default=0.95, help="recall@10 vs exact the approximate indexes are tuned to (default 0.95)")
    ct.add_argument("--build-threads", type=positive, default=1, help="FAISS threads while building (searches always use 1; default 1)")
    ct.add_argument("--train-points-per-list", type=positive, default=64, help="IVF k-means sample per list (default 64; FAISS wants >= 39)")
    ct.add_argument("--data", choices=["mixture", "iid"], default="mixture", help="synthetic model: calibrated mixture (default) or iid Gaussian")
    ct.add_argument("--seed", type=int, default=0)
    ct.add_argument(
        "--max-p99-ms",
        type=float,
        default=None,
        help="acceptance limit: exit 1 when the student's fastest approximate index at the largest catalogue "
        "(at --target-recall) has a p99 above this many ms, e.g. 1.0 (default: no limit, exit 0)",
    )
    ct.add_argument("--out", default="results/bench-catalogue", help="folder for catalogue.json / .md / .png")
    ct.set_defaults(handler=run_catalogue)


def run_train_cost(args) -> int:
    from pathlib import Path

    from distillrec.benchmarks.train_cost import run

    run(Path(args.out), [int(d) for d in args.dims.split(",")], args.epochs, args.threads, tuple(args.engines.split(",")), args.rounds)
    return 0


def run_kd_cost(args) -> int:
    from pathlib import Path

    from distillrec.benchmarks.kd_cost import run

    run(Path(args.out), Path(args.experiment), args.epochs, [int(e) for e in args.at_epochs.split(",")], args.threads, args.only)
    return 0


def run_service(args) -> int:
    import shlex
    import sys
    from pathlib import Path

    from distillrec.benchmarks.service_latency import parse_concurrency, run
    from training.errors import DistillrecError

    teachers = [t for t in args.teachers.split(",") if t]
    command = "distillrec " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        concurrency = parse_concurrency(args.concurrency)
    except ValueError as exc:
        raise DistillrecError(str(exc)) from None
    report = run(
        Path(args.models_dir),
        args.student,
        teachers,
        Path(args.out),
        tool=args.tool,
        duration=args.duration,
        concurrency=concurrency,
        rounds=args.rounds,
        bench_requests=args.bench_requests,
        in_process_requests=args.in_process_requests,
        ort_threads=args.ort_threads,
        command=command,
        sweep_rounds=args.sweep_rounds,
    )
    return 0 if all(report["checks"].values()) else 1


def run_pareto(args) -> int:
    from pathlib import Path

    from distillrec.benchmarks.pareto import ParetoSettings, run

    bundles = [b for b in args.bundles.split(",") if b] if args.bundles else None
    settings = ParetoSettings(
        requests=args.requests,
        rounds=args.rounds,
        warmup=args.warmup,
        k=args.k,
        metric=args.metric,
        part=args.part,
        ort_threads=args.ort_threads,
        seed=args.seed,
    )
    report = run(Path(args.models_dir), Path(args.out), bundles, settings)
    return 1 if report["failed"] else 0


def run_catalogue(args) -> int:
    from pathlib import Path

    from distillrec.benchmarks.catalogue import DEFAULT_SIZES, QUICK_SIZES, CatalogueSettings, run

    sizes = tuple(counts(args.sizes, "--sizes", "number of items")) if args.sizes else (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    quick_queries = 300 if args.quick else None
    settings = CatalogueSettings(
        sizes=sizes,
        student_dim=args.student_dim,
        teacher_dim=args.teacher_dim,
        methods=tuple(m for m in args.methods.split(",") if m),
        queries=args.queries or quick_queries or 2000,
        tune_queries=args.tune_queries or quick_queries or 1000,
        exact_queries=min(args.exact_queries, args.queries or quick_queries or 2000),
        warmup=args.warmup,
        repeats=args.repeats,
        target_recall=args.target_recall,
        build_threads=args.build_threads,
        train_points_per_list=args.train_points_per_list,
        seed=args.seed,
        data=args.data,
        max_p99_ms=args.max_p99_ms,
    )
    report = run(Path(args.out), settings)
    return 0 if report["headline"]["within_p99_limit"] is not False else 1
