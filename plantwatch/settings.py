"""One settings model, fed by one YAML file, with environment overrides.

Precedence (highest first): environment variables ``PLANTWATCH_<SECTION>__<KEY>``, secret files
named by ``PLANTWATCH_<SECTION>__<KEY>_FILE``, the YAML file, the defaults below. Secrets (the
InfluxDB token, the MQTT password) are refused in the YAML file so they never land in a repository.

Everything is validated at start-up; :func:`load_settings` raises :class:`ConfigError` whose message
names each offending key and says how to fix it.
"""

from __future__ import annotations

import importlib.resources
import ipaddress
import json
import math
import os
from contextvars import ContextVar
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from detector.config import MonitorConfig
from ingest.topics import TopicTemplate
from plantwatch.outputs.base import check_topic_template
from plantwatch.settings_errors import ENV_PREFIX, describe, setting_variables, warn_unused_variables, yaml_problem

# The embedded default: package data, so it is there in any install (editable, wheel, zip).
DEFAULT_CONFIG = importlib.resources.files("plantwatch") / "default.yaml"
# Keys that must come from the environment or a secret file, never from the YAML file.
SECRET_KEYS = (("influx", "token"), ("mqtt", "password"))


class ConfigError(Exception):
    """Invalid configuration; the message lists every problem with the key that causes it."""


class _Section(BaseModel):
    # No setting means anything at infinity or NaN (YAML spells them .inf and .nan).
    # protected_namespaces=(): pydantic before 2.10 warns that `model_dir` shadows its "model_" namespace.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, protected_namespaces=())


class MqttSettings(_Section):
    url: str = "mqtt://127.0.0.1:1883"
    client_id: str | None = "plantwatch"
    topic_template: str = "plantwatch/{asset}"
    qos: int = Field(default=1, ge=0, le=1)
    protocol: Literal["5", "3.1.1"] = "5"
    clean_start: bool = False
    session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0)
    max_in_flight: int = Field(default=1000, ge=1, le=65535)
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    username: str | None = None
    password: SecretStr | None = None
    max_payload_bytes: int = Field(default=65536, ge=64, le=256 * 1024 * 1024)
    # Readings stamped further ahead of this machine's clock are rejected (future_timestamp): one
    # glitched stamp would make every later reading of its asset too late for the detector.
    max_future_s: float = Field(default=300.0, gt=0, le=10 * 365 * 86400)
    dead_letter_topic: str | None = None
    # The asset and tags come from the topic (broker ACLs can bind a device to its own topic); true
    # lets a line-protocol payload's asset and tags win, for publishers that carry them there.
    payload_tags: bool = False
    # What publishers can create, enforced as messages are decoded (ingest/limits.py): every asset stays
    # in memory for good and every sensor widens its model. Beyond: too_many_assets, too_many_sensors
    # (only the new sensors of a reading are dropped), too_many_tags (distinct tag key=value pairs of an
    # asset, from the topic's other segments and, with payload_tags, a line's tags).
    max_assets: int = Field(default=1000, ge=1)
    max_sensors_per_asset: int = Field(default=200, ge=1)
    max_tags_per_asset: int = Field(default=20, ge=0)
    # process: paho's network loop and the decoding run in a child process of their own, so receiving
    # has a core and an interpreter lock to itself (plantwatch/service/receiver.py); thread: in the
    # service's process, where the detector's hold on the lock keeps readings waiting in the socket
    # (bench/throughput.py measures both; docs/throughput.md).
    receiver: Literal["thread", "process"] = "process"
    reconnect_min_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=60.0, gt=0)
    # TLS (an mqtts:// url): the CA that signed the broker's certificate (default: the system's), and a
    # client certificate with its key for a broker that asks for one (require_certificate).
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("must look like mqtt://HOST:PORT or mqtts://HOST:PORT")
        try:
            parts.port  # noqa: B018 - raises ValueError on a non-numeric port
        except ValueError as exc:
            raise ValueError("the port must be a number from 0 to 65535") from exc
        return value

    @field_validator("topic_template")
    @classmethod
    def _template_has_asset(cls, value: str) -> str:
        if "{asset}" not in value:
            raise ValueError("needs an {asset} segment, e.g. plant/{line}/{asset}/{sensor}")
        if any(ch in value for ch in "#+"):
            raise ValueError("use named segments like {line} instead of MQTT wildcards")
        return value

    @model_validator(mode="after")
    def _persistent_session_needs_identity(self) -> MqttSettings:
        if self.qos == 1 and not self.client_id:
            raise ValueError(
                "client_id: qos 1 needs a fixed mqtt.client_id: the broker keeps unacknowledged readings in the "
                "session of that client id; set mqtt.client_id (e.g. plantwatch-line1) or use qos 0"
            )
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s: must not exceed mqtt.reconnect_max_s")
        try:
            tag_segments = len(TopicTemplate(self.topic_template).tag_names)
        except ValueError:  # the service says what is wrong with the template where it builds it
            tag_segments = 0
        if self.max_tags_per_asset < tag_segments:
            raise ValueError(
                f"max_tags_per_asset: {self.max_tags_per_asset} is fewer than the {tag_segments} tag segments of "
                f"mqtt.topic_template {self.topic_template!r}, so every reading would be refused (too_many_tags)"
            )
        _check_tls_files("mqtt", self, "mqtts://", self.tls)
        return self

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"


