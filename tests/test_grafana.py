"""The Grafana files of the compose deployment (deploy/grafana) agree with each other and with what
plantwatch writes: the data source the dashboard names, the bucket and org of configs/docker.yaml, the
measurements and fields the InfluxDB sink writes, and the mounts in docker-compose.yml.

Grafana itself is not run here (its image is not reachable from these machines); these checks catch
what would make a panel empty: a wrong uid, bucket, measurement, field or variable.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from detector.types import Verdict
from ingest.messages import Reading
from ingest.sink import reading_line, verdict_line
from plantwatch.settings import InfluxSettings

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "deploy" / "grafana"


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((GRAFANA / "dashboards" / "plantwatch.json").read_text())
    return loaded


def _queries(dashboard: dict[str, Any]) -> list[str]:
    panels = [t["query"] for p in dashboard["panels"] for t in p.get("targets", [])]
    annotations = [a["target"]["query"] for a in dashboard["annotations"]["list"] if "target" in a]
    variables = [v["query"] for v in dashboard["templating"]["list"]]
    return panels + annotations + variables


def _datasources(node: Any) -> list[dict[str, str]]:
    """Every datasource reference anywhere in the dashboard."""
    found: list[dict[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource" and isinstance(value, dict):
                found.append(value)
            else:
                found += _datasources(value)
    elif isinstance(node, list):
        for item in node:
            found += _datasources(item)
    return found


def test_the_data_source_is_the_compose_influxdb_with_the_token_from_the_environment() -> None:
    (source,) = _yaml(GRAFANA / "provisioning" / "datasources" / "influxdb.yaml")["datasources"]
    influx = _yaml(ROOT / "configs" / "docker.yaml")["influx"]
    assert (source["type"], source["url"]) == ("influxdb", influx["url"])
    assert source["jsonData"] == {"version": "Flux", "organization": influx["org"], "defaultBucket": influx["bucket"]}
    assert source["secureJsonData"] == {"token": "$INFLUX_TOKEN"}  # never a token in the repository


def test_every_panel_variable_and_annotation_uses_the_provisioned_data_source(dashboard: dict[str, Any]) -> None:
    (source,) = _yaml(GRAFANA / "provisioning" / "datasources" / "influxdb.yaml")["datasources"]
    used = {(d["type"], d["uid"]) for d in _datasources(dashboard) if d["type"] != "grafana"}
    assert used == {("influxdb", source["uid"])}
    assert all("datasource" in p for p in dashboard["panels"] if p["type"] != "text")


def test_the_queries_read_the_bucket_measurements_and_fields_plantwatch_writes(dashboard: dict[str, Any]) -> None:
    bucket = _yaml(ROOT / "configs" / "docker.yaml")["influx"]["bucket"]
    defaults = InfluxSettings()  # configs/docker.yaml keeps the default measurement names
    verdict = Verdict("pump-7", 1, score=2.0, probability=0.5, anomaly=False, alarm_enter=0.999)
    written = {  # measurement -> field keys, from the sink's own line builders
        defaults.anomaly_measurement: _field_keys(verdict_line(defaults.anomaly_measurement, verdict)),
        defaults.measurement: None,  # readings: one field per sensor, any name
    }
    assert reading_line(defaults.measurement, Reading("pump-7", 1, {"flow": 1.0})) is not None
    queries = _queries(dashboard)
    for query in queries:
        assert set(re.findall(r'bucket: "([^"]+)"', query)) == {bucket}, query
        for measurement in re.findall(r'r\._measurement == "([^"]+)"', query):
            assert measurement in written, query
            fields = written[measurement]
            for field in re.findall(r'r\._field == "([^"]+)"', query):
                assert fields is not None and field in fields, query
    assert any("alarm_enter" in q for q in queries) and any(defaults.measurement in q for q in queries)


def _field_keys(line: str | None) -> set[str]:
    assert line is not None
    fields = line.split(" ")[-2]
    return {pair.split("=")[0] for pair in fields.split(",")}


def test_the_asset_variable_is_defined_and_drives_every_panel(dashboard: dict[str, Any]) -> None:
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert names == {"asset"}
    for query in _queries(dashboard)[:-1]:  # all but the variable's own query
        assert 'r.asset == "${asset}"' in query


def test_panels_have_unique_ids_and_do_not_overlap(dashboard: dict[str, Any]) -> None:
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = [
        (x, y)
        for p in panels
        for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
        for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells)) and max(x for x, _ in cells) < 24  # Grafana's grid is 24 wide
    assert dashboard["uid"] == "plantwatch" and dashboard["editable"] is False


def test_compose_mounts_the_provisioning_where_the_provider_reads_it() -> None:
    grafana = _yaml(ROOT / "docker-compose.yml")["services"]["grafana"]
    (provider,) = _yaml(GRAFANA / "provisioning" / "dashboards" / "plantwatch.yaml")["providers"]
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in grafana["volumes"]}
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert "INFLUX_TOKEN" in grafana["environment"]
    for path in GRAFANA.rglob("*"):
        assert path.is_dir() or path.suffix in (".yaml", ".json"), path  # nothing else is read there
