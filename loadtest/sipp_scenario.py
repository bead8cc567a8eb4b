"""The SIPp caller scenario of ``hotline loadtest run --engine sipp``, written per run.

One SIPp call replays one trace row, read from the injection file (`loadtest.sipp`): fields
``call_id;due_ms;caller;called;keys;patience_ms;talk_ms`` (``keys`` ``K@THINK_MS`` items
joined by ``,``; every time already in real milliseconds, i.e. × the time scale).

- **Pacing.** SIPp creates the calls a little ahead of their time (``-r``, see
  `loadtest.sipp.creation_rate`); each call then reads the wall clock (``gettimeofday``) and
  pauses until ``t0_ms + due_ms`` (``t0_ms`` given with ``-set``, the same for every SIPp
  process of the run) before its INVITE. A call created late sends at once; its lateness
  is in the log, so the report can say how exact the pacing was.
- **Caller, IVR, patience, talk** as the project's own caller (`loadtest.caller`): INVITE
  from ``caller`` to ``called`` offering PCMU + telephone-event 101; the 200 is ACKed; keys
  are RFC 4733 captures played at their think times; then the caller waits ``patience_ms``
  for an agent (forever: a pause longer than the run) and hangs up with BYE, or CANCELs the
  INVITE when it was never answered (the wait then counts from the INVITE). An agent's
  answer reaches the caller as an INFO with the call's Call-ID, sent by the run's emulated
  agents (the node sends the caller nothing when an agent answers a call the IVR already
  answered); from it the caller talks ``talk_ms`` and hangs up.
- **Out-of-place messages** (an INFO or BYE during a pause, a 200 or a final response to
  an INVITE the caller is cancelling) go to SIPp's ``_unexp.main`` handler, which acts by
  the call's ``phase`` and either continues elsewhere or returns to the interrupted pause.
- **Results** are ``<log>`` lines ``call_id;event;[timestamp]`` (`loadtest.sipp.parse_log`).
  Events: ``created``, ``invite``, ``provisional``, ``answered``, ``key:K``, ``waiting``,
  ``agent``, ``abandon``, ``bye``, ``bye_ok``, ``bye_failed``, ``status:N``,
  ``remote_bye``, ``cancel_crossed``, ``end``.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

# Final responses a node may send to an INVITE (RFC 3261 §21 and common extensions). A code
# not listed is an unexpected message to SIPp: the call is aborted and counted as failed.
FINAL_CODES = (
    400, 401, 402, 403, 404, 405, 406, 407, 408, 410, 413, 414, 415, 416, 420, 421, 422, 423,
    428, 429, 433, 480, 481, 482, 483, 484, 485, 486, 487, 488, 489, 491, 493, 494, 500, 501,
    502, 503, 504, 505, 513, 580, 600, 603, 604, 606, 607, 608,
)  # fmt: skip
BYE_FAILURES = (400, 403, 404, 405, 408, 480, 481, 486, 487, 488, 500, 501, 503, 504)
SILENCE_FILE = "silence.ulaw"  # raw G.711 mu-law silence (0xFF), looped by SIPp's RTP stream
KEY_NAMES = {"*": "star", "#": "pound", **{str(d): str(d) for d in range(10)}}

# Call phases (the ``phase`` variable): what an out-of-place message means depends on them.
NEW, CALLING, IVR, WAITING, TALKING, ENDING, CANCELLING, ENDED = 0, 1, 2, 3, 4, 5, 6, 7

_INVITE = """
      INVITE sip:[field3]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-[pid]-[call_number]-invite;rport
      From: <sip:[field2]@[local_ip]:[local_port]>;tag=[pid]LT[call_number]
      To: <sip:[field3]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:[field2]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO
      Subject: hotline loadtest [field0]
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=loadtest [pid] [call_number] IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 8 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-16
      a=ptime:20
      a=sendrecv
"""

_HEADERS = """
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[field2]@[local_ip]:[local_port]>;tag=[pid]LT[call_number]
      To: <sip:[field3]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]"""

_ACK_2XX = (
    "\n      ACK [$remote_target] SIP/2.0"
    + _HEADERS
    + """
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
"""
)

_BYE = (
    "\n      BYE [$remote_target] SIP/2.0"
    + _HEADERS
    + """
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0
"""
)


def _in_invite_transaction(method: str, to_tag: str) -> str:
    """CANCEL (RFC 3261 §9.1) and the ACK of a non-2xx final response (§17.1.1.3) belong to
    the INVITE's transaction: its Request-URI, its top Via (the INVITE's branch is spelt out,
    unique per SIPp process and call, rather than SIPp's position-dependent [branch]),
    CSeq 1."""
    return f"""
      {method} sip:[field3]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-[pid]-[call_number]-invite;rport
      From: <sip:[field2]@[local_ip]:[local_port]>;tag=[pid]LT[call_number]
      To: <sip:[field3]@[remote_ip]:[remote_port]>{to_tag}
      Call-ID: [call_id]
      CSeq: 1 {method}
      Max-Forwards: 70
      Content-Length: 0
