"""How the settings say what is wrong: which file, line, key or environment variable, never a password.

:mod:`plantwatch.settings` validates; this module words its findings. A key set by a
``PLANTWATCH_<SECTION>__<KEY>`` variable is named by that variable, not blamed on the YAML file;
a ``PLANTWATCH_`` variable that names no setting (pydantic-settings ignores those silently) is
warned about with the nearest real one; a rejected value that is a URL holding a password is
shown with ``***`` in its place.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from pydantic import ValidationError

log = logging.getLogger("plantwatch.settings")

ENV_PREFIX = "PLANTWATCH_"
# Variables of other tools that share the prefix: the tests' PostgreSQL URL (PLANTWATCH_TEST_PG_URL).
FOREIGN_PREFIXES = ("PLANTWATCH_TEST_",)
SECRET_FILE_SUFFIX = "_FILE"

# user:password@ in a URL's authority (the password runs to the authority's last '@'), and libpq's
# password=... query parameter.
_USERINFO_PASSWORD = re.compile(r"(://[^:/?#@\s]*):[^/?#\s]*@")
_QUERY_PASSWORD = re.compile(r"([?&]password)=[^&#\s]*")


def mask_password(text: str) -> str:
    """``text`` with the password of any URL in it replaced by ``***`` (``user:***@``, ``password=***``)."""
    return _QUERY_PASSWORD.sub(r"\1=***", _USERINFO_PASSWORD.sub(r"\1:***@", text))


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: where (line, column) and what, without PyYAML's source excerpt."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return " ".join(str(exc).split())
    where = _at(exc.problem_mark)
    text = f"{where}: {exc.problem}"
    if exc.context:
        since = f" at {_at(exc.context_mark)}" if exc.context_mark is not None else ""
        text += f" ({exc.context}{since})"
    return text


def _at(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def setting_variables(sections: Mapping[str, Iterable[str]], scalars: Iterable[str]) -> list[str]:
    """Every variable name that sets something: ``PLANTWATCH_MQTT__URL``, ``PLANTWATCH_LOG_LEVEL``, ..."""
    names = [f"{ENV_PREFIX}{name.upper()}" for name in scalars]
    for section, keys in sections.items():
        names.append(f"{ENV_PREFIX}{section.upper()}")  # a whole section as JSON
        names += [f"{ENV_PREFIX}{section.upper()}__{key.upper()}" for key in keys]
    return names


def warn_unused_variables(known_tops: Iterable[str], variables: list[str], secret_files: Iterable[str]) -> None:
    """Log a warning for each ``PLANTWATCH_`` variable that sets nothing, naming the nearest real one."""
    tops = {top.upper() for top in known_tops}
    files = set(secret_files)
    for name in sorted(os.environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper.startswith(FOREIGN_PREFIXES) or upper in files:
            continue
        top = upper.removeprefix(ENV_PREFIX).split("__", 1)[0]
        if top in tops:  # a key of a known section that is not one is refused by validation, naming it
            continue
        nearest = _nearest(upper, variables)
        hint = f"; did you mean {nearest}?" if nearest else "; see `plantwatch config` for the settings"
        log.warning("%s is not a plantwatch setting and is ignored%s", name, hint)


def environment_keys() -> dict[tuple[str, ...], str]:
    """The settings keys the environment sets, as pydantic-settings reads them: key path -> variable.

    A secret read from a ``..._FILE`` variable's file counts as set by that variable, unless the
    secret's own variable is set too (which wins).
    """
    keys: dict[tuple[str, ...], str] = {}
    for name in sorted(os.environ, key=lambda name: name.upper().endswith(SECRET_FILE_SUFFIX)):
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and not upper.startswith(FOREIGN_PREFIXES):
            path = tuple(part.lower() for part in upper.removeprefix(ENV_PREFIX).split("__"))
            keys.setdefault(path, name)
            if upper.endswith(SECRET_FILE_SUFFIX):
                keys.setdefault((*path[:-1], path[-1].removesuffix(SECRET_FILE_SUFFIX.lower())), name)
    return keys


def describe(exc: ValidationError, source: str, variables: list[str]) -> str:
    """Every problem on its own line, named by its key, or by its variable when the environment set it."""
    from_env = environment_keys()
    lines: list[str] = []
    blamed: set[str] = set()
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        field, sep, rest = message.partition(": ")
        if sep and re.fullmatch(r"[\w.-]+", field):  # model- and section-level checks name the key first
            loc, message = (*loc, *field.split(".")), rest
        variable = _variable_for(loc, from_env)
        blamed.add("the environment" if variable else source)
        if error["type"] == "extra_forbidden":
            message = _unknown(loc, variable, variables)
        elif "input" in error and error["type"] != "missing" and not isinstance(error["input"], dict):
            shown = mask_password(error["input"]) if isinstance(error["input"], str) else error["input"]
            message = f"{message} (got {shown!r})"
        lines.append(f"  {variable or '.'.join(loc)}: {mask_password(message)}")
    where = " and ".join(sorted(blamed, key=lambda name: name == "the environment"))
    return "\n".join([f"invalid configuration ({where}):", *lines])


def _variable_for(loc: tuple[str, ...], from_env: dict[tuple[str, ...], str]) -> str | None:
    """The variable that set ``loc`` or a section holding it (PLANTWATCH_MQTT='{...}'), if any."""
    for length in range(len(loc), 0, -1):
        variable = from_env.get(tuple(part.lower() for part in loc[:length]))
        if variable is not None:
            return variable
    return None


def _unknown(loc: tuple[str, ...], variable: str | None, variables: list[str]) -> str:
    if variable is None:
        key = _nearest_key(loc, variables)
        return "unknown key; " + (
            f"did you mean {key}?" if key else "check the spelling against `plantwatch config` (the embedded default)"
        )
    nearest = _nearest(variable.upper(), variables)
    return "no such setting; " + (f"did you mean {nearest}?" if nearest else "see `plantwatch config`")


def _nearest(variable: str, variables: list[str]) -> str | None:
    """The real variable ``variable`` was most likely meant to be; compared without the shared prefix,
    which would make every name look alike."""
    bare = [name.removeprefix(ENV_PREFIX) for name in variables]
    found = difflib.get_close_matches(variable.removeprefix(ENV_PREFIX), bare, n=1, cutoff=0.6)
    return ENV_PREFIX + found[0] if found else None


def _nearest_key(loc: tuple[str, ...], variables: list[str]) -> str | None:
    """The real key a file's unknown key ``loc`` was most likely meant to be, among its siblings only
    (``mqtt.urll`` -> ``mqtt.url``, ``storge`` -> ``storage``; an asset's override among the detector's
    keys); none for other keys deeper than a section's."""
    parent = tuple(part.lower() for part in loc[:-1])
    if len(parent) == 3 and parent[:2] == ("detector", "assets"):  # detector.assets.<asset>.<key>
        parent = ("detector",)
    paths = (tuple(name.removeprefix(ENV_PREFIX).lower().split("__")) for name in variables)
    siblings = [path[-1] for path in paths if len(path) == len(parent) + 1 and path[:-1] == parent]
    found = difflib.get_close_matches(loc[-1].lower(), siblings, n=1, cutoff=0.6)
    return ".".join((*loc[:-1], found[0])) if found else None
