from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from plantwatch.settings import DEFAULT_CONFIG, ConfigError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("PLANTWATCH_"):
            monkeypatch.delenv(key)


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plantwatch.yaml"
    path.write_text(text)
    return path


def _refusal(tmp_path: Path, text: str) -> str:
    """The ConfigError a config file of ``text`` is refused with."""
    with pytest.raises(ConfigError) as err:
        load_settings(_yaml(tmp_path, text))
    return str(err.value)


def test_embedded_default_loads_with_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTWATCH_INFLUX__TOKEN", "s3cret")
    settings = load_settings()
    assert settings.mqtt.qos == 1
    assert settings.mqtt.client_id == "plantwatch"
    assert settings.mqtt.clean_start is False
    assert settings.influx.token is not None and settings.influx.token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)  # SecretStr keeps it out of logs


def test_default_file_documents_every_section() -> None:
    text = DEFAULT_CONFIG.read_text()
    for section in ("mqtt:", "storage:", "influx:", "detector:", "alerts:", "api:"):
        assert section in text


def test_influx_without_token_says_how_to_fix() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert "influx.token" in message
    assert "PLANTWATCH_INFLUX__TOKEN" in message


def test_env_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _yaml(tmp_path, "storage:\n  kind: sqlite\nmqtt:\n  url: mqtt://a:1883\n  max_in_flight: 50\n")
    monkeypatch.setenv("PLANTWATCH_MQTT__URL", "mqtt://b:1884")
    settings = load_settings(path)
    assert settings.mqtt.host == "b" and settings.mqtt.port == 1884
    assert settings.mqtt.max_in_flight == 50  # untouched keys keep the file's value


def test_token_from_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    monkeypatch.setenv("PLANTWATCH_INFLUX__TOKEN_FILE", str(secret))
    settings = load_settings()
    assert settings.influx.token is not None and settings.influx.token.get_secret_value() == "from-file"


def test_secret_in_yaml_is_refused(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "influx:\n  token: abc\n")
    with pytest.raises(ConfigError, match=r"influx\.token: secrets are not read from the config file"):
        load_settings(path)


def test_unknown_key_and_range_are_named(tmp_path: Path) -> None:
    message = _refusal(tmp_path, "storage:\n  kind: sqlite\nmqtt:\n  urll: x\ndetector:\n  enter: 2\n")
    assert "mqtt.urll: unknown key; did you mean mqtt.url?" in message
    assert "detector.enter" in message and "(got 2)" in message


def test_an_unknown_key_is_matched_against_its_own_siblings(tmp_path: Path) -> None:
    message = _refusal(tmp_path, "storge: {kind: sqlite}\ndetector:\n  assets: {pump-7: {kindd: knn}}\n  zzz: 1\n")
    assert "storge: unknown key; did you mean storage?" in message
    assert "detector.zzz: unknown key; check the spelling against `plantwatch config`" in message
    assert "detector.assets.pump-7.kindd: unknown key; did you mean detector.assets.pump-7.kind?" in message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("mqtt:\n  url: http://broker:1883\n", "mqtt.url: must look like mqtt://HOST:PORT"),
        ("mqtt:\n  url: mqtt://broker:port\n", "mqtt.url"),
        ("mqtt:\n  qos: 1\n  client_id: null\n", "mqtt.client_id: qos 1 needs a fixed mqtt.client_id"),
        ("mqtt:\n  topic_template: plant/{line}/{sensor}\n", "needs an {asset} segment"),
        ("mqtt:\n  topic_template: plant/+/{asset}\n", "named segments"),
        ("influx:\n  url: influx:8086\n", "influx.url"),
        ("detector:\n  enter: 0.9\n  exit: 0.95\n", "detector.exit: must be at most"),
        ("alerts:\n  store_url: mysql://x/y\n", "alerts.store_url"),
        ("alerts:\n  store_url: sqlite:///\n", "alerts.store_url: no file after sqlite:///"),
        ("mqtt: [1, 2]\n", "mqtt"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("mqtt: {url: [\n", "not valid YAML"),
        ("detector:\n  max_staleness_s: .inf\n", "detector.max_staleness_s: Input should be a finite number"),
        ("mqtt:\n  max_future_s: 1.0e+300\n", "mqtt.max_future_s: Input should be less than or equal to"),
        ("mqtt:\n  max_assets: 0\n", "mqtt.max_assets: Input should be greater than or equal to 1"),
        ("mqtt:\n  max_sensors_per_asset: 0\n", "mqtt.max_sensors_per_asset: Input should be greater than or equal"),
        (
            "mqtt:\n  topic_template: plant/{site}/{line}/{asset}\n  max_tags_per_asset: 1\n",
            "mqtt.max_tags_per_asset: 1 is fewer than the 2 tag segments of mqtt.topic_template",
        ),
        ("detector:\n  window_s: .nan\n", "detector.window_s: Input should be a finite number"),
        # Values a detector only checks when fitted: found by learning a synthetic baseline at start-up.
        ("detector:\n  params: {variance: 5}\n", "detector: these settings cannot learn a baseline (variance"),
        ("detector:\n  kind: knn\n  params: {model_params: {n_neighbors: 5000}}\n", "n_neighbors = 5000"),
        ("detector:\n  kind: ensemble\n  params: {combine: bogus}\n", "cannot learn a baseline (combine"),
        ("detector:\n  features: [level, level]\n", "duplicate features"),
        ("detector:\n  calibration_folds: 1\n", "calibration_folds must be 0 (hold-out) or >= 2"),
        (
            "detector:\n  assets:\n    pump-7: {params: {score_mode: bogus}}\n",
            "detector.assets.pump-7: these settings cannot learn a baseline (score_mode",
        ),
    ],
)
def test_bad_config_is_rejected_with_the_key(tmp_path: Path, body: str, expected: str) -> None:
    assert expected in _refusal(tmp_path, "storage:\n  kind: sqlite\n" + body if not body.startswith("-") else body)


