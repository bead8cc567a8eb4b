"""Dialogs (RFC 3261 §12): identifiers, route sets, CSeq rules, in-dialog request building.

A `Dialog` is one side of a B2BUA call leg. It is created from the dialog-creating request and
response, remembers the route set and remote target, numbers our requests, and checks the
remote CSeq of incoming in-dialog requests (§12.2.2: lower than the last one → 500).
"""

from __future__ import annotations

import msgspec

from .errors import DialogError
from .message import Headers, NameAddr, Request, Response, parse_name_addr, parse_uri

DIALOG_ID = tuple[str, str, str]  # (Call-ID, local tag, remote tag)


class DialogState(msgspec.Struct, frozen=True):
    """What our side of a dialog needs to send requests in it later, from another process
    (the node's BYE after a restart): identifiers, URIs, route set and our last CSeq number.
    Only our side's numbering is kept: §12.2.2's check of the remote CSeq starts afresh."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: list[str]
    local_cseq: int


class Dialog:
    """State of one dialog as seen by one UA (UAS or UAC)."""

    __slots__ = (
        "call_id",
        "local_tag",
        "remote_tag",
        "local_uri",
        "remote_uri",
        "remote_target",
        "route_set",
        "local_cseq",
        "remote_cseq",
        "secure",
        "confirmed",
    )

    def __init__(
        self,
        call_id: str,
        local_tag: str,
        remote_tag: str,
        local_uri: str,
        remote_uri: str,
        remote_target: str,
        route_set: list[str],
        local_cseq: int,
        remote_cseq: int | None,
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_uri = local_uri  # full From/To header value without tag
        self.remote_uri = remote_uri
        self.remote_target = remote_target
        self.route_set = route_set
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq
        self.secure = False
        self.confirmed = False

    @property
    def id(self) -> DIALOG_ID:
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uas(cls, request: Request, local_tag: str) -> Dialog:
        """§12.1.1: the UAS side, from the dialog-creating request."""
        from_ = request.from_
        to = request.to
        if from_.tag is None:
            raise DialogError("request without From tag cannot create a dialog")
        contacts = request.headers.get_all("contact")
        if not contacts:
            raise DialogError("dialog-creating request without Contact")
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=from_.tag,
            local_uri=_without_tag(to),
            remote_uri=_without_tag(from_),
            remote_target=parse_name_addr(contacts[0]).uri,
            route_set=request.headers.get_all("record-route"),
            local_cseq=0,
            remote_cseq=request.cseq[0],
        )

    @classmethod
    def as_uac(cls, request: Request, response: Response) -> Dialog:
        """§12.1.2: the UAC side, from our request and a dialog-creating response."""
        to = response.to
        if to.tag is None:
            raise DialogError("response without To tag cannot create a dialog")
        contacts = response.headers.get_all("contact")
        if not contacts:
            raise DialogError("dialog-creating response without Contact")
        return cls(
            call_id=request.call_id,
            local_tag=request.from_.tag or "",
            remote_tag=to.tag,
            local_uri=_without_tag(request.from_),
            remote_uri=_without_tag(to),
            remote_target=parse_name_addr(contacts[0]).uri,
            route_set=list(reversed(response.headers.get_all("record-route"))),
            local_cseq=request.cseq[0],
            remote_cseq=None,
        )

    def state(self) -> DialogState:
        """The state to save (see `DialogState`); `from_state` makes the dialog again."""
        return DialogState(
            self.call_id,
            self.local_tag,
            self.remote_tag,
            self.local_uri,
            self.remote_uri,
            self.remote_target,
            list(self.route_set),
            self.local_cseq,
        )

    @classmethod
    def from_state(cls, state: DialogState) -> Dialog:
        """A confirmed dialog from saved state, numbering our requests after its CSeq."""
        dialog = cls(**msgspec.structs.asdict(state), remote_cseq=None)
        dialog.route_set = list(state.route_set)  # the state stays as it was saved
        dialog.confirmed = True
        return dialog

    def check_remote_cseq(self, request: Request) -> None:
        """§12.2.2: a lower CSeq than the last one is out of order (answer 500)."""
        number = request.cseq[0]
        if request.method in ("ACK", "CANCEL"):
            return
        if self.remote_cseq is not None and number < self.remote_cseq:
            raise DialogError(f"CSeq {number} lower than {self.remote_cseq}")
        self.remote_cseq = number

    def update_target(self, message: Request | Response) -> None:
        """A target refresh (re-INVITE, UPDATE or its 2xx) may carry a new Contact (§12.2)."""
        contacts = message.headers.get_all("contact")
        if contacts:
            self.remote_target = parse_name_addr(contacts[0]).uri

    def new_request(
        self, method: str, body: bytes = b"", extra: list[tuple[str, str]] | None = None
    ) -> Request:
        """An in-dialog request per §12.2.1.1 (Via is added by the transaction layer)."""
        if method == "ACK":
            raise DialogError("use ack() for ACK")
        self.local_cseq += 1
        return self._request(method, self.local_cseq, body, extra)

    def ack(self, cseq: int, body: bytes = b"") -> Request:
        """ACK for a 2xx to our INVITE with the INVITE's CSeq number (§13.2.2.4)."""
        return self._request("ACK", cseq, body, None)

    def _request(
        self, method: str, cseq: int, body: bytes, extra: list[tuple[str, str]] | None
    ) -> Request:
        headers = Headers()
        uri = self.remote_target
        routes = list(self.route_set)
        if routes and ";lr" not in parse_name_addr(routes[0]).uri:
            # strict router (§12.2.1.1): the first route becomes the Request-URI
            uri = parse_name_addr(routes[0]).uri
            routes = routes[1:] + [f"<{self.remote_target}>"]
        for route in routes:
            headers.add("route", route)
        headers.add("max-forwards", "70")
        headers.add("from", f"{self.local_uri};tag={self.local_tag}")
        headers.add("to", f"{self.remote_uri};tag={self.remote_tag}")
        headers.add("call-id", self.call_id)
        headers.add("cseq", f"{cseq} {method}")
        if extra:
            for name, value in extra:
                headers.add(name, value)
        return Request(method, uri, headers, body)

    def next_hop(self) -> tuple[str, int | None, str]:
        """(host, port, transport) of the next hop for in-dialog requests (§8.1.2)."""
        uri_text = parse_name_addr(self.route_set[0]).uri if self.route_set else self.remote_target
        uri = parse_uri(uri_text)
        transport = (uri.params.get("transport") or "udp").upper()
        if uri.scheme == "sips":
            transport = "TLS"
        return uri.host, uri.port, transport


def _without_tag(addr: NameAddr) -> str:
    params = {k: v for k, v in addr.params.items() if k != "tag"}
    return str(NameAddr(addr.display, addr.uri, params))
