"""``distillrec ensemble``: heterogeneous teachers, their ensemble, and students distilled from it (HetComp)."""

from __future__ import annotations

import json

from distillrec.commands.common import add_config_args, add_run_args, positive, run_config
from distillrec.commands.experiment import add_experiment_args


def register(sub) -> None:
    p = sub.add_parser(
        "ensemble",
        help="build a rank-aggregation ensemble of teachers; distil students from it (HetComp, or RRD: Relaxed Ranking Distillation)",
        description="Ensembles of heterogeneous teachers and distillation from them with HetComp (heterogeneous model compression: easy-to-hard ranking targets built from the teachers' training trajectories). See docs/hetcomp.md.",
    )
    esub = p.add_subparsers(dest="ensemble_command", metavar="SUBCOMMAND", required=True)

    b = esub.add_parser(
        "build",
        help="member runs → ensemble run folder (ensemble.json, result.json, member trajectories)",
        description="Evaluate the members and their rank-aggregation ensemble, store each member's trajectory "
        "(RUN/trajectory.npz) for HetComp, and write OUT/result.json and OUT/ensemble.json.",
    )
    add_config_args(b)
    b.add_argument("--out", required=True, help="ensemble run folder, e.g. runs/hc-ml100k-ensemble")
    b.set_defaults(handler=run_build)

    t = esub.add_parser(
        "trajectory",
        help="store a teacher run's trajectory (top-N lists of a few checkpoints)",
        description="Write RUN/trajectory.npz from the run's periodic checkpoints and its best one.",
    )
    t.add_argument("--run", required=True, help="teacher run folder trained with train.checkpoint_every > 0")
    t.add_argument("--fractions", default="0.1,0.3,0.6", help="earlier checkpoints at these fractions of the best epoch")
    t.add_argument("--top-n", type=positive, default=100, help="items kept per user and checkpoint")
    t.set_defaults(handler=run_trajectory)

    d = esub.add_parser(
        "distill",
        help="train a student from an ensemble (distill.methods: hetcomp, rrd …; none: scratch)",
        description="Train the student the config describes, with the ensemble run folder as its teacher. "
        "Writes the usual run folder; result.json also records the process's peak RSS.",
    )
    add_config_args(d)
    add_run_args(d, "runs/hc-ml100k-student-hetcomp")
    d.add_argument("--ensemble", "--teacher", dest="ensemble", default=None, help="ensemble run folder (default: the config's distill.teacher)")
    d.set_defaults(handler=run_distill)

    e = esub.add_parser(
        "experiment",
        help="the same as `distillrec experiment` (teachers → ensemble → students, then the table)",
        description="The same command as `distillrec experiment`, kept under this name for existing scripts; see `distillrec experiment --help`.",
    )
    add_experiment_args(e)


def run_build(args) -> int:
    from training.ensemble.build import build_ensemble, load_ensemble_config

    result = build_ensemble(load_ensemble_config(args.config, args.overrides), args.out)
    summary = {
        "out": args.out,
        "test": {k: round(v, 4) for k, v in result["test"]["metrics"].items() if not k.startswith("coverage")},
        "best_member_test": {k: round(v, 4) for k, v in result["best_member_test"].items() if not k.startswith("coverage")},
        "beats_best_member_test": result["beats_best_member_test"],
    }
    print(json.dumps(summary, indent=2))
    return 0


def run_trajectory(args) -> int:
    from training.ensemble.trajectory import export_trajectory, trajectory_meta
    from training.runs import load_run

    run = load_run(args.run)
    export_trajectory(run.path, run.dataset, [float(f) for f in args.fractions.split(",")], args.top_n, run.config.eval.ks)
    meta = trajectory_meta(run.path)
    print(json.dumps({"run": args.run, "epochs": meta["epochs"], "valid": meta["valid"]}, indent=2))
    return 0


def run_distill(args) -> int:
    from pathlib import Path

    from distillrec.benchmarks.environment import peak_rss_mib
    from training.distill.train_student import distill_run
    from training.runs import train_run

    config = run_config(args)
    if config.distill and config.distill.methods:
        result = distill_run(config, args.out, teacher=args.ensemble, resume=args.resume)
    else:  # the experiment's scratch student, trained and measured the same way
        result = train_run(config, args.out, resume=args.resume)
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    (Path(args.out) / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({"out": str(args.out), "best_epoch": result["best_epoch"], "peak_rss_mib": result["peak_rss_mib"], "test": result["test"]}, indent=2))
    return 0