def _check_tls_files(section: str, block: Any, scheme: str, tls: bool) -> None:
    """ValueError naming the key when a TLS file of ``block`` is given without TLS, is missing, or is a
    key without its certificate."""
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(block, key)
        if path is not None and not tls:
            raise ValueError(f"{key}: TLS files need an {scheme} url ({section}.url is {block.url.split('@')[-1]!r})")
        if path is not None and not os.path.isfile(path):
            raise ValueError(f"{key}: no such file {path!r}")
    if block.key_file is not None and block.cert_file is None:
        raise ValueError(f"key_file: is the key of {section}.cert_file, which is not set")


class InfluxSettings(_Section):
    url: str = "http://127.0.0.1:8086"
    org: str = "plantwatch"
    bucket: str = "plantwatch"
    token: SecretStr | None = None
    measurement: str = "readings"
    anomaly_measurement: str = "anomaly"
    timeout_s: float = Field(default=10.0, gt=0)
    # https://: the CA of the server's certificate (default: the system's), and a client certificate
    # with its key for a server (or a proxy in front of it) that asks for one.
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @model_validator(mode="after")
    def _tls_files(self) -> InfluxSettings:
        _check_tls_files("influx", self, "https://", urlsplit(self.url).scheme == "https")
        return self

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must look like http://HOST:8086 or https://HOST")
        return value


class StorageSettings(_Section):
    kind: Literal["influxdb", "sqlite"] = "influxdb"
    sqlite_path: str = "plantwatch-readings.db"
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    flush_interval_s: float = Field(default=0.05, gt=0, le=60)


class NatsSettings(_Section):
    """``source: nats``: workers sharing a site through NATS JetStream (docs/scaling.md)."""

    url: str = "nats://127.0.0.1:4222"
    stream: str = Field(default="PLANTWATCH", pattern=r"^[-_A-Za-z0-9]+$")
    subject_prefix: str = Field(default="pw", pattern=r"^[-_A-Za-z0-9]+$")  # the mapping's first token
    partitions: int = Field(default=12, ge=1, le=1024)
    worker_id: str | None = None  # null: <host name>-<process id>
    lease_bucket: str = Field(default="plantwatch-leases", pattern=r"^[-_A-Za-z0-9]+$")
    lease_s: float = Field(default=30.0, ge=1.5, le=3600)
    ack_wait_s: float = Field(default=60.0, ge=1, le=3600)
    max_in_flight: int = Field(default=1000, ge=1, le=65535)  # per partition
    stream_max_age_s: float = Field(default=7 * 24 * 3600, gt=0)  # of the stream a worker creates when missing

    @field_validator("url")
    @classmethod
    def _nats_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("nats", "tls") or not parts.hostname:
            raise ValueError("must look like nats://HOST:4222")
        return value


# Per-asset keys whose null means something of its own rather than "as the detector section says".
NULL_IS_A_SETTING = frozenset({"false_alerts_per_week", "running_when", "window_s", "features"})


