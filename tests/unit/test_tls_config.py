"""SIP over TLS in the configuration: certificates, keys and CAs are checked when the
configuration loads, and every problem is a `file:line: path: message` error naming the file
and the reason (never a traceback at the first handshake)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from tlscerts import Pki, make_pki, openssl_available

from softswitch.config import ConfigError, load_config
from softswitch.config_tls import TlsConfig, client_context, server_context

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config"

pytestmark = pytest.mark.skipif(not openssl_available(), reason="needs the openssl command")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def demo_with(tmp_path: Path, node_extra: str = "", trunks: str | None = None) -> Path:
    """The demo configuration with text appended to node.yaml (and trunks.yaml replaced)."""
    directory = tmp_path / "config"
    shutil.copytree(DEMO, directory)
    if node_extra:
        with (directory / "node.yaml").open("a", encoding="utf-8") as handle:
            handle.write("\n" + node_extra)
    if trunks is not None:
        (directory / "trunks.yaml").write_text(trunks, encoding="utf-8")
    return directory


def tls_section(pki: Pki, **keys: str) -> str:
    values = {
        "listen": '["127.0.0.1:5061"]',
        "certificate": str(pki.node_cert),
        "private_key": str(pki.node_key),
        "ca_bundle": str(pki.ca),
        **keys,
    }
    return "tls:\n" + "".join(f"  {k}: {v}\n" for k, v in values.items() if v != "-")


def errors(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(directory)
    return [str(issue) for issue in info.value.errors]


def tls_line(directory: Path, key: str) -> int:
    lines = (directory / "node.yaml").read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.strip().startswith(f"{key}:"))


def test_the_shipped_demo_has_tls_off() -> None:
    config = load_config(DEMO)
    assert config.tls == TlsConfig() and not config.tls.enabled
    assert all(t.transport == "udp" for t in config.trunks)


def test_a_tls_section_loads_and_its_contexts_refuse_tls_1_1(tmp_path: Path, pki: Pki) -> None:
    directory = demo_with(tmp_path, tls_section(pki, client_certificates="required"))
    config = load_config(directory)
    assert config.tls.listen == ("127.0.0.1:5061",)
    server = server_context(config.tls, directory)
    assert server.minimum_version == ssl.TLSVersion.TLSv1_2
    assert server.verify_mode == ssl.CERT_REQUIRED
    client = client_context(config.tls, directory)
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname


def test_relative_paths_are_read_from_the_configuration_directory(tmp_path: Path, pki: Pki) -> None:
    directory = demo_with(tmp_path)
    (directory / "tls").mkdir()
    for source in (pki.node_cert, pki.node_key):
        shutil.copy(source, directory / "tls" / source.name)
    section = tls_section(pki, certificate="tls/node.crt", private_key="tls/node.key")
    with (directory / "node.yaml").open("a", encoding="utf-8") as handle:
        handle.write("\n" + section)
    assert load_config(directory).tls.certificate == "tls/node.crt"


def test_a_missing_certificate_is_an_error_with_file_line_and_reason(
    tmp_path: Path, pki: Pki
) -> None:
    missing = tmp_path / "nowhere" / "node.crt"
    directory = demo_with(tmp_path, tls_section(pki, certificate=str(missing)))
    (problem,) = errors(directory)
    line = tls_line(directory, "certificate")
    assert problem == (
        f"node.yaml:{line}: tls.certificate: {missing}: cannot read: No such file or directory"
    )


def test_a_key_that_is_not_the_certificates_is_refused(tmp_path: Path, pki: Pki) -> None:
    directory = demo_with(tmp_path, tls_section(pki, private_key=str(pki.rogue_key)))
    (problem,) = errors(directory)
    assert f"tls.private_key: {pki.rogue_key} is not the private key of {pki.node_cert}" in problem
    assert "KEY_VALUES_MISMATCH" in problem


def test_an_unreadable_a_non_pem_and_an_encrypted_key_are_each_named(
    tmp_path: Path, pki: Pki
) -> None:
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key\n", encoding="ascii")
    directory = demo_with(tmp_path, tls_section(pki, private_key=str(garbage)))
    (problem,) = errors(directory)
    assert f"tls.private_key: {garbage}: not a PEM file" in problem

    locked = tmp_path / "locked.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(pki.node_key), "-aes256", "-passout", "pass:secret",
         "-out", str(locked)],
        check=True, capture_output=True,
    )  # fmt: skip
    directory = demo_with(tmp_path / "b", tls_section(pki, private_key=str(locked)))
    (problem,) = errors(directory)
    assert "tls.private_key:" in problem and "encrypted" in problem

    closed = tmp_path / "closed.key"
    shutil.copy(pki.node_key, closed)
    closed.chmod(0)
    try:
        directory = demo_with(tmp_path / "c", tls_section(pki, private_key=str(closed)))
        try:
            closed.read_bytes()
        except PermissionError:
            (problem,) = errors(directory)
            assert f"tls.private_key: {closed}: cannot read: Permission denied" in problem
        else:  # running as root: every file is readable
            load_config(directory)
    finally:
        closed.chmod(0o600)


def test_an_expired_certificate_is_refused_at_load(tmp_path: Path, pki: Pki) -> None:
    directory = demo_with(tmp_path, tls_section(pki, certificate=str(pki.expired_cert)))
    (problem,) = errors(directory)
    assert f"tls.certificate: {pki.expired_cert}: the certificate expired" in problem


def test_settings_that_cannot_work_together(tmp_path: Path, pki: Pki) -> None:
    # Client certificates need CAs to check them against.
    directory = demo_with(tmp_path, tls_section(pki, ca_bundle="-", client_certificates="optional"))
    (problem,) = errors(directory)
    assert "tls.client_certificates: `optional` needs `ca_bundle`" in problem
    # A listener needs its certificate.
    directory = demo_with(tmp_path / "b", tls_section(pki, certificate="-", private_key="-"))
    (problem,) = errors(directory)
    assert "tls.certificate: needed with `listen`" in problem
    # The TLS port is not the TCP port of node.sip_listen; TLS 1.1 is no choice.
    directory = demo_with(tmp_path / "c", tls_section(pki, listen='["127.0.0.1:5060"]'))
    (problem,) = errors(directory)
    assert "tls.listen[0]: 127.0.0.1:5060 is also in node.sip_listen (TCP)" in problem
    directory = demo_with(tmp_path / "d", tls_section(pki, min_version='"1.1"'))
    (problem,) = errors(directory)
    assert f"node.yaml:{tls_line(directory, 'min_version')}: tls.min_version:" in problem


TLS_TRUNK = """\
trunks:
  - name: carrier
    acl: ["127.0.0.0/8"]
    caller_id: "12345"
    outbound: "127.0.0.1:5081"
    transport: {transport}
{extra}"""


def test_a_tls_trunk_is_checked_with_its_client_certificate(tmp_path: Path, pki: Pki) -> None:
    extra = (
        f"    tls_server_name: sbc.carrier.example\n"
        f"    tls_certificate: {pki.client_cert}\n"
        f"    tls_private_key: {pki.client_key}\n"
        f"    uri_scheme: sips\n"
    )
    directory = demo_with(
        tmp_path, tls_section(pki), TLS_TRUNK.format(transport="tls", extra=extra)
    )
    (trunk,) = load_config(directory).trunks
    assert trunk.sip_transport == "TLS" and trunk.uri_scheme == "sips"

    extra = f"    tls_certificate: {pki.client_cert}\n"
    directory = demo_with(
        tmp_path / "b", tls_section(pki), TLS_TRUNK.format(transport="tls", extra=extra)
    )
    (problem,) = errors(directory)
    assert problem.startswith("trunks.yaml:")
    assert "trunks[0].tls_private_key: `tls_certificate` and `tls_private_key` go together" in (
        problem
    )


def test_tls_settings_of_a_trunk_without_tls_are_errors(tmp_path: Path, pki: Pki) -> None:
    extra = "    uri_scheme: sips\n    tls_server_name: sbc.carrier.example\n"
    directory = demo_with(tmp_path, "", TLS_TRUNK.format(transport="udp", extra=extra))
    found = errors(directory)
    assert any("trunks[0].uri_scheme: `sips` needs `transport: tls`" in p for p in found), found
    assert any("trunks[0].tls_server_name: only with `transport: tls`" in p for p in found)
