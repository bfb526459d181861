"""``distillrec export``: turn a finished run into a servable ONNX + FAISS bundle."""

from __future__ import annotations

import json

from distillrec.commands.common import positive


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a run as a servable bundle (ONNX model + FAISS item index)",
        description=(
            "Export a finished run (or an ensemble folder holding ensemble.json) to MODELS_DIR/BUNDLE/<version>/ "
            "and point MODELS_DIR/BUNDLE/LATEST at it. Before publishing, the exporter checks itself and aborts "
            "if a check fails: onnx.checker, ONNX Runtime vs torch on every user (max abs diff <= 1e-4), and "
            "for --index ivf/hnsw recall@10 >= --min-recall against exact search."
        ),
    )
    p.add_argument("--run", required=True, help="run folder written by `distillrec train`, or an ensemble folder")
    p.add_argument("--models-dir", default="models", help="the model repository (default: models)")
    p.add_argument("--bundle", required=True, help="bundle name, served as the model name (e.g. ml100k-student)")
    p.add_argument("--index", choices=["flat", "ivf", "hnsw"], default="flat", help="item index: exact (default) or approximate for large catalogues")
    p.add_argument("--role", choices=["teacher", "student"], default=None, help="default: student for distilled runs or runs named *student*, else teacher")
    p.add_argument("--min-recall", type=float, default=0.95, help="recall@10 vs exact search an approximate index must reach (default 0.95)")
    p.add_argument("--nlist", type=positive, default=None, help="ivf: number of lists (default about 4*sqrt(items))")
    p.add_argument("--nprobe", type=positive, default=None, help="ivf: pin nprobe instead of tuning it")
    p.add_argument("--hnsw-m", type=positive, default=32, help="hnsw: graph degree M (default 32)")
    p.add_argument("--ef-search", type=positive, default=None, help="hnsw: pin efSearch instead of tuning it")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument(
        "--refit-all",
        action="store_true",
        help="first retrain the run's config on every interaction (training, validation, test) for its selected "
        "epoch count, and export that model; the manifest keeps the selected run's offline metrics (runs of `distillrec train` only)",
    )
    p.set_defaults(handler=run)


def run(args) -> int:
    from training.export import IndexOptions, export_run

    if not 0 < args.min_recall <= 1:
        from training.export import ExportError

        raise ExportError(f"--min-recall {args.min_recall}: must be in (0, 1].")
    opts = IndexOptions(kind=args.index, nlist=args.nlist, nprobe=args.nprobe, hnsw_m=args.hnsw_m, ef_search=args.ef_search, min_recall=args.min_recall)
    result = export_run(args.run, args.models_dir, args.bundle, opts, args.role, args.opset, refit_all=args.refit_all)
    print(json.dumps(result.summary(), indent=2))
    return 0
