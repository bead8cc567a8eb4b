"""SIP over TLS in the configuration: the `tls` section of node.yaml, and the SSL contexts
built from it and from a trunk's TLS keys (RFC 3261 §26.2, RFC 5630).

The contexts are built when the configuration is loaded, so a certificate that is missing,
unreadable, not PEM, encrypted, expired or not the private key's pair is a configuration
error with its file and reason (`hotline check`, `hotline serve`, a reload), never a
traceback at the first handshake. Paths are relative to the configuration directory.

- `server_context`: what the node's TLS listener presents (its certificate chain and key),
  whether it asks phones and carriers for a client certificate and checks it against
  `ca_bundle`, and TLS 1.2 as the oldest version (RFC 8996 deprecates 1.0 and 1.1).
- `client_context`: what the node uses when it connects out (to a carrier's SBC over a trunk
  with `transport: tls`, or to a phone whose connection is gone): the server's certificate is
  checked against `ca_bundle`, or the system's CAs without one; a trunk's
  `tls_certificate`/`tls_private_key` are presented as the client certificate.
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "TLS_VERSIONS",
    "TlsConfig",
    "TlsFileError",
    "client_context",
    "server_context",
]

#: `min_version` → the ssl module's version (1.0 and 1.1 are never accepted, RFC 8996).
TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class TlsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """SIP over TLS (RFC 3261 §26, `sips:` URIs as RFC 5630 says): its own listening port."""

    listen: Annotated[
        tuple[str, ...],
        Meta(
            description="Addresses of the TLS listener, each `HOST:PORT` (IPv6 as "
            '`"[::1]:5061"`), e.g. `["0.0.0.0:5061"]` beside UDP/TCP 5060; empty: no TLS '
            "(connections out to `transport: tls` trunks still work with `ca_bundle`)."
        ),
    ] = ()
    certificate: Annotated[
        str,
        Meta(
            description="PEM file of the node's certificate, followed by its intermediate "
            "CAs (relative paths: from the configuration directory). Needed with `listen`."
        ),
    ] = ""
    private_key: Annotated[
        str,
        Meta(description="PEM file of the certificate's private key, unencrypted."),
    ] = ""
    ca_bundle: Annotated[
        str,
        Meta(
            description="PEM file of the CAs trusted for client certificates of phones and "
            "carriers (`client_certificates`) and for the certificates of carriers' servers "
            "the node connects to; empty: the system's CAs check servers, and client "
            "certificates cannot be asked for."
        ),
    ] = ""
    client_certificates: Annotated[
        Literal["none", "optional", "required"],
        Meta(
            description="What the listener asks of its peers: `none`; `optional` (a "
            "certificate that is sent must verify against `ca_bundle`); `required` (a "
            "handshake without a valid one is refused)."
        ),
    ] = "none"
    min_version: Annotated[
        Literal["1.2", "1.3"],
        Meta(description="Oldest TLS version accepted and offered (1.0 and 1.1 never are)."),
    ] = "1.2"

    @property
    def enabled(self) -> bool:
        """Whether the node listens for TLS."""
        return bool(self.listen)


class TlsFileError(ValueError):
    """A certificate, key or CA file that cannot be used: `key` names the setting."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def resolve(base: Path, name: str) -> Path:
    """A configured file name, relative to the configuration directory unless absolute."""
    path = Path(name)
    return path if path.is_absolute() else base / path


def _no_password() -> bytes:
    # Called by OpenSSL for an encrypted key: without it, OpenSSL would prompt on the
    # terminal; a node runs unattended.
    raise TlsFileError("private_key", "the key is encrypted (give an unencrypted PEM key)")


