"""API keys and the request checks of api.auth: who may call what, and what no caller can do."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alerts.store import SqliteAlertStore
from api.app import create_app
from api.hooks import ServiceHooks
from api.keys import KeyFile, KeyFileError
from plantwatch.cli import main as cli_main
from plantwatch.service.wiring import check_api_access
from plantwatch.settings import ApiSettings, ConfigError
from telemetry.counters import Counters

JSON = {"Content-Type": "application/json"}
FEEDBACK = {"verdict": "false_alarm", "start": "2026-01-05T00:00:00Z", "end": "2026-01-05T01:00:00Z"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def keys(tmp_path: Path) -> KeyFile:
    return KeyFile(tmp_path / "keys.json")


class Calls:
    """The pipeline's side of relearn and feedback: what reached it."""

    def __init__(self) -> None:
        self.relearned: list[str] = []
        self.feedback: list[str] = []

    def relearn(self, asset: str, maintenance: bool) -> bool:
        self.relearned.append(asset)
        return True

    def give_feedback(self, asset: str, verdict: str, start_ns: int, end_ns: int) -> int | None:
        self.feedback.append(asset)
        return 0


def client(store: SqliteAlertStore, keys: KeyFile | None, calls: Calls, **kw: Any) -> TestClient:
    hooks = ServiceHooks(
        store=store,
        counters=Counters(),
        keys=keys,
        relearn=calls.relearn,
        feedback=calls.give_feedback,
        health=lambda: {"assets": {"pump-7": {"state": "scoring"}}},
        **kw,
    )
    return TestClient(create_app(hooks), base_url="http://localhost")


# -- the key file ------------------------------------------------------------------------------


def test_a_key_is_kept_as_a_hash_in_a_file_only_its_owner_reads(keys: KeyFile) -> None:
    token = keys.create("scada", "read")
    assert token.startswith("pwk_") and len(token) > 40
    text = keys.path.read_text()
    assert token not in text and "scada" in text
    assert stat.S_IMODE(os.stat(keys.path).st_mode) == 0o600
    assert keys.authenticate(token) is not None and keys.authenticate(token + "x") is None
    assert keys.create("other", "read") != token  # random, never derived from the name


def test_scopes_include_the_ones_below(keys: KeyFile) -> None:
    tokens = {scope: keys.create(scope + "-key", scope) for scope in ("read", "operate", "admin")}
    allowed = {
        scope: [need for need in ("read", "operate", "admin") if keys.authenticate(token).allows(need)]  # type: ignore[union-attr]
        for scope, token in tokens.items()
    }
    assert allowed == {"read": ["read"], "operate": ["read", "operate"], "admin": ["read", "operate", "admin"]}


def test_a_revoked_key_stops_working_for_a_reader_that_had_it_cached(keys: KeyFile) -> None:
    token = keys.create("scada", "read")
    service_side = KeyFile(keys.path)
    assert service_side.authenticate(token) is not None
    assert keys.revoke("scada") == 1 and keys.revoke("scada") == 0
    assert service_side.authenticate(token) is None
    assert [k.name for k in service_side.all_keys()] == ["scada"] and not service_side.active()
    replacement = keys.create("scada", "read")  # the name is free again once revoked
    assert service_side.authenticate(replacement) is not None


def test_bad_names_scopes_and_files_are_refused_naming_the_file(keys: KeyFile) -> None:
    with pytest.raises(ValueError, match="key name"):
        keys.create("bad name", "read")
    with pytest.raises(ValueError, match="scope must be one of read, operate, admin"):
        keys.create("scada", "root")
    keys.create("scada", "read")
    with pytest.raises(ValueError, match="exists"):
        keys.create("scada", "admin")
    keys.path.write_text("{not json")
    with pytest.raises(KeyFileError, match=str(keys.path)):
        KeyFile(keys.path).all_keys()
    keys.path.write_text(json.dumps({"version": 99, "keys": []}))
    with pytest.raises(KeyFileError, match="version 99"):
        KeyFile(keys.path).all_keys()


# -- the API -----------------------------------------------------------------------------------