"""


_CANCEL = _in_invite_transaction("CANCEL", "")
_ACK_ERROR = _in_invite_transaction("ACK", "[peer_tag_param]")

_OK_TO_REQUEST = """
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[field2]@[local_ip]:[local_port]>
      Content-Length: 0
"""


def _send(body: str, attrs: str = "") -> str:
    return f"  <send{attrs}>\n    <![CDATA[\n{body}\n    ]]>\n  </send>\n"


def _log(event: str) -> str:
    return f'<log message="[field0];{event};[timestamp]"/>'


def _nop(*actions: str, attrs: str = "") -> str:
    inner = "".join(f"      {a}\n" for a in actions)
    return f"  <nop{attrs}>\n    <action>\n{inner}    </action>\n  </nop>\n"


def _phase(value: int) -> str:
    return f'<assign assign_to="phase" value="{value}"/>'


def _is_phase(name: str, value: int) -> str:
    return f'<test assign_to="{name}" variable="phase" compare="equal" value="{value}"/>'


def _return() -> str:
    """Back to the command the handler interrupted, with its pause's remaining time."""
    return _nop(
        '<jump variable="_unexp.retaddr"/>',
        '<pauserestore variable="_unexp.pausedaddr"/>',
        '<assign assign_to="_unexp.retaddr" value="0"/>',
    )


def _recv(code: int | str, attrs: str = "", actions: tuple[str, ...] = ()) -> str:
    kind = f'request="{code}"' if isinstance(code, str) else f'response="{code}"'
    if not actions:
        return f"  <recv {kind}{attrs}/>\n"
    inner = "".join(f"      {a}\n" for a in actions)
    return f"  <recv {kind}{attrs}>\n    <action>\n{inner}    </action>\n  </recv>\n"


_CONTACT = (
    '<ereg regexp="sips?:[^&gt;]*" search_in="hdr" header="Contact:" assign_to="remote_target"/>'
)
_AGENT = '<assign assign_to="agent" value="1"/>'
# an INFO from the run: "X-Loadtest: agent-answered" or "X-Loadtest: hangup" (the run ends)
_INFO_ACTIONS = (
    _AGENT,
    '<ereg regexp="hangup" search_in="hdr" header="X-Loadtest:" assign_to="cut"/>',
)
_NOW_MS = (
    '<gettimeofday assign_to="now_s,now_us"/>',
    '<multiply assign_to="now_s" value="1000"/>',
    '<divide assign_to="now_us" value="1000"/>',
    '<add assign_to="now_s" variable="now_us"/>',
)


