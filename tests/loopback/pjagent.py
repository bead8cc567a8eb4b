"""A scripted agent softphone built on pjsua2, run as one subprocess per agent.

Loopback tests need an agent phone that is *not* our own SIP code: pjsip is an independent,
widely deployed implementation, so a call that works between hotline and this script works for
a reason other than "both ends share the same bugs". PJSUA keeps one library instance per
process, hence one process per agent; `tests/loopback/harness.py` (`PjAgent`) drives it.

Protocol with the parent process:

- stdout carries exactly one JSON object per line, one per event (``ready``, ``registered``,
  ``reg_failed``, ``unregistered``, ``incoming``, ``ringing``, ``answered``, ``confirmed``,
  ``media_active``, ``dtmf_sent``, ``dtmf``, ``held``, ``xfer_status``, ``disconnected``,
  ``error``, ``exit``). With ``--tone HZ`` the phone sends that tone into every call instead
  of its (null) microphone, and with ``--record WAV`` it writes what it hears to a WAV file
  (complete once the call is over), so a test can tell who hears whom. ``--srtp
  mandatory|optional`` turns on SRTP with SDES keys (RFC 4568).
  Everything pjsip prints goes to stderr or to ``--log-file``; file descriptor 1 is redirected
  to stderr at start-up so that even C-level prints cannot corrupt the JSON stream.
- stdin accepts one command per line: ``hangup [CALL_ID]``, ``answer [CODE] [CALL_ID]``,
  ``dtmf DIGITS [CALL_ID]``, ``call URI`` (the phone places a call: a caller of the IVR),
  ``hold [CALL_ID]``, ``unhold [CALL_ID]`` (re-INVITE with sendonly, then sendrecv),
  ``xfer URI [CALL_ID]`` (a blind transfer: REFER; its NOTIFYs are ``xfer_status`` events),
  ``xfer_replaces CALL_ID DEST_CALL_ID`` (an attended transfer: REFER with Replaces),
  ``message URI TEXT`` (a SIP MESSAGE; ``message_status`` and, received, ``message`` events),
  ``register``, ``unregister``, ``quit``. A reader thread only
  queues the lines; the main thread, the only thread pjsua knows, executes them between
  ``libHandleEvents`` polls (threadCnt = 0, mainThreadOnly), so no pjsua call ever happens on
  an unregistered thread.

The process always ends by itself after ``--max-seconds`` so that a forgotten agent cannot
outlive a test run.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import pjsua2 as pj

# Headers copied into the "incoming" event: the ones a hotline passes from the carrier to the
# agent (RFC 3325 PAI/Privacy, RFC 5806 Diversion, RFC 7044 History-Info) and the ones an agent
# desktop commonly reads. Any X- header is copied as well.
SELECTED_HEADERS = (
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Privacy",
    "Diversion",
    "History-Info",
    "Alert-Info",
    "Call-Info",
    "Subject",
    "User-Agent",
)
_SELECTED_LOWER = {name.lower(): name for name in SELECTED_HEADERS}

# How --dtmf-method sends keys: RFC 4733 events in RTP, or SIP INFO requests.
DTMF_METHODS = {
    "rfc4733": pj.PJSUA_DTMF_METHOD_RFC2833,
    "info": pj.PJSUA_DTMF_METHOD_SIP_INFO,
}

# Simultaneous calls one agent process accepts (PJSUA's default, far above what a test needs).
MAX_CALLS = 32
# --srtp: pjmedia's SRTP with SDES keys; `mandatory` offers and accepts RTP/SAVP only.
SRTP_USE = {"optional": pj.PJMEDIA_SRTP_OPTIONAL, "mandatory": pj.PJMEDIA_SRTP_MANDATORY}


class Emitter:
    """Writes events as JSON lines to the private copy of the original stdout."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": time.time(), **fields}
        self._stream.write(json.dumps(record, sort_keys=False) + "\n")
        self._stream.flush()


