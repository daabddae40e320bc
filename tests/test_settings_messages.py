"""What the settings say when something is wrong: the file and line, the key or the environment
variable that set it, a warning for a misspelt variable, and never a password."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from plantwatch.settings import ConfigError, load_settings
from plantwatch.settings_errors import mask_password


def _refusal(path: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        load_settings(path)
    return str(refused.value).splitlines()


@pytest.fixture
def plant(tmp_path: Path) -> Path:
    path = tmp_path / "plant.yaml"
    path.write_text("storage: {kind: sqlite}\n", encoding="utf-8")
    return path


def test_a_yaml_syntax_error_names_the_file_line_and_column(plant: Path) -> None:
    plant.write_text("mqtt:\n  url: [x\n", encoding="utf-8")
    assert _refusal(plant) == [
        f"{plant}: not valid YAML: line 3, column 1: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence at line 2, column 8)"
    ]


def test_an_unknown_key_from_the_environment_names_the_variable_and_the_nearest_real_one(
    plant: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANTWATCH_MQTT__URLL", "mqtt://broker:1883")
    assert _refusal(plant) == [
        "invalid configuration (the environment):",
        "  PLANTWATCH_MQTT__URLL: no such setting; did you mean PLANTWATCH_MQTT__URL?",
    ]


def test_a_misspelt_secret_file_variable_is_pointed_to_the_real_one(
    plant: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANTWATCH_INFLUX__TOKN_FILE", str(tmp_path / "token"))
    assert _refusal(plant)[-1] == (
        "  PLANTWATCH_INFLUX__TOKN_FILE: no such setting; did you mean PLANTWATCH_INFLUX__TOKEN_FILE?"
    )


def test_the_file_and_the_environment_are_each_blamed_for_their_own_keys(
    plant: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant.write_text("storage: {kind: sqlite}\nmqtt: {qos: 3}\n", encoding="utf-8")
    monkeypatch.setenv("PLANTWATCH_API__PORT", "-1")
    assert _refusal(plant) == [
        f"invalid configuration ({plant} and the environment):",
        "  mqtt.qos: Input should be less than or equal to 1 (got 3)",
        "  PLANTWATCH_API__PORT: Input should be greater than or equal to 0 (got '-1')",
    ]
    monkeypatch.delenv("PLANTWATCH_API__PORT")
    monkeypatch.setenv("PLANTWATCH_API", '{"port": -2}')  # a whole section as JSON
    assert _refusal(plant)[-1] == "  PLANTWATCH_API: Input should be greater than or equal to 0 (got -2)"


def test_misspelt_variables_are_warned_about_and_other_tools_variables_left_alone(
    plant: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PLANTWATCH_MQQT__URL", "mqtt://x:1")
    monkeypatch.setenv("PLANTWATCH_MQTT_URL", "mqtt://y:1")  # one underscore: not the nested delimiter
    monkeypatch.setenv("PLANTWATCH_TEST_PG_URL", "postgresql://127.0.0.1/test")
    (tmp_path / "token").write_text("t")
    monkeypatch.setenv("PLANTWATCH_INFLUX__TOKEN_FILE", str(tmp_path / "token"))
    with caplog.at_level(logging.WARNING, logger="plantwatch.settings"):
        settings = load_settings(plant)  # refused nothing: another tool may use the prefix
    assert settings.mqtt.url == "mqtt://127.0.0.1:1883"
    assert [r.getMessage() for r in caplog.records] == [
        "PLANTWATCH_MQQT__URL is not a plantwatch setting and is ignored; did you mean PLANTWATCH_MQTT__URL?",
        "PLANTWATCH_MQTT_URL is not a plantwatch setting and is ignored; did you mean PLANTWATCH_MQTT__URL?",
    ]


def test_the_embedded_default_is_named_as_such_not_by_its_install_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLANTWATCH_INFLUX__TOKEN", raising=False)
    lines = _refusal(None)
    assert lines[0] == "invalid configuration (the embedded default configuration):"
    assert lines[1].startswith("  influx.token: storage.kind is influxdb but no token is set")


def test_a_rejected_url_never_shows_its_password(plant: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plant.write_text("storage: {kind: sqlite}\nalerts: {store_url: 'mysql://plant:hunter2@db/alerts'}\n")
    monkeypatch.setenv("PLANTWATCH_MQTT__URL", "mqtt://plant:hunter2@broker:port")
    text = "\n".join(_refusal(plant))
    assert "hunter2" not in text
    assert "  alerts.store_url: use sqlite:///path.db" in text and "(got 'mysql://plant:***@db/alerts')" in text
    assert (
        "  PLANTWATCH_MQTT__URL: the port must be a number from 0 to 65535 (got 'mqtt://plant:***@broker:port')" in text
    )


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://plant:pw@db:5432/alerts", "postgresql://plant:***@db:5432/alerts"),
        ("postgresql://plant:p@ss@db/alerts", "postgresql://plant:***@db/alerts"),  # to the authority's last '@'
        ("postgresql://plant:pw@[::1]:5432/a", "postgresql://plant:***@[::1]:5432/a"),
        (
            "postgresql://db/a?user=plant&password=pw&sslmode=require",
            "postgresql://db/a?user=plant&password=***&sslmode=require",
        ),
        ("postgresql://plant@db/a", "postgresql://plant@db/a"),
        ("mqtt://[::1]:1883", "mqtt://[::1]:1883"),
        ("sqlite:////data/alerts.db", "sqlite:////data/alerts.db"),
    ],
)
def test_mask_password(text: str, shown: str) -> None:
    assert mask_password(text) == shown


@pytest.mark.parametrize("how", ["variable", "file"])
def test_an_empty_influxdb_token_is_refused_like_a_missing_one(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant = tmp_path / "plant.yaml"
    plant.write_text("storage: {kind: influxdb}\n", encoding="utf-8")
    monkeypatch.delenv("PLANTWATCH_INFLUX__TOKEN", raising=False)
    if how == "variable":
        monkeypatch.setenv("PLANTWATCH_INFLUX__TOKEN", "")
        variable = "PLANTWATCH_INFLUX__TOKEN"
    else:
        (tmp_path / "token").write_text("\n")
        monkeypatch.setenv("PLANTWATCH_INFLUX__TOKEN_FILE", str(tmp_path / "token"))
        variable = "PLANTWATCH_INFLUX__TOKEN_FILE"
    assert _refusal(plant) == [
        "invalid configuration (the environment):",
        f"  {variable}: the token is empty: export PLANTWATCH_INFLUX__TOKEN=... or "
        "PLANTWATCH_INFLUX__TOKEN_FILE=/run/secrets/influx_token, with the token InfluxDB gave you",
    ]
    assert load_settings(plant, offline=True).influx.token is not None  # backtest and replay need none


def test_a_model_dir_that_is_a_file_is_refused_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    plant = tmp_path / "plant.yaml"
    plant.write_text(f"storage: {{kind: sqlite}}\ndetector: {{model_dir: '{tmp_path / 'a-file'}'}}\n")
    assert _refusal(plant) == [
        f"invalid configuration ({plant}):",
        "  detector.model_dir: is a file, not a folder; name a folder (created if missing) for the learned models "
        f"(got '{tmp_path / 'a-file'}')",
    ]
    plant.write_text(f"storage: {{kind: sqlite}}\ndetector: {{model_dir: '{tmp_path / 'models'}'}}\n")
    assert load_settings(plant).detector.model_dir == str(tmp_path / "models")  # missing: created when saving
    assert not (tmp_path / "models").exists()
