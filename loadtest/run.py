"""`hotline loadtest run`: replay a trace against a SIP target with emulated callers and agents.

One asyncio process holds everything, so the agent side can tell a caller that an agent
answered it (`loadtest.agents.Correlator`):

- two UDP sockets on `local_ip` (the callers' "trunk" and the agents' phones), each with its
  own sans-IO `TransactionLayer` of `softswitch.sip` and one timer for it;
- one `media.engine.RtpEngine` (the node's C engine, used as an endpoint): every caller and
  every agent call is one leg with the engine's own offer/answer (PCMU/PCMA +
  telephone-event 101), silence played while up so the node's RTP timeout never fires, RFC
  4733 keys with `send_dtmf`, the first RTP packet from the node seen as `FirstPacket`;
- a `Caller` (loadtest.caller) per trace row, started at ``offset_s * time_scale``, and the
  emulated agents, which REGISTER (digest) and answer every INVITE (an `AgentCall`) after
  the answer delay.

SIP over UDP is `loadtest.sip_udp`, the progress display `loadtest.progress`.

Every wait is bounded: the pre-flight OPTIONS (2 s), the registrations (10 s), the run
(`max_seconds`, after which every call is ended), the hang-ups after it (5 s), the
unregistrations (5 s). Sockets and the engine are closed however the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

import msgspec

from loadtest import report as rep
from loadtest.agents import AgentAccount, Correlator, authorization, pick_challenge
from loadtest.caller import Caller, Command, Event, State
from loadtest.progress import Progress
from loadtest.sample import NodeSampler, SampleError
from loadtest.sip_udp import SipSocket, granted_expires, target_of
from loadtest.trace import Trace
from media.engine import MediaError, RtpEngine
from media.events import FirstPacket, MediaEvent, RtpTimeout
from media.items import Silence
from softswitch.sip import message as sipmsg
from softswitch.sip.build import new_request_headers, new_tag
from softswitch.sip.dialog import Dialog
from softswitch.sip.errors import SipError
from softswitch.sip.transaction import (
    AckReceived,
    AckTimeout,
    RequestReceived,
    ResponseReceived,
    Target,
    TransactionTimeout,
    TransportError,
    hostport,
)
from softswitch.sip.transaction import (
    Event as TxnEvent,
)

PREFLIGHT_S = 2.0
REGISTER_S = 10.0
END_GRACE_S = 5.0
REGISTER_PARALLEL = 20
LEAD_S = 0.2  # between the last registration and the first call's start
MAX_SILENCE_MS = 4 * 3600 * 1000
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"


class RunError(Exception):
    """The run could not be done (target silent, registration refused …): one line."""


class RunOptions(msgspec.Struct, frozen=True, kw_only=True):
    target: tuple[str, int]
    time_scale: float = 1.0
    agents: tuple[AgentAccount, ...] = ()
    answer_delay_s: float = 1.0  # trace seconds, scaled like every trace time
    wrap_up_s: float = 0.0  # for the staffing model only
    max_seconds: float = 3600.0
    local_ip: str = "127.0.0.1"
    rtp_ports: tuple[int, int] = (30000, 32767)
    expires: int = 3600
    progress: bool = True
    node_pid: int | None = None  # sample this local process's CPU and memory
    engine: str = "python"  # the callers: the project's own ("python") or SIPp ("sipp")
    generators: int = 1  # SIPp processes (--engine sipp)
    sipp_binary: str = "sipp"
    sipp_dir: str | None = None  # SIPp's files (default: a new temporary directory)
    sipp_rtp: bool = True  # SIPp callers send RTP silence while a call is up


# --- the callers' side -------------------------------------------------------------------------
class CallerLeg:
    """The SIP and media state of one `Caller`."""

    def __init__(self, caller: Caller, leg_id: str) -> None:
        self.caller = caller
        self.leg_id = leg_id
        self.invite: sipmsg.Request | None = None
        self.invite_key: tuple | None = None
        self.answer: sipmsg.Response | None = None
        self.dialog: Dialog | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.media = False


class AgentCall:
    """One INVITE the node sent an emulated agent."""

    def __init__(self, agent_id: str, request: sipmsg.Request, key: tuple, leg_id: str) -> None:
        self.agent_id = agent_id
        self.request = request
        self.key = key
        self.leg_id = leg_id
        self.to_tag = new_tag()
        self.caller: Caller | None = None
        self.party: object | None = None  # what the correlator matched (a Caller here)
        self.answer_timer: asyncio.TimerHandle | None = None
        self.answered = False
        self.over = False
        self.dialog: Dialog | None = None


class Replay:
    """One run: the callers, the agents, the media engine, the two sockets."""

    def __init__(self, trace: Trace, options: RunOptions, progress: Progress) -> None:
        self.trace = trace
        self.options = options
        self.progress = progress
        self.loop = asyncio.get_running_loop()
        self.target = Target("UDP", options.target[0], options.target[1])
        self.callers = [Caller(call, options.time_scale) for call in trace.calls]
        self.legs: dict[str, CallerLeg] = {}  # SIP Call-ID → leg
        self.by_leg_id: dict[str, CallerLeg] = {}
        self.client: dict[tuple, tuple[CallerLeg, str]] = {}  # txn key → (leg, what)
        self.agent_calls: dict[str, AgentCall] = {}  # SIP Call-ID → agent call
        self.correlator = Correlator()
        self.pending: dict[tuple, asyncio.Future[sipmsg.Response | None]] = {}
        self.open = 0
        self.finished = asyncio.Event()
        self.counters = {"media_timeouts": 0, "ring_cancelled": 0, "agent_calls": 0}
        self.queues: set[str] = set()
        self.engine: RtpEngine | None = None
        self.trunk: SipSocket | None = None
        self.phones: SipSocket | None = None
        self.started_at = 0.0
        self.registered: list[AgentAccount] = []
        self.granted = float(options.expires)  # the shortest registration the target granted
        self._leg_numbers = 0
        self.interrupted = False
        self.sampler = NodeSampler(options.node_pid) if options.node_pid else None

    # --- set-up and tear-down -------------------------------------------------------------
    async def setup(self) -> None:
        o = self.options
        try:
            self.engine = RtpEngine(o.local_ip, o.rtp_ports[0], o.rtp_ports[1], rtp_timeout=300)
        except (MediaError, OSError) as exc:
            raise RunError(f"media engine on {o.local_ip}: {exc}") from None
        self.engine.attach(self.loop, self._media_event)
        try:
            self.trunk = await SipSocket.open(self.loop, o.local_ip, self._trunk_event)
            self.phones = await SipSocket.open(self.loop, o.local_ip, self._phone_event)
        except OSError as exc:
            raise RunError(f"cannot bind a SIP socket on {o.local_ip}: {exc}") from None
        if self.sampler is not None:
            try:
                self.sampler.read()
            except SampleError as exc:
                raise RunError(str(exc)) from None
        await self._preflight()
        await self._register_all(o.expires)

    async def drive(self) -> float:
        """Set up, run and close, whatever happens (the progress display too): the run's
        seconds, or `RunError`."""
        try:
            await self.setup()
            return await self.run()
        finally:
            self.progress.close()
            await self.close()

    async def close(self) -> None:
        if self.registered and self.phones is not None:
            with contextlib.suppress(RunError, TimeoutError):
                await asyncio.wait_for(self._register_all(0), END_GRACE_S)
        for sock in (self.trunk, self.phones):
            if sock is not None:
                sock.close()
        if self.engine is not None:
            self.engine.close()

    def _request(self, sock: SipSocket, request: sipmsg.Request) -> asyncio.Future[Any]:
        assert sock.txn is not None
        key = sock.txn.send_request(request, self.target, self.loop.time())
        future: asyncio.Future[sipmsg.Response | None] = self.loop.create_future()
        self.pending[key] = future
        sock.flush()
        return future

    async def _preflight(self) -> None:
        assert self.trunk is not None
        host = self.trunk.address
        target = hostport(*self.options.target)
        headers = new_request_headers("OPTIONS", f"<sip:loadtest@{host}>", f"<sip:{target}>", host)
        future = self._request(self.trunk, sipmsg.Request("OPTIONS", f"sip:{target}", headers))
        try:
            response = await asyncio.wait_for(future, PREFLIGHT_S)
        except TimeoutError:
            response = None
        if response is None:
            raise RunError(f"no SIP response from {target} to OPTIONS within {PREFLIGHT_S:g} s")

    async def _register_all(self, expires: int) -> None:
        accounts = self.options.agents if expires else tuple(self.registered)
        gate = asyncio.Semaphore(REGISTER_PARALLEL)

        async def one(account: AgentAccount) -> None:
            async with gate:
                await self._register(account, expires)

        try:
            await asyncio.wait_for(
                asyncio.gather(*(one(a) for a in accounts)), REGISTER_S if expires else END_GRACE_S
            )
        except TimeoutError:
            raise RunError(
                f"agents did not register within {REGISTER_S:g} s "
                f"({len(self.registered)} of {len(accounts)} did)"
            ) from None
        if not expires:
            self.registered = []

    async def _register(self, account: AgentAccount, expires: int) -> None:
        assert self.phones is not None
        target = hostport(*self.options.target)
        host = self.phones.address
        aor = f"<sip:{account.agent_id}@{self.options.target[0]}>"
        headers = new_request_headers("REGISTER", aor, aor, host)
        headers.add("contact", f"<sip:{account.agent_id}@{host}>")
        headers.add("expires", str(expires))
        uri = f"sip:{target}"
        response = await self._request(self.phones, sipmsg.Request("REGISTER", uri, headers))
        if response is not None and response.status in (401, 407):
            name = "www-authenticate" if response.status == 401 else "proxy-authenticate"
            challenge = pick_challenge(response.headers.get_all(name))
            if challenge is None:
                raise RunError(f"agent {account.agent_id}: no MD5/SHA-256 digest challenge")
            headers = headers.copy()
            headers.remove("via")
            headers.set("cseq", "2 REGISTER")
            value = authorization(challenge, account.agent_id, account.password, "REGISTER", uri)
            headers.add("authorization" if response.status == 401 else "proxy-authorization", value)
            response = await self._request(self.phones, sipmsg.Request("REGISTER", uri, headers))
        if response is None or not 200 <= response.status < 300:
            got = "no response" if response is None else f"{response.status} {response.reason}"
            raise RunError(f"agent {account.agent_id}: REGISTER answered {got}")
        if expires:
            self.registered.append(account)
            self.granted = min(self.granted, granted_expires(response, expires))

    # --- the run -------------------------------------------------------------------------
    async def run(self) -> float:
        """Start every caller at its time; returns the run's length in seconds."""
        o = self.options
        self.started_at = start = self.loop.time() + LEAD_S
        deadline = start + o.max_seconds
        for caller in self.callers:
            when = start + caller.start_at
            if when < deadline:
                self.open += 1
                self.loop.call_at(when, self._start, caller)
                self.correlator.add(caller.call.caller, caller.call.called, caller)
            else:
                caller.handle(Event.CUT, start)  # past --max-seconds: never attempted
        refresh = self.loop.create_task(self._refresh_registrations(deadline))
        sampling = self.loop.create_task(self._sample_node(deadline + END_GRACE_S))
        if self.sampler is not None:
            self.sampler.mark_drops()
        if self.open == 0:
            self.finished.set()
        signals = self._catch_signals()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.finished.wait(), max(0.0, deadline - self.loop.time()))
            if self.open > 0:  # --max-seconds, or SIGINT/SIGTERM: end what is left
                self.finished.clear()
                self._cut_all()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.finished.wait(), END_GRACE_S)
        finally:
            await self._wind_down(signals, (refresh, sampling))
        return self.loop.time() - start

    async def _wind_down(
        self, signals: list[signal.Signals], tasks: tuple[asyncio.Task[None], ...]
    ) -> None:
        """The end of a run, however it ended: signal handlers and the refresh and sampling
        tasks gone, agent calls still up hung up, the node's last sample taken."""
        for number in signals:
            self.loop.remove_signal_handler(number)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._end_agent_calls()
        if self.sampler is not None:
            self.sampler.sample(self.loop.time())
            self.sampler.mark_drops()

    def _catch_signals(self) -> list[signal.Signals]:
        """SIGINT and SIGTERM end the run as --max-seconds does (calls hung up, agents
        unregistered, the report printed); the exit status is then 130."""
        caught = []
        for number in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                self.loop.add_signal_handler(number, self._interrupt)
                caught.append(number)
        return caught

    def _interrupt(self) -> None:
        self.interrupted = True
        self.finished.set()

    async def _sample_node(self, until: float) -> None:
        """The node's CPU and memory once a second (with --node-pid), from the first call."""
        if self.sampler is None:
            return
        await asyncio.sleep(max(0.0, self.started_at - self.loop.time()))
        while self.loop.time() < until:
            self.sampler.sample(self.loop.time())
            await asyncio.sleep(1.0)

    async def _refresh_registrations(self, deadline: float) -> None:
        while self.loop.time() + self.granted * 0.8 < deadline:
            await asyncio.sleep(self.granted * 0.8)  # RFC 3261 §10.2.4: refresh before expiry
            with contextlib.suppress(RunError):
                self.registered = []
                await self._register_all(self.options.expires)

    def _cut_all(self) -> None:
        now = self.loop.time()
        for caller in self.callers:
            if caller.state is State.NEW:
                caller.handle(Event.CUT, now)
                self._caller_done(caller)
            elif caller.state is not State.ENDED:
                leg = self.by_leg_id.get(self._leg_id(caller))
                if leg is not None:
                    self._apply(leg, caller.handle(Event.CUT, now))
        self._flush()

    def _flush(self) -> None:
        for sock in (self.trunk, self.phones):
            if sock is not None:
                sock.flush()

    @staticmethod
    def _leg_id(caller: Caller) -> str:
        return f"caller:{caller.call.call_id}"

    def _start(self, caller: Caller) -> None:
        if caller.state is not State.NEW:
            return
        leg = CallerLeg(caller, self._leg_id(caller))
        self.by_leg_id[leg.leg_id] = leg
        self._apply(leg, caller.handle(Event.START, self.loop.time()))
        self._flush()

    def _caller_done(self, caller: Caller) -> None:
        self.open -= 1
        self.progress.call_ended(caller.result.outcome)
        if self.open <= 0:
            self.finished.set()

    def _apply(self, leg: CallerLeg, commands: list[Command]) -> None:
        """Carry out a caller's commands, then re-arm its timer."""
        caller = leg.caller
        for command in commands:
            getattr(self, f"_do_{command.kind}")(leg, command)
        if leg.timer is not None:
            leg.timer.cancel()
            leg.timer = None
        when = caller.next_timer()
        if when is not None and caller.state is not State.ENDED:
            leg.timer = self.loop.call_at(when, self._caller_timer, leg)

    def _caller_timer(self, leg: CallerLeg) -> None:
        leg.timer = None
        self._apply(leg, leg.caller.handle_timer(self.loop.time()))
        self._flush()

    # caller commands ------------------------------------------------------------------------
    def _do_invite(self, leg: CallerLeg, command: Command) -> None:
        assert self.trunk is not None and self.trunk.txn is not None and self.engine is not None
        call = leg.caller.call
        host = self.trunk.address
        target = hostport(*self.options.target)
        try:
            body = self.engine.offer_local(leg.leg_id)
        except MediaError as exc:
            self._fail(leg, f"media: {exc}")
            return
        headers = new_request_headers(
            "INVITE", f"<sip:{call.caller}@{host}>", f"<sip:{call.called}@{target}>", host
        )
        headers.add("contact", f"<sip:{call.caller}@{host}>")
        headers.add("allow", ALLOW)
        headers.add("content-type", "application/sdp")
        invite = sipmsg.Request("INVITE", f"sip:{call.called}@{target}", headers, body)
        leg.invite = invite
        leg.media = True
        self.legs[invite.call_id] = leg
        leg.caller.result.sip_call_id = invite.call_id
        leg.invite_key = self.trunk.txn.send_request(invite, self.target, self.loop.time())
        self.client[leg.invite_key] = (leg, "invite")

    def _fail(self, leg: CallerLeg, reason: str) -> None:
        r = leg.caller.result
        r.reason = reason
        leg.caller.state = State.ENDED
        leg.caller.timers.clear()
        r.outcome = rep.Outcome.FAILED
        r.ended_at = self.loop.time()
        self._do_done(leg, Command("done"))

    def _do_ack(self, leg: CallerLeg, command: Command) -> None:
        assert self.trunk is not None and self.trunk.txn is not None and self.engine is not None
        if leg.answer is None or leg.invite is None:
            return
        if leg.dialog is None:
            try:
                leg.dialog = Dialog.as_uac(leg.invite, leg.answer)
            except SipError as exc:
                leg.caller.result.reason = f"200 without a dialog: {exc}"
                return
            try:
                self.engine.apply_answer(leg.leg_id, leg.answer.body)
            except MediaError as exc:
                leg.caller.result.reason = f"SDP answer: {exc}"
                leg.caller.result.outcome = rep.Outcome.FAILED
        ack = leg.dialog.ack(leg.invite.cseq[0])
        self.trunk.txn.send_ack(ack, target_of(leg.dialog, self.target))
        if leg.caller.result.outcome is rep.Outcome.FAILED and leg.caller.state in (
            State.IVR,
            State.WAITING,
            State.TALKING,
        ):
            self.loop.call_soon(self._end_failed, leg)

    def _end_failed(self, leg: CallerLeg) -> None:
        self._apply(leg, leg.caller.handle(Event.CUT, self.loop.time()))
        self._flush()

    def _do_media(self, leg: CallerLeg, command: Command) -> None:
        self._play_silence(leg.leg_id)

    def _play_silence(self, leg_id: str) -> None:
        assert self.engine is not None
        ms = int(min(MAX_SILENCE_MS, (self.options.max_seconds + 60) * 1000))
        with contextlib.suppress(MediaError):
            self.engine.play(leg_id, [Silence(ms)])

    def _do_key(self, leg: CallerLeg, command: Command) -> None:
        assert self.engine is not None
        try:
            self.engine.send_dtmf(leg.leg_id, command.key, 100)
        except MediaError:
            leg.caller.result.keys_sent -= 1
            leg.caller.result.keys_skipped += 1

    def _do_cancel(self, leg: CallerLeg, command: Command) -> None:
        assert self.trunk is not None and self.trunk.txn is not None
        if leg.invite_key is None:
            return
        key = self.trunk.txn.send_cancel(leg.invite_key, self.loop.time())
        if key is not None:
            self.client[key] = (leg, "cancel")

    def _do_bye(self, leg: CallerLeg, command: Command) -> None:
        assert self.trunk is not None and self.trunk.txn is not None
        if leg.dialog is None:
            self._apply(leg, leg.caller.handle(Event.BYE_DONE, self.loop.time()))
            return
        bye = leg.dialog.new_request("BYE")
        key = self.trunk.txn.send_request(bye, target_of(leg.dialog, self.target), self.loop.time())
        self.client[key] = (leg, "bye")

    def _do_done(self, leg: CallerLeg, command: Command) -> None:
        if leg.media and self.engine is not None:
            self.engine.release(leg.leg_id)
            leg.media = False
        if leg.timer is not None:
            leg.timer.cancel()
            leg.timer = None
        self._caller_done(leg.caller)

    # SIP events on the callers' socket --------------------------------------------------------
    def _trunk_event(self, sock: SipSocket, event: TxnEvent, now: float) -> None:
        if isinstance(event, ResponseReceived | TransactionTimeout | TransportError):
            future = self.pending.pop(event.key, None)
            if future is not None:
                if not future.done():
                    response = event.response if isinstance(event, ResponseReceived) else None
                    if response is None or response.status >= 200:
                        future.set_result(response)
                    else:
                        self.pending[event.key] = future  # a provisional: wait on
                return
            found = self.client.get(event.key)
            if found is None:
                return
            leg, what = found
            if isinstance(event, ResponseReceived):
                self._caller_response(leg, what, event)
            else:
                self.client.pop(event.key, None)
                reason = "transport error" if isinstance(event, TransportError) else ""
                if what == "invite":
                    self._apply(leg, leg.caller.handle(Event.TIMEOUT, now, reason=reason))
                elif what == "bye":
                    leg.caller.result.bye_failed = True
                    self._apply(leg, leg.caller.handle(Event.BYE_DONE, now))
        elif isinstance(event, RequestReceived):
            self._caller_request(sock, event, now)

    def _caller_response(self, leg: CallerLeg, what: str, event: ResponseReceived) -> None:
        response, now = event.response, self.loop.time()
        status = response.status
        caller = leg.caller
        if what == "invite":
            if status < 200:
                self._apply(leg, caller.handle(Event.PROVISIONAL, now))
            elif status < 300:
                if event.retransmission or leg.answer is not None:
                    if leg.dialog is not None and leg.invite is not None:
                        self._do_ack(leg, Command("ack"))  # our ACK was lost (§13.2.2.4)
                    return
                leg.answer = response
                self._apply(leg, caller.handle(Event.ANSWERED, now))
            else:
                self.client.pop(event.key, None)
                self._apply(leg, caller.handle(Event.REJECTED, now, status, response.reason))
        elif what == "cancel" and status >= 200:
            self.client.pop(event.key, None)
        elif what == "bye" and status >= 200:
            self.client.pop(event.key, None)
            caller.result.bye_failed = status >= 300
            self._apply(leg, caller.handle(Event.BYE_DONE, now))

    def _caller_request(self, sock: SipSocket, event: RequestReceived, now: float) -> None:
        request = event.request
        leg = self.legs.get(request.call_id)
        if leg is None or leg.dialog is None:
            sock.respond(event.key, request, 481)
            return
        if request.method == "BYE":
            sock.respond(event.key, request, 200, to_tag=leg.dialog.local_tag)
            self._apply(leg, leg.caller.handle(Event.REMOTE_BYE, now))
        else:
            self._answer_in_dialog(sock, event, leg.leg_id, leg.dialog)

    def _answer_in_dialog(
        self, sock: SipSocket, event: RequestReceived, leg_id: str, dialog: Dialog
    ) -> None:
        """re-INVITE (answered from our anchor), UPDATE, INFO, OPTIONS …: 200."""
        assert self.engine is not None
        request = event.request
        extra = [("contact", f"<sip:loadtest@{sock.address}>")]
        body = b""
        if request.method in ("INVITE", "UPDATE") and request.body:
            try:
                body = self.engine.answer_local(leg_id, request.body)
            except MediaError:
                sock.respond(event.key, request, 488, to_tag=dialog.local_tag)
                return
            extra.append(("content-type", "application/sdp"))
        sock.respond(event.key, request, 200, to_tag=dialog.local_tag, body=body, extra=extra)

    # --- the agents' side ----------------------------------------------------------------
    def _phone_event(self, sock: SipSocket, event: TxnEvent, now: float) -> None:
        if isinstance(event, ResponseReceived | TransactionTimeout | TransportError):
            future = self.pending.pop(event.key, None)
            if future is not None and not future.done():
                response = event.response if isinstance(event, ResponseReceived) else None
                if response is not None and response.status < 200:
                    self.pending[event.key] = future
                else:
                    future.set_result(response)
            return
        if isinstance(event, AckReceived):
            return  # the 2xx's ACK: the transaction layer stopped retransmitting
        if isinstance(event, AckTimeout):
            call = self.agent_calls.get(event.request.call_id)
            if call is not None:
                self._agent_hangup(call)
            return
        assert isinstance(event, RequestReceived)
        request = event.request
        call = self.agent_calls.get(request.call_id)
        if request.method == "INVITE" and call is None:
            self._agent_invite(sock, event, now)
        elif request.method == "CANCEL":
            sock.respond(event.key, request, 200)
            if call is not None and not call.answered and not call.over:
                sock.respond(call.key, call.request, 487, to_tag=call.to_tag)
                self.counters["ring_cancelled"] += 1
                self._agent_call_over(call)
        elif call is None or call.dialog is None:
            sock.respond(event.key, request, 481)
        elif request.method == "BYE":
            sock.respond(event.key, request, 200, to_tag=call.to_tag)
            self._agent_call_over(call)
        else:
            self._answer_in_dialog(sock, event, call.leg_id, call.dialog)

    def _agent_invite(self, sock: SipSocket, event: RequestReceived, now: float) -> None:
        request = event.request
        try:
            agent_id = sipmsg.parse_uri(request.uri).user or ""
            caller_number = sipmsg.parse_uri(request.from_.uri).user or ""
        except SipError:
            sock.respond(event.key, request, 400)
            return
        self._leg_numbers += 1
        call = AgentCall(agent_id, request, event.key, f"agent:{self._leg_numbers}")
        self.agent_calls[request.call_id] = call
        self.counters["agent_calls"] += 1
        queue = request.headers.get("x-hotline-queue")
        if queue:
            self.queues.add(queue)
        found = self.correlator.match(caller_number, request.headers.get("x-hotline-called"))
        call.party = found
        call.caller = found if isinstance(found, Caller) else None
        try:
            call.dialog = Dialog.as_uas(request, call.to_tag)
        except SipError:
            sock.respond(event.key, request, 400, to_tag=call.to_tag)
            call.over = True
            return
        sock.respond(event.key, request, 180, to_tag=call.to_tag)
        delay = self.options.answer_delay_s * self.options.time_scale
        call.answer_timer = self.loop.call_at(now + delay, self._agent_answer, sock, call)

    def _agent_answer(self, sock: SipSocket, call: AgentCall) -> None:
        assert self.engine is not None
        call.answer_timer = None
        if call.over:
            return
        try:
            if call.request.body:
                body = self.engine.answer_local(call.leg_id, call.request.body)
            else:
                body = self.engine.offer_local(call.leg_id)
        except MediaError:
            sock.respond(call.key, call.request, 488, to_tag=call.to_tag)
            self._agent_call_over(call)
            sock.flush()
            return
        extra = [
            ("contact", f"<sip:{call.agent_id}@{sock.address}>"),
            ("allow", ALLOW),
            ("content-type", "application/sdp"),
        ]
        sock.respond(call.key, call.request, 200, to_tag=call.to_tag, body=body, extra=extra)
        call.answered = True
        self._play_silence(call.leg_id)
        self._agent_answered(call)
        self._flush()

    def _agent_answered(self, call: AgentCall) -> None:
        """Tell the caller of `call` that its agent answered (the SIPp engine overrides it)."""
        caller = call.caller
        if caller is not None and caller.waiting_for_agent:
            caller.result.agent = call.agent_id
            leg = self.by_leg_id.get(self._leg_id(caller))
            if leg is not None:
                self._apply(leg, caller.handle(Event.AGENT_ANSWERED, self.loop.time()))

    def _agent_hangup(self, call: AgentCall) -> None:
        """Our BYE to an agent call still up when the run ends (the node did not end it)."""
        assert self.phones is not None and self.phones.txn is not None
        if call.dialog is not None and call.answered and not call.over:
            bye = call.dialog.new_request("BYE")
            self.phones.txn.send_request(bye, target_of(call.dialog, self.target), self.loop.time())
        self._agent_call_over(call)

    def _agent_call_over(self, call: AgentCall) -> None:
        if call.over:
            return
        call.over = True
        if call.answer_timer is not None:
            call.answer_timer.cancel()
            call.answer_timer = None
        if self.engine is not None:
            self.engine.release(call.leg_id)

    def _end_agent_calls(self) -> None:
        for call in list(self.agent_calls.values()):
            if not call.over:
                self._agent_hangup(call)
        self._flush()

    # --- media events ----------------------------------------------------------------------
    def _media_event(self, event: MediaEvent) -> None:
        if isinstance(event, FirstPacket):
            leg = self.by_leg_id.get(event.leg_id)
            if leg is not None and leg.caller.result.first_rtp_at is None:
                leg.caller.result.first_rtp_at = self.loop.time()
        elif isinstance(event, RtpTimeout):
            self.counters["media_timeouts"] += 1