def selected_headers(whole_msg: str) -> dict[str, str]:
    """Return the selected headers of a raw SIP message, repeated ones joined by ", ".

    RFC 3261 §7.3.1: a header field that appears several times is equivalent to one field
    whose values are joined with commas; folded continuation lines (leading whitespace) belong
    to the previous header.
    """
    head = whole_msg.replace("\r\n", "\n").split("\n\n", 1)[0]
    lines = head.split("\n")[1:]  # skip the request line
    unfolded: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += " " + line.strip()
        else:
            unfolded.append(line)
    found: dict[str, list[str]] = {}
    for line in unfolded:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip()
        lower = name.lower()
        if lower in _SELECTED_LOWER:
            key = _SELECTED_LOWER[lower]
        elif lower.startswith("x-"):
            key = name
        else:
            continue
        found.setdefault(key, []).append(value.strip())
    return {key: ", ".join(values) for key, values in found.items()}


def request_uri(whole_msg: str) -> str:
    """Return the Request-URI of a raw SIP request (RFC 3261 §7.1: Method SP URI SP version)."""
    first = whole_msg.split("\n", 1)[0].strip()
    parts = first.split(" ")
    return parts[1] if len(parts) == 3 else ""


class AgentCall(pj.Call):
    """One call of the agent; reports its state changes as events."""

    def __init__(self, agent: Agent, account: pj.Account, call_id: int) -> None:
        super().__init__(account, call_id)
        self.agent = agent
        self.sip_call_id = ""
        self.hangup_by_local = False
        self.answered_at: float | None = None
        self.dtmf_pending = agent.args.dtmf or ""
        self.media_active = False
        self.disconnected = False
        self.recorder: Any = None  # --record: what this call's party sends the phone

    def onCallState(self, prm: pj.OnCallStateParam) -> None:  # noqa: N802 (pjsua2 API)
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.agent.emitter.emit("confirmed", call_id=self.sip_call_id)
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True
            self.agent.emitter.emit(
                "disconnected",
                call_id=self.sip_call_id,
                code=info.lastStatusCode,
                reason=info.lastReason,
                by="local" if self.hangup_by_local else "remote",
                duration=info.connectDuration.sec + info.connectDuration.msec / 1000.0,
            )
            # Deleting a pjsua2 Call inside its own callback crashes; the main loop drops the
            # reference after the callback has returned.
            self.agent.finished_calls.append(self)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:  # noqa: N802
        info = self.getInfo()
        for index, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                audio = self.getAudioMedia(index)
                manager = self.agent.endpoint.audDevManager()
                # Connect the call to the (null) sound device both ways: the device's clock
                # drives the conference bridge, so RTP and RFC 4733 events actually flow.
                audio.startTransmit(manager.getPlaybackDevMedia())
                source = self.agent.tone_source() or manager.getCaptureDevMedia()
                source.startTransmit(audio)
                if self.agent.args.record and self.recorder is None:
                    self.start_recording(audio)
                if not self.media_active:
                    self.media_active = True
                    self.agent.emitter.emit("media_active", call_id=self.sip_call_id)
                    if self.answered_at is not None and self.dtmf_pending:
                        self.agent.schedule(0.2, self.send_pending_dtmf)

    def start_recording(self, audio: Any) -> None:
        """What the phone hears, into --record's WAV (a suffix per call after the first),
        from the ``recording`` event's time on."""
        self.agent.recordings += 1
        path = self.agent.args.record
        if self.agent.recordings > 1:
            path = f"{path}.{self.agent.recordings}.wav"
        self.recorder = pj.AudioMediaRecorder()
        self.recorder.createRecorder(path)
        audio.startTransmit(self.recorder)
        self.agent.emitter.emit("recording", call_id=self.sip_call_id, path=path)

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:  # noqa: N802
        self.agent.emitter.emit(
            "xfer_status",
            call_id=self.sip_call_id,
            code=prm.statusCode,
            reason=prm.reason,
            final=bool(prm.finalNotify),
        )

    def hold(self, on: bool) -> None:
        """Put the far end on hold (re-INVITE with a=sendonly) or take it back."""
        param = pj.CallOpParam(True)
        if on:
            self.setHold(param)
        else:
            param.opt.flag = pj.PJSUA_CALL_UNHOLD
            self.reinvite(param)
        self.agent.emitter.emit("held", call_id=self.sip_call_id, on=on)

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:  # noqa: N802
        self.agent.emitter.emit("dtmf", call_id=self.sip_call_id, digit=prm.digit)

    def send_pending_dtmf(self) -> None:
        """Send the digits of --dtmf (by --dtmf-method) once media is up."""
        if self.dtmf_pending and not self.disconnected:
            digits, self.dtmf_pending = self.dtmf_pending, ""
            self.send_dtmf(digits)

    def send_dtmf(self, digits: str) -> None:
        """Send keys the way --dtmf-method says: RFC 4733 telephone-events in the RTP stream,
        or one SIP INFO per key (application/dtmf-relay `Signal=` body, as pjsip writes it)."""
        method = self.agent.args.dtmf_method
        param = pj.CallSendDtmfParam()
        param.method = DTMF_METHODS[method]
        param.digits = digits
        param.duration = 160  # ms per digit
        self.sendDtmf(param)
        self.agent.emitter.emit("dtmf_sent", call_id=self.sip_call_id, digits=digits, method=method)

    def answer_with(self, code: int) -> None:
        """Answer (2xx), reject (>= 300) or ring (180) this incoming call."""
        if self.disconnected:
            return
        param = pj.CallOpParam(True)
        param.statusCode = code
        if code >= 300:
            self.hangup_by_local = True
        self.answer(param)
        if 200 <= code < 300:
            self.answered_at = time.monotonic()
            self.agent.emitter.emit("answered", call_id=self.sip_call_id, code=code)
            if self.agent.args.hangup_after is not None:
                self.agent.schedule(self.agent.args.hangup_after, self.hangup_now)
            if self.media_active and self.dtmf_pending:
                self.agent.schedule(0.2, self.send_pending_dtmf)
        elif code >= 300:
            self.agent.emitter.emit("rejected", call_id=self.sip_call_id, code=code)
        else:
            self.agent.emitter.emit("ringing", call_id=self.sip_call_id, code=code)

    def transfer(self, uri: str) -> None:
        """A blind transfer of the far end to `uri` (REFER, RFC 3515)."""
        self.xfer(uri, pj.CallOpParam(True))
        self.agent.emitter.emit("xfer_sent", call_id=self.sip_call_id, uri=uri)

    def transfer_to_call(self, other: AgentCall) -> None:
        """An attended transfer: REFER with Replaces naming the dialog of `other` (RFC 3891)."""
        self.xferReplaces(other, pj.CallOpParam(True))
        self.agent.emitter.emit("xfer_sent", call_id=self.sip_call_id, replaces=other.sip_call_id)

    def hangup_now(self) -> None:
        """Send BYE (or CANCEL/final response, depending on the state) from the agent side."""
        if self.disconnected:
            return
        self.hangup_by_local = True
        param = pj.CallOpParam(True)
        param.statusCode = pj.PJSIP_SC_DECLINE if self.answered_at is None else 200
        self.hangup(param)


