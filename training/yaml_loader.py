"""The one YAML → pydantic loader of every config the training side reads (run, ensemble and
experiment configs): ``yaml.safe_load`` (nothing is executed), ``--set key=value`` overrides, then
validation by a strict pydantic model (unknown keys are errors). Every error names the file and
the key, and says what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from training.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def set_dotted(tree: dict, dotted: str, value: Any, origin: str) -> None:
    """``tree[a][b][c] = value`` for ``dotted = "a.b.c"`` (sections are created when missing)."""
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: cannot set '{dotted}': '{key}' is not a section.")
        node = child
    node[keys[-1]] = value


def parse_overrides(pairs: list[str] | None) -> list[tuple[str, Any]]:
    """Parses ``key.sub=value`` strings; values are YAML scalars/lists (``1e-3``, ``true``, ``[10, 20]``)."""
    out = []
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set '{pair}': expected key=value, for example --set train.epochs=50")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set '{pair}': the value is not valid YAML: {exc}") from None
        out.append((key.strip(), value))
    return out


def format_validation(exc: ValidationError, origin: str) -> str:
    """A pydantic error as lines ``origin: invalid configuration`` + ``  key.path: message``."""
    lines = [f"{origin}: invalid configuration"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and section; see configs/README.md)"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def validate_tree(model: type[M], tree: dict | None, origin: str, overrides: list[str] | None = None) -> M:
    """Validates a config tree (after applying ``--set`` overrides); errors name ``origin`` and the key."""
    tree = dict(tree or {})
    for key, value in parse_overrides(overrides):
        set_dotted(tree, key, value, origin)
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(format_validation(exc, origin)) from None


def read_yaml_mapping(path: str | Path, what: str = "config", where: str = "configs/") -> dict:
    """The top-level mapping of a YAML file (``yaml.safe_load``); clear errors for a missing file,
    invalid YAML or a top level that is not a mapping. ``what`` names the kind of config, ``where``
    the folder holding the shipped ones."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found. The shipped ones are under {where}.")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values, got {type(tree).__name__}.")
    return tree


def load_yaml(model: type[M], path: str | Path, overrides: list[str] | None = None, what: str = "config", where: str = "configs/") -> M:
    """Reads ``path`` and validates it as ``model`` (with ``--set`` overrides)."""
    return validate_tree(model, read_yaml_mapping(path, what, where), str(path), overrides)
