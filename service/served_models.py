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

from service.bundle.artifacts import BUNDLE_NAME_RE, BundleError, bundle_names, read_latest
from service.errors import InvalidRequest, NotReady, UnknownModel
from service.failures import LOG_DETAIL_CHARS, bounded, public_reason, unexpected_reason
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
    problem: str | None = None  # why the models dir gives nothing to serve (missing, empty)

    def get(self, name: str | None) -> Recommender:
        """The recommender for ``name`` (or the default); :class:`UnknownModel` names what is served."""
        if name is None:
            if self.default_name is not None:
                return self.models[self.default_name]
            if not self.models:
                raise NotReady(f"no bundle is loaded: {self.problem or 'see /readyz for the reasons.'}")
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
    """(recommender, failure, version) for the LATEST version of bundle ``name``; never raises.

    The failure's reason is the public one (:func:`service.failures.public_reason`); the full
    message is logged by the caller.
    """
    version = None
    try:
        if not BUNDLE_NAME_RE.match(name):
            raise BundleError(f"{models_dir / name}: the folder name is not a valid bundle name (letters, digits, '.', '_', '-'; at most 64).")
        folder = read_latest(models_dir / name, models_dir)
        version = folder.name
        rec = load_recommender(name, folder, ort_threads)
        rec.warm_up(warmup)
        return rec, None, version
    except BundleError as exc:
        detail, reason = str(exc), public_reason(str(exc), models_dir)
    except Exception as exc:  # a bundle must never take the service down
        detail, reason = f"{type(exc).__name__}: {exc}", unexpected_reason(exc)
    log.error("refused bundle %s%s: %s", name, f" version {version}" if version else "", bounded(detail, LOG_DETAIL_CHARS))
    return None, LoadFailure(name, version, reason), version


def _latest_name(models_dir: Path, name: str) -> str | None:
    try:
        return read_latest(models_dir / name, models_dir).name
    except Exception:  # any problem is reported by _load_one
        return None


def _models_dir_problem(models_dir: Path, names: list[str]) -> str | None:
    """Why nothing can be served from ``models_dir`` (no server path in it), or None."""
    if not models_dir.is_dir():
        log.error("models dir %s does not exist; no bundle is served. Set DISTILLREC_MODELS_DIR or export a bundle with `distillrec export`.", models_dir)
        return "the models dir (DISTILLREC_MODELS_DIR) does not exist; set it or export a bundle with `distillrec export`."
    if not names:
        log.error("models dir %s holds no bundle folder; export one with `distillrec export --models-dir %s`.", models_dir, models_dir)
        return "the models dir (DISTILLREC_MODELS_DIR) holds no bundle; export one with `distillrec export`."
    return None


def load_registry(
    models_dir: Path, ort_threads: int = 1, warmup: int = 32, default_model: str | None = None, previous: Registry | None = None
) -> tuple[Registry, dict]:
    """Loads every bundle under ``models_dir``; returns the new snapshot and a report of what changed.

    With ``previous``, bundles whose LATEST version is already loaded are reused as they are, and a
    bundle whose new version fails keeps serving its previous version. The report's ``failed``
    lists new failures; ``still_failed`` those that failed the same way at the previous load.
    """
    models_dir = Path(models_dir)
    previous = previous or Registry()
    models: dict[str, Recommender] = {}
    failures: dict[str, LoadFailure] = {}
    report: dict = {"changed": [], "unchanged": [], "removed": [], "failed": [], "still_failed": []}
    try:
        names = bundle_names(models_dir)
        problem = _models_dir_problem(models_dir, names)
    except OSError as exc:
        log.error("models dir %s cannot be listed: %s", models_dir, exc)
        names, problem = [], f"the models dir (DISTILLREC_MODELS_DIR) cannot be listed ({type(exc).__name__}); check its permissions."
    for name in names:
        old = previous.models.get(name)
        if old is not None and _latest_name(models_dir, name) == old.version:
            models[name] = old
            report["unchanged"].append(name)
            continue
        rec, failure, version = _load_one(name, models_dir, ort_threads, warmup)
        if rec is not None:
            models[name] = rec
            report["changed"].append({"bundle": name, "previous_version": old.version if old else None, "version": rec.version})
            log.info("loaded bundle %s version %s (%s, %s)", name, rec.version, rec.role, rec.family)
            continue
        assert failure is not None, "_load_one returns a recommender or a failure"
        if old is not None:
            models[name] = old
            failure = LoadFailure(failure.bundle, failure.version, failure.reason, serving_version=old.version)
            log.error("bundle %s keeps serving version %s", name, old.version)
        failures[name] = failure
        before = previous.failures.get(name)
        same = before is not None and (before.version, before.reason) == (failure.version, failure.reason)
        report["still_failed" if same else "failed"].append(failure.to_dict())
    report["removed"] = sorted(set(previous.models) - set(names))
    default, default_problem = choose_default(models, default_model, failures)
    return Registry(models, failures, default, default_problem, problem), report
