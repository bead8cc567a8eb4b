"""The node's SIP core without sockets: bytes and time in, datagrams and timers out.

`Switch` parses what the transports deliver, refuses what must be refused (malformed → 400,
unknown method → 501, unknown trunk source → 403, floods → dropped or 503), feeds the
transaction layer, and hands transaction events to the registrar and the B2BUA. The asyncio
node drains `outbox` after every call and arms one timer at `get_timer()`.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable
from typing import Any

from acd import Acd, AgentSpec, QueueSpec
from ivr.app import IvrApp
from ivr.resolver import PromptError, PromptResolver
from media import MediaEngine, PassThroughMedia
from softswitch.agent_messages import AgentMessages
from softswitch.agent_requests import AgentRequests
from softswitch.call.app import Application
from softswitch.call.blocked import BlockedApp
from softswitch.call.bus import EventBus
from softswitch.call.control import CallControl
from softswitch.call.dialout import DialOutApp
from softswitch.call.events import AuthAlert
from softswitch.call.phone_apps import OutboundApp, PhoneCallError, phone_app
from softswitch.call.queue_app import QueueApp, survey_flow
from softswitch.call.restart import RestartByes, SavedDialog
from softswitch.call.session import Session
from softswitch.call.sipcodec import ALLOW, same_contact, take_sdp_part, uri_user
from softswitch.cdr import CdrWriter
from softswitch.config import Config, Trunk
from softswitch.contact_monitor import ContactMonitor
from softswitch.dialplan import normalize
from softswitch.node_calls import NodeCalls
from softswitch.registrar import AgentReachability, Registrar
from softswitch.sip.auth import DigestServer, ha1
from softswitch.sip.build import make_response, new_tag
from softswitch.sip.errors import SipParseError
from softswitch.sip.location import Binding, LocationService
from softswitch.sip.message import (
    REGISTERED_METHODS,
    Request,
    Response,
    parse_message,
    parse_name_addr,
)
from softswitch.sip.ratelimit import FailureTracker, RateLimiter
from softswitch.sip.transaction import (
    AckReceived,
    AckTimeout,
    RequestReceived,
    ResponseReceived,
    SendMessage,
    Target,
    Timers,
    TransactionLayer,
    TransactionTimeout,
    TransportError,
)
from softswitch.trunk_monitor import TrunkMonitor
from softswitch.uas_checks import (
    AOR_SCHEMES,
    bare_cookie,
    content_refusal,
    first_values,
    srtp_refusal,
    unsupported_tags,
)

log = logging.getLogger("hotline.sip")

# Methods this node knows (SIP-1): every method registered for SIP; others get 501.
KNOWN_METHODS = REGISTERED_METHODS
# Option tags we support in Require (RFC 3261 §8.2.2.3); none yet.
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset({"100rel", "timer"})
# A REGISTER may also require Path (RFC 3327 §5.2: an edge proxy that needs it says so).
REGISTER_EXTENSIONS: frozenset[str] = SUPPORTED_EXTENSIONS | {"path"}
# Request-URI schemes the node serves (RFC 3261 §8.2.2.1); others get 416.
SERVED_SCHEMES = frozenset(("sip", "sips", "tel"))


def acd_specs(config: Config) -> tuple[list[QueueSpec], list[AgentSpec]]:
    queues = [
        QueueSpec(
            q.name,
            q.strategy,
            float(q.ring_timeout),
            float(q.max_wait),
            float(q.wrap_up),
            float(q.retry),
            dict(q.skills),
            float(q.region_wait),
            float(q.sticky_wait),
            q.max_callers,
            q.when_empty == "leave",
            q.lock_after,
            float(q.busy_alert),
            float(q.hold_alert),
        )
        for q in config.queues
    ]
    agents = [AgentSpec(a.id, tuple(a.queues), dict(a.skills), a.region) for a in config.agents]
    return queues, agents


class CallServices:
    """What the node lends to calls beyond SIP and media, each optional (pure tests run
    without): the prompt library, the blacklist, where voicemail goes, and the clock of
    working hours (`clock_offset`: added to the wall clock for `time` nodes only, so a demo
    or a test can pin office hours without touching CDR times)."""

    def __init__(
        self,
        prompts: PromptResolver | None = None,
        blacklist: Any = None,
        voicemail_path: Callable[[str, str], str] | None = None,
        clock_offset: float = 0.0,
    ) -> None:
        self.prompts: PromptResolver = prompts or _NoPrompts()
        self.blacklist = blacklist  # .blocked(number, epoch) -> entry | None
        self.voicemail_path = voicemail_path or (
            lambda mailbox, call_id: f"voicemail/{mailbox}/{call_id}.wav"
        )
        self.clock_offset = clock_offset


class _NoPrompts:
    def items(self, ref: Any, variables: Any) -> tuple:
        raise PromptError("no prompt library on this node")


class Switch(AgentRequests, AgentMessages, NodeCalls):
    """Everything of one node between the sockets and the CDR store."""

    def __init__(
        self,
        config: Config,
        cdr: Any,
        sent_by: dict[str, str],
        media: MediaEngine | None = None,
        wall_offset: float = 0.0,
        secret: bytes | None = None,
        services: CallServices | None = None,
    ) -> None:
        self.services = services or CallServices()
        self.config = config
        # Source host -> its trunk (None: no trunk's ACL holds it); emptied on reload.
        self._trunk_sources: dict[str, Trunk | None] = {}
        node = config.node
        self.max_size = node.max_message_size
        self.sent_by = sent_by
        self.txn = TransactionLayer(
            sent_by,
            Timers(node.t1, node.t2, node.t4),
            max_server_per_source=config.limits.max_transactions_per_source,
            limit_exempt=self.is_trunk_source,
            max_server_total=config.limits.max_server_transactions,
            trusted=self.is_trusted_source,
        )
        # Hosts phones registered from -> when the last of those registrations runs out.
        self._phone_hosts: dict[str, float] = {}
        self._now = 0.0
        self._refused_log_at = 0.0  # strangers' INVITEs: one log line per minute, counted
        self.location = LocationService(
            config.registrar.min_expires,
            config.registrar.max_expires,
            config.registrar.default_expires,
        )
        auth = config.auth
        self.digest = DigestServer(
            secret or secrets.token_bytes(32), node.realm, auth.algorithms, auth.nonce_lifetime
        )
        self.failures = FailureTracker(
            auth.max_failures, auth.failure_window, auth.ban_seconds,
            max_ban_seconds=auth.max_ban_seconds, ban_memory=auth.ban_memory,
            user_max_failures=auth.user_max_failures,
        )  # fmt: skip
        rate = config.limits.requests_per_second_per_source
        self.limiter = RateLimiter(rate, burst=max(rate * 2, 10))
        self.registrar = Registrar(config, self.digest, self.location, self.failures)
        queues, agents = acd_specs(config)
        self.acd = Acd(queues, agents)
        self.bus = EventBus()
        if cdr is not None:
            writer = CdrWriter(cdr)
            for kind, write in writer.handlers.items():  # straight to each type's writer
                self.bus.subscribe(write, (kind,))
        self.control = CallControl(
            self.txn,
            self.acd,
            self.location,
            self.bus,
            media or PassThroughMedia(),
            self.contact_for,
            node.realm,
            wall_offset,
            cleanup_delay=64 * node.t1 + 8,
            direct_media=self._direct_media,
            node_id=node.id,
        )
        self.control.flow_factory = self._flow_app
        self.trunks = TrunkMonitor(self.txn, self.bus, self.contact_for, self.control.wall)
        self.trunks.configure(config, 0.0)
        self.phones = ContactMonitor(self.txn, self.location, self.contact_for)
        self.phones.configure(config.registrar.keepalive)
        self.control.peer_order = self.trunks.order
        self.control.peer_failed = self.trunks.call_failed
        self._cdr = cdr
        if cdr is not None:
            self.control.last_agent = cdr.last_agent
        self.control.prompts = self.services.prompts
        self.counters = {
            "malformed": 0, "rate_limited": 0, "forbidden": 0, "not_found": 0, "blocked": 0,
        }  # fmt: skip
        self._messages: dict[tuple, tuple] = {}  # MESSAGE sent on -> the sender's transaction
        self.restart_byes = RestartByes()  # BYEs to the calls a crash left (send_restart_byes)

    def is_trusted_source(self, host: str) -> bool:
        """A trunk, or the address of a phone registered now: first to be served when the
        node is loaded (SIP-8)."""
        return self._phone_hosts.get(host, 0.0) > self._now or self.is_trunk_source(host)

    def is_trunk_source(self, host: str) -> bool:
        """Whether `host` is inside a trunk's ACL (asked for every request)."""
        return self.trunk_for_source(host) is not None

    def trunk_for_source(self, host: str) -> Trunk | None:
        """The trunk whose ACL holds `host` (cached per host and configuration)."""
        try:
            return self._trunk_sources[host]
        except KeyError:
            if len(self._trunk_sources) > 4096:
                self._trunk_sources.clear()
            trunk = self._trunk_sources[host] = self.config.trunk_for_source(host)
            return trunk

    @property
    def outbox(self) -> list[SendMessage]:
        return self.txn.outbox

    def contact_for(self, target: Target, sips: bool = True) -> str:
        """Our Contact URI for a dialog with `target` (same transport and address family).

        Over TLS, for a SIPS dialog (`sips`, see sipcodec.sips_dialog) it is a `sips:` URI
        on the TLS port, as RFC 3261 §12.1.1/§12.1.2 require when the dialog's request was
        sips:; for a dialog whose request was sip: (a phone that registered
        `sip:…;transport=tls`) it is `sip:…;transport=tls`, which every phone can send its
        in-dialog requests to (baresip 1.0 sends nothing to a sips: target)."""
        hostport = self.txn.local_address(target)
        transport = target.transport
        if transport == "TLS" and sips:
            return f"sips:hotline@{hostport}"
        suffix = "" if transport == "UDP" else f";transport={transport.lower()}"
        return f"sip:hotline@{hostport}{suffix}"

    def _direct_media(self, trunk: str, agent_id: str) -> bool:
        """Whether a call between `trunk` and `agent_id` keeps RTP off the node."""
        found = next((t for t in self.config.trunks if t.name == trunk), None)
        agent = self.config.agent(agent_id)
        return bool((found and found.direct_media) or (agent and agent.direct_media))

    def media_event(self, event: Any, now: float) -> None:
        """An event of the RTP engine (RTP timeout, DTMF …), on the event loop."""
        self.control.on_media_event(event, now)

    # --- input ---------------------------------------------------------------------------
    def receive(self, data: bytes, source: Target, now: float) -> None:
        """One datagram or framed stream message from `source`."""
        self._now = now
        # SIP-8 flood limits apply to phones and strangers; a trunk carries every caller.
        trunk = self.is_trunk_source(source.host)
        if not trunk and not self.limiter.allow(source.host, now):
            self.counters["rate_limited"] += 1
            return
        try:
            message = parse_message(data, self.max_size)
        except SipParseError as exc:
            self.counters["malformed"] += 1
            self._reject_malformed(exc, source)
            return
        if message.body:
            take_sdp_part(message)  # SIP-I: SDP beside ISUP in multipart/mixed
        if isinstance(message, Response):
            self._dispatch(self.txn.receive_response(message, now), now)
            return
        if message.method not in KNOWN_METHODS:
            # RFC 3261 §8.2.1: 501 for methods we do not know; an unknown ACK-like never.
            self._reply_stateless(
                message, source, make_response(message, 501, extra=[("allow", ALLOW)])
            )
            return
        if (
            message.method == "INVITE"
            and not trunk
            and not self._in_dialog_shape(message)
            and self._phone_hosts.get(source.host, 0.0) <= now
        ):
            self._refuse_stranger(message, source, now)
            return
        if bare_cookie(message):
            # RFC 4475 §3.2.1: the cookie with no identifier names no transaction (keyed by
            # it, every such request of a host would be the first one's retransmission);
            # refused statelessly, as the RFC prefers. An ACK is never answered.
            self.counters["malformed"] += 1
            if message.method != "ACK":
                reason = "Bad Request (branch without transaction identifier)"
                self._reply_stateless(message, source, make_response(message, 400, reason))
            return
        try:
            events = self.txn.receive_request(message, source, now)
        except SipParseError as exc:
            self.counters["malformed"] += 1
            self._reject_malformed(exc, source)
            return
        self._dispatch(events, now)

    @staticmethod
    def _in_dialog_shape(request: Request) -> bool:
        try:
            return request.to.tag is not None
        except SipParseError:
            return False  # the transaction layer answers 400 for it

    def _refuse_stranger(self, request: Request, source: Target, now: float) -> None:
        """A new call from outside every trunk's ACL: 403, statelessly (SIP-8).

        A 403 kept in a transaction is sent again about ten times until the ACK comes: under a
        flood (or with spoofed sources, a reflection) that is ten packets out per packet in.
        Without one, each INVITE (a retransmission too) gets exactly one 403 and its ACK is
        dropped as a stray."""
        self.counters["forbidden"] += 1
        if now >= self._refused_log_at:
            self._refused_log_at = now + 60.0
            log.warning(
                "INVITE from unknown source %s:%d refused (403); %d refused so far, "
                "logged at most once a minute",
                source.host, source.port, self.counters["forbidden"],
            )  # fmt: skip
        try:
            self._reply_stateless(request, source, make_response(request, 403, to_tag=new_tag()))
        except SipParseError:
            return  # no usable Via: nowhere to answer

    def _reject_malformed(self, exc: SipParseError, source: Target) -> None:
        """§16.3 / §18: a malformed request gets 400 when it can be addressed; else dropped."""
        log.info("malformed message from %s:%d: %s", source.host, source.port, exc)
        partial = exc.partial
        if not exc.is_request or not isinstance(partial, Request) or partial.method == "ACK":
            return
        try:
            reason = f"Bad Request ({exc})"[:120].replace("\r", " ").replace("\n", " ")
            partial = first_values(partial)  # RFC 4475 §3.3.8: one From, To, Call-ID, CSeq
            response = make_response(partial, exc.status, reason if exc.status == 400 else "")
            self._reply_stateless(partial, source, response)
        except SipParseError:
            return  # even the Via is unusable: nowhere to answer

    def _reply_stateless(self, request: Request, source: Target, response: Response) -> None:
        via = request.top_via
        port = (
            source.port
            if (source.transport != "UDP" or "rport" in via.params)
            else (via.port or 5060)
        )
        self.txn.outbox.append(
            SendMessage(response.to_bytes(), Target(source.transport, source.host, port))
        )

    def _dispatch(self, events: list, now: float) -> None:
        b2bua = self.control
        for ev in events:
            if self.restart_byes.pending and self.restart_byes.handle(ev):
                continue
            if isinstance(ev, RequestReceived):
                self._request(ev, now)
            elif isinstance(ev, ResponseReceived):
                if self.trunks.owns(ev.key):
                    self.trunks.on_response(ev.key, ev.response, now)
                elif self.phones.owns(ev.key):
                    self.phones.answered(ev.key, ev.response.status)
                elif self._messages and ev.key in self._messages:
                    self._message_answered(ev.key, ev.response.status, ev.response.reason, now)
                else:
                    b2bua.on_response(ev, now)
            elif isinstance(ev, AckReceived):
                b2bua.on_ack(ev, now)
            elif isinstance(ev, TransactionTimeout | TransportError):
                why = "no answer" if isinstance(ev, TransactionTimeout) else "transport error"
                if self.trunks.owns(ev.key):
                    self.trunks.on_failure(ev.key, why, now)
                elif self.phones.owns(ev.key):
                    gone = self.phones.failed(ev.key, why)
                    if gone is not None:
                        self._reachability(self.registrar.expired([gone]), now)
                elif self._messages and ev.key in self._messages:
                    self._message_answered(ev.key, 408, "Request Timeout", now)
                else:
                    b2bua.on_timeout(ev, now)
            elif isinstance(ev, AckTimeout):
                b2bua.on_ack_timeout(ev, now)

    def _request(self, ev: RequestReceived, now: float) -> None:
        request = ev.request
        method = request.method
        # RFC 3261 §8.2.2.1: a Request-URI scheme we do not serve gets 416, whatever the
        # method (an ACK never comes here). The parser has checked that the URI has a scheme.
        scheme = request.uri.partition(":")[0].lower()
        if scheme not in SERVED_SCHEMES:
            self._respond(ev, make_response(request, 416), now)
            return
        if scheme == "sips" and ev.source.transport != "TLS":
            # RFC 5630 §3.2: a SIPS request travels over TLS on every hop, the last included;
            # the node serves sips: over TLS only (and says which, unlike a bare 416).
            self._respond(ev, make_response(request, 416, "SIPS Only Over TLS"), now)
            return
        if method == "CANCEL":
            self.control.on_cancel(ev, now)
            return
        has_to_tag = request.to.tag is not None
        if has_to_tag:
            if not self.control.in_dialog(ev, now):
                self._respond(ev, make_response(request, 481), now)
            return
        # RFC 3261 §8.2.2.3: an option tag in Require we do not support gets 420, for every
        # method but CANCEL (and ACK). As a UAS the node reads Require only, not
        # Proxy-Require (RFC 4475 §3.3.5).
        unsupported = unsupported_tags(
            request, REGISTER_EXTENSIONS if method == "REGISTER" else SUPPORTED_EXTENSIONS
        )
        if unsupported:
            extra = [("unsupported", ", ".join(unsupported))]
            self._respond(ev, make_response(request, 420, extra=extra), now)
            return
        if method == "REGISTER" and request.to.uri.partition(":")[0].lower() not in AOR_SCHEMES:
            # RFC 3261 §10.2: the AOR in To is a SIP or SIPS URI (RFC 4475 §3.3.4: 400),
            # refused before any challenge, the same for every name (SIP-8).
            self._respond(ev, make_response(request, 400, "Bad Request (To is not a SIP AOR)"), now)
            return
        if method == "REGISTER":
            response, changes = self.registrar.handle(request, ev.source, now)
            if self.registrar.alerts:
                self._auth_alerts(now)
            if response.status == 200:
                self._note_phone_host(ev.source.host, response, now)
            self._respond(ev, response, now)
            self._reachability(changes, now)
        elif method == "OPTIONS":
            self._respond(
                ev,
                make_response(
                    request,
                    200,
                    extra=[
                        ("allow", ALLOW),
                        ("accept", "application/sdp"),
                        ("user-agent", self.config.node.user_agent),
                    ],
                ),
                now,
            )
        elif method == "INVITE":
            self._new_call(ev, now)
        elif method == "MESSAGE":
            self._message(ev, now)
        elif method == "BYE":
            self._respond(ev, make_response(request, 481), now)
        else:
            self._respond(ev, make_response(request, 405, extra=[("allow", ALLOW)]), now)

    def _note_phone_host(self, host: str, ok: Response, now: float) -> None:
        """Remember until when `host` has a registered phone (its 200 lists the bindings)."""
        hosts = self._phone_hosts
        longest = 0
        for contact in ok.headers.get_all("contact"):
            try:
                expires = parse_name_addr(contact).params.get("expires") or "0"
                longest = max(longest, int(expires) if expires.isdigit() else 0)
            except SipParseError:
                continue
        if longest:
            if len(hosts) >= 65536 and host not in hosts:
                for stale in [h for h, until in hosts.items() if until <= now]:
                    del hosts[stale]
                if len(hosts) >= 65536:
                    return  # bounded: a new host is simply not trusted beyond the limit
            hosts[host] = max(hosts.get(host, 0.0), now + longest)

    def _new_call(self, ev: RequestReceived, now: float) -> None:
        request = ev.request
        max_forwards = request.headers.get("max-forwards")
        if max_forwards is not None and int(max_forwards) == 0:
            self._respond(ev, make_response(request, 483), now)
            return
        refused = content_refusal(request)
        if refused is not None:
            self._respond(ev, refused, now)
            return
        agent_id = self._phone_of(request, ev.source, now)
        if agent_id is not None:
            self._phone_call(ev, agent_id, now)
            return
        trunk = self.trunk_for_source(ev.source.host)
        if trunk is None:  # strangers are refused statelessly in `receive`; this is a guard
            self.counters["forbidden"] += 1
            self._respond(ev, make_response(request, 403), now)
            return
        if trunk.digest is not None and not self._trunk_authenticated(ev, trunk, now):
            return
        called = normalize(uri_user(request.uri) or uri_user(request.to.uri), trunk.called_rules)
        calling = normalize(uri_user(request.from_.uri), trunk.calling_rules)
        config = self.config
        result = config.dialplan.route(called, calling)
        if result.respond is not None:
            status = result.respond
            self.counters["not_found"] += status == 404
            log.info("call from %s to %s: dialplan answers %d", calling, called, status)
            self._respond(ev, make_response(request, status, result.reason or ""), now)
            return
        called = result.called or called
        app: Application
        blocked = self._blocked(calling, now)
        needs_anchor = False
        if blocked is not None:
            action = config.blacklist
            self.counters["blocked"] += 1
            log.info("call from %s to %s blocked (blacklist: %s)", calling, called, blocked)
            if action.prompt is None or not self.control.anchors:
                self._respond(ev, make_response(request, action.respond, action.reason or ""), now)
                return
            app, needs_anchor = BlockedApp(self.services.prompts, action.prompt), True
        elif result.queue is not None:
            app = QueueApp(
                self.control.port,
                result.queue,
                survey_flow=survey_flow(config, result.queue),
                prompts=self.services.prompts,
            )
        elif result.flow is not None:
            app, needs_anchor = self._ivr(config, result.flow, None), True
        else:
            assert result.transfer is not None
            app = DialOutApp(result.transfer, result.transfer_trunk)
        self.control.start_call(
            ev, trunk.name, calling, called, config, app, now, route=result.route,
            needs_anchor=needs_anchor,
        )  # fmt: skip

    def _phone_of(self, request: Request, source: Target, now: float) -> str | None:
        """The agent whose registered phone sent `request`: its From user is an agent with a
        binding registered from this very address, port and transport (a carrier shares the
        host of a phone at most, never its registered flow). Through an edge proxy (a
        binding with a Path) the phones and the carrier share the proxy's flow, so the
        request's Contact must also be the phone's registered contact: a carrier's caller
        whose number is an agent id is not taken for that agent's phone."""
        if self._phone_hosts.get(source.host, 0.0) <= now:
            return None  # no phone registered from this host: a carrier's call, unparsed
        try:
            user = uri_user(request.from_.uri)
        except SipParseError:
            return None
        if not user or self.config.agent(user) is None:
            return None
        flow = (source.host, source.port)
        for binding in self.location.lookup(user, now):
            if binding.source != flow or binding.transport != source.transport:
                continue
            if not binding.path or same_contact(request, binding.contact):
                return user
        return None

    def _phone_authorized(self, ev: RequestReceived, agent_id: str, now: float) -> bool:
        """Whether the phone's request proves the agent's password; if not, it is answered
        (407 or 403, with the guessing bans' alerts)."""
        refused = self.registrar.authorize(ev.request, ev.source, agent_id, now)
        if self.registrar.alerts:
            self._auth_alerts(now)
        if refused is not None:
            self._respond(ev, refused, now)
        return refused is None

    def _phone_call(self, ev: RequestReceived, agent_id: str, now: float) -> None:
        """A call from an agent's phone (digest-authenticated like its REGISTER): a feature
        code, another agent's extension, or an external number (SPEC ACD-4, ACD-6, ACD-7)."""
        request = ev.request
        if not self._phone_authorized(ev, agent_id, now):
            return
        config = self.config
        dialled = uri_user(request.uri) or uri_user(request.to.uri)
        try:
            app = phone_app(config, agent_id, dialled, self._callback_open, self.control.port)
        except PhoneCallError as exc:
            log.info("call from agent %s to %s refused: %d %s", agent_id, dialled, exc.status,
                     exc.reason)  # fmt: skip
            self._respond(ev, make_response(request, exc.status, exc.reason), now)
            return
        agent = config.agent(agent_id)
        setting = (agent.media_encryption if agent else None) or config.media.agent_encryption
        refusal = srtp_refusal(request, setting, ev.source.transport)
        if refusal is not None and self.control.anchors:
            log.info("call from agent %s refused: plain RTP where SRTP is required", agent_id)
            self._respond(ev, refusal, now)
            return
        # An outbound call's (or a callback's) called number is the one dialled out.
        called = app.number if isinstance(app, OutboundApp) else dialled
        self.control.start_call(
            ev, "", agent_id, called, config, app, now, route=f"phone:{app.name}",
            variables={"from_agent": agent_id}, needs_anchor=app.needs_anchor,
        )  # fmt: skip

    def _blocked(self, calling: str, now: float) -> Any:
        store = self.services.blacklist
        if store is None or not calling:
            return None
        try:
            return store.blocked(calling, self.control.wall(now))
        except Exception as exc:  # a broken blacklist database must not stop calls
            log.error("blacklist lookup failed, call let through: %s", exc)
            return None

    def _ivr(self, config: Config, flow: str, node: str | None) -> IvrApp:
        services = self.services
        offset = self.control.wall_offset + services.clock_offset
        return IvrApp(
            config.flows, flow, services.prompts, node=node,
            is_open=config.dialplan.is_open, region_of=config.dialplan.region_of,
            wall=lambda now: now + offset, voicemail_path=services.voicemail_path,
            speech=self.control.speech_factory is not None,
        )  # fmt: skip

    def _flow_app(self, session: Session, flow: str, node: str | None) -> Application | None:
        """`RunFlow` of a session (e.g. the survey after an agent call), on the
        configuration the call started with."""
        if flow not in session.config.flows:
            return None
        return self._ivr(session.config, flow, node)

    def _trunk_authenticated(self, ev: RequestReceived, trunk: Trunk, now: float) -> bool:
        """Trunks with `digest` configured must also authenticate (SIP-4); else 407."""
        request = ev.request
        assert trunk.digest is not None
        username, password = trunk.digest.username, trunk.digest.password
        value = request.headers.get("proxy-authorization") or request.headers.get("authorization")
        stale = False
        if value is not None:

            def lookup_ha1(user: str, algorithm: str) -> str | None:
                if user != username:
                    return None
                return ha1(username, self.digest.realm, password, algorithm)

            result = self.digest.verify(value, "INVITE", now, lookup_ha1)
            if result.ok:
                return True
            stale = result.stale
            if not stale:
                self.failures.record_failure(ev.source.host, now)
                log.warning(
                    "trunk %s: INVITE from %s with bad credentials (%s)",
                    trunk.name,
                    ev.source.host,
                    result.reason,
                )
                self._respond(ev, make_response(request, 403), now)
                return False
        challenges = self.digest.challenge(now, stale=stale)
        self._respond(
            ev,
            make_response(request, 407, extra=[("proxy-authenticate", c) for c in challenges]),
            now,
        )
        return False

    def _respond(self, ev: RequestReceived, response: Response, now: float) -> None:
        self.txn.send_response(ev.key, response, now)

    def _auth_alerts(self, now: float) -> None:
        """Bans and guards the registrar decided, for operators (bus, log)."""
        wall = self.control.wall
        for alert in self.registrar.alerts:
            until = wall(alert.until)
            ends = dt.datetime.fromtimestamp(until, dt.UTC).isoformat(timespec="seconds")
            if alert.kind == "source_banned":
                log.warning(
                    "password guessing: %s banned until %s (ban %d; last tried user %r)",
                    alert.source, ends, alert.bans, alert.user,
                )  # fmt: skip
            else:
                log.warning(
                    "password guessing: user %r guarded until %s (last try from %s)",
                    alert.user, ends, alert.source,
                )  # fmt: skip
            self.bus.publish(
                AuthAlert(wall(now), alert.kind, alert.source, alert.user, alert.bans, until)
            )
        self.registrar.alerts.clear()

    def _reachability(self, changes: list[AgentReachability], now: float) -> None:
        for change in changes:
            if change.reachable:
                self.control.acd_input(now, self.acd.agent_available, change.agent_id, now)
            else:
                self.control.acd_input(now, self.acd.agent_unavailable, change.agent_id, now)

    def reload(self, config: Config, now: float) -> list[str]:
        """Swap in a new, already validated configuration (DP-9) without touching calls.

        Dialplan, trunks, agents, queues and limits take effect for new decisions; calls in
        progress keep the queue settings they started with (the ACD keeps each call's spec).
        Returns the settings that differ but need a restart (listen addresses, timers,
        realm, digest algorithms, media ports), so the caller can say so.
        """
        old = self.config
        restart_only = [
            name
            for name, before, after in (
                ("node", old.node, config.node),
                ("auth", old.auth, config.auth),
                ("registrar", old.registrar, config.registrar),
                ("media", old.media, config.media),
                ("tls.listen", old.tls.listen, config.tls.listen),
            )
            if before != after
        ]
        queues, agents = acd_specs(config)
        self.acd.replace_specs(queues, agents)  # raises AcdError: nothing changed then
        self.config = config
        self.registrar.config = config
        self.trunks.configure(config, now)
        self.phones.configure(config.registrar.keepalive)
        self._trunk_sources.clear()
        limits = config.limits
        self.txn.max_server_per_source = limits.max_transactions_per_source
        self.txn.max_server_total = limits.max_server_transactions
        rate = limits.requests_per_second_per_source
        self.limiter = RateLimiter(rate, burst=max(rate * 2, 10))
        # Agents added to a queue whose phones are already registered become available now.
        for agent in config.agents:
            if old.agent(agent.id) is None and self.location.lookup(agent.id, now):
                self.control.acd_input(now, self.acd.agent_available, agent.id, now)
        return restart_only

    def stats(self) -> dict[str, int]:
        """Every counter of the node's layers, flat, for logs and (later) the API."""
        out: dict[str, int] = {}
        for prefix, counters in (
            ("sip", self.counters),
            ("txn", self.txn.counters),
            ("registrar", self.registrar.counters),
            ("calls", self.control.counters),
            ("trunks", self.trunks.counters),
            ("phones", self.phones.counters),
        ):
            for name, value in counters.items():
                out[f"{prefix}.{name}"] = int(value)
        out["txn.live"] = len(self.txn)
        out["calls.live"] = len(self.control.sessions)
        out["registrar.bindings"] = self.location.binding_count
        return out

    # --- time ------------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        timers = [
            t
            for t in (
                self.txn.get_timer(),
                self.control.get_timer(),
                self.location.get_timer(),
                self.callback_timer(),
                self.trunks.get_timer(),
                self.phones.get_timer(),
            )
            if t is not None
        ]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        self._now = now
        self._dispatch(self.txn.handle_timer(now), now)
        self.control.handle_timer(now)
        self._reachability(self.registrar.expired(self.location.handle_timer(now)), now)
        self.dial_due_callbacks(now)
        self.trunks.handle_timer(now)
        self.phones.handle_timer(now)

    def restore_bindings(self, bindings: list[Binding], now: float) -> None:
        """At start, before any message: the bindings saved before a restart; their agents
        are available to the ACD at once, and their phones' hosts are trusted (SIP-8) and
        may place calls, as after a REGISTER."""
        for binding in bindings:
            host = binding.source[0]
            if binding.expires_at > now:
                until = max(self._phone_hosts.get(host, 0.0), binding.expires_at)
                self._phone_hosts[host] = until
        self._reachability(self.registrar.restore(bindings, now), now)

    def send_restart_byes(self, dialogs: list[SavedDialog], now: float) -> None:
        """At start: a BYE to each party of a call the last run left up (call/restart.py)."""
        self.restart_byes.send(self.txn, dialogs, now)

    def transport_failed(self, target: Target, now: float) -> None:
        """A connection to `target` could not be made: fail what waits on it at once."""
        self._dispatch(self.txn.transport_failed(target, now), now)

    def shutdown(self, now: float) -> None:
        self.control.shutdown(now)