def test_without_any_key_the_api_answers_everyone(store: SqliteAlertStore, keys: KeyFile) -> None:
    calls = Calls()
    with client(store, keys, calls) as c:
        assert c.get("/alerts").status_code == 200
        assert c.post("/assets/pump-7/relearn", headers=JSON).status_code == 202
        assert c.get("/healthz").json()["assets"] == {"pump-7": {"state": "scoring"}}


def test_each_call_needs_a_key_of_its_scope(store: SqliteAlertStore, keys: KeyFile) -> None:
    read, operate, admin = (keys.create(s + "-key", s) for s in ("read", "operate", "admin"))
    calls = Calls()
    with client(store, keys, calls) as c:
        missing = c.get("/alerts")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in missing.json()["detail"]
        assert c.get("/alerts", headers=bearer("pwk_guessed")).status_code == 401
        assert c.get("/alerts", headers={"Authorization": f"Basic {read}"}).status_code == 401
        for path in ("/alerts", "/maintenance", "/metrics"):
            assert c.get(path, headers=bearer(read)).status_code == 200, path
        denied = c.post("/assets/pump-7/relearn", headers=JSON | bearer(operate))
        assert denied.status_code == 403 and "needs admin" in denied.json()["detail"]
        assert c.post("/assets/pump-7/feedback", json=FEEDBACK, headers=bearer(read)).status_code == 403
        assert calls.relearned == [] and calls.feedback == []
        assert c.post("/assets/pump-7/feedback", json=FEEDBACK, headers=bearer(operate)).status_code == 200
        assert c.post("/assets/pump-7/relearn", headers=JSON | bearer(admin)).status_code == 202
    assert calls.relearned == ["pump-7"] and calls.feedback == ["pump-7"]


def test_healthz_answers_everyone_but_tells_only_readers_more(store: SqliteAlertStore, keys: KeyFile) -> None:
    read = keys.create("monitoring", "read")
    with client(store, keys, Calls()) as c:
        anonymous = c.get("/healthz")
        assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok"}
        assert c.get("/healthz", headers=bearer(read)).json()["assets"] == {"pump-7": {"state": "scoring"}}


def test_revoking_every_key_or_deleting_the_file_locks_the_api_rather_than_opening_it(
    store: SqliteAlertStore, keys: KeyFile
) -> None:
    token = keys.create("scada", "read")
    with client(store, keys, Calls()) as c:
        assert c.get("/alerts", headers=bearer(token)).status_code == 200
        KeyFile(keys.path).revoke("scada")  # the CLI, while the service runs
        assert c.get("/alerts", headers=bearer(token)).status_code == 401
        assert c.get("/alerts").status_code == 401
        keys.path.unlink()
        assert c.get("/alerts").status_code == 401
        keys.path.write_text("{broken")
        unreadable = c.get("/alerts", headers=bearer(token))
        assert unreadable.status_code == 503 and "cannot be read" in unreadable.json()["detail"]


def test_keys_present_at_start_are_required_from_the_first_request(store: SqliteAlertStore, keys: KeyFile) -> None:
    """Deciding at the first request let a file emptied before it open the API (found in review)."""
    keys.create("ops", "admin")
    calls = Calls()
    with client(store, keys, calls) as c:
        keys.path.unlink()
        assert c.get("/alerts").status_code == 401
        assert c.post("/assets/pump-7/relearn", headers=JSON).status_code == 401
    assert calls.relearned == []


def test_commands_changing_the_file_at_once_lose_nothing(keys: KeyFile) -> None:
    """Each command reads, changes and writes the file under a lock: without it, a revocation run beside
    a create was lost in 6 of 20 tries while it said it had succeeded."""
    keys.create("leaked", "admin")
    leaked_names = [f"shift-{i}" for i in range(12)]

    def work(name: str) -> None:
        KeyFile(keys.path).create(name, "read")

    threads = [threading.Thread(target=work, args=(name,)) for name in leaked_names]
    threads.append(threading.Thread(target=lambda: KeyFile(keys.path).revoke("leaked")))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = {k.name: k.active for k in KeyFile(keys.path).all_keys()}
    assert names == {"leaked": False} | {name: True for name in leaked_names}