class DetectorTuning(_Section):
    """The detector keys that may differ per asset (``detector.assets.<asset>``); None = inherit."""

    kind: str | None = None
    params: dict[str, Any] | None = None
    features: list[str] | None = None
    window_s: float | None = Field(default=None, gt=0)
    window_samples: int | None = Field(default=None, ge=2)
    baseline_rows: int | None = Field(default=None, ge=10)
    baseline_extensions: int | None = Field(default=None, ge=0)
    calibration: Literal["pot", "empirical"] | None = None
    false_alerts_per_week: float | None = Field(default=None, gt=0)
    enter: float | None = Field(default=None, gt=0, lt=1)
    exit: float | None = Field(default=None, gt=0, lt=1)
    min_duration: int | None = Field(default=None, ge=1)
    exit_duration: int | None = Field(default=None, ge=1)
    suppress_rows: int | None = Field(default=None, ge=0)
    drift_ratio: float | None = Field(default=None, ge=0)
    running_when: str | None = None
    settle_s: float | None = Field(default=None, ge=0)

    @field_validator("running_when")
    @classmethod
    def _running_when_parses(cls, value: str | None) -> str | None:
        return _parsed_running_when(value)


class DetectorSettings(_Section):
    kind: str = "pca_spc"
    params: dict[str, Any] = Field(default_factory=dict)
    features: list[str] | None = Field(default_factory=lambda: ["level", "spread"])
    window_s: float | None = Field(default=None, gt=0)
    window_samples: int = Field(default=15, ge=2)
    baseline_rows: int = Field(default=600, ge=10)
    baseline_extensions: int = Field(default=3, ge=0)
    calibration: Literal["pot", "empirical"] = "empirical"
    calibration_fraction: float = Field(default=0.3, gt=0, lt=1)
    calibration_folds: int = Field(default=10, ge=0)
    false_alerts_per_week: float | None = Field(default=1.0, gt=0)
    enter: float = Field(default=0.995, gt=0, lt=1)
    exit: float = Field(default=0.8, gt=0, lt=1)
    min_duration: int = Field(default=2, ge=1)
    exit_duration: int = Field(default=5, ge=1)
    suppress_rows: int = Field(default=0, ge=0)
    top_k: int = Field(default=3, ge=1)
    max_staleness_s: float = Field(default=30.0, gt=0)
    adapt: bool = False
    adapt_every: int = Field(default=500, ge=1)
    recalibrate: bool = True
    drift_ratio: float = Field(default=20.0, ge=0)
    running_when: str | None = None
    settle_s: float = Field(default=0.0, ge=0)
    model_dir: str | None = None
    # With model_dir: seconds between checkpoints, the most a crash leaves to score again at the next start.
    checkpoint_interval_s: float = Field(default=30.0, gt=0, le=3600)
    # With model_dir: an asset that sent nothing this long (wall clock) leaves memory; null: never.
    evict_idle_after_s: float | None = Field(default=3600.0, gt=0)
    assets: dict[str, DetectorTuning] = Field(default_factory=dict)

    @field_validator("running_when")
    @classmethod
    def _running_when_parses(cls, value: str | None) -> str | None:
        return _parsed_running_when(value)

    @field_validator("model_dir")
    @classmethod
    def _model_dir_is_a_folder(cls, value: str | None) -> str | None:
        # A missing folder is created when the first model is saved; a file in the way would fail then, silently.
        if value is not None and Path(value).exists() and not Path(value).is_dir():
            raise ValueError("is a file, not a folder; name a folder (created if missing) for the learned models")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DetectorSettings:
        for asset in [None, *self.assets]:
            values = self._monitor_values(asset)
            where = f"assets.{asset}." if asset else ""
            if values["exit"] > values["enter"]:
                raise ValueError(f"{where}exit: must be at most detector.enter (hysteresis: leave below enter)")
            _check_detector(values, where)
        return self

    def as_config(self, asset: str | None = None) -> MonitorConfig:
        """The monitor settings of ``asset`` (its overrides applied); the backtest takes them too."""
        return MonitorConfig(**self._monitor_values(asset))

    def _monitor_values(self, asset: str | None) -> dict[str, Any]:
        """``MonitorConfig`` keyword arguments, unchecked (the checks here name the YAML key first)."""
        values: dict[str, Any] = {
            "baseline_rows": self.baseline_rows,
            "baseline_extensions": self.baseline_extensions,
            "detector": self.kind,
            "detector_params": dict(self.params),
            "features": list(self.features) if self.features else None,
            "window_s": self.window_s,
            "window_samples": self.window_samples,
            "calibration": self.calibration,
            "calibration_fraction": self.calibration_fraction,
            "calibration_folds": self.calibration_folds,
            "false_alerts_per_week": self.false_alerts_per_week,
            "enter": self.enter,
            "exit": self.exit,
            "min_duration": self.min_duration,
            "exit_duration": self.exit_duration,
            "suppress_rows": self.suppress_rows,
            "top_k": self.top_k,
            "max_staleness_ns": int(self.max_staleness_s * 1e9),
            "adapt": self.adapt,
            "adapt_every": self.adapt_every,
            "recalibrate": self.recalibrate,
            "drift_ratio": self.drift_ratio,
            "running_when": self.running_when,
            "settle_s": self.settle_s,
        }
        tuning = self.assets.get(asset) if asset is not None else None
        if tuning is not None:
            renamed = {"kind": "detector", "params": "detector_params"}
            for key, value in tuning.model_dump(exclude_unset=True).items():
                # An unset key inherits; null inherits too, except where null is itself a setting
                # (no false-alert target, always running, the window from the samples, raw values).
                if value is not None or key in NULL_IS_A_SETTING:
                    values[renamed.get(key, key)] = value
        return values


