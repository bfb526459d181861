"""Export a finished run (or an ensemble run folder) as a servable bundle (docs/service.md#2-the-bundle-layout-the-contract).

``export_run(run, models_dir, bundle)`` writes ``models_dir/bundle/<version>/`` through a hidden
staging folder, self-checks it (``onnx.checker``; ONNX Runtime vs torch on every user; recall of
approximate indexes), writes the manifest last, renames the folder into place and moves
``models_dir/bundle/LATEST`` to it. On any failure nothing is published and the staging folder is
removed.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from service.bundle.artifacts import Manifest, new_version
from training.export.bundle_writer import check_bundle_name, publish, staging_folder, write_model_bundle
from training.export.ensemble import is_ensemble_run, write_ensemble_bundle
from training.export.errors import ExportError
from training.export.index_builder import IndexOptions
from training.export.onnx_graph import DEFAULT_OPSET

__all__ = ["ExportError", "ExportResult", "IndexOptions", "export_run"]


class ExportResult:
    """Where the bundle went and what its manifest says."""

    def __init__(self, path: Path, manifest: Manifest):
        self.path, self.manifest = path, manifest

    def summary(self) -> dict:
        m = self.manifest
        return {
            "bundle": m.bundle,
            "version": m.version,
            "path": str(self.path),
            "role": m.role,
            "family": m.family,
            "onnx_max_abs_diff": m.onnx.max_abs_diff if m.onnx else None,
            "index": m.index.model_dump() if m.index else None,
            "files": len(m.files),
        }


def export_run(
    run: str | Path,
    models_dir: str | Path,
    bundle: str,
    index: IndexOptions | None = None,
    role: str | None = None,
    opset: int = DEFAULT_OPSET,
    refit_all: bool = False,
) -> ExportResult:
    """Exports ``run`` (a run folder, or an ensemble folder with ``ensemble.json``) as a new version of ``bundle``.

    With ``refit_all`` the run is first refitted on every interaction for its selected epoch count
    (:mod:`training.export.refit`) and the refitted model is exported.
    """
    from training.runs import load_run

    run, models_dir = Path(run), Path(models_dir)
    index = index or IndexOptions()
    check_bundle_name(bundle)
    if not run.is_dir():
        raise ExportError(f"--run {run}: no such folder. Pass a run folder written by `distillrec train` (or an ensemble folder).")
    version = new_version()
    new_bundle = not (models_dir / bundle).exists()
    staging = staging_folder(models_dir, bundle, version)
    final = None
    try:
        if is_ensemble_run(run):
            if role not in (None, "ensemble"):
                raise ExportError(f"--role {role}: {run} is an ensemble folder; its bundle role is 'ensemble'.")
            if refit_all:
                raise ExportError(f"--refit-all: {run} is an ensemble folder; refit its members and build the ensemble from them instead.")
            manifest = write_ensemble_bundle(run, staging, bundle, version, index, opset)
        elif refit_all:
            from training.export.refit import refit_all as refit

            with tempfile.TemporaryDirectory(prefix="distillrec-refit-") as tmp:
                loaded = refit(run, Path(tmp) / "refit")
            manifest = write_model_bundle(loaded, staging, bundle, version, role, index, opset)
        else:
            manifest = write_model_bundle(load_run(run), staging, bundle, version, role, index, opset)
        final = publish(staging, models_dir, bundle, version)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if final is None and new_bundle:  # a failed first export leaves no empty bundle folder behind
            with contextlib.suppress(OSError):
                (models_dir / bundle).rmdir()  # only if empty: never removes another export's files
    return ExportResult(final, manifest)
