"""The registry of KD methods: ``@register`` a :class:`KDMethod` subclass; build methods from config.

A method spec in a config is a mapping ``{name: de, weight: 0.01, <method params>…}``. Each method
class declares a pydantic ``Params`` model (unknown keys are errors) with the defaults of docs/methods.md,
and in ``requires`` the methods it builds on. :func:`build_methods` builds a run's list: each name at
most once, every required method present (in any order).
"""

from __future__ import annotations

import importlib
import pkgutil

from pydantic import BaseModel, ValidationError

from training.distill.base import KDMethod
from training.errors import ConfigError

METHODS: dict[str, type[KDMethod]] = {}


def register(cls: type[KDMethod]) -> type[KDMethod]:
    """Class decorator: makes ``cls`` buildable from config under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty `name`")
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"KD method name '{cls.name}' is registered twice")
    METHODS[cls.name] = cls
    return cls


#: Modules of ``training.distill`` holding the dissertation's single-teacher methods.
BUILTIN_MODULES = ("latent", "topology", "ranking")
_NOT_METHOD_MODULES = {"base", "registry", "common", "teacher", "teacher_protocol", "experts", "train_student"}


def load_builtin() -> dict[str, type[KDMethod]]:
    """Imports the built-in method modules (so their ``@register`` run) and returns METHODS."""
    for name in BUILTIN_MODULES:
        importlib.import_module(f"training.distill.{name}")
    return METHODS


def load_all() -> dict[str, type[KDMethod]]:
    """Imports every module of ``training.distill`` (built-in and contributed methods); returns METHODS."""
    import training.distill as package

    load_builtin()
    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in _NOT_METHOD_MODULES:
            importlib.import_module(f"{package.__name__}.{info.name}")
    return METHODS


def build_method(spec: dict) -> KDMethod:
    """Instantiates one method from its config mapping (validated against the class's ``Params``)."""
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in load_builtin():
        load_all()
    if name not in METHODS:
        raise ConfigError(f"distill.methods: unknown method {name!r}; known: {sorted(METHODS)}")
    cls = METHODS[name]
    params_cls: type[BaseModel] | None = getattr(cls, "Params", None)
    weight = spec.pop("weight", None)
    try:
        params = params_cls.model_validate(spec) if params_cls else None
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"distill.methods[{name}]: {details}") from None
    if params is None and spec:
        raise ConfigError(f"distill.methods[{name}]: takes no parameters besides weight, got {sorted(spec)}")
    return cls(weight=weight, params=params)


def build_methods(specs: list[dict]) -> list[KDMethod]:
    """The KD methods of one run: built from their specs, each name at most once, and each method's
    ``requires`` listed too (the order of the list does not matter)."""
    methods = [build_method(spec) for spec in specs]
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ConfigError(f"distill.methods lists a method twice: {names}")
    for m in methods:
        for needed in m.requires:
            if not any(isinstance(other, needed) for other in methods):
                raise ConfigError(f"distill.methods: '{m.name}' builds on '{needed.name}'; list a {{name: {needed.name}}} method too.")
    return methods