class AgentAccount(pj.Account):
    """The agent's SIP account: reports registration and accepts incoming calls."""

    def __init__(self, agent: Agent) -> None:
        super().__init__()
        self.agent = agent

    def onRegState(self, prm: pj.OnRegStateParam) -> None:  # noqa: N802 (pjsua2 API)
        code = prm.code
        if 200 <= code < 300:
            if prm.expiration > 0:
                self.agent.emitter.emit("registered", code=code, expires=prm.expiration)
            else:
                self.agent.emitter.emit("unregistered", code=code)
        else:
            self.agent.emitter.emit("reg_failed", code=code, reason=prm.reason)

    def onInstantMessage(self, prm: pj.OnInstantMessageParam) -> None:  # noqa: N802
        self.agent.emitter.emit(
            "message", **{"from": prm.fromUri}, body=prm.msgBody, content_type=prm.contentType
        )

    def onInstantMessageStatus(self, prm: pj.OnInstantMessageStatusParam) -> None:  # noqa: N802
        self.agent.emitter.emit("message_status", code=prm.code, reason=prm.reason, to=prm.toUri)

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:  # noqa: N802
        call = AgentCall(self.agent, self, prm.callId)
        info = call.getInfo()
        call.sip_call_id = info.callIdString
        whole = prm.rdata.wholeMsg
        self.agent.calls.append(call)
        self.agent.emitter.emit(
            "incoming",
            call_id=call.sip_call_id,
            request_uri=request_uri(whole),
            **{"from": info.remoteUri, "to": info.localUri},
            headers=selected_headers(whole),
            source=prm.rdata.srcAddress,
        )
        code = self.agent.args.auto_answer
        if code == 0:
            call.answer_with(180)
            return
        if 200 <= code < 300:
            call.answer_with(180)
        delay = self.agent.args.answer_delay
        if delay > 0:
            self.agent.schedule(delay, lambda: call.answer_with(code))
        else:
            call.answer_with(code)