def _readable(key: str, path: Path) -> None:
    try:
        with path.open("rb") as handle:
            head = handle.read(65536)
    except OSError as exc:
        raise TlsFileError(key, f"{path}: cannot read: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in head:
        raise TlsFileError(key, f"{path}: not a PEM file (no -----BEGIN line)")


def _load_chain(
    context: ssl.SSLContext, base: Path, certificate: str, private_key: str, prefix: str = ""
) -> None:
    cert_key, key_key = f"{prefix}certificate", f"{prefix}private_key"
    if not certificate and not private_key and not prefix:
        raise TlsFileError(cert_key, "needed with `listen`: the listener presents it")
    if not certificate or not private_key:
        missing = cert_key if not certificate else key_key
        raise TlsFileError(missing, f"`{cert_key}` and `{key_key}` go together")
    cert_path, key_path = resolve(base, certificate), resolve(base, private_key)
    _readable(cert_key, cert_path)
    _readable(key_key, key_path)
    _not_expired(cert_key, cert_path)
    try:
        context.load_cert_chain(cert_path, key_path, password=_no_password)
    except TlsFileError as exc:
        raise TlsFileError(key_key, f"{key_path}: {exc}") from None
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if reason == "KEY_VALUES_MISMATCH":
            raise TlsFileError(
                key_key, f"{key_path} is not the private key of {cert_path} ({reason})"
            ) from None
        if "PEM" in reason or "CERT" in reason or reason == "NO_START_LINE":
            raise TlsFileError(
                cert_key, f"{cert_path}: not a usable certificate ({reason})"
            ) from None
        raise TlsFileError(key_key, f"{key_path}: not a usable private key ({reason})") from None


def _not_expired(key: str, path: Path) -> None:
    """An expired certificate is refused at load, not at each handshake
    (`openssl x509 -checkend 0`; skipped where the openssl command is missing)."""
    try:
        done = subprocess.run(
            ["openssl", "x509", "-in", str(path), "-noout", "-checkend", "0", "-enddate"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return
    out = done.stdout.decode("ascii", "replace").strip()
    if done.returncode != 0 and "will expire" in out:
        end = out.splitlines()[0].removeprefix("notAfter=")
        raise TlsFileError(key, f"{path}: the certificate expired ({end})")


def _load_ca(context: ssl.SSLContext, base: Path, ca_bundle: str) -> None:
    path = resolve(base, ca_bundle)
    _readable("ca_bundle", path)
    try:
        context.load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        raise TlsFileError(
            "ca_bundle", f"{path}: no usable CA certificate ({exc.reason})"
        ) from None


def _new_context(purpose: int, tls: TlsConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(purpose)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.options |= ssl.OP_NO_COMPRESSION  # CRIME
    return context


def server_context(tls: TlsConfig, base: Path) -> ssl.SSLContext:
    """The listener's context; raises TlsFileError naming the setting at fault."""
    context = _new_context(ssl.PROTOCOL_TLS_SERVER, tls)
    _load_chain(context, base, tls.certificate, tls.private_key)
    if tls.ca_bundle:
        _load_ca(context, base, tls.ca_bundle)
    if tls.client_certificates != "none":
        if not tls.ca_bundle:
            raise TlsFileError(
                "client_certificates",
                f"`{tls.client_certificates}` needs `ca_bundle` to check them against",
            )
        required = tls.client_certificates == "required"
        context.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
    return context


def client_context(
    tls: TlsConfig,
    base: Path,
    certificate: str = "",
    private_key: str = "",
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A context for connections the node opens: the server's certificate must verify
    (against `ca_bundle`, else the system's CAs) and, with `check_hostname`, name the host
    connected to; `certificate`/`private_key` (a trunk's) are presented when asked for.
    Raises TlsFileError (a trunk's own files are named `tls_certificate` …)."""
    context = _new_context(ssl.PROTOCOL_TLS_CLIENT, tls)
    context.check_hostname = check_hostname
    if tls.ca_bundle:
        _load_ca(context, base, tls.ca_bundle)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if certificate or private_key:
        _load_chain(context, base, certificate, private_key, prefix="tls_")
    return context


def check_tls(
    tls: TlsConfig, base: Path, error: Callable[[str, str], None], has_listen_errors: bool
) -> None:
    """Report (through `error(key, message)`) what keeps the `tls` section from working."""
    if tls.enabled and not has_listen_errors:
        try:
            server_context(tls, base)
        except TlsFileError as exc:
            error(exc.key, str(exc))
        return
    if tls.client_certificates != "none" and not tls.enabled:
        error("client_certificates", "is set but `listen` is empty: nothing asks for them")
    if tls.ca_bundle:
        try:
            client_context(tls, base)
        except TlsFileError as exc:
            error(exc.key, str(exc))
