"""Shared, built-once material for the export and service tests (``test_export_*``, ``test_service_*``).

:func:`models_dir`: tiny bundles written with numpy (``bundle_factory``), for tests of the service
alone. :func:`trained_models_dir`: tiny MovieLens-100K runs (two epochs, small dimensions) of every model family, an ensemble folder
made by hand from two of them (the format of ``distillrec ensemble build``), and their exported
bundles. Everything is built lazily the first time a test asks for it, once per test process, in a
temporary folder removed at exit. (A helper module rather than conftest fixtures, so that these
files stay separate from the shared conftest.)
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

from bundle_factory import write_bundle

REPO = Path(__file__).resolve().parents[1]
ROOT = Path(tempfile.mkdtemp(prefix="distillrec-svc-tests-"))
atexit.register(shutil.rmtree, ROOT, True)

#: small, fast variants of the shipped BPR student config (seconds per run on 2 cores)
RUNS = {
    "mf-student": ["name=svc-test-mf-student", "model.family=mf", "model.dim=16"],
    "neumf-teacher": ["name=svc-test-neumf-teacher", "model.family=neumf", "model.dim=16", "model.layers=2", "train.loss=bce"],
    "lightgcn-teacher": [
        "name=svc-test-lightgcn-teacher",
        "model.family=lightgcn",
        "model.dim=16",
        "model.layers=2",
        "model.init_std=0.1",
        "train.batch_size=4096",
        "train.lr=0.005",
    ],
}
COMMON = ["train.epochs=2", "train.progress=false", "train.threads=1", "eval.ks=[10]", "eval.patience=2"]


@functools.cache
def trained_run(kind: str) -> Path:
    """A finished run folder of ``kind`` (a key of :data:`RUNS`)."""
    from training.config import load_config
    from training.runs import train_run

    out = ROOT / "runs" / kind
    cfg = load_config(REPO / "configs" / "ml-100k" / "bpr-student.yaml", RUNS[kind] + COMMON)
    train_run(cfg, out)
    return out


@functools.cache
def ensemble_run() -> Path:
    """A hand-made ensemble folder of the MF student and the NeuMF teacher (weights 1 and 2)."""
    folder = ROOT / "runs" / "ensemble"
    folder.mkdir(parents=True, exist_ok=True)
    members = [{"run": str(trained_run("mf-student")), "weight": 1.0}, {"run": "../neumf-teacher", "weight": 2.0}]
    trained_run("neumf-teacher")
    (folder / "ensemble.json").write_text(json.dumps({"kind": "ensemble", "members": members, "temperature": 10.0, "list_length": 20}))
    metrics = json.loads((trained_run("neumf-teacher") / "result.json").read_text())
    (folder / "result.json").write_text(json.dumps({"name": "svc-test-ensemble", "kind": "ensemble", "valid": metrics["valid"], "test": metrics["test"]}))
    return folder


#: bundle name → (run builder, export options) of the shared model repository
BUNDLES = {
    "student": (lambda: trained_run("mf-student"), {}),
    "neumf": (lambda: trained_run("neumf-teacher"), {}),
    "lightgcn": (lambda: trained_run("lightgcn-teacher"), {}),
    "ensemble": (ensemble_run, {}),
}


@functools.cache
def exported(name: str) -> Path:
    """The version folder of bundle ``name`` exported from a trained run (:func:`trained_models_dir`)."""
    from training.export import export_run

    build, opts = BUNDLES[name]
    return export_run(build(), ROOT / "trained-models", name, **opts).path


def trained_models_dir(*names: str) -> Path:
    """A shared models dir with (at least) the bundles ``names`` exported from trained runs (torch)."""
    for n in names or tuple(BUNDLES):
        exported(n)
    return ROOT / "trained-models"


#: bundle name → (family, role) of the numpy-built bundles; the same names as :data:`BUNDLES`
NUMPY_BUNDLES = {"student": ("mf", "student"), "neumf": ("neumf", "teacher"), "lightgcn": ("lightgcn", "teacher"), "ensemble": ("ensemble", "ensemble")}


@functools.cache
def _numpy_bundle(name: str) -> Path:
    family, role = NUMPY_BUNDLES[name]
    return write_bundle(ROOT / "models", name, family, role)


def models_dir(*names: str) -> Path:
    """The shared models dir with (at least) the numpy-built bundles ``names`` (default: all) in it."""
    for n in names or tuple(NUMPY_BUNDLES):
        _numpy_bundle(n)
    return ROOT / "models"


def copy_models(dest: Path, *names: str) -> Path:
    """A private copy of some shared bundles (for tests that break or replace them)."""
    src = models_dir(*names)
    dest.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copytree(src / n, dest / n)
    return dest


def service_settings(models: Path, **overrides):
    """Service settings for tests: no .env, quiet logs, small warm-up."""
    from service.settings import Settings

    return Settings(_env_file=None, models_dir=models, warmup_requests=4, log_level="warning", **overrides)