class Agent:
    """Owns the pjsua2 endpoint, the account and the calls; runs the main loop."""

    def __init__(self, args: argparse.Namespace, emitter: Emitter) -> None:
        self.args = args
        self.emitter = emitter
        self.endpoint = pj.Endpoint()
        self.account: AgentAccount | None = None
        self.calls: list[AgentCall] = []
        self.finished_calls: list[AgentCall] = []
        self.timers: list[tuple[float, Callable[[], None]]] = []
        self.commands: queue.Queue[str] = queue.Queue()
        self.stop_requested = False
        self.transport_id = -1
        self._tone: Any = None  # the --tone generator, made on first use
        self.recordings = 0
        self.buddies: list[Any] = []

    # -- scheduling (main thread only) ------------------------------------------------------

    def schedule(self, delay: float, action: Callable[[], None]) -> None:
        self.timers.append((time.monotonic() + delay, action))

    def run_due_timers(self) -> None:
        now = time.monotonic()
        due = [entry for entry in self.timers if entry[0] <= now]
        if not due:
            return
        self.timers = [entry for entry in self.timers if entry[0] > now]
        for _when, action in due:
            self.guarded(action)

    def guarded(self, action: Callable[[], None]) -> None:
        """Run an action; a pjsua error becomes an ``error`` event instead of killing the agent."""
        try:
            action()
        except pj.Error as error:
            self.emitter.emit("error", where=error.title, reason=error.reason, status=error.status)

    def tone_source(self) -> Any:
        """The --tone generator (a steady sine, -10 dBm0 or so), or None without --tone."""
        if not self.args.tone:
            return None
        if self._tone is None:
            tone = pj.ToneDesc()
            tone.freq1 = int(self.args.tone)
            tone.freq2 = 0
            tone.on_msec = 10000
            tone.off_msec = 0
            tones = pj.ToneDescVector()
            tones.append(tone)
            self._tone = pj.ToneGenerator()
            self._tone.createToneGenerator()
            self._tone.play(tones, True)
        return self._tone

    # -- set-up -----------------------------------------------------------------------------

    def start(self) -> None:
        args = self.args
        self.endpoint.libCreate()
        ep_cfg = pj.EpConfig()
        ep_cfg.uaConfig.threadCnt = 0
        ep_cfg.uaConfig.mainThreadOnly = True
        ep_cfg.uaConfig.maxCalls = MAX_CALLS
        ep_cfg.uaConfig.userAgent = f"hotline-pjagent/{args.user}"
        ep_cfg.logConfig.level = args.log_level
        ep_cfg.logConfig.consoleLevel = args.log_level if not args.log_file else 0
        if args.log_file:
            ep_cfg.logConfig.filename = args.log_file
        ep_cfg.medConfig.noVad = True
        ep_cfg.medConfig.hasIoqueue = True
        ep_cfg.medConfig.threadCnt = 1
        self.endpoint.libInit(ep_cfg)

        transport_cfg = pj.TransportConfig()
        transport_cfg.port = args.local_port
        transport_cfg.boundAddress = "127.0.0.1"
        transport_cfg.publicAddress = "127.0.0.1"
        kind = {
            "udp": pj.PJSIP_TRANSPORT_UDP,
            "tcp": pj.PJSIP_TRANSPORT_TCP,
            "tls": pj.PJSIP_TRANSPORT_TLS,
        }[args.transport]
        if args.transport == "tls":
            tls = transport_cfg.tlsConfig
            tls.method = pj.PJSIP_TLSV1_2_METHOD
            tls.CaListFile = args.tls_ca
            tls.certFile = args.tls_cert
            tls.privKeyFile = args.tls_key
            # The node's certificate must verify against --tls-ca and name 127.0.0.1.
            tls.verifyServer = bool(args.tls_ca)
            # As a TLS carrier: the node must present a client certificate of --tls-ca.
            tls.verifyClient = tls.requireClientCert = args.tls_require_client
        self.transport_id = self.endpoint.transportCreate(kind, transport_cfg)
        self.endpoint.libStart()
        if args.null_audio:
            self.endpoint.audDevManager().setNullDev()

        info = self.endpoint.transportGetInfo(self.transport_id)
        sip_port = int(str(info.localName).rsplit(":", 1)[1])

        self.account = AgentAccount(self)
        self.account.create(self.account_config(sip_port))
        self.emitter.emit(
            "ready",
            sip_port=sip_port,
            transport=args.transport,
            user=args.user,
            contact=f"sip:{args.user}@127.0.0.1:{sip_port}",
        )

    def account_config(self, sip_port: int) -> pj.AccountConfig:
        args = self.args
        cfg = pj.AccountConfig()
        transport_param = "" if args.transport == "udp" else f";transport={args.transport}"
        if args.registrar:
            domain = args.domain or args.registrar
            cfg.idUri = f"sip:{args.user}@{domain}"
            cfg.regConfig.registrarUri = f"sip:{args.registrar}{transport_param}"
            cfg.regConfig.registerOnAdd = True
            cfg.regConfig.timeoutSec = args.expires
            cfg.regConfig.retryIntervalSec = 0  # a failed registration is reported, not retried
            cfg.regConfig.unregWaitMsec = 1000
            cred = pj.AuthCredInfo("digest", args.realm, args.user, 0, args.password or "")
            cfg.sipConfig.authCreds.append(cred)
            if args.supported_path:  # RFC 3327 §5.1: it accepts a registration with Path
                header = pj.SipHeader()
                header.hName, header.hValue = "Supported", "path"
                cfg.regConfig.headers.append(header)
        else:
            # No registrar: a local account that only receives calls sent to its port.
            cfg.idUri = f"sip:{args.user}@127.0.0.1:{sip_port}"
        cfg.sipConfig.transportId = self.transport_id
        # Loopback only: no NAT tricks, no outbound (RFC 5626), no ICE, no STUN.
        cfg.natConfig.contactRewriteUse = 0
        cfg.natConfig.viaRewriteUse = 0
        cfg.natConfig.sdpNatRewriteUse = 0
        cfg.natConfig.sipOutboundUse = 0
        cfg.natConfig.iceEnabled = False
        cfg.natConfig.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        cfg.natConfig.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
        cfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        cfg.mediaConfig.transportConfig.publicAddress = "127.0.0.1"
        # A random even RTP base port keeps parallel agents from probing the same ports.
        cfg.mediaConfig.transportConfig.port = args.rtp_port or random.randrange(20000, 40000, 2)
        cfg.mediaConfig.transportConfig.portRange = 2000
        if args.srtp != "off":  # SDES keys in SDP (RFC 4568), whatever the SIP transport
            cfg.mediaConfig.srtpUse = SRTP_USE[args.srtp]
            cfg.mediaConfig.srtpSecureSignaling = 0
            keyings = pj.IntVector()
            keyings.append(pj.PJMEDIA_SRTP_KEYING_SDES)
            cfg.mediaConfig.srtpOpt.keyings = keyings
        return cfg

    # -- commands (main thread only) --------------------------------------------------------

    def find_calls(self, sip_call_id: str | None) -> list[AgentCall]:
        live = [call for call in self.calls if not call.disconnected]
        if sip_call_id:
            return [call for call in live if call.sip_call_id == sip_call_id]
        return live

    def execute(self, line: str) -> None:
        words = line.split()
        if not words:
            return
        command, rest = words[0].lower(), words[1:]
        if command == "quit":
            self.stop_requested = True
        elif command == "hangup":
            for call in self.find_calls(rest[0] if rest else None):
                self.guarded(call.hangup_now)
        elif command == "answer":
            code = int(rest[0]) if rest else 200
            for call in self.find_calls(rest[1] if len(rest) > 1 else None):
                self.guarded(lambda call=call: call.answer_with(code))
        elif command == "dtmf" and rest:
            for call in self.find_calls(rest[1] if len(rest) > 1 else None):
                self.guarded(lambda call=call: call.send_dtmf(rest[0]))
        elif command in ("hold", "unhold"):
            on = command == "hold"
            for call in self.find_calls(rest[0] if rest else None):
                self.guarded(lambda call=call: call.hold(on))
        elif command == "xfer_replaces" and len(rest) == 2:
            # xfer_replaces CALL_ID DEST_CALL_ID: transfer CALL_ID's party to DEST_CALL_ID's
            calls, dest = self.find_calls(rest[0]), self.find_calls(rest[1])
            if calls and dest:
                self.guarded(lambda: calls[0].transfer_to_call(dest[0]))
            else:
                self.emitter.emit("error", where="command", reason=f"no such calls: {line!r}")
        elif command == "xfer" and rest:
            for call in self.find_calls(rest[1] if len(rest) > 1 else None):
                self.guarded(lambda call=call: call.transfer(rest[0]))
        elif command == "message" and len(rest) >= 2 and self.account is not None:
            self.guarded(lambda: self.send_message(rest[0], " ".join(rest[1:])))
        elif command == "call" and rest and self.account is not None:
            self.guarded(lambda: self.place_call(rest[0]))
        elif command in ("register", "unregister") and self.account is not None:
            account = self.account
            renew = command == "register"
            self.guarded(lambda: account.setRegistration(renew))
        else:
            self.emitter.emit("error", where="command", reason=f"unknown command {line!r}")

    def send_message(self, uri: str, text: str) -> None:
        """A SIP MESSAGE (RFC 3428) to `uri` through the account (its registrar answers)."""
        assert self.account is not None
        buddy = pj.Buddy()
        config = pj.BuddyConfig()
        config.uri = uri
        config.subscribe = False
        buddy.create(self.account, config)
        param = pj.SendInstantMessageParam()
        param.content = text
        buddy.sendInstantMessage(param)
        self.buddies.append(buddy)  # pjsua2 objects must outlive their requests
        self.emitter.emit("message_sent", uri=uri)

    def place_call(self, uri: str) -> None:
        """An outgoing call from this phone (PCMU/PCMA with telephone-event, as pjsip offers)."""
        assert self.account is not None
        call = AgentCall(self, self.account, pj.PJSUA_INVALID_ID)
        call.makeCall(uri, pj.CallOpParam(True))
        call.sip_call_id = call.getInfo().callIdString
        call.answered_at = time.monotonic()  # keys may be sent once its media is up
        self.calls.append(call)
        self.emitter.emit("calling", call_id=call.sip_call_id, uri=uri)

    # -- main loop --------------------------------------------------------------------------

    def run(self) -> str:
        """Poll pjsua until quit, SIGTERM, stdin closed or --max-seconds; return the reason."""
        deadline = time.monotonic() + self.args.max_seconds
        while not self.stop_requested:
            if time.monotonic() >= deadline:
                return "max_seconds"
            self.endpoint.libHandleEvents(10)
            self.run_due_timers()
            while True:
                try:
                    line = self.commands.get_nowait()
                except queue.Empty:
                    break
                self.execute(line)
            if self.finished_calls:
                for call in self.finished_calls:
                    call.recorder = None  # the WAV is complete once its recorder is gone
                    if call in self.calls:
                        self.calls.remove(call)
                self.finished_calls.clear()
        return "stopped"

    def shutdown(self) -> None:
        """Hang up, unregister (bounded by unregWaitMsec) and destroy the library."""
        self.endpoint.hangupAllCalls()
        self._tone = None
        self.buddies.clear()
        for call in self.calls:
            call.recorder = None
        end = time.monotonic() + 1.0
        while any(not call.disconnected for call in self.calls) and time.monotonic() < end:
            self.endpoint.libHandleEvents(10)
        if self.account is not None:
            self.account.shutdown()  # sends the unregistration (REGISTER, Expires: 0)
            end = time.monotonic() + 0.2
            while time.monotonic() < end:  # let it leave and its answer come back
                self.endpoint.libHandleEvents(10)
        # NO_NETWORK: without it libDestroy sleeps a second for unregistrations and BYEs,
        # which are sent already; every test with a phone paid that second at its end.
        self.endpoint.libDestroy(pj.PJSUA_DESTROY_NO_NETWORK)
        # Python objects that wrap pjsua objects must not outlive the library.
        self.calls.clear()
        self.finished_calls.clear()
        self.account = None