def _parsed_running_when(value: str | None) -> str | None:
    """A ``running_when`` that does not parse stops start-up, naming the key (its sensors are checked
    once the asset's are known: the monitor then reports those it lacks)."""
    from detector.running_rule import RunningRule

    if value is not None:
        RunningRule.parse(value)
    return value


def _check_detector(values: dict[str, Any], where: str) -> None:
    """Unknown detector kinds, parameters and feature names stop start-up, naming the key."""
    from detector.features import FEATURES
    from detector.registry import available, make_detector

    try:
        make_detector(values["detector"], values["detector_params"])
    except (ValueError, TypeError) as exc:
        key = "kind" if values["detector"] not in available() else "params"
        raise ValueError(f"{where}{key}: {exc}") from None
    unknown = sorted(set(values["features"] or ()) - set(FEATURES))
    if unknown:
        raise ValueError(f"{where}features: unknown {unknown}; choose from {list(FEATURES)} or null for raw values")
    _check_learnable(values, where)


# Settings already tried on synthetic rows (assets usually share them): settings JSON -> None or the error.
_LEARNABLE: dict[str, str | None] = {}


def _check_learnable(values: dict[str, Any], where: str) -> None:
    """Learn one baseline of synthetic rows with these settings, so that parameter values a detector
    only checks when it is fitted (a PCA variance of 5, KNN neighbours beyond a fold's rows, a window
    too short to hold a sample) stop start-up now, not when the first real baseline ends an hour on.

    The rows are shaped not to reject settings a real asset could learn with: ``TRIAL_SENSORS``
    sensors (a parameter sized by the feature count, such as ``n_components``, fits most assets),
    spaced so the feature window holds ``window_samples`` rows (as at the plant's own rate), and at
    most ``TRIAL_ROWS`` of them (start-up stays quick; row-count limits beyond that are not real).
    """
    # Without the operating states: running_when names the plant's sensors, not the trial's, and
    # neither changes whether a baseline can be learned.
    values = {**values, "running_when": None, "settle_s": 0.0}
    key = json.dumps(values, sort_keys=True, default=str)
    if key not in _LEARNABLE:
        _LEARNABLE[key] = _baseline_error(values)
    error = _LEARNABLE[key]
    if error is not None:
        scope = where.rstrip(".")
        message = (
            f"these settings cannot learn a baseline ({error}); check kind, params, features, window and baseline_rows"
        )
        raise ValueError(f"{scope}: {message}" if scope else message)


TRIAL_SENSORS = 32
TRIAL_ROWS = 2000


def _baseline_error(values: dict[str, Any]) -> str | None:
    from detector.monitor import AssetMonitor

    n = min(int(values["baseline_rows"]), TRIAL_ROWS)
    sensors = tuple(f"s{j}" for j in range(TRIAL_SENSORS))
    try:
        # Learned at n rows whatever they show: the trial asks whether a model can be learned, not when.
        trial = {**values, "baseline_rows": n, "baseline_extensions": 0}
        monitor = AssetMonitor("settings-check", MonitorConfig(**trial), sensors)
    except (ValueError, TypeError, OverflowError) as exc:
        return str(exc)
    window_s = values.get("window_s")
    step_s = float(window_s) / max(int(values["window_samples"]), 1) if window_s else 1.0
    ts = np.round(np.arange(n) * step_s * 1e9).astype(np.int64)
    rows = _trial_noise(n, TRIAL_SENSORS)
    with np.errstate(all="ignore"):
        monitor.process_arrays(ts, rows)
    failure = monitor.baseline_failure_
    return None if monitor.is_warm else str(failure.cause if failure is not None else None)


