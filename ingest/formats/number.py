"""A bare number (``21.5``, ``-3e2``): one sensor's value, the sensor from the topic, the time of arrival."""

from __future__ import annotations

from typing import ClassVar

from detector.types import MAX_ABS_VALUE
from ingest.formats.base import NOT_FINITE, ParserContext, check_name, parse_number
from ingest.messages import Decoded, DecodeError, Reading, short

__all__ = ["NumberParser"]


class NumberParser:
    """Claims any single word (no space, newline or ``=``); a word that is no number is ``non_numeric``."""

    reasons: ClassVar[tuple[str, ...]] = ()

    def __init__(self, context: ParserContext) -> None:
        self._template = context.template.template
        self._now_ns = context.now_ns

    def claims(self, text: str) -> bool:
        return " " not in text and "\n" not in text and "=" not in text

    def parse(self, text: str, asset: str, sensor: str | None, tags: dict[str, str]) -> Decoded:
        value = parse_number(text)
        if value is None:
            raise DecodeError("non_numeric", f"payload {short(text)} is not a number, a JSON object or line protocol")
        if sensor is None:
            raise DecodeError(
                "missing_sensor",
                f"bare value but topic template {self._template!r} has no {{sensor}} segment",
            )
        check_name("asset", asset)
        check_name("sensor", sensor)
        if not -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
            raise DecodeError("non_finite", f"sensor {short(sensor)} value {short(text)} {NOT_FINITE}")
        return Decoded((Reading(asset, self._now_ns(), {sensor: value}, tags),), ())
