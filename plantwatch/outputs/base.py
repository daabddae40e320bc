"""What an alert output does: hand on alerts that changed, in the store's order of changes."""

from __future__ import annotations

from typing import Protocol

from alerts.model import Alert


def check_topic_template(template: str) -> None:
    """ValueError unless ``template`` names one topic per asset: ``{asset}`` once, no wildcards."""
    if template.count("{asset}") != 1:
        raise ValueError(f"{template!r} must contain {{asset}} exactly once")
    if template.replace("{asset}", "").count("{") or template.count("}") != 1:
        raise ValueError(f"{template!r}: only {{asset}} is filled in (one topic per asset); write the rest out")
    if any(c in template for c in "+#\0") or template.startswith("$"):
        raise ValueError(f"{template!r}: a topic to publish on holds no + or #, and does not start with $")


class DeliveryFailed(Exception):
    """The receiver could not take the alert now (unreachable, busy, a server error): try again later.
    The message is one line naming the receiver."""


class DeliveryRefused(Exception):
    """The receiver refused this alert for good (a 4xx answer): retrying would block every later one.
    The message is one line naming the receiver and its answer."""


class AlertOutput(Protocol):
    name: str  # also the key of its delivery cursor in the store: unique among outputs
    # A notification (a pager, a chat): a shelved alert's changes are not sent while it is shelved, as
    # shelving silences it. A state display (MQTT's retained state) shows them, shelved.
    notifies: bool

    def start(self) -> None:
        """Connect, if the output keeps a connection."""
        ...

    def deliver(self, alert: Alert) -> None:
        """Hand on one changed alert (its current state); returns once the receiver has it.

        Raises DeliveryFailed to be retried with the same alert, DeliveryRefused to skip it."""
        ...

    def close(self) -> None: ...
