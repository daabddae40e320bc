"""MQTT topic layouts: which topic segments name the asset, the sensor and the tags.

A template such as ``plant/{line}/{asset}/{sensor}`` is split once; :meth:`TopicTemplate.parse` then
runs for every message on paho's network thread, so it only compares pre-split segments.
"""

from __future__ import annotations

import re

from ingest.messages import DecodeError, short

__all__ = ["TopicTemplate"]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TopicTemplate:
    """A topic layout such as ``plant/{line}/{asset}/{sensor}``.

    ``{asset}`` is required, ``{sensor}`` optional, any other ``{name}`` segment becomes a tag, and
    literal segments must match exactly. Placeholders fill whole segments.
    """

    __slots__ = ("template", "has_sensor", "tag_names", "_segments", "_literals", "_asset", "_sensor", "_tags")

    def __init__(self, template: str) -> None:
        self.template = template
        segments = template.split("/")
        literals: list[tuple[int, str]] = []
        names: dict[str, int] = {}
        for index, segment in enumerate(segments):
            match = _PLACEHOLDER.fullmatch(segment)
            if match:
                name = match.group(1)
                if name in names:
                    raise ValueError(f"topic template {template!r}: {{{name}}} appears twice")
                names[name] = index
            elif not segment:
                raise ValueError(
                    f"topic template {template!r}: empty segment (check for '//' or a leading/trailing '/')"
                )
            elif "{" in segment or "}" in segment:
                raise ValueError(
                    f"topic template {template!r}: segment {segment!r} is not a literal or a whole "
                    "{name} placeholder (names are identifiers; a placeholder fills its whole segment)"
                )
            elif "+" in segment or "#" in segment:
                raise ValueError(
                    f"topic template {template!r}: wildcards ('+', '#') are not allowed; use "
                    "{name} segments, subscription() derives the filter"
                )
            else:
                literals.append((index, segment))
        if "asset" not in names:
            raise ValueError(
                f"topic template {template!r} has no {{asset}} segment; every reading needs an asset, "
                "e.g. 'plant/{line}/{asset}/{sensor}'"
            )
        self._segments = tuple(segments)
        self._literals = tuple(literals)
        self._asset = names.pop("asset")
        self._sensor = names.pop("sensor", -1)
        self.has_sensor = self._sensor >= 0
        self._tags = tuple(names.items())
        self.tag_names = tuple(names)

    def __repr__(self) -> str:
        return f"TopicTemplate({self.template!r})"

    def parse(self, topic: str) -> tuple[str, str | None, dict[str, str]]:
        """Split ``topic`` into (asset, sensor or None, tags); DecodeError("unknown_topic") if it does not fit."""
        parts = topic.split("/")
        if len(parts) != len(self._segments):
            raise DecodeError(
                "unknown_topic",
                f"topic {short(topic)} has {len(parts)} segments, template {self.template!r} has {len(self._segments)}",
            )
        for index, literal in self._literals:
            if parts[index] != literal:
                raise DecodeError(
                    "unknown_topic", f"topic {short(topic)} segment {index + 1} is not {literal!r} ({self.template!r})"
                )
        if "" in parts:
            raise DecodeError("unknown_topic", f"topic {short(topic)} has an empty segment")
        sensor = parts[self._sensor] if self._sensor >= 0 else None
        return parts[self._asset], sensor, {name: parts[index] for name, index in self._tags}

    def subscription(self) -> str:
        """The MQTT subscription filter matching this template (each placeholder becomes ``+``)."""
        return "/".join("+" if _PLACEHOLDER.fullmatch(s) else s for s in self._segments)

    def render(self, asset: str, sensor: str | None = None, **tags: str) -> str:
        """Build a topic from values (the replay tool publishes to it); ValueError if one is missing or unusable."""
        values = dict(tags)
        unknown = sorted(set(values) - set(self.tag_names))
        if unknown:
            raise ValueError(f"topic template {self.template!r} has no segment for {', '.join(unknown)}")
        missing = [name for name in self.tag_names if name not in values]
        if missing:
            raise ValueError(f"topic template {self.template!r} needs a value for {', '.join(missing)}")
        values["asset"] = asset
        if self.has_sensor:
            if sensor is None:
                raise ValueError(f"topic template {self.template!r} needs a sensor")
            values["sensor"] = sensor
        elif sensor is not None:
            raise ValueError(f"topic template {self.template!r} has no {{sensor}} segment")
        out = list(self._segments)
        for name, value in values.items():
            if not isinstance(value, str) or not value or "/" in value or "+" in value or "#" in value:
                raise ValueError(f"{name}={value!r} cannot be a topic segment (empty, or contains '/', '+' or '#')")
            out[self._index_of(name)] = value
        return "/".join(out)

    def _index_of(self, name: str) -> int:
        if name == "asset":
            return self._asset
        if name == "sensor":
            return self._sensor
        return dict(self._tags)[name]
