"""`plantwatch check` changes nothing: it reads what exists and says whether what is missing can be created."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_check import _check

pytestmark = pytest.mark.integration


def _config(tmp_path: Path, extra: str = "") -> Path:
    """Nothing listens on the broker's port: these tests are about the files."""
    path = tmp_path / "plant.yaml"
    path.write_text(f"mqtt: {{url: 'mqtt://127.0.0.1:1'}}\nstorage: {{kind: sqlite}}\n{extra}", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("model_dir", "line"),
    [
        (None, "ok detector.model_dir not set: learned baselines are not kept across restarts"),
        ("{tmp}", "ok detector.model_dir {tmp}: exists, writable"),
        ("{tmp}/models/line1", "ok detector.model_dir {tmp}/models/line1: will be created"),
        ("{tmp}/a-file/models", "FAIL detector.model_dir {tmp}/a-file/models: {tmp}/a-file is a file, not a folder"),
    ],
    ids=["unset", "exists", "missing", "under-a-file"],
)
def test_the_model_dir_line_says_whether_it_exists_or_can_be_created(
    model_dir: str | None, line: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("x")
    extra = "" if model_dir is None else f"detector: {{model_dir: '{model_dir.format(tmp=tmp_path)}'}}\n"
    _, lines = _check(_config(tmp_path, extra), capsys)
    assert lines["models"] == line.format(tmp=tmp_path)
    assert not (tmp_path / "models").exists()
