"""Test certificates for SIP over TLS, made at test time with the openssl command.

No private key is ever committed: `make_pki(directory)` writes a throw-away CA, the node's
certificate (subjectAltName IP:127.0.0.1, DNS:node.hotline.test) signed by it, a client
certificate signed by it (a phone's or a carrier's), a self-signed "rogue" client that no
configured CA trusts, and an already expired node certificate. EC P-256 keys: about 60 ms
for the whole set.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Pki", "make_pki", "openssl_available"]

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def openssl_available() -> bool:
    return shutil.which("openssl") is not None


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: Path
    node_cert: Path
    node_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path
    expired_cert: Path

    def node_tls(self, listen: str) -> dict[str, object]:
        """The node's `tls:` settings (node.yaml) for these certificates on `listen`
        (HOST:PORT), client certificates from this CA `required`."""
        return {
            "listen": [listen],
            "certificate": str(self.node_cert),
            "private_key": str(self.node_key),
            "ca_bundle": str(self.ca),
            "client_certificates": "required",
        }


def _run(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {done.stderr.decode(errors='replace')}")


def _signed(
    directory: Path, name: str, subject: str, days: int, san: str = "", key: str = ""
) -> None:
    key_args = ["-key", key] if key else [*_EC, "-keyout", f"{name}.key"]
    _run("req", "-new", *key_args, "-out", f"{name}.csr", "-subj", subject, cwd=directory)
    extra: list[str] = []
    if san:
        (directory / f"{name}.ext").write_text(f"subjectAltName={san}\n", encoding="ascii")
        extra = ["-extfile", f"{name}.ext"]
    _run(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", f"{name}.crt", "-days", str(days), *extra,
        cwd=directory,
    )  # fmt: skip


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    _run(
        "req", "-x509", *_EC, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=hotline test CA", cwd=directory,
    )  # fmt: skip
    _signed(directory, "node", "/CN=node.hotline.test", 2, "IP:127.0.0.1,DNS:node.hotline.test")
    _signed(directory, "client", "/CN=1001", 2)
    _signed(directory, "expired", "/CN=node.hotline.test", 0, "IP:127.0.0.1", key="node.key")
    _run(
        "req", "-x509", *_EC, "-keyout", "rogue.key", "-out", "rogue.crt", "-days", "2",
        "-subj", "/CN=rogue", cwd=directory,
    )  # fmt: skip
    return Pki(
        directory=directory,
        ca=directory / "ca.crt",
        node_cert=directory / "node.crt",
        node_key=directory / "node.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
        rogue_cert=directory / "rogue.crt",
        rogue_key=directory / "rogue.key",
        expired_cert=directory / "expired.crt",
    )
