"""``distillrec compare``: a student service against teacher services, through their HTTP API only."""

from __future__ import annotations

from distillrec.commands.common import positive


def register(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="compare a student service with teacher services over HTTP: end-to-end latency and top-k agreement (table, JSON, PNG)",
        description=(
            "Sends the same sampled users to every service's POST /v1/recommend (seen items excluded) and reports, per service, "
            "end-to-end latency percentiles (p50/p95/p99 and mean, network and serialisation included), throughput, errors and "
            "timeouts, and the agreement of its top-k lists with the first --teacher: overlap@k, rank-biased overlap (RBO), "
            "Kendall tau of the shared items, and the normalised discounted cumulative gain (NDCG@k) with the teacher's list as the relevant items. Users are interleaved: "
            "each of CONCURRENCY workers takes the next user and asks every service in turn. Neither service is changed; "
            "this command needs no torch. Writes compare.json, compare.md and compare.png into --out."
        ),
    )
    p.add_argument(
        "--student",
        required=True,
        metavar="URL[#MODEL]",
        help="the student service's base URL, e.g. http://127.0.0.1:8001 (#MODEL: the bundle to ask for; default: the service's default model)",
    )
    p.add_argument(
        "--teacher",
        required=True,
        action="append",
        metavar="[NAME=]URL[#MODEL]",
        help="a teacher service, e.g. teacher=http://127.0.0.1:8002#ml100k-teacher (repeatable; agreement is measured against the first)",
    )
    p.add_argument("--users", required=True, help="user ids to sample from: a file with one id per line, a range such as 1-943, or a comma-separated list")
    p.add_argument("--requests", type=positive, default=200, help="users sampled; every service gets one request per user (default 200)")
    p.add_argument("--concurrency", default="1", help="comma-separated users in flight, one run each (default 1), e.g. 1,16")
    p.add_argument("--k", type=positive, default=10, help="items per list (default 10)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds before one request counts as a timeout (default 2)")
    p.add_argument("--max-seconds", type=float, default=300.0, help="wall-time limit of each run; it stops early and says so (default 300)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled users (default 0)")
    p.add_argument("--out", default="results/compare", help="folder for compare.json / .md / .png (default results/compare)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from pathlib import Path

    from distillrec.compare_client import compare, parse_target, parse_users, sample, table, write
    from training.errors import DistillrecError

    try:
        teachers = [parse_target(spec, f"teacher{i + 1}" if len(args.teacher) > 1 else "teacher") for i, spec in enumerate(args.teacher)]
        student = parse_target(args.student, "student")
        concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
        users = sample(parse_users(args.users), args.requests, args.seed)
    except ValueError as exc:
        raise DistillrecError(str(exc)) from None
    if len({t.name for t in [*teachers, student]}) != len(teachers) + 1:
        raise DistillrecError("two services have the same name; name the teachers: --teacher NAME=URL.")
    if args.requests < 1 or args.k < 1 or args.timeout <= 0 or not concurrencies or min(concurrencies) < 1:
        raise DistillrecError("--requests, --k, --timeout and every --concurrency must be positive.")
    report = compare([*teachers, student], users, args.k, concurrencies, args.timeout, args.max_seconds)
    report["seed"] = args.seed
    print(table(report))
    for path in write(report, Path(args.out)):
        print(f"wrote {path}")
    failed = all(t["ok"] == 0 for r in report["runs"] for t in r["targets"] if t["name"] == student.name)
    return 1 if failed else 0
