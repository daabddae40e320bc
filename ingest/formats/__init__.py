"""Payload formats: one module per format, each a :class:`~ingest.formats.base.PayloadParser`.

:data:`FORMATS` is the registry the :class:`~ingest.decode.Decoder` tries, in order: the first parser
whose ``claims()`` accepts a payload decodes it. Line protocol takes whatever the others leave, so it
stays last. A new format is a new module here with a parser class, and one entry below (before line
protocol); the order is written out rather than discovered because it decides which format wins.
"""

from __future__ import annotations

from ingest.formats.base import ParserContext, PayloadParser
from ingest.formats.json import JsonParser
from ingest.formats.line_protocol import LineProtocolParser
from ingest.formats.number import NumberParser

__all__ = ["FORMATS", "ParserContext", "PayloadParser"]

FORMATS: dict[str, type[PayloadParser]] = {
    "json": JsonParser,  # JSON frame and JSON single value
    "number": NumberParser,  # a bare number
    "line_protocol": LineProtocolParser,  # InfluxDB line protocol: the catch-all
}
