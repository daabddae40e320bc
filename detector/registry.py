"""Detectors by name, so the per-asset YAML config can select them.

    make_detector("pca_spc", {"variance": 0.95})
    make_spec({"kind": "pca_spc", "params": {"variance": 0.95}})

Every module of the ``detector.detectors`` package registers its detectors on import: a new detector
is a new file there, found with ``pkgutil`` (no list to keep by hand, so none to forget). They are
imported lazily, on the first lookup, so importing the registry stays cheap and import cycles cannot
arise.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from detector.base import Detector

REGISTRY: dict[str, type] = {}

_PLUGINS = "detector.detectors"  # the package whose every module is a detector plugin

T = TypeVar("T", bound=type)


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make ``cls`` constructible as ``make_detector(name, params)``."""

    def decorate(cls: T) -> T:
        known = REGISTRY.get(name)
        if known is not None and known is not cls:
            raise ValueError(f"detector name {name!r} already registered for {known.__qualname__}")
        REGISTRY[name] = cls
        return cls

    return decorate


def available() -> list[str]:
    """Registered detector names, sorted."""
    _load_builtins()
    return sorted(REGISTRY)


def make_detector(name: str, params: Mapping[str, Any] | None = None) -> Detector:
    """An unfitted detector of kind ``name``; ``ValueError`` names unknown kinds / parameters."""
    _load_builtins()
    cls = REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(sorted(REGISTRY))}")
    params = dict(params or {})
    accepted = constructor_params(cls)
    bad = sorted(set(params) - set(accepted))
    if bad:
        raise ValueError(f"detector {name!r} got unknown params {bad}; accepted: {accepted}")
    detector: Detector = cls(**params)
    return detector


def make_spec(spec: Mapping[str, Any]) -> Detector:
    """``make_detector`` from a config entry ``{"kind": name, "params": {...}}``."""
    extra = sorted(set(spec) - {"kind", "params"})
    if "kind" not in spec or extra:
        raise ValueError(f"a detector spec needs 'kind' and optional 'params' only; got keys {sorted(spec)}")
    return make_detector(spec["kind"], spec.get("params"))


def constructor_params(cls: type) -> list[str]:
    """Names of the keyword parameters of ``cls.__init__``."""
    sig = inspect.signature(cls)  # the class's call signature: __init__ without self
    return [p.name for p in sig.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


@functools.cache  # once per process (a failed import is not cached: the next lookup says it again)
def _load_builtins() -> None:
    package = importlib.import_module(_PLUGINS)
    for module in pkgutil.iter_modules(package.__path__, _PLUGINS + "."):
        importlib.import_module(module.name)