def caller_scenario(linger_ms: int = 2000, poll_ms: int = 100, rtp: bool = True) -> str:
    """The scenario XML. Every key gets a branch that plays ``dtmf_2833_<name>.pcap`` (SIPp
    loads captures with the scenario, so they are files next to it, not per-call values);
    `linger_ms` is how long an ended call stays to answer retransmissions; `rtp`: RTP
    silence while the call is up (SIPp's RTP stream); `poll_ms` how
    often a caller whose INVITE is unanswered checks its patience."""
    out = [
        '<?xml version="1.0" encoding="UTF-8" ?>\n',
        '<!DOCTYPE scenario SYSTEM "sipp.dtd">\n',
        "<!-- written by hotline loadtest run with the SIPp engine (loadtest/sipp_scenario.py) -->\n",
        '<scenario name="hotline loadtest caller">\n',
        '  <Global variables="t0_ms"/>\n',
    ]
    # 1. wait until the call is due: t0 + due - now (ms)
    out.append(
        _nop(
            _log("created"),
            *_NOW_MS,
            '<assignstr assign_to="due_text" value="[field1]"/>',
            '<todouble assign_to="wait_ms" variable="due_text"/>',
            '<todouble assign_to="t0" variable="t0_ms"/>',
            '<add assign_to="wait_ms" variable="t0"/>',
            '<subtract assign_to="wait_ms" variable="now_s"/>',
            '<test assign_to="late" variable="wait_ms" compare="less_than" value="1"/>',
            '<assignstr assign_to="patience_text" value="[field5]"/>',
            '<todouble assign_to="patience_ms" variable="patience_text"/>',
            '<assignstr assign_to="talk_text" value="[field6]"/>',
            '<todouble assign_to="talk_ms" variable="talk_text"/>',
            '<assignstr assign_to="keys" value="[field4]"/>',
            '<assign assign_to="agent" value="0"/>',
            _phase(NEW),
        )
    )
    out.append('  <nop next="due" test="late"/>\n')
    out.append('  <pause variable="wait_ms"/>\n')
    out.append('  <label id="due"/>\n')
    out.append(
        _nop(_log("invite"), _phase(CALLING), *_NOW_MS,
             '<assign assign_to="deadline" value="0"/>',
             '<add assign_to="deadline" variable="now_s"/>',
             '<add assign_to="deadline" variable="patience_ms"/>')
    )  # fmt: skip
    # 2. calling: the responses are awaited in the main flow, `poll_ms` at a time, the
    # patience (from the INVITE) checked between. SIPp reads the socket between any two
    # commands, so the send is followed directly by the recvs; a message that arrives in
    # the few commands elsewhere goes to the handler, which does the same as here.
    out.append(_send(_INVITE, ' retrans="500"'))
    out.append('  <label id="poll"/>\n')
    # SIPp takes the wait's timeout from the group's first recv, and forgets it when an
    # optional recv matches without a jump: so each provisional jumps back to the group
    poll = f' timeout="{poll_ms}" ontimeout="poll_check"'
    for index, code in enumerate((100, 180, 181, 182, 183)):
        out.append(
            _recv(
                code,
                ' optional="true" next="poll"' + (poll if index == 0 else ""),
                (_log("provisional"),),
            )
        )
    for code in FINAL_CODES:
        out.append(_recv(code, ' optional="true" next="rejected"', (_log(f"status:{code}"),)))
    # an INFO from the run while calling (an agent answered a queue route before the node's
    # 200 came, or the run ends): remembered, and not answered here. Answering would take
    # the call out of this group for a few commands, and a 200 arriving then is taken by
    # SIPp for a retransmission (it sends the ACK and drops it); the run's INFO is sent
    # again and answered by the handler once the call is up.
    out.append(_recv("INFO", ' optional="true" next="poll"', _INFO_ACTIONS))
    out.append(_recv("BYE", ' optional="true" next="remote_bye"'))
    out.append(_recv(200, poll, (_CONTACT, _log("answered"))))
    # the 200's ACK right after its recv: SIPp then ACKs a retransmitted 200 by itself
    out.append('  <label id="answered_ack"/>\n')
    out.append(_send(_ACK_2XX))
    out.append(
        _nop(
            '<test assign_to="agent_first" variable="agent" compare="equal" value="1"/>',
            # RTP silence while the call is up, so the node's RTP timeout never ends it
            *([f'<exec rtp_stream="{SILENCE_FILE},-1,0"/>'] if rtp else []),
            _phase(IVR),
            '<assign assign_to="_unexp.retaddr" value="0"/>',  # when the handler came here
        )
    )
    out.append('  <nop next="talk" test="agent_first"/>\n')
    out.append('  <nop next="keyloop"/>\n')

    out.append('  <label id="poll_check"/>\n')
    out.append(
        _nop(*_NOW_MS, '<subtract assign_to="now_s" variable="deadline"/>',
             '<test assign_to="expired" variable="now_s" compare="greater_than" value="0"/>')
    )  # fmt: skip
    out.append('  <nop next="cancel" test="expired"/>\n')
    out.append('  <nop next="cut_calling" test="cut"/>\n')
    out.append('  <nop next="poll"/>\n')
    out.append('  <label id="cut_calling"/>\n')
    out.append(_nop(_log("cut"), attrs=' next="cancel_now"'))

    # 3. the caller's patience ran out before any answer: CANCEL (RFC 3261 §9.1)
    out.append('  <label id="cancel"/>\n')
    out.append(_nop(_log("abandon")))
    out.append('  <label id="cancel_now"/>\n')
    out.append(_nop(_phase(CANCELLING), '<assign assign_to="_unexp.retaddr" value="0"/>'))
    out.append(_send(_CANCEL, ' retrans="500"'))
    # the CANCEL's 200 and the INVITE's final response, in either order; a 200 to the
    # INVITE that crossed the CANCEL is ACKed and ended with BYE
    out.append(
        _recv(200, ' optional="true" next="crossed" test="cseq_invite"',
              ('<ereg regexp="INVITE" search_in="hdr" header="CSeq:" assign_to="cseq_invite"/>',
               _CONTACT))
    )  # fmt: skip
    for code in FINAL_CODES:
        if code != 487:
            out.append(_recv(code, ' optional="true" next="cancel_ack"', (_log(f"status:{code}"),)))
    out.append(_recv(487, ' timeout="32000" ontimeout="cancel_ack"', (_log("status:487"),)))
    out.append('  <label id="cancel_ack"/>\n')
    out.append(_send(_ACK_ERROR))
    out.append('  <nop next="end"/>\n')
    out.append('  <label id="crossed"/>\n')
    out.append(_nop(_log("cancel_crossed")))
    out.append(_send(_ACK_2XX))
    out.append('  <nop next="hangup"/>\n')

    # 4. answered by the IVR: keys, "K@MS,K@MS,." - each turn takes the first item off;
    # "." alone is the end (it keeps the rest non-empty: SIPp leaves a variable as it was
    # when its group matches nothing)
    out.append('  <label id="keyloop"/>\n')
    out.append(
        _nop(
            '<strcmp assign_to="keys_cmp" variable="keys" value="."/>',
            '<test assign_to="keys_done" variable="keys_cmp" compare="equal" value="0"/>',
        )
    )
    out.append('  <nop next="waiting" test="keys_done"/>\n')
    out.append(
        _nop(
            '<ereg regexp="^([0-9*#])@([0-9]+),(.+)$" search_in="var" variable="keys" '
            'assign_to="key_item,key,think_text,keys"/>',
            '<todouble assign_to="think_ms" variable="think_text"/>',
            '<assignstr assign_to="key_item" value=""/>',  # SIPp refuses a variable used once
        )
    )
    out.append('  <pause variable="think_ms"/>\n')
    for key, name in KEY_NAMES.items():
        out.append(
            _nop(
                f'<strcmp assign_to="key_cmp" variable="key" value={quoteattr(key)}/>',
                f'<test assign_to="is_{name}" variable="key_cmp" compare="equal" value="0"/>',
            )
        )
        out.append(f'  <nop next="key_{name}" test="is_{name}"/>\n')
    out.append('  <nop next="keyloop"/>\n')
    for name in KEY_NAMES.values():
        out.append(f'  <label id="key_{name}"/>\n')
        out.append(_nop(f'<exec play_pcap_audio="dtmf_2833_{name}.pcap"/>', _log("key:[$key]")))
        out.append('  <nop next="keyloop"/>\n')

    # 5. waiting for an agent, patience from the end of the keys
    out.append('  <label id="waiting"/>\n')
    out.append(_nop(_log("waiting"), _phase(WAITING)))
    out.append('  <pause variable="patience_ms"/>\n')
    out.append(_nop(_log("abandon")))
    out.append('  <nop next="hangup"/>\n')

    # 6. talking: an agent answered
    out.append('  <label id="talk"/>\n')
    out.append(
        _nop(_log("agent"), _phase(TALKING), '<assign assign_to="_unexp.retaddr" value="0"/>')
    )
    out.append('  <pause variable="talk_ms"/>\n')
    out.append('  <label id="hangup"/>\n')
    out.append(_nop(_log("bye"), _phase(ENDING)))
    out.append(_send(_BYE, ' retrans="500"'))
    for code in BYE_FAILURES:
        out.append(_recv(code, ' optional="true" next="bye_failed"'))
    out.append(_recv(200, ' timeout="32000" ontimeout="bye_failed"', (_log("bye_ok"),)))
    out.append('  <nop next="end"/>\n')
    out.append('  <label id="bye_failed"/>\n')
    out.append(_nop(_log("bye_failed")))
    out.append('  <nop next="end"/>\n')

    # 7. a final response >= 300 to the INVITE (logged with its recv): ACK it
    out.append('  <label id="rejected"/>\n')
    out.append(_nop('<assign assign_to="_unexp.retaddr" value="0"/>'))
    out.append(_send(_ACK_ERROR))
    out.append('  <nop next="end"/>\n')

    # 8. the node's BYE: 200, the call is over
    out.append('  <label id="remote_bye"/>\n')
    out.append(_send(_OK_TO_REQUEST))
    out.append(_nop(_log("remote_bye")))

    # 9. the end: linger for retransmissions, then past the handler to the finish
    out.append('  <label id="end"/>\n')
    out.append(
        _nop(_log("end"), _phase(ENDED), '<assign assign_to="_unexp.retaddr" value="0"/>')
    )  # the call's RTP stream ends with the call
    out.append(f'  <pause milliseconds="{linger_ms}"/>\n')
    out.append('  <nop next="finish"/>\n')
    out.append(_handler())
    out.append('  <label id="finish"/>\n')
    out.append("</scenario>\n")
    return "".join(out)