# --- entry ----------------------------------------------------------------------------------
async def replay(trace: Trace, options: RunOptions) -> tuple[list[rep.CallResult], Replay, float]:
    """Run the replay; (every call's result, the run, seconds) or `RunError`."""
    run = Replay(trace, options, Progress(len(trace.calls), options.progress))
    seconds = await run.drive()
    return [c.result for c in run.callers], run, seconds


def run_trace(
    trace: Trace, trace_name: str, options: RunOptions
) -> tuple[rep.Report, list[rep.CallResult]]:
    """Replay `trace` against the target: the report and every call's result (`RunError`
    if the run cannot be done)."""
    results, run, seconds = asyncio.run(replay(trace, options))
    if run.interrupted:
        print("hotline: interrupted: calls hung up, agents unregistered", file=sys.stderr)
    return report_of(run, results, seconds, trace, trace_name), results


def report_of(
    run: Replay,
    results: list[rep.CallResult],
    seconds: float,
    trace: Trace,
    trace_name: str,
    **engine: Any,
) -> rep.Report:
    """The report of a finished run (either engine; `engine`: its own fields of
    `rep.build_report`)."""
    options = run.options
    correlation = dict(run.correlator.counts)
    correlation.update(run.counters)
    attempted = sum(1 for r in results if r.invite_at is not None)
    return rep.build_report(
        results,
        trace=trace,
        trace_name=trace_name,
        target=hostport(*options.target),
        time_scale=options.time_scale,
        agents=len(options.agents),
        run_seconds=seconds,
        wrap_up_s=options.wrap_up_s,
        answer_delay_s=options.answer_delay_s,
        correlation=correlation,
        queues=max(1, len(run.queues)),
        interrupted=run.interrupted,
        node=run.sampler.usage(attempted, run.started_at) if run.sampler is not None else None,
        **engine,
    )


def write_json(path: str, report: rep.Report, calls: list[rep.CallResult]) -> None:
    data = rep.report_json(report, calls)
    if path == "-":
        sys.stdout.buffer.write(data)
    else:
        Path(path).write_bytes(data)
