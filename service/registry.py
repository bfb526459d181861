"""The set of served bundles: an immutable snapshot, loaded at start-up and replaced whole on reload.

Every bundle folder under the models dir is served under its folder name, at the version its
``LATEST`` pointer names. A bundle that cannot be loaded is refused with a log line naming the
file; the others are served. Requests without ``model`` go to ``DISTILLREC_DEFAULT_MODEL``, else to
the student with the best offline validation metric, else to the only bundle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from service.artifacts import BUNDLE_NAME_RE, BundleError, bundle_names, read_latest
from service.errors import InvalidRequest, NotReady, UnknownModel
from service.loading import load_recommender
from service.recommender import Recommender

log = logging.getLogger("distillrec.service")


@dataclass(frozen=True)
class LoadFailure:
    """Why a bundle is not (or no longer) served at its LATEST version."""

    bundle: str
    version: str | None
    reason: str
    serving_version: str | None = None

    def to_dict(self) -> dict:
        return {"bundle": self.bundle, "version": self.version, "reason": self.reason, "serving_version": self.serving_version}


@dataclass(frozen=True)
class Registry:
    """Loaded recommenders by bundle name, the bundles that failed, and the default model."""

    models: dict[str, Recommender] = field(default_factory=dict)
    failures: dict[str, LoadFailure] = field(default_factory=dict)
    default_name: str | None = None
    default_problem: str | None = None  # why there is no usable default, when there is none

    def get(self, name: str | None) -> Recommender:
        """The recommender for ``name`` (or the default); :class:`UnknownModel` names what is served."""
        if name is None:
            if self.default_name is not None:
                return self.models[self.default_name]
            if not self.models:
                raise NotReady("no bundle is loaded; see /readyz for the reasons.")
            raise InvalidRequest(self.default_problem or "no default model; pass 'model'.")
        rec = self.models.get(name)
        if rec is None:
            served = ", ".join(sorted(self.models)) or "none"
            why = f" It failed to load: {self.failures[name].reason}" if name in self.failures else ""
            raise UnknownModel(f"model {name!r} is not served (served: {served}).{why}")
        return rec


def choose_default(models: dict[str, Recommender], configured: str | None, failures: dict[str, LoadFailure]) -> tuple[str | None, str | None]:
    """(default bundle name, problem): the configured one, else the best student, else the only bundle."""
    if configured:
        if configured in models:
            return configured, None
        why = f": {failures[configured].reason}" if configured in failures else ""
        return None, f"DISTILLREC_DEFAULT_MODEL={configured!r} is not loaded{why}. Pass 'model' explicitly or fix the bundle."
    students = [(m.manifest.offline_metric("valid"), name) for name, m in models.items() if m.role == "student"]
    scored = [(v, n) for v, n in students if v is not None]
    if scored:
        return min(scored, key=lambda t: (-t[0], t[1]))[1], None  # best metric, ties by name
    if students:
        return sorted(n for _, n in students)[0], None
    if len(models) == 1:
        return next(iter(models)), None
    served = ", ".join(sorted(models))
    return None, f"no 'model' given and no default: several bundles are served ({served}) and none is a student. Pass 'model' or set DISTILLREC_DEFAULT_MODEL."


def _load_one(name: str, models_dir: Path, ort_threads: int, warmup: int) -> tuple[Recommender | None, LoadFailure | None, str | None]:
    """(recommender, failure, version) for the LATEST version of bundle ``name``."""
    version = None
    try:
        if not BUNDLE_NAME_RE.match(name):
            raise BundleError(f"{models_dir / name}: '{name}' is not a valid bundle name (letters, digits, '.', '_', '-').")
        folder = read_latest(models_dir / name)
        version = folder.name
        rec = load_recommender(name, folder, ort_threads)
        rec.warm_up(warmup)
        return rec, None, version
    except BundleError as exc:
        return None, LoadFailure(name, version, str(exc)), version
    except Exception as exc:  # a bundle must never take the service down
        return None, LoadFailure(name, version, f"{type(exc).__name__}: {exc}"), version


def load_registry(models_dir: Path, ort_threads: int = 1, warmup: int = 32, default_model: str | None = None, previous: Registry | None = None) -> tuple[Registry, dict]:
    """Loads every bundle under ``models_dir``; returns the new snapshot and a report of what changed.

    With ``previous``, bundles whose LATEST version is already loaded are reused as they are, and a
    bundle whose new version fails keeps serving its previous version.
    """
    models_dir = Path(models_dir)
    previous = previous or Registry()
    models: dict[str, Recommender] = {}
    failures: dict[str, LoadFailure] = {}
    report: dict = {"changed": [], "unchanged": [], "removed": [], "failed": []}
    names = bundle_names(models_dir)
    if not models_dir.is_dir():
        log.error("models dir %s does not exist; no bundle is served. Set DISTILLREC_MODELS_DIR or export a bundle with `distillrec export`.", models_dir)
    for name in names:
        old = previous.models.get(name)
        try:
            latest = read_latest(models_dir / name).name
        except BundleError:
            latest = None
        if old is not None and latest == old.version:
            models[name] = old
            report["unchanged"].append(name)
            continue
        rec, failure, version = _load_one(name, models_dir, ort_threads, warmup)
        if rec is not None:
            models[name] = rec
            report["changed"].append({"bundle": name, "previous_version": old.version if old else None, "version": rec.version})
            log.info("loaded bundle %s version %s (%s, %s)", name, rec.version, rec.role, rec.family)
            continue
        if old is not None:
            models[name] = old
            failure = LoadFailure(failure.bundle, failure.version, failure.reason, serving_version=old.version)
        failures[name] = failure
        report["failed"].append(failure.to_dict())
        log.error("refused bundle %s%s: %s%s", name, f" version {version}" if version else "", failure.reason, f" (still serving version {old.version})" if old else "")
    report["removed"] = sorted(set(previous.models) - set(names))
    default, problem = choose_default(models, default_model, failures)
    return Registry(models, failures, default, problem), report
