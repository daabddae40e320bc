"""plantwatch: settings, pipeline wiring and the command line."""

from importlib.metadata import PackageNotFoundError, version

try:
    # One source of truth: the version in pyproject.toml, as installed.
    __version__ = version("plantwatch")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
