"""``distillrec bench compare``: the student against teacher endpoints over HTTP, and the cost of shadow mode."""

from __future__ import annotations

from distillrec.commands.common import positive


def register(bsub) -> None:
    p = bsub.add_parser(
        "compare",
        help="student vs teacher endpoints over HTTP (each bundle in its own process): latency ratios, agreement, shadow-mode overhead",
        description=(
            "Serves the student and every --teachers bundle, each in its own uvicorn process on 127.0.0.1. For each teacher and "
            "each --concurrency, sends the same sampled users to both (POST /v1/recommend, interleaved user by user) and reports "
            "end-to-end p50/p99 of both, their ratio, and the agreement of the student's top-k with the teacher's (overlap@k, "
            "rank-biased overlap, Kendall tau, normalised discounted cumulative gain NDCG@k). Then drives each process alone with "
            "wrk/hey at each --concurrency (same users; teacher and student alternating) for latency ratios under load and the server's CPU "
            "time per request. Then loads student processes with shadow mode off and at each --fractions "
            "(mirroring to --shadow-teacher) with wrk/hey at concurrency 16 (closed loop, or a fixed --rate), in alternating rounds, "
            "and reports the student's p50/p99, its CPU time per request and the mirrors answered, failed and dropped. Writes endpoints.json/.md/.png into --out; exits 1 when the "
            "p99 overhead at 10 %% is 10 %% or more."
        ),
    )
    p.add_argument("--models-dir", default="models", help="model repository holding the bundles (default: models)")
    p.add_argument("--student", required=True, help="student bundle name")
    p.add_argument("--teachers", required=True, help="comma-separated teacher bundles (LightGCN, NeuMF, ensemble ...)")
    p.add_argument("--requests", type=positive, default=500, help="users sampled; each process gets one request per user per run (default 500)")
    p.add_argument("--concurrency", default="1,16", help="comma-separated users in flight of the comparisons (default 1,16)")
    p.add_argument("--shadow-teacher", default=None, help="teacher bundle shadow mode mirrors to (default: the first of --teachers)")
    p.add_argument("--fractions", default="0.1,1", help="comma-separated shadow fractions compared with shadow mode off (default 0.1,1)")
    p.add_argument("--tool", choices=["wrk", "hey"], default="wrk", help="load generator of the shadow part (default wrk)")
    p.add_argument("--duration", type=positive, default=10, help="seconds per shadow load run (default 10)")
    p.add_argument("--rounds", type=positive, default=3, help="alternating rounds of the shadow part; medians are reported (default 3)")
    p.add_argument(
        "--rate",
        type=positive,
        default=None,
        help="shadow part at this fixed total rate in requests per second with hey (default: closed loop, as fast as the student answers)",
    )
    p.add_argument("--out", default="results/bench-compare", help="folder for endpoints.json / .md / .png")
    p.set_defaults(handler=run)


def run(args) -> int:
    import shlex
    import sys
    from pathlib import Path

    from distillrec.benchmarks.endpoints import run as run_bench
    from training.errors import DistillrecError

    try:
        concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
        fractions = [float(f) for f in args.fractions.split(",") if f.strip()]
    except ValueError as exc:
        raise DistillrecError(f"--concurrency and --fractions take comma-separated numbers: {exc}") from None
    if not concurrency or min(concurrency) < 1 or any(not 0 <= f <= 1 for f in fractions):
        raise DistillrecError("--concurrency values must be at least 1 and --fractions between 0 and 1.")
    teachers = [t for t in args.teachers.split(",") if t]
    command = "distillrec " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = run_bench(
        Path(args.models_dir),
        args.student,
        teachers,
        Path(args.out),
        requests=args.requests,
        concurrency=concurrency,
        shadow_teacher=args.shadow_teacher,
        fractions=[0.0, *[f for f in fractions if f > 0]],
        tool=args.tool,
        duration=args.duration,
        rounds=args.rounds,
        rate=args.rate,
        command=command,
    )
    return 0 if report["shadow_target"]["met"] or report["shadow_target"]["p99_overhead"] is None else 1
