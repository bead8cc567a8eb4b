"""SIP and SDP details call control needs, kept out of its state logic: where a phone is
reached, what identifies a caller's INVITE, DTMF in SIP INFO, an SDP offer's usability."""

from __future__ import annotations

from softswitch.sdp import SdpError, parse_sdp
from softswitch.sip.dialog import Dialog
from softswitch.sip.errors import SipParseError
from softswitch.sip.location import Binding
from softswitch.sip.message import (
    Headers,
    Request,
    Response,
    parse_name_addr,
    parse_uri,
    split_list,
)
from softswitch.sip.transaction import State as TxnState
from softswitch.sip.transaction import Target, bare_host

# Headers describing the caller that travel from the trunk leg to the agent leg (SIP-4).
IDENTITY_HEADERS = ("p-asserted-identity", "privacy", "diversion", "history-info")
# Server transaction states in which a final response is still owed (RFC 3261 §17.2).
PENDING = (TxnState.TRYING, TxnState.PROCEEDING)
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, REFER, NOTIFY, MESSAGE, REGISTER"
DTMF_KEYS = frozenset("0123456789*#ABCD")
G711 = (0, 8)
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


def origin_of(invite: Request) -> tuple[str, str | None, int]:
    """What identifies a caller's INVITE across paths: Call-ID, From tag, CSeq number."""
    return (invite.call_id, invite.from_.tag, invite.cseq[0])


def hop_target(dialog: Dialog, transport: str) -> Target:
    host, port, hop_transport = dialog.next_hop()
    hop_transport = hop_transport or transport
    # RFC 3261 §19.1.2: 5061 is the default port of TLS (sips:), 5060 of the others.
    return Target(
        hop_transport, bare_host(host), port or (5061 if hop_transport == "TLS" else 5060)
    )


def dtmf_from_info(request: Request) -> str | None:
    """The key of a SIP INFO carrying DTMF (application/dtmf-relay `Signal=5`, or
    application/dtmf `5`), as desk phones and pjsip send it; None for other INFO bodies."""
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    text = request.body.decode("utf-8", "replace").strip()
    if content_type == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                value = value.strip()
                return value if value in DTMF_KEYS else None
        return None
    if content_type == "application/dtmf":
        return text if text in DTMF_KEYS else None
    return None


def phone_target(contact: str, source: tuple[str, int], transport: str) -> Target:
    """Where to send requests for a registered phone.

    Over TCP and TLS the phone's own connection is reused (its listening port may be closed
    to us). A `sips:` Contact always goes over TLS.
    Over UDP the Contact is used when its host is the address the REGISTER came from; when
    the two differ the phone sits behind NAT and its private Contact is unreachable, so the
    request goes to the source address of the registration (the NAT binding it keeps open).
    """
    source_host = bare_host(source[0])
    if transport != "TLS" and contact[:5].lower() == "sips:":
        return _sips_contact(contact, source_host)
    if transport != "UDP":
        return Target(transport, source_host, source[1])
    try:
        uri = parse_uri(contact)
    except SipParseError:
        return Target(transport, source_host, source[1])
    host = bare_host(uri.host)
    if uri.is_sip and host == source_host:
        return Target(transport, host, uri.port or 5060)
    return Target(transport, source_host, source[1])


def binding_route(binding: Binding) -> tuple[Target, list[str]]:
    """Where to send requests for a registered phone, and the Route headers they carry.

    A binding without Path is reached as `phone_target` says, with no Route. One registered
    through proxies (RFC 3327 §5.4) is reached through them: the request goes to the first
    Path URI and carries the whole path vector as preloaded Route headers, the Contact
    staying its Request-URI. The hop's transport is its URI's `transport` parameter (TLS for
    sips:), else the one the REGISTER came over; its port, the URI's or the default."""
    if not binding.path:
        return phone_target(binding.contact, binding.source, binding.transport), []
    uri = parse_uri(parse_name_addr(binding.path[0]).uri)
    transport = "TLS" if uri.scheme == "sips" else binding.transport
    if uri.params.get("transport"):
        transport = (uri.params["transport"] or "").upper()
    port = uri.port or (5061 if transport == "TLS" else 5060)
    return Target(transport, bare_host(uri.host), port), list(binding.path)


def _sips_contact(contact: str, source_host: str) -> Target:
    """A sips: Contact is never reached over UDP or TCP (RFC 5630 §3.2): over TLS to the
    Contact's own address (the registrar refuses such a Contact on another transport; this
    covers bindings saved before it did)."""
    try:
        uri = parse_uri(contact)
    except SipParseError:
        return Target("TLS", source_host, 5061)
    return Target("TLS", bare_host(uri.host or source_host), uri.port or 5061)


def uri_user(uri: str) -> str:
    """The user part of a sip: URI, or '' (tel: URIs give their number)."""
    parsed = parse_uri(uri)
    if parsed.is_sip:
        return parsed.user or ""
    if parsed.scheme == "tel":
        return parsed.opaque.split(";")[0]
    return ""