def _trial_noise(rows: int, sensors: int) -> np.ndarray:
    """Gaussian-looking noise, the same on every start, without numpy.random: the service never
    draws a random number otherwise, and that module holds 1.6 MB resident once imported. Uniform
    values from the sine hash, then Box-Muller."""
    k = np.arange(rows * sensors, dtype=np.float64).reshape(rows, sensors)

    def uniform(seed: float) -> np.ndarray:
        return np.clip(np.modf(np.abs(np.sin(k * 12.9898 + seed) * 43758.5453))[0], 1e-12, 1.0)

    noise: np.ndarray = np.sqrt(-2.0 * np.log(uniform(78.233))) * np.cos(2.0 * np.pi * uniform(37.719))
    return noise


class WebhookSettings(_Section):
    """One receiver of alert changes (plantwatch.outputs.webhook); its secret only from the environment."""

    url: str
    secret: SecretStr | None = None  # PLANTWATCH_ALERTS__WEBHOOKS__<NAME>__SECRET: signs each POST
    timeout_s: float = Field(default=10.0, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must look like https://HOST/PATH (or http://)")
        return value


class AlertSettings(_Section):
    store_url: str = "sqlite:///plantwatch-alerts.db"
    resolve_after_s: float = Field(default=60.0, ge=0)
    critical_probability: float = Field(default=0.999, gt=0, lt=1)
    reopen_within_s: float = Field(default=300.0, ge=0)  # anomalous again this soon: the same alert reopens
    # Tags each asset's alerts carry beside its topic's segments, e.g. {pump-7: {site: basel, line: L2}}.
    asset_tags: dict[str, dict[str, str]] = Field(default_factory=dict)
    # Sensor health (sensor_fault, stale_data alerts): a sensor, or a whole asset, silent this long; a
    # reading unchanged this long (and 3 times its longest still spell before); what each sensor can
    # read at all ("sensor" for every asset, "asset/sensor" for one).
    stale_after_s: float = Field(default=300.0, gt=0)
    flat_after_s: float = Field(default=120.0, gt=0)
    sensor_limits: dict[str, tuple[float, float]] = Field(default_factory=dict)
    # Each asset's outstanding alerts, retained on this topic of the mqtt: broker; None: not published.
    mqtt_topic: str | None = None
    webhooks: dict[str, WebhookSettings] = Field(default_factory=dict)

    @field_validator("mqtt_topic")
    @classmethod
    def _one_topic_per_asset(cls, value: str | None) -> str | None:
        if value is not None:
            check_topic_template(value)
        return value

    @field_validator("sensor_limits")
    @classmethod
    def _low_below_high(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for sensor, (low, high) in value.items():
            if not low < high:
                raise ValueError(f"{sensor}: [{low:g}, {high:g}]: give [low, high] with low below high")
        return value

    @field_validator("webhooks")
    @classmethod
    def _webhook_names(cls, value: dict[str, WebhookSettings]) -> dict[str, WebhookSettings]:
        for name in value:
            if not name.replace("_", "").isalnum() or not name.isascii() or name != name.lower():
                # The name is part of its secret's environment variable: what a shell can spell.
                raise ValueError(f"{name!r}: name webhooks in lower-case letters, digits and _ (e.g. cmms)")
        return value

    @field_validator("store_url")
    @classmethod
    def _store_scheme(cls, value: str) -> str:
        from alerts.store import SUPPORTED_SCHEMES, sqlite_file  # here: it imports psycopg, which --help need not

        if not value.startswith(SUPPORTED_SCHEMES):
            raise ValueError("use sqlite:///path.db, sqlite:////abs/path.db or postgresql://user@host/db")
        if sqlite_file(value) == "":
            raise ValueError("no file after sqlite:///; use sqlite:///path.db or sqlite:////abs/path.db")
        return value


class MaintenanceSettings(_Section):
    """Maintenance prediction from the health-index trend (no failure history needed), plus optional RUL."""

    horizon_s: float = Field(default=24 * 3600.0, gt=0)  # alert when the projected crossing is nearer than this
    window_s: float = Field(default=6 * 3600.0, gt=0)  # health history the trend is fitted on
    rul_model: str | None = None  # a directory written by `plantwatch rul fit`; None = no RUL prediction
    rul_time_unit_s: float = Field(default=1.0, gt=0)  # seconds per unit of the training logs' time column
    rul_every_rows: int = Field(default=60, ge=1)  # predict every N rows per asset
    rul_history_rows: int = Field(default=2000, ge=1)  # rows kept per asset (bounded memory)
    # Sensors that set the operating point, each with the tolerance (in its own units) within which two readings
    # are the same point, e.g. {load: 0.05, speed: 50}: each asset's regimes are learned from its readings and
    # its health is trended per regime. Empty: the RUL model's regimes when it has several, else none.
    operating_settings: dict[str, float] = Field(default_factory=dict)
    # rows a new operating point must hold, within tolerance of where it began, to become a regime: longer than a
    # ramp between two points takes to move one tolerance (at 1 Hz, a minute)
    regime_settle_rows: int = Field(default=60, ge=1)
    max_regimes: int = Field(default=8, ge=1)  # regimes learned per asset at most

    @field_validator("operating_settings")
    @classmethod
    def _tolerances(cls, value: dict[str, float]) -> dict[str, float]:
        for name, tolerance in value.items():
            if not (math.isfinite(tolerance) and tolerance > 0):
                raise ValueError(f"{name}: tolerance must be a positive number (the setting's units), not {tolerance}")
        return value

    @field_validator("rul_model")
    @classmethod
    def _rul_model_exists(cls, value: str | None) -> str | None:
        if value is None:
            return None
        d = Path(value)
        if not d.is_dir():
            raise ValueError(
                f"RUL model directory {value!r} not found; write one with `plantwatch rul fit TRAIN.csv --out DIR "
                "...` or set maintenance.rul_model: null"
            )
        if not (d / "model.json").is_file():
            raise ValueError(f"{value!r} has no model.json; is it a directory written by `plantwatch rul fit`?")
        return value


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    keys_file: str = "plantwatch-keys.json"  # API keys (hashed), written by `plantwatch keys`
    # Origins (https://dashboard.example:8443) whose web pages' scripts may call the API; none: no page may.
    cors_origins: list[str] = Field(default_factory=list)

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
                raise ValueError(
                    f"{origin!r}: give each origin as scheme://host[:port], e.g. https://dashboard.example "
                    "(no path; no *: name the pages that may call the API)"
                )
        return value

    @property
    def serves_others(self) -> bool:
        """Whether ``host`` reaches beyond this machine (anything but a loopback address or localhost)."""
        if self.host == "localhost":
            return False
        try:
            return not ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name: it resolves to whatever it resolves to
            return True


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True)

    # mqtt: one process subscribed to the broker of mqtt.url; nats: one worker of several, sharing
    # the partitions of a JetStream stream (nats.*; detector.model_dir shared by the workers).
    source: Literal["mqtt", "nats"] = "mqtt"
    mqtt: MqttSettings = MqttSettings()
    nats: NatsSettings = NatsSettings()
    storage: StorageSettings = StorageSettings()
    influx: InfluxSettings = InfluxSettings()
    # A factory, not an instance: building one fits the trial baseline, which importing this module must not do.
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    alerts: AlertSettings = AlertSettings()
    maintenance: MaintenanceSettings = MaintenanceSettings()
    api: ApiSettings = ApiSettings()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init kwargs; the environment must override it.
        return _WithoutSecretFileVars(settings_cls, env_settings), init_settings

    @model_validator(mode="after")
    def _nats_needs_shared_state(self) -> Settings:
        if self.source == "nats" and not self.detector.model_dir:
            raise ValueError(
                "detector.model_dir: source: nats needs a directory every worker shares: a partition's models, "
                "checkpoints and readings log are kept there for the worker that takes it over"
            )
        return self

    @model_validator(mode="after")
    def _influx_needs_token(self) -> Settings:
        if self.storage.kind != "influxdb" or _OFFLINE.get():
            return self
        set_it = "export PLANTWATCH_INFLUX__TOKEN=... or PLANTWATCH_INFLUX__TOKEN_FILE=/run/secrets/influx_token"
        if self.influx.token is None:
            raise ValueError(
                f"influx.token: storage.kind is influxdb but no token is set: {set_it} (or set storage.kind: sqlite)"
            )
        if not self.influx.token.get_secret_value().strip():  # InfluxDB would refuse every write
            raise ValueError(f"influx.token: the token is empty: {set_it}, with the token InfluxDB gave you")
        return self


class _WithoutSecretFileVars(PydanticBaseSettingsSource):
    """The env source minus ``..._FILE`` variables, which :func:`_read_secret_files` has already resolved."""

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self.inner = inner

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        values = self.inner()
        for section, key in SECRET_KEYS:
            block = values.get(section)
            if isinstance(block, dict):
                block.pop(f"{key}_file", None)
        return values


# Set while load_settings(offline=True) validates: the InfluxDB token is not required then.
_OFFLINE: ContextVar[bool] = ContextVar("plantwatch_settings_offline", default=False)


def load_settings(path: str | os.PathLike[str] | None = None, *, offline: bool = False, **overrides: Any) -> Settings:
    """Read the YAML file (the embedded default when ``path`` is None), apply env, validate.

    ``offline``: for the commands that write nothing to the time-series database (backtest, replay),
    which need no InfluxDB token whatever ``storage.kind`` says.
    """
    source: Path | Traversable = Path(path) if path is not None else DEFAULT_CONFIG
    name = str(path) if path is not None else "the embedded default configuration"  # not a site-packages path
    variables, secret_files = _setting_variables(), _secret_file_variables()
    warn_unused_variables(Settings.model_fields, variables, secret_files)
    data = _read_yaml(source, name)
    _refuse_secrets_in_file(data, name)
    _read_secret_files(data)
    for dotted, value in overrides.items():
        _set_dotted(data, dotted.split("__"), value)
    offline_now = _OFFLINE.set(offline)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(describe(exc, name, variables + secret_files)) from None
    finally:
        _OFFLINE.reset(offline_now)


def _setting_variables() -> list[str]:
    sections = {}
    scalars = []
    for field_name, field in Settings.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            sections[field_name] = list(field.annotation.model_fields)
        else:
            scalars.append(field_name)
    return setting_variables(sections, scalars)


def _secret_variable(section: str, key: str) -> str:
    """The variable that gives a secret (``PLANTWATCH_INFLUX__TOKEN``); with ``_FILE``, the file holding it."""
    return f"{ENV_PREFIX}{section.upper()}__{key.upper()}"


def _secret_file_variables() -> list[str]:
    return [f"{_secret_variable(section, key)}_FILE" for section, key in SECRET_KEYS]


def _read_yaml(source: Path | Traversable, name: str) -> dict[str, Any]:
    if not source.is_file():
        problem = "is a folder, not a config file" if source.is_dir() else "config file not found"
        raise ConfigError(f"{name}: {problem} (pass --config FILE with an existing file)")
    try:
        loaded = yaml.safe_load(source.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: not valid YAML: {yaml_problem(exc)}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{name}: the top level must be a mapping of sections (mqtt:, storage:, ...)")
    return loaded


def _refuse_secrets_in_file(data: dict[str, Any], name: str) -> None:
    _refuse_webhook_secrets_in_file(data, name)
    for section, key in SECRET_KEYS:
        block = data.get(section)
        if isinstance(block, dict) and block.get(key) is not None:
            env = _secret_variable(section, key)
            raise ConfigError(
                f"{name}: {section}.{key}: secrets are not read from the config file; remove it and "
                f"set {env} or {env}_FILE instead"
            )


def _refuse_webhook_secrets_in_file(data: dict[str, Any], name: str) -> None:
    alerts = data.get("alerts")
    hooks = alerts.get("webhooks") if isinstance(alerts, dict) else None
    for hook, block in (hooks or {}).items() if isinstance(hooks, dict) else ():
        if isinstance(block, dict) and block.get("secret") is not None:
            env = f"{ENV_PREFIX}ALERTS__WEBHOOKS__{str(hook).upper()}__SECRET"
            raise ConfigError(
                f"{name}: alerts.webhooks.{hook}.secret: secrets are not read from the config file; remove it "
                f"and set {env} instead"
            )


def _read_secret_files(data: dict[str, Any]) -> None:
    for section, key in SECRET_KEYS:
        env = _secret_variable(section, key)
        file_name = os.environ.get(f"{env}_FILE")
        if file_name and env not in os.environ:
            try:
                secret = Path(file_name).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{env}_FILE: cannot read {file_name}: {exc.strerror}") from None
            data.setdefault(section, {})[key] = secret


def _set_dotted(data: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        data = data.setdefault(key, {})
    data[keys[-1]] = value
