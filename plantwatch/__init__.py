"""plantwatch: settings, pipeline wiring and the command line."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # ``__version__`` is looked up when asked for: the MQTT receiver child, which imports this package
    # too, never needs importlib.metadata (0.6 MB more there; paho brings its email modules anyway).
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        # One source of truth: the version in pyproject.toml, as installed.
        return version("plantwatch")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"
