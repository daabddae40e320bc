"""Alert changes POSTed to a URL (a CMMS, a chat bridge, a pager), signed so the receiver can trust them.

One POST per changed alert, its body ``{"alert": ...}`` with the alert as ``GET /alerts`` shows it.
Headers: ``X-Plantwatch-Delivery`` (the alert's id and change stamp: the same change delivered twice,
after a retry or a restart, carries the same value, so a receiver can drop the repeat),
``X-Plantwatch-Timestamp`` (Unix seconds of the attempt) and, with a secret, ``X-Plantwatch-Signature:
sha256=<hex>``, the HMAC-SHA256 of ``<timestamp>.<body>`` under the secret.

Answers are classified as the InfluxDB sink's are: 2xx delivered; 408, 425, 429, 5xx, timeouts and
connection failures are tried again later (the notifier backs off); any other answer refuses this
alert for good, so it is counted, logged and skipped rather than blocking every later one. urllib3
(already a dependency, through the InfluxDB client) makes the request.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import urllib3

from alerts.model import Alert
from api.schemas import AlertOut
from plantwatch.outputs.base import DeliveryFailed, DeliveryRefused

RETRY_LATER = frozenset({408, 425, 429})


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Plantwatch-Signature`` value a receiver recomputes to check a delivery."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class Webhook:
    """POSTs each changed alert to ``url``."""

    def __init__(self, name: str, url: str, secret: str | None = None, timeout_s: float = 10.0) -> None:
        self.name = f"webhook:{name}"
        self.notifies = True
        self._url = url
        self._secret = secret
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(total=timeout_s), retries=False, headers={"User-Agent": "plantwatch"}
        )

    def start(self) -> None:
        return None

    def close(self) -> None:
        self._http.clear()

    def deliver(self, alert: Alert) -> None:
        body = b'{"alert":' + AlertOut.from_alert(alert).model_dump_json().encode() + b"}"
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Plantwatch-Delivery": f"{alert.id}.{alert.updated_at_ns}",
            "X-Plantwatch-Timestamp": timestamp,
        }
        if self._secret:
            headers["X-Plantwatch-Signature"] = signature(self._secret, timestamp, body)
        where = f"{self.name} ({self._url})"
        try:
            answer = self._http.request("POST", self._url, body=body, headers=headers, redirect=False)
        except urllib3.exceptions.HTTPError as exc:  # refused, unreachable, timed out, TLS
            raise DeliveryFailed(f"{where}: {type(exc).__name__}: {_reason(exc)}") from None
        status = answer.status
        if 200 <= status < 300:
            return
        said = answer.data[:200].decode("utf-8", "replace").strip()
        message = f"{where} answered {status}{': ' + ' '.join(said.split()) if said else ''}"
        if status >= 500 or status in RETRY_LATER:
            raise DeliveryFailed(message)
        raise DeliveryRefused(message)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return " ".join(str(reason).split())