def test_a_body_over_the_limit_is_refused_before_it_is_read(store: SqliteAlertStore, keys: KeyFile) -> None:
    operate = keys.create("ops", "operate")
    calls = Calls()

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        for _ in range(100):
            yield b" " * 1024

    with client(store, keys, calls) as c:
        stated = c.post("/assets/pump-7/feedback", content=b" " * 70_000, headers=JSON)
        assert stated.status_code == 413 and "65536" in stated.json()["detail"]  # said by its length: at once
        assert c.post("/assets/pump-7/feedback", content=chunks(), headers=JSON).status_code == 401  # no key
        streamed = c.post("/assets/pump-7/feedback", content=chunks(), headers=JSON | bearer(operate))
        assert streamed.status_code == 413
    assert calls.feedback == []


def test_a_caller_without_a_key_never_has_its_body_parsed(store: SqliteAlertStore, keys: KeyFile) -> None:
    read = keys.create("scada", "read")
    with client(store, keys, Calls()) as c:
        garbage = c.post("/assets/pump-7/feedback", content=b"{not json", headers=JSON)
        assert garbage.status_code == 401 and garbage.headers["www-authenticate"] == "Bearer"
        basic = c.post("/assets/pump-7/feedback", content=b"{not json", headers=JSON | {"Authorization": "Basic x"})
        assert basic.status_code == 401
        assert c.post("/assets/pump-7/feedback", content=b"{", headers=JSON | bearer("pwk_nope")).status_code == 401
        # With a key its body is parsed: FastAPI reads it before the route's scope check.
        parsed = c.post("/assets/pump-7/feedback", content=b"{not json", headers=JSON | bearer(read))
        assert parsed.status_code == 422


def test_an_open_api_answers_only_requests_to_loopback_names(store: SqliteAlertStore, keys: KeyFile) -> None:
    """DNS rebinding: a page whose name now resolves to 127.0.0.1 is, to the browser, the API's own
    origin; its requests still carry its own name."""
    calls = Calls()
    with client(store, keys, calls) as c:
        rebound = c.post("/assets/pump-7/relearn", headers=JSON | {"Host": "rebind.attacker.example"})
        assert rebound.status_code == 403 and "loopback" in rebound.json()["detail"]
        assert c.get("/alerts", headers={"Host": "rebind.attacker.example:8080"}).status_code == 403
        for host in ("localhost:8080", "127.0.0.1", "[::1]:8080", "127.0.0.2"):
            assert c.get("/alerts", headers={"Host": host}).status_code == 200, host
    assert calls.relearned == []
    read = keys.create("scada", "read")
    with client(store, keys, Calls()) as c:  # with keys, any name the machine is reached by
        assert c.get("/alerts", headers=bearer(read) | {"Host": "plantwatch.plant.example"}).status_code == 200


def test_no_cross_site_simple_request_changes_anything(store: SqliteAlertStore, keys: KeyFile) -> None:
    """Without keys (a loopback service), a web page could still POST to it from an operator's browser
    with a form or text/plain body: those are refused."""
    calls = Calls()
    with client(store, keys, calls) as c:
        as_text = c.post("/assets/pump-7/relearn", content=b"x", headers={"Content-Type": "text/plain"})
        assert as_text.status_code == 415 and "application/json" in as_text.json()["detail"]
        assert c.post("/assets/pump-7/relearn", data={"a": "1"}).status_code == 415
        assert c.post("/assets/pump-7/relearn").status_code == 415
        body = json.dumps(FEEDBACK).encode()
        assert (
            c.post("/assets/pump-7/feedback", content=body, headers={"Content-Type": "text/plain"}).status_code == 415
        )
    assert calls.relearned == [] and calls.feedback == []


def test_asset_names_in_paths_follow_the_rules_of_names_from_mqtt(store: SqliteAlertStore, keys: KeyFile) -> None:
    calls = Calls()
    with client(store, keys, calls) as c:
        control = c.post("/assets/%00maintenance-trends/relearn", headers=JSON)
        assert control.status_code == 422 and "control characters" in control.json()["detail"]
        assert c.post("/assets/" + "p" * 129 + "/relearn", headers=JSON).status_code == 422
        assert c.post("/assets/p%01ump/feedback", json=FEEDBACK).status_code == 422
        assert c.post("/assets/" + "p" * 128 + "/relearn", headers=JSON).status_code == 202
    assert calls.relearned == ["p" * 128] and calls.feedback == []


