"""/docs and /redoc work on an offline plant network: every asset they load comes from the server itself."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from alerts.store import SqliteAlertStore
from api.app import create_app
from api.hooks import ServiceHooks
from telemetry.counters import Counters

CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


class _References(HTMLParser):
    """The src and href attributes of a page: what a browser would fetch to show it."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    store = SqliteAlertStore(tmp_path / "alerts.db")
    with TestClient(create_app(ServiceHooks(store=store, counters=Counters())), base_url="http://localhost") as client:
        yield client
    store.close()


@pytest.mark.parametrize(("page", "script"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")])
def test_docs_pages_load_their_assets_from_this_server(client: TestClient, page: str, script: str) -> None:
    resp = client.get(page)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    # No CDN, no web font: not a URL with a scheme, nor a protocol-relative one, anywhere in the page.
    assert "http://" not in resp.text and "https://" not in resp.text and "//cdn" not in resp.text
    parser = _References()
    parser.feed(resp.text)
    assert any(url.endswith(script) for url in parser.urls), parser.urls
    for url in parser.urls:
        assert url.startswith("/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].startswith(CONTENT_TYPES[Path(url).suffix]), (url, asset.headers)
        assert len(asset.content) > 1000, url  # the real file, not an empty placeholder


def test_docs_page_reads_this_servers_openapi_document(client: TestClient) -> None:
    page = client.get("/docs").text
    assert "url: '/openapi.json'" in page
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "plantwatch"
    assert {"/alerts", "/healthz", "/maintenance", "/metrics", "/assets/{asset}/relearn"} <= set(spec["paths"])
