"""Ensemble bundles: an ensemble run folder (``ensemble.json`` + ``result.json``) exported member by member.

``ensemble.json``::

    {"kind": "ensemble",
     "members": [{"run": "<member run folder, relative to this folder or absolute>", "weight": 1.0}, ...],
     "temperature": 10.0, "list_length": 100}

The bundle holds each member as a complete bundle under ``members/<i>/`` and, at the top level, the
shared ids / seen items / popularity and a manifest with role ``ensemble``. The service merges the
members' top-``list_length`` lists with :func:`service.bundle.aggregation.aggregate_lists`, exactly as
training does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.bundle.artifacts import MEMBERS_DIR, EnsembleMember, EnsembleSpec, Manifest, file_entries, write_manifest
from training.export.bundle_writer import data_spec, library_versions, write_data_files, write_model_bundle
from training.export.errors import ExportError
from training.export.index_builder import IndexOptions
from training.export.onnx_graph import DEFAULT_OPSET
from training.runs import load_run

ENSEMBLE_FILE = "ensemble.json"


class MemberRef(BaseModel):
    model_config = ConfigDict(extra="ignore")
    run: str
    weight: float = Field(1.0, gt=0)


class EnsembleRunSpec(BaseModel):
    """The content of ``ensemble.json`` (extra provenance keys are allowed and ignored)."""

    model_config = ConfigDict(extra="ignore")
    kind: str = Field(pattern="^ensemble$")
    members: list[MemberRef] = Field(min_length=1)
    temperature: float = Field(10.0, gt=0)
    list_length: int = Field(100, ge=1)


def is_ensemble_run(folder: Path) -> bool:
    return (Path(folder) / ENSEMBLE_FILE).is_file()


def read_ensemble_spec(folder: Path) -> EnsembleRunSpec:
    path = Path(folder) / ENSEMBLE_FILE
    try:
        return EnsembleRunSpec.model_validate(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: not valid JSON ({exc}).") from None
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ExportError(f"{path}: invalid ensemble description: {details}.") from None


def member_path(folder: Path, ref: str) -> Path:
    p = Path(ref)
    return p if p.is_absolute() else (Path(folder) / p)


def write_ensemble_bundle(folder_in: Path, staging: Path, bundle: str, version: str, index: IndexOptions, opset: int = DEFAULT_OPSET) -> Manifest:
    """Exports every member into ``staging/members/<i>/`` and writes the ensemble's top-level files and manifest."""
    spec = read_ensemble_spec(folder_in)
    result_path = Path(folder_in) / "result.json"
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    staging.mkdir(parents=True, exist_ok=True)
    members, manifests, dataset = [], [], None
    for i, ref in enumerate(spec.members):
        path = member_path(folder_in, ref.run)
        if not path.is_dir():
            raise ExportError(
                f"{Path(folder_in) / ENSEMBLE_FILE}: member {i} run folder {path} does not exist (relative paths are relative to the ensemble folder)."
            )
        run = load_run(path)
        if dataset is None:
            dataset = run.dataset
        elif run.dataset.fingerprint() != dataset.fingerprint():
            raise ExportError(
                f"{Path(folder_in) / ENSEMBLE_FILE}: member {i} ({path}) was trained on different data than member 0; an ensemble needs one dataset."
            )
        rel = f"{MEMBERS_DIR}/{i}"
        manifests.append(write_model_bundle(run, staging / rel, f"{bundle}.m{i}", version, None, index, opset))
        members.append(EnsembleMember(path=rel, weight=ref.weight))
    write_data_files(staging, dataset)
    manifest = Manifest(
        bundle=bundle,
        version=version,
        role="ensemble",
        family="ensemble",
        constructor={"members": [m.family for m in manifests]},
        dim=None,
        parameters=sum(m.parameters for m in manifests),
        score_function="rank_aggregation",
        ensemble=EnsembleSpec(members=members, temperature=spec.temperature, list_length=spec.list_length),
        data=data_spec(dataset),
        metrics={part: result[part] for part in ("valid", "test") if part in result},
        select=result.get("select"),
        source_run=str(Path(folder_in).resolve()),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        libraries=library_versions(),
        files=file_entries(staging),
    )
    write_manifest(staging, manifest)
    return manifest
