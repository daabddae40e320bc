"""The lifecycle's writes wait out an alert store that is down, instead of losing alert changes.

A PostgreSQL restart or a SQLite file locked by another process used to fail the detector's batch:
the alerts its verdicts would have opened, extended or resolved were lost, and nothing but a log line
said so. :class:`WaitingStore` retries a write that failed for want of the database (connection lost,
server shutting down, file locked) with capped backoff until it succeeds or the service stops, so the
detector thread waits, the scoring queue fills, and the writer stops acknowledging: the readings wait
at the broker, as they do while the TSDB is down. ``failing_since_ns`` makes ``/healthz`` degraded.

Errors that another try cannot fix (a constraint, a bug in a statement) are raised at once.
"""

from __future__ import annotations

import builtins
import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from alerts.model import Alert, AlertAction
from alerts.store import AlertStore

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_RETRY_S = 0.5
MAX_RETRY_S = 10.0


class AlertStoreStopped(Exception):
    """The service stopped while the alert store was unavailable: the change was not written."""


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached or used right now (worth another try)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return True
    # psycopg is imported only for a PostgreSQL store: without it, no error can be one of its.
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.OperationalError)


class WaitingStore:
    """An :class:`AlertStore` whose writes wait for the database to come back (module docstring)."""

    def __init__(self, store: AlertStore, stop: threading.Event, on_retry: Callable[[], None] | None = None) -> None:
        self._store = store
        self._stop = stop
        self._on_retry = on_retry
        self.failing_since_ns: int | None = None  # wall clock of the first failure of the write in hand

    def insert(self, alert: Alert) -> Alert:
        return self._waiting(lambda: self._store.insert(alert), "store a new alert")

    def update(self, alert: Alert) -> None:
        self._waiting(lambda: self._store.update(alert), f"update alert {alert.id}")

    def update_many(self, alerts: Sequence[Alert]) -> None:
        self._waiting(lambda: self._store.update_many(alerts), f"update {len(alerts)} alerts")

    def act(self, action: AlertAction, shelved_reason: str | None = None) -> Alert | None:
        return self._waiting(lambda: self._store.act(action, shelved_reason), f"record {action.action} of alert")

    def list(self, *args: Any, **filters: Any) -> builtins.list[Alert]:  # AlertStore.list's filters
        return self._waiting(lambda: self._store.list(*args, **filters), "read alerts")

    def history(self, alert_id: int) -> builtins.list[AlertAction]:
        return self._waiting(lambda: self._store.history(alert_id), f"read the history of alert {alert_id}")

    def open_alerts(self) -> builtins.list[Alert]:
        return self._waiting(self._store.open_alerts, "read the open alerts")

    def latest_activity(self) -> dict[tuple[str, str], int]:
        return self._waiting(self._store.latest_activity, "read the alerts' latest activity")

    def __getattr__(self, name: str) -> Any:  # the rest goes straight through
        return getattr(self._store, name)

    def _waiting(self, write: Callable[[], T], what: str) -> T:
        delay = FIRST_RETRY_S
        while True:
            try:
                result = write()
            except Exception as exc:
                if not unavailable(exc):
                    raise
                self._failed(exc, what, delay)
            else:
                if self.failing_since_ns is not None:
                    down_s = (time.time_ns() - self.failing_since_ns) / 1e9
                    log.warning("the alert store answers again after %.1f s; alert changes go on", down_s)
                    self.failing_since_ns = None
                return result
            if self._stop.wait(delay):
                raise AlertStoreStopped(f"stopped while the alert store was unavailable: could not {what}")
            delay = min(delay * 2, MAX_RETRY_S)

    def _failed(self, exc: Exception, what: str, delay: float) -> None:
        if self.failing_since_ns is None:
            self.failing_since_ns = time.time_ns()
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            log.error(
                "the alert store is unavailable (%s: %s): cannot %s; detection waits and tries again every "
                "%g-%g s, readings wait at the broker",
                type(exc).__name__,
                reason,
                what,
                FIRST_RETRY_S,
                MAX_RETRY_S,
            )
        if self._on_retry is not None:
            self._on_retry()
