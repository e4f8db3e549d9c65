"""Method registry: `noisyseg train --method NAME` looks names up here.

A method is one file in ``methods/`` whose class is decorated with :func:`register`; every
public module of the package is imported on the first lookup, so there is no list to keep.
A module that fails to import, or two classes registering one name, is an error.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TypeVar

from pydantic import ValidationError

from ..config import MethodConfig, validation_message
from ..errors import ConfigError, unknown_name

_REGISTRY: dict[str, type] = {}
_SCANNED = False

M = TypeVar("M")


def register(cls: M) -> M:
    """Class decorator adding a Method subclass under its `name`; TypeError for an empty
    name or a name another class already holds."""
    name = getattr(cls, "name", "")
    if not name:
        raise TypeError(f"{cls.__module__}.{cls.__qualname__}: a registered method needs a `name`")
    old = _REGISTRY.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise TypeError(f"method name '{name}' registered twice: by {old.__module__}.{old.__qualname__} "
                        f"and {cls.__module__}.{cls.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def method_modules() -> list[str]:
    """The public modules of ``noisyseg.methods`` (every file not starting with '_'), sorted."""
    from . import __path__ as package_path

    return sorted(m.name for m in pkgutil.iter_modules(package_path) if not m.name.startswith("_"))


def _load_all() -> None:
    """Import every module of the package once; an import failure propagates, naming the module."""
    global _SCANNED
    if _SCANNED:
        return
    for mod in method_modules():
        try:
            importlib.import_module(f"{__package__}.{mod}")
        except Exception as exc:
            raise ImportError(f"method module noisyseg/methods/{mod}.py failed to import "
                              f"({type(exc).__name__}: {exc})".splitlines()[0]) from exc
    _SCANNED = True


def available_methods() -> list[str]:
    """Names of every registered method, sorted."""
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