def test_qos0_without_client_id_is_allowed(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "storage:\n  kind: sqlite\nmqtt:\n  qos: 0\n  client_id: null\n")
    assert load_settings(path).mqtt.qos == 0


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml")


def test_detector_settings_feed_the_backtest_config() -> None:
    config = load_settings(None, storage__kind="sqlite").detector.as_config()
    assert config.max_staleness_ns == 30 * 10**9
    assert 0 < config.exit <= config.enter < 1


def test_embedded_yaml_states_the_same_defaults_as_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A --config file with a partial section gets the model's defaults for the rest: they must be the
    # values plantwatch/default.yaml documents, or the two would silently disagree.
    monkeypatch.setenv("PLANTWATCH_INFLUX__TOKEN", "t")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_settings(empty).model_dump() == load_settings().model_dump()


def test_detector_defaults_match_the_monitor_defaults() -> None:
    # The backtest and tests often build a MonitorConfig without settings; its defaults must be the product's.
    from detector.config import MonitorConfig

    settings = load_settings(None, storage__kind="sqlite").detector.as_config()
    assert dataclasses.replace(settings, max_staleness_ns=MonitorConfig().max_staleness_ns) == MonitorConfig()
    assert MonitorConfig().max_staleness_ns == 10 * 10**9  # the monitor's own: 10 s, the service's 30 s


def test_per_asset_overrides_reach_the_monitor_config(tmp_path: Path) -> None:
    body = "detector:\n  enter: 0.99\n  assets:\n    pump-7: {kind: robust_z, params: {eps: 0.5}, enter: 0.999}\n"
    detector = load_settings(_yaml(tmp_path, "storage:\n  kind: sqlite\n" + body)).detector
    pump = detector.as_config("pump-7")
    assert (pump.detector, dict(pump.detector_params), pump.enter) == ("robust_z", {"eps": 0.5}, 0.999)
    other = detector.as_config("pump-8")
    assert (other.detector, dict(other.detector_params), other.enter) == ("pca_spc", {}, 0.99)
    with pytest.raises(TypeError):
        pump.detector_params["eps"] = 1.0  # type: ignore[index]  # frozen: shared by every monitor of the asset


def test_baseline_extensions_default_to_three_override_per_asset_and_refuse_a_negative(tmp_path: Path) -> None:
    body = "storage:\n  kind: sqlite\ndetector:\n  assets:\n    pump-7: {baseline_extensions: 0}\n"
    detector = load_settings(_yaml(tmp_path, body)).detector
    assert (detector.as_config().baseline_extensions, detector.as_config("pump-7").baseline_extensions) == (3, 0)
    with pytest.raises(ConfigError, match="baseline_extensions"):
        load_settings(_yaml(tmp_path, "storage:\n  kind: sqlite\ndetector:\n  baseline_extensions: -1\n"))


def test_a_per_asset_null_turns_off_what_null_means_and_inherits_the_rest(tmp_path: Path) -> None:
    body = (
        "detector:\n  running_when: 'speed > 100'\n  enter: 0.99\n  assets:\n"
        "    fan-2: {false_alerts_per_week: null, running_when: null, enter: null}\n"
    )
    detector = load_settings(_yaml(tmp_path, "storage:\n  kind: sqlite\n" + body)).detector
    fan = detector.as_config("fan-2")
    assert (fan.false_alerts_per_week, fan.running_when, fan.enter) == (None, None, 0.99)
    other = detector.as_config("pump-8")
    assert (other.false_alerts_per_week, other.running_when) == (1.0, "speed > 100")


@pytest.mark.parametrize(
    "body",
    [
        "detector:\n  params: {n_components: 8}\n",  # sized for the plant's sensors, not a handful
        "detector:\n  kind: iforest\n  params: {model_params: {max_features: 8}}\n",
        # a slow plant: a 10-minute window over 100 rows a minute apart
        "detector:\n  kind: knn\n  params: {model_params: {n_neighbors: 50}}\n  baseline_rows: 100\n  window_s: 600\n",
    ],
)
def test_settings_a_real_asset_can_learn_pass_the_start_up_check(tmp_path: Path, body: str) -> None:
    from plantwatch.settings import _LEARNABLE

    detector = load_settings(_yaml(tmp_path, "storage:\n  kind: sqlite\n" + body)).detector
    written = yaml.safe_load(body)["detector"]
    assert {key: getattr(detector, key) for key in written} == written  # loaded as written
    config = detector.as_config().as_dict()
    tried = [error for key, error in _LEARNABLE.items() if {**json.loads(key), "discovery_ns": None} == config]
    assert tried == [None]  # the synthetic baseline was learned with exactly these settings