def _handler() -> str:
    """``_unexp.main``: the requests that arrive during a pause (keys, waiting, talking, the
    linger), and responses out of place. Each path is short: a second message arriving
    while the handler runs aborts the call (SIPp allows no nesting)."""
    out = ['  <label id="_unexp.main"/>\n']
    out.append(_recv("INFO", ' optional="true" next="h_info"', _INFO_ACTIONS))
    out.append(_recv("BYE", ' optional="true" next="h_bye"'))
    for code in (100, 180, 181, 182, 183):
        out.append(_recv(code, ' optional="true" next="h_return"', (_log("provisional"),)))
    for code in FINAL_CODES:
        out.append(
            _recv(code, ' optional="true" next="h_final"',
                  (_log(f"status:{code}"), _is_phase("in_calling", CALLING)))
        )  # fmt: skip
    # a 200: the INVITE's while calling (it came while the caller checked its patience), or
    # the CANCEL's after the 487 (a retransmitted INVITE 200 is ACKed by SIPp itself)
    out.append(
        _recv(200, ' next="h_200"', (
            '<ereg regexp="sips?:[^&gt;]*" search_in="hdr" header="Contact:" '
            'assign_to="contact_now"/>',
            '<ereg regexp="[0-9]+ *([A-Z]+)" search_in="hdr" header="CSeq:" '
            'assign_to="cseq_all,cseq_method"/>',
            '<assignstr assign_to="cseq_all" value=""/>',
            '<strcmp assign_to="cseq_cmp" variable="cseq_method" value="INVITE"/>',
            '<test assign_to="is_invite" variable="cseq_cmp" compare="equal" value="0"/>',
            _is_phase("in_calling", CALLING),
        ))
    )  # fmt: skip
    out.append('  <label id="h_200"/>\n')
    out.append('  <nop next="h_200_invite" test="is_invite"/>\n')
    out.append('  <nop next="h_return"/>\n')
    out.append('  <label id="h_200_invite"/>\n')
    out.append('  <nop next="h_answered" test="in_calling"/>\n')
    out.append('  <nop next="h_return"/>\n')
    out.append('  <label id="h_answered"/>\n')
    out.append(
        _nop('<assignstr assign_to="remote_target" value="[$contact_now]"/>', _log("answered"),
             attrs=' next="answered_ack"')
    )  # fmt: skip
    # a final response: while calling, the call was rejected; later, a retransmission
    out.append('  <label id="h_final"/>\n')
    out.append('  <nop next="rejected" test="in_calling"/>\n')
    out.append(_send(_ACK_ERROR))
    out.append('  <nop next="h_return"/>\n')
    out.append('  <label id="h_info"/>\n')
    out.append(_send(_OK_TO_REQUEST))
    out.append(
        _nop(_is_phase("in_ivr", IVR), _is_phase("in_wait", WAITING),
             _is_phase("in_talk", TALKING), _is_phase("in_new", NEW),
             _is_phase("in_calling", CALLING))
    )  # fmt: skip
    out.append('  <nop next="h_cut" test="cut"/>\n')
    out.append('  <nop next="talk" test="in_ivr"/>\n')
    out.append('  <nop next="talk" test="in_wait"/>\n')
    out.append('  <nop next="h_return"/>\n')
    # the run ends (--max-seconds, a signal): end the call as the project's caller does
    out.append('  <label id="h_cut"/>\n')
    for name, target in (("in_new", "new"), ("in_calling", "calling")):
        out.append(f'  <nop next="h_cut_{target}" test="{name}"/>\n')
    for name in ("in_ivr", "in_wait", "in_talk"):
        out.append(f'  <nop next="h_cut_up" test="{name}"/>\n')
    out.append('  <nop next="h_return"/>\n')
    up = '<assign assign_to="_unexp.retaddr" value="0"/>'
    for label, target in (("new", "end"), ("calling", "cancel_now"), ("up", "hangup")):
        out.append(f'  <label id="h_cut_{label}"/>\n')
        out.append(_nop(_log("cut"), up, attrs=f' next="{target}"'))
    out.append('  <label id="h_bye"/>\n')
    out.append(_nop(_is_phase("after_end", ENDED)))
    out.append('  <nop next="h_bye_again" test="after_end"/>\n')
    out.append('  <nop next="remote_bye"/>\n')
    out.append('  <label id="h_bye_again"/>\n')  # a retransmitted BYE during the linger
    out.append(_send(_OK_TO_REQUEST))
    out.append('  <label id="h_return"/>\n')
    out.append(_return())
    return "".join(out)