def read_commands(commands: queue.Queue[str], agent: Agent) -> None:
    """Queue stdin lines for the main thread; end of input means quit."""
    for line in sys.stdin:
        commands.put(line.strip())
    agent.stop_requested = True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--registrar", help="HOST:PORT; omitted: no registration")
    parser.add_argument("--domain", help="domain of the AOR (default: the registrar)")
    parser.add_argument("--user", default="1001")
    parser.add_argument("--password", default=None)
    parser.add_argument("--realm", default="*")
    parser.add_argument("--expires", type=int, default=300)
    parser.add_argument("--local-port", type=int, default=0)
    parser.add_argument("--rtp-port", type=int, default=0)
    parser.add_argument("--transport", choices=("udp", "tcp", "tls"), default="udp")
    parser.add_argument(
        "--supported-path", action="store_true", help="REGISTER says Supported: path (RFC 3327)"
    )
    parser.add_argument("--tls-ca", default="", metavar="PEM", help="CAs the node must verify to")
    parser.add_argument("--tls-cert", default="", metavar="PEM", help="client certificate")
    parser.add_argument("--tls-key", default="", metavar="PEM", help="its private key")
    parser.add_argument(
        "--tls-require-client", action="store_true", help="accept TLS only with a client cert"
    )
    parser.add_argument("--auto-answer", type=int, default=200, metavar="CODE")
    parser.add_argument("--answer-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--hangup-after", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--dtmf", default="", metavar="DIGITS")
    parser.add_argument("--dtmf-method", choices=tuple(DTMF_METHODS), default="rfc4733")
    parser.add_argument("--null-audio", action="store_true")
    parser.add_argument("--srtp", choices=("off", *SRTP_USE), default="off")
    parser.add_argument("--tone", type=int, default=0, metavar="HZ")
    parser.add_argument("--record", default="", metavar="WAV")
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--log-file", default="")
    parser.add_argument("--log-level", type=int, default=1)
    args = parser.parse_args(argv)
    if args.auto_answer not in (0,) and not 100 < args.auto_answer < 700:
        parser.error("--auto-answer must be 0 or a SIP status code")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Keep a private copy of stdout for JSON and point fd 1 at stderr, so nothing else that
    # prints (pjlib's default log writer before libInit, C libraries) can reach the JSON stream.
    json_stream = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    emitter = Emitter(json_stream)
    agent = Agent(args, emitter)

    def on_signal(_signum: int, _frame: object) -> None:
        agent.stop_requested = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=read_commands, args=(agent.commands, agent), daemon=True).start()
    status = 0
    reason = "stopped"
    try:
        agent.start()
        reason = agent.run()
    except pj.Error as error:
        emitter.emit("error", where=error.title, reason=error.reason, status=error.status)
        status = 1
        reason = "error"
    finally:
        try:
            agent.shutdown()
        except pj.Error as error:
            emitter.emit("error", where=error.title, reason=error.reason, status=error.status)
            status = 1
        emitter.emit("exit", reason=reason, status=status)
    return status


if __name__ == "__main__":
    sys.exit(main())