def test_the_openapi_document_offers_bearer_keys(store: SqliteAlertStore, keys: KeyFile) -> None:
    with client(store, keys, Calls()) as c:
        spec = c.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    relearn = spec["paths"]["/assets/{asset}/relearn"]["post"]
    assert {"HTTPBearer": []} in relearn["security"]
    assert {"401", "403", "404", "413", "415", "422"} <= set(relearn["responses"])
    assert {"401", "403"} <= set(spec["paths"]["/alerts"]["get"]["responses"])


# -- start-up and the CLI ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "plant-gateway"])
def test_serving_other_machines_without_a_key_is_refused_at_start(tmp_path: Path, host: str) -> None:
    api = ApiSettings(host=host, keys_file=str(tmp_path / "keys.json"))
    with pytest.raises(ConfigError, match=r"api.host: .* holds no key.*plantwatch keys create NAME --scope admin"):
        check_api_access(api)
    KeyFile(api.keys_file).create("ops", "admin")
    check_api_access(api)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.5"])
def test_a_loopback_api_may_run_without_keys(tmp_path: Path, host: str) -> None:
    check_api_access(ApiSettings(host=host, keys_file=str(tmp_path / "keys.json")))


def test_keys_commands_create_list_and_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "plant.yaml"
    keys_file = tmp_path / "secrets" / "keys.json"
    config.write_text(f"storage: {{kind: sqlite}}\napi: {{keys_file: {keys_file}}}\n")
    assert cli_main(["keys", "create", "scada", "--scope", "operate", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("pwk_") and "shown only now" in err
    assert KeyFile(keys_file).authenticate(token) is not None
    assert cli_main(["keys", "list", "--config", str(config)]) == 0
    listed = capsys.readouterr().out
    assert "scada" in listed and "operate" in listed and "active" in listed and token not in listed
    assert cli_main(["keys", "revoke", "scada", "--config", str(config)]) == 0
    assert KeyFile(keys_file).authenticate(token) is None
    assert cli_main(["keys", "revoke", "scada", "--config", str(config)]) == 2
    assert "no active key named 'scada'" in capsys.readouterr().err


def test_run_refuses_an_open_api_on_other_machines_before_touching_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "plant.yaml"
    config.write_text(
        "storage: {kind: sqlite, sqlite_path: " + str(tmp_path / "r.db") + "}\n"
        f"api: {{host: 0.0.0.0, port: 0, keys_file: {tmp_path / 'keys.json'}}}\n"
        "alerts: {store_url: 'sqlite:///" + str(tmp_path / "a.db") + "'}\n"
    )
    assert cli_main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "api.host: 0.0.0.0 serves other machines" in err and "plantwatch keys create" in err
    assert not (tmp_path / "a.db").exists() and not (tmp_path / "r.db").exists()


def test_cors_is_off_unless_origins_are_named(store: SqliteAlertStore) -> None:
    page = {"Origin": "https://dashboard.example", "Access-Control-Request-Method": "GET"}
    hooks = ServiceHooks(store=store, counters=Counters())
    with TestClient(create_app(hooks), base_url="http://localhost") as client:
        assert "access-control-allow-origin" not in client.get("/alerts", headers={"Origin": page["Origin"]}).headers
        assert client.options("/alerts", headers=page).status_code == 405  # no preflight answered
    with TestClient(create_app(hooks, ["https://dashboard.example"]), base_url="http://localhost") as client:
        allowed = client.options("/alerts", headers=page | {"Access-Control-Request-Headers": "authorization"})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://dashboard.example"
        listed = client.get("/alerts", headers={"Origin": page["Origin"]})
        assert listed.headers["access-control-allow-origin"] == "https://dashboard.example"
        assert "x-next-cursor" in listed.headers["access-control-expose-headers"].lower()
        other = client.options("/alerts", headers=page | {"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("origin", ["*", "https://dashboard.example/path", "dashboard.example", "ftp://x"])
def test_a_cors_origin_that_is_not_one_origin_is_refused(origin: str) -> None:
    with pytest.raises(ValueError, match="give each origin as scheme://host"):
        ApiSettings(cors_origins=[origin])
