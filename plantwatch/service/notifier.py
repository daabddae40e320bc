"""Feeds an alert output (MQTT, a webhook) every alert change, in the store's order of changes.

The store stamps each change in commit order (``AlertStore.list(updated_since_ns=...)``), whoever
wrote it: the lifecycle on the detector's thread, or an operator through the API. A notifier reads
that order from where its output last delivered, hands each alert on, and records the place in the
store after each delivery, so a restart goes on from there: nothing is lost, and at most the one
alert in flight at a crash is delivered twice (webhooks carry a delivery id to drop it by). A
receiver that is down is tried again with a backoff from ``poll_s`` doubling to ``max_backoff_s``;
one that refuses an alert for good (a 4xx) has it skipped, counted and logged. A new output starts at
the changes from its first start on; changes of one alert within a read arrive as one, its latest.
An output that notifies (a webhook) is not sent the changes of an alert while it is shelved.
"""

from __future__ import annotations

import logging
import threading
import time

from alerts.model import Alert
from alerts.store import AlertStore
from plantwatch.outputs.base import AlertOutput, DeliveryFailed, DeliveryRefused
from telemetry.counters import Counters

log = logging.getLogger(__name__)

BATCH = 100  # changes read per look at the store


class AlertNotifier:
    """One output's delivery thread."""

    def __init__(
        self,
        store: AlertStore,
        output: AlertOutput,
        counters: Counters,
        *,
        poll_s: float = 1.0,
        max_backoff_s: float = 60.0,
    ) -> None:
        self.output = output
        self._store = store
        self._counters = counters
        self._poll_s = poll_s
        self._max_backoff_s = max_backoff_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"plantwatch-{output.name}", daemon=True)
        self._failing_since: float | None = None

    def start(self) -> None:
        self.output.start()
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        self.output.close()

    def _run(self) -> None:
        after = self._store.delivered(self.output.name)
        if after is None:  # a new output: the changes from now on
            after = (time.time_ns(), 0)
            self._store.mark_delivered(self.output.name, after)
        while not self._stop.is_set():
            try:
                changed = self._store.list(updated_since_ns=after[0], after=after, limit=BATCH)
            except Exception:  # the store is unreachable for now: the service's health says so
                log.exception("%s: cannot read the alert store; trying again", self.output.name)
                self._stop.wait(self._max_backoff_s)
                continue
            for alert in changed:
                if self.output.notifies and alert.shelved(time.time_ns()):
                    self._counters.inc("plantwatch_alert_deliveries_silenced_total", output=self.output.name)
                elif not self._hand_on(alert):
                    return  # stopped while the receiver was down: delivered after the restart
                assert alert.updated_at_ns is not None and alert.id is not None  # every stored alert has both
                after = (alert.updated_at_ns, alert.id)
                self._store.mark_delivered(self.output.name, after)
            if len(changed) < BATCH:
                self._stop.wait(self._poll_s)

    def _hand_on(self, alert: Alert) -> bool:
        """Deliver until the receiver takes or refuses it; False when stopped first."""
        name = self.output.name
        backoff = self._poll_s
        while not self._stop.is_set():
            try:
                self.output.deliver(alert)
            except DeliveryRefused as exc:
                log.error("%s; alert skipped (counted in plantwatch_alert_deliveries_refused_total)", exc)
                self._counters.inc("plantwatch_alert_deliveries_refused_total", output=name)
                return True
            except DeliveryFailed as exc:
                self._counters.inc("plantwatch_alert_delivery_failures_total", output=name)
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    log.warning("%s; alert changes wait, tried again up to every %g s", exc, self._max_backoff_s)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
                continue
            self._counters.inc("plantwatch_alert_deliveries_total", output=name)
            if self._failing_since is not None:
                log.info("%s: delivering again after %.0f s", name, time.monotonic() - self._failing_since)
                self._failing_since = None
            return True
        return False
