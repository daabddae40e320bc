"""The built-in dashboard in a real browser: Debian's chromium, driven by Playwright, against `plantwatch run`
fed by a replay on real Mosquitto and VictoriaMetrics.

The page is opened without a key (it asks for one), given an operate key, shows the alert the replayed
fault opens, and its Acknowledge button acknowledges it: checked through the API. A screenshot is kept
in the test's folder, or where ``PLANTWATCH_SCREENSHOT`` says (the README's picture is made that way).
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import numpy as np
import pytest
from servers import MosquittoServer, VictoriaServer, require_binary, skip_or_fail
from test_end_to_end import _write_csv as write_pump_csv  # the demo's pump, a bearing fault in its last part
from test_end_to_end import plantwatch_run
from waiting import wait_until

from api.keys import KeyFile
from plantwatch.demo import free_port

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def running(tmp_path: Path, mosquitto: MosquittoServer, victoria: VictoriaServer) -> Iterator[tuple[str, str]]:
    """`plantwatch run` with an operate key; yields its base URL and the key."""
    keys = KeyFile(tmp_path / "keys.json")
    token = keys.create("shift-lead", "operate")
    port = free_port()
    config = tmp_path / "plantwatch.yaml"  # its own measurement and asset: VictoriaMetrics is the session's
    config.write_text(
        f"""
mqtt: {{url: "mqtt://127.0.0.1:{mosquitto.port}", client_id: dashboard-test, topic_template: "plant/{{asset}}"}}
storage: {{kind: influxdb, batch_size: 500, flush_interval_s: 0.2}}
influx: {{url: "{victoria.url}", org: test, bucket: dashboard, measurement: dashboard}}
detector: {{baseline_rows: 600}}
maintenance: {{operating_settings: {{voltage_v: 5}}}}
alerts: {{store_url: "sqlite:///{tmp_path / "alerts.db"}"}}
api: {{port: {port}, keys_file: "{keys.path}"}}
"""
    )
    with (tmp_path / "service.log").open("w") as log, plantwatch_run(config, f"http://127.0.0.1:{port}", log):
        yield f"http://127.0.0.1:{port}", token


def _playwright() -> ModuleType:
    try:
        return importlib.import_module("playwright.sync_api")
    except ImportError:
        skip_or_fail("the playwright package is missing: pip install -e '.[dev]'")
        raise


def _js_reading(value: float) -> str:
    """The dashboard's ``reading(value)``: four significant digits, as JavaScript prints the number."""
    # positional, as JavaScript prints numbers from 1e-6 up (Python's repr turns to 1e-05 below 1e-4)
    return str(np.format_float_positional(float(f"{value:.4g}"), trim="-"))


def _replay_fault(tmp_path: Path, broker_port: int) -> None:
    log = tmp_path / "pump.csv"
    write_pump_csv(log)
    replay = subprocess.run(
        [sys.executable, "-m", "plantwatch.cli", "replay", str(log), "--broker", f"mqtt://127.0.0.1:{broker_port}"]
        + ["--asset", "pump-3", "--topic", "plant/pump-3", "--fast"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replay.returncode == 0, replay.stderr


def test_a_shift_sees_the_alert_on_the_dashboard_and_acknowledges_it(
    tmp_path: Path, mosquitto: MosquittoServer, running: tuple[str, str]
) -> None:
    require_binary(CHROMIUM)
    sync_api = _playwright()
    base, token = running
    headers = {"Authorization": f"Bearer {token}"}
    _replay_fault(tmp_path, mosquitto.port)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(base + "/")
        sync_api.expect(page.locator("#message")).to_contain_text("API key", timeout=15_000)  # asked for one

        page.fill("#key", token)
        page.click("#key-form button[type=submit]")
        row = page.locator("#alerts tr[data-alert-id]").first
        sync_api.expect(row).to_be_visible(timeout=60_000)  # the replayed fault's alert
        sync_api.expect(page.locator("#assets tr[data-asset='pump-3']")).to_contain_text("pump-3")
        sync_api.expect(page.locator("#chart path.line")).to_have_count(1, timeout=15_000)
        alert_id = int(row.get_attribute("data-alert-id") or 0)
        alert = httpx.get(f"{base}/alerts/{alert_id}", headers=headers, timeout=5).json()
        assert alert["asset"] == "pump-3" and alert["acknowledged_at"] is None
        top = alert["top_sensors"][0]
        sync_api.expect(row).to_contain_text(top["sensor"])  # named in plant terms
        # its view when not its level, and four significant digits (0.000188 read "0.00" with two decimals)
        view = "" if top["feature"] in ("", "raw", "level") else f" {top['feature']}"
        sync_api.expect(row).to_contain_text(f"{top['sensor']}{view} {top['direction']} (")
        sync_api.expect(row).to_contain_text(f"expected {_js_reading(top['expected_low'])} to ")
        sync_api.expect(page.locator("#sensors path.line")).to_have_count(8)  # the pump's sensors, one strip each
        sync_api.expect(page.locator("#sensors")).to_contain_text(alert["top_sensors"][0]["sensor"])
        # the pump runs at one supply voltage: its health judged in that regime, learned from its readings
        sync_api.expect(page.locator("#maintenance tr").filter(has_text="pump-3")).to_contain_text(
            re.compile(r"0 \(voltage_v 2(28|29)\.\d\d\)"),
            timeout=15_000,  # 229 V with its noise
        )

        screenshot = Path(os.environ.get("PLANTWATCH_SCREENSHOT", str(tmp_path / "dashboard.png")))
        page.screenshot(path=str(screenshot), full_page=True)
        line = page.locator("#chart path.line")
        assert 300 < line.get_attribute("d").count("L") < 720  # every scored row of the replay, at most 720
        page.select_option("#window", "120")  # the newest 120 rows only
        wait_until(
            lambda: line.get_attribute("d").count("L") == 119, 15, "the chart redrawn with 120 rows"
        )  # the next refresh
        row.locator("button[data-action=Acknowledge]").click()

        def acknowledged() -> bool:
            answer = httpx.get(f"{base}/alerts/{alert_id}", headers=headers, timeout=5).json()
            return answer["acknowledged_by"] == "shift-lead"

        wait_until(acknowledged, 15, "the alert is acknowledged through the page")
        sync_api.expect(
            page.locator(f"#alerts tr[data-alert-id='{alert_id}'] button[data-action=Acknowledge]")
        ).to_have_count(0, timeout=15_000)
        browser.close()
    assert errors == []  # no script error on the page
    assert screenshot.stat().st_size > 10_000


def test_the_dashboard_files_are_served_with_a_policy_that_runs_only_their_own_script(
    running: tuple[str, str],
) -> None:
    base, token = running
    page = httpx.get(base + "/", timeout=5)  # no key: the files hold no data
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert '<script src="/dashboard/dashboard.js"' in page.text
    for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        answer = httpx.get(f"{base}/dashboard/{name}", timeout=5)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind)
    assert httpx.get(base + "/dashboard/index.html", timeout=5).status_code == 404
    assert httpx.get(base + "/dashboard/..%2Fkeys.py", timeout=5).status_code == 404
    schema = httpx.get(base + "/openapi.json", headers={"Authorization": f"Bearer {token}"}, timeout=5).json()
    assert "/" not in schema["paths"]  # not an API route