def sdp_direction(body: bytes) -> str:
    """The audio stream's direction attribute (session level as fallback; a 0.0.0.0
    connection address is the old way to say inactive, RFC 3264 §8.4)."""
    try:
        sdp = parse_sdp(body)
        audio = sdp.audio()
        if audio is None:
            return "inactive"
        if sdp.address_of(audio) in ("0.0.0.0", "::"):
            return "inactive"
    except (SdpError, ValueError):
        return "sendrecv"
    if audio.direction is not None:
        return audio.direction
    session = [v for k, v in sdp.session if k == "a" and v in DIRECTIONS]
    return session[0] if session else "sendrecv"


def take_sdp_part(message: Request | Response) -> bool:
    """A `multipart/mixed` body (SIP-I trunks send SDP beside `application/isup`, RFC 3204)
    is replaced by its SDP part, with Content-Type `application/sdp`; True if it was.

    The other parts are dropped: the node terminates the call, and nothing it talks to
    downstream reads ISUP. A multipart body without an SDP part, or one that cannot be
    split, is left as it is (the offer is then refused as SDP the node cannot read)."""
    content_type = message.headers.get("content-type") or ""
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/mixed" or not message.body:
        return False
    boundary = ""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        return False
    delimiter = b"--" + boundary.encode("utf-8", "replace")
    for part in message.body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break  # the close delimiter: no more parts
        head, sep, content = part.lstrip(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            head, sep, content = part.lstrip(b"\n").partition(b"\n\n")
        if not sep:
            continue
        headers = head.decode("utf-8", "replace").lower().replace("\r", "").split("\n")
        types = [
            h.partition(":")[2].split(";")[0].strip()
            for h in headers
            if h.startswith("content-type:")
        ]
        if types == ["application/sdp"]:
            # The CRLF before the next delimiter belongs to the delimiter (RFC 2046 §5.1.1).
            if content.endswith(b"\r\n"):
                content = content[:-2]
            elif content.endswith(b"\n"):
                content = content[:-1]
            message.body = content
            message.headers.set("content-type", "application/sdp")
            return True
    return False


def redirect_agent(
    response: Response, own_hosts: set[str], agents: set[str]
) -> tuple[str | None, str]:
    """Where a phone's 3xx sends the call, when the node may follow it: the agent named by
    its first Contact if that is a sip:/sips: URI of the node's own (one of `own_hosts`)
    and its user one of `agents`; else None, with why not (for the log). A redirect never
    leads out of the node: an outside address is a refusal like any other."""
    value = response.headers.get("contact")
    if not value:
        return None, "no Contact"
    try:
        uri = parse_uri(parse_name_addr(split_list(value)[0]).uri)
    except SipParseError:
        return None, f"unreadable Contact {value!r}"
    if not uri.is_sip or not uri.user:
        return None, f"{uri.scheme}: is no address of the node"
    if bare_host(uri.host or "").lower() not in own_hosts:
        return None, f"{uri.host} is outside the node"
    if uri.user not in agents:
        return None, f"{uri.user} is no agent of the node"
    return uri.user, ""


def next_invite_headers(invite: Request) -> Headers:
    """The headers of `invite` sent anew (another route, a larger Session-Expires): a new
    request in the same dialog attempt, its Via left to the transaction layer and its CSeq
    the next one (RFC 3261 §8.1.3.4)."""
    headers = invite.headers.copy()
    headers.pop_first("via")
    headers.set("cseq", f"{invite.cseq[0] + 1} INVITE")
    return headers


def sips_dialog(request: Request | None) -> bool:
    """Whether the dialog `request` starts (received or sent) is a SIPS one: its
    Request-URI, its top Route (sent, RFC 3261 §12.1.2) or top Record-Route (received,
    §12.1.1) is a `sips:` URI. Only then must the node's Contact be `sips:`; a phone that
    registered `sip:…;transport=tls` gets a `sip:` Contact with `;transport=tls`, which is
    all some of them (baresip 1.0) can send in-dialog requests to. None (no request yet)
    counts as SIPS, the stricter form."""
    if request is None or is_sips(request.uri):
        return True
    for name in ("route", "record-route"):
        first = request.headers.get(name)
        if first and is_sips(split_list(first)[0]):
            return True
    return False


def is_sips(value: str) -> bool:
    """Whether a URI or name-addr (`<sips:…;lr>`) is a `sips:` one."""
    return value.strip().lstrip("<").lower().startswith("sips:")


def same_contact(request: Request, registered: str) -> bool:
    """Whether the request's Contact names the host and port of the `registered` one."""
    contact = request.headers.get("contact")
    if not contact:
        return False
    try:
        sent, bound = parse_uri(parse_name_addr(contact).uri), parse_uri(registered)
    except SipParseError:
        return False
    return (sent.host or "").lower() == (bound.host or "").lower() and sent.port == bound.port
