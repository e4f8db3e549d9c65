"""Method name registry: `noisyseg train --method NAME` looks names up here."""

from __future__ import annotations

import importlib
from typing import TypeVar

from pydantic import ValidationError

from ..config import MethodConfig, validation_message
from ..errors import ConfigError, unknown_name

_REGISTRY: dict[str, type] = {}
_MODULES = ("supervised", "clcs", "metadcseg", "gce", "sce", "coteaching", "trinet", "mtcl", "adele", "l2b")

M = TypeVar("M")


def register(cls: M) -> M:
    """Class decorator adding a Method subclass under its `name`."""
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    for mod in _MODULES:
        try:
            importlib.import_module(f"{__package__}.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{mod}":
                raise


def available_methods() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get_method_class(name: str) -> type:
    """The Method class for a name; ConfigError with a suggestion for unknown names."""
    _load_all()
    if name not in _REGISTRY:
        raise unknown_name("method", name, _REGISTRY)
    return _REGISTRY[name]


def validate_method(cfg: MethodConfig, where: str = "config"):
    """(class, validated params) for a MethodConfig."""
    cls = get_method_class(cfg.name)
    try:
        params = cls.Params.model_validate(cfg.params)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, cls.Params, where, prefix="method.params.")) from exc
    return cls, params
