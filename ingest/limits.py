"""Limits on what publishers can create: assets, each asset's sensors, each asset's tags.

Every new asset costs the service memory for good (its detector, rings, health entry) and every new
sensor name widens the asset's model: one 51 KB frame of 4,000 sensor names took the detector thread
38 s and 849 MB to learn, and 13,014 made-up assets stayed in memory. :class:`PublisherLimits` sits
behind the :class:`~ingest.decode.Decoder` and refuses, before anything is stored:

* the readings of a new asset once ``max_assets`` assets are known (``too_many_assets``);
* the new sensor names of an asset that has ``max_sensors_per_asset`` of them (``too_many_sensors``):
  only those values are dropped, the asset's known sensors in the same reading are kept. So no reading
  ever carries more than ``max_sensors_per_asset`` values;
* a reading whose tags would give its asset more than ``max_tags_per_asset`` distinct ``key=value``
  pairs (``too_many_tags``): the tags name the series the values are stored in, so the whole reading
  is refused rather than stored under other tags. Topic segments other than asset and sensor are tags
  (the topic can name any value there), as are a line's own tags with ``mqtt.payload_tags``.

Names are admitted first come, first served, and stay admitted for the life of the process; at a
start, the assets with a saved model in ``detector.model_dir`` and their sensors are admitted first
(:meth:`PublisherLimits.remember`), so a flood of made-up names cannot take their places. The state
is one entry per admitted asset holding its sensor names (each at most 128 characters, see
:data:`ingest.formats.base.MAX_NAME_LEN`) and the hashes of its tag pairs (tag values have no length
limit of their own, so they are not kept): it never grows past the limits.

Not thread-safe, and it need not be: like the decoder it runs on paho's network thread, the only
caller of :meth:`~ingest.decode.Decoder.decode` in the service.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ingest.messages import Decoded, DecodeError, Reading, short

__all__ = ["LIMIT_REASONS", "PublisherLimits"]

LIMIT_REASONS: tuple[str, ...] = ("too_many_assets", "too_many_sensors", "too_many_tags")


@dataclass(slots=True)
class _Asset:
    sensors: set[str] = field(default_factory=set)
    tags: set[int] = field(default_factory=set)  # hash((key, value)) of each tag pair seen


class PublisherLimits:
    """Admits readings while their asset, sensor names and tags stay within the limits (module docstring)."""

    __slots__ = ("max_assets", "max_sensors_per_asset", "max_tags_per_asset", "_assets")

    def __init__(self, *, max_assets: int, max_sensors_per_asset: int, max_tags_per_asset: int) -> None:
        if max_assets < 1 or max_sensors_per_asset < 1 or max_tags_per_asset < 0:
            raise ValueError("max_assets and max_sensors_per_asset must be at least 1, max_tags_per_asset at least 0")
        self.max_assets = max_assets
        self.max_sensors_per_asset = max_sensors_per_asset
        self.max_tags_per_asset = max_tags_per_asset
        self._assets: dict[str, _Asset] = {}

    @property
    def assets(self) -> int:
        """How many assets are admitted."""
        return len(self._assets)

    def sensors_of(self, asset: str) -> frozenset[str]:
        """The sensor names admitted for ``asset`` (empty if the asset is not admitted)."""
        known = self._assets.get(asset)
        return frozenset(known.sensors) if known is not None else frozenset()

    def remember(self, asset: str, sensors: Iterable[str]) -> bool:
        """Admit an asset known from before a restart (its saved model) and its sensors, up to the limits,
        so publishers of new names cannot take its place while it is quiet. False once they are full."""
        entry = self._assets.get(asset)
        if entry is None:
            if len(self._assets) >= self.max_assets:
                return False
            entry = self._assets[asset] = _Asset()
        for name in sensors:
            if len(entry.sensors) >= self.max_sensors_per_asset:
                break
            entry.sensors.add(name)
        return True

    def admit(self, decoded: Decoded) -> Decoded:
        """``decoded`` less what the limits refuse, the refusals added to its problems; raises the first
        refusal when no reading is left."""
        assets = self._assets
        for reading in decoded.readings:  # the fast path: every name already admitted
            known = assets.get(reading.asset)
            if known is None or not known.sensors.issuperset(reading.values):
                break
            if reading.tags and not known.tags.issuperset(map(hash, reading.tags.items())):
                break
        else:
            return decoded
        kept: list[Reading] = []
        refused: list[DecodeError] = []
        for reading in decoded.readings:
            try:
                kept.append(self._admit(reading, refused))
            except DecodeError as exc:
                refused.append(exc)
        if not kept:
            raise refused[0]
        return Decoded(tuple(kept), decoded.problems + tuple(refused))

    def _admit(self, reading: Reading, refused: list[DecodeError]) -> Reading:
        """``reading`` as admitted (new sensors beyond the limit dropped, noted in ``refused``); raises
        DecodeError when none of it is. Nothing is recorded for a reading that is refused whole."""
        asset = reading.asset
        known = self._assets.get(asset)
        if known is None and len(self._assets) >= self.max_assets:
            raise DecodeError(
                "too_many_assets",
                f"asset {short(asset)} would be asset {len(self._assets) + 1} (mqtt.max_assets={self.max_assets})",
            )
        entry = known if known is not None else _Asset()
        new_tags = {hash(pair) for pair in reading.tags.items()} - entry.tags
        if len(entry.tags) + len(new_tags) > self.max_tags_per_asset:
            raise DecodeError(
                "too_many_tags",
                f"asset {short(asset)} has {len(entry.tags)} distinct tag pairs and this reading brings "
                f"{len(new_tags)} more (mqtt.max_tags_per_asset={self.max_tags_per_asset})",
            )
        values = reading.values
        new_sensors = [name for name in values if name not in entry.sensors]
        room = self.max_sensors_per_asset - len(entry.sensors)
        if len(new_sensors) > room:
            dropped = new_sensors[room:]
            problem = DecodeError(
                "too_many_sensors",
                f"asset {short(asset)} has its {self.max_sensors_per_asset} sensors (mqtt.max_sensors_per_asset); "
                f"{len(dropped)} new ones dropped, the first {short(dropped[0])}",
            )
            new_sensors = new_sensors[:room]
            gone = set(dropped)
            values = {name: value for name, value in values.items() if name not in gone}
            if not values:  # only new sensors and no room for any
                raise problem
            refused.append(problem)
        if known is None:
            self._assets[asset] = entry
        entry.tags |= new_tags
        entry.sensors.update(new_sensors)
        return reading if values is reading.values else Reading(asset, reading.ts_ns, values, reading.tags)
