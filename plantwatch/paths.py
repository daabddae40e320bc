"""Whether a path can be read, written or created, said in one line, without touching anything.

The commands check their files before the work (a backtest that fails to write its scores after
minutes of scoring has wasted them), and ``plantwatch check`` reports whether the files the service
will create can be created, without creating them.
"""

from __future__ import annotations

import os
from pathlib import Path


def why_not_readable(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file, or None if it looks readable."""
    if path.is_dir():
        return "is a folder, not a file"
    if not path.exists():
        return "no such file"
    if not os.access(path, os.R_OK):
        return "no permission to read it"
    return None


def why_not_writable_file(path: Path) -> str | None:
    """Why a file cannot be written at ``path`` (created or replaced), or None; its folder must exist."""
    if path.is_dir():
        return "is a folder; give a file name"
    if path.exists():
        return None if os.access(path, os.W_OK) else "no permission to write it"
    folder = path.parent
    if not folder.exists():
        return f"no such folder {folder}"
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    return None if _may_create_in(folder) else f"no permission to create files in {folder}"


def why_not_creatable(path: Path) -> str | None:
    """Why ``path`` (missing) could not be created, folders on the way included, or None if it could.

    The nearest existing ancestor decides: it must be a folder this process may create entries in.
    """
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is a file, not a folder"
    return None if _may_create_in(ancestor) else f"no permission to create anything in {ancestor}"


def why_not_writable_folder(path: Path) -> str | None:
    """Why ``path`` cannot serve as a folder to write into (created if missing), or None."""
    if path.is_dir():
        return None if _may_create_in(path) else "no permission to write in it"
    if path.exists():
        return "is a file, not a folder"
    return why_not_creatable(path)


def _may_create_in(folder: Path) -> bool:
    # access() also answers EROFS for a read-only mount, which the permission bits do not show.
    return os.access(folder, os.W_OK | os.X_OK)
