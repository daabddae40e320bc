"""Test certificates made with the openssl command: a CA, a server certificate for 127.0.0.1 and a
client certificate, for TLS tests against real servers (Mosquitto, VictoriaMetrics)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from servers import skip_or_fail


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def certificates(folder: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    if shutil.which("openssl") is None:
        skip_or_fail("the openssl command is missing (Debian package openssl)")
    folder.mkdir()
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test-ca", cwd=folder
    )
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, subject in (("server", "/CN=127.0.0.1"), ("client", "/CN=plantwatch")):
        _openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=folder)
        extra = ["-extfile", "server.ext"] if name == "server" else []
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", *extra, cwd=folder,
        )  # fmt: skip
    for path in folder.iterdir():
        path.chmod(0o644)  # mosquitto reads them as its own user
    return folder
