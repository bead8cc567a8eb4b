"""The registrar (RFC 3261 §10.3) for agents' phones, with digest authentication (RFC 8760).

REGISTER → challenge (one WWW-Authenticate per configured algorithm, MD5 first in the demo) →
verified credentials → the location service → 200 OK listing the AOR's bindings. Unknown users
and wrong passwords get the same 403 (SIP-8: no extension enumeration); repeated failures from
one address ban it for a while. An agent becomes available to the ACD when its AOR gets its
first binding and unavailable when the last one goes.

A REGISTER that came through an edge proxy or SBC carries Path (RFC 3327): the path vector is
stored with the bindings, and requests to the phone follow it (`softswitch/call/sipcodec.py`
`binding_route`). The 200 OK echoes it (§5.3) to a phone that said `Supported: path`; to one
that did not, nothing is echoed (RFC 3261 §8.2.4), as SBCs add Path to every REGISTER in
front of phones that never say it (pjsip 2.15). `registrar.path_without_support: refuse`
answers those 420 with `Unsupported: path` instead, §5.3's stricter policy.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from softswitch.call.extensions import option_tags
from softswitch.config import Config
from softswitch.sip.auth import DigestServer
from softswitch.sip.build import make_response
from softswitch.sip.errors import SipParseError
from softswitch.sip.location import (
    Binding,
    BindingExpired,
    ContactSpec,
    IntervalTooBriefError,
    LocationService,
    OutOfOrderRequestError,
    RegisterOutcome,
    RegistrarError,
    TooManyContactsError,
)
from softswitch.sip.message import Request, Response, parse_name_addr, parse_uri
from softswitch.sip.ratelimit import FailureTracker
from softswitch.sip.transaction import Target

log = logging.getLogger("hotline.registrar")


class AgentReachability(msgspec.Struct, frozen=True):
    """An agent's phone became reachable (first binding) or unreachable (last one gone)."""

    agent_id: str
    reachable: bool


class AuthAlert(msgspec.Struct, frozen=True):
    """A source was banned (`bans`: how many times, the ban doubling each time) or a user
    put under guard, until `until` (SIP-8: an operator should hear of guessing)."""

    kind: str  # "source_banned" | "user_guarded"
    source: str
    user: str
    bans: int
    until: float


class Registrar:
    def __init__(
        self,
        config: Config,
        digest: DigestServer,
        location: LocationService,
        failures: FailureTracker,
    ) -> None:
        self.config = config
        self.digest = digest
        self.location = location
        self.failures = failures
        self.counters = {"registered": 0, "auth_failures": 0, "banned": 0}
        self.alerts: list[AuthAlert] = []  # the switch publishes and empties it
        # Where bindings survive a restart (softswitch/bindings.py `BindingStore`; None:
        # nowhere). Written in the input's transaction, before the 200 OK is sent.
        self.store: Any = None

    def handle(
        self, request: Request, source: Target, now: float
    ) -> tuple[Response, list[AgentReachability]]:
        """Answer one REGISTER; also report agents whose reachability changed."""
        if self.failures.is_banned(source.host, now):
            self.counters["banned"] += 1
            return make_response(request, 403), []
        try:
            aor_user = parse_uri(request.to.uri).user or ""
        except SipParseError as exc:
            return make_response(request, 400, f"Bad To: {exc}"), []
        if self.failures.user_refused(aor_user, source.host, now):
            # A user under a guessing attack: only the addresses it registered from are
            # heard; the same 403 as a wrong password (nothing tells users apart).
            self.counters["banned"] += 1
            return make_response(request, 403), []
        try:
            path = path_vector(request)
        except (RegistrarError, SipParseError) as exc:
            return make_response(request, 400, str(exc)), []
        if (
            path
            and self.config.registrar.path_without_support == "refuse"
            and "path" not in option_tags(request, "supported")
        ):
            # RFC 3327 §5.3: Path without the phone's support; the same for every user.
            return make_response(request, 420, extra=[("unsupported", "path")]), []
        credentials = next(
            (v for v in request.headers.get_all("authorization") if v[:7].lower() == "digest "),
            None,
        )
        if credentials is None:
            # None, or only schemes the node does not know: those are ignored and the client
            # gets a Digest challenge (RFC 4475 §3.3.7), not a failure counted against it.
            return self._challenge(request, now, False), []
        result = self.digest.verify(credentials, "REGISTER", now, self._lookup_ha1)
        if result.stale:
            return self._challenge(request, now, True), []
        if not result.ok or result.username != aor_user:
            return self._refused(request, source, aor_user, result, now), []
        self.failures.record_success(aor_user, source.host)
        try:
            outcome = self._apply(request, aor_user, source, now, path)
        except IntervalTooBriefError:
            return make_response(
                request, 423, extra=[("min-expires", str(self.location.min_expires))]
            ), []
        except OutOfOrderRequestError as exc:
            return make_response(request, 500, f"Out of order: {exc}"), []
        except TooManyContactsError as exc:
            return make_response(request, 403, str(exc)), []
        except (RegistrarError, SipParseError, ValueError) as exc:
            return make_response(request, 400, str(exc)), []
        self.counters["registered"] += 1
        if self.store is not None:
            self.store.save(outcome.saved)
            if outcome.removed:
                self.store.remove(aor_user, outcome.removed)
        contacts = [
            (
                "contact",
                f"<{b.contact}>;expires={b.expires_in(now)}" + (f";q={b.q}" if b.q != 1.0 else ""),
            )
            for b in outcome.bindings
        ]
        # RFC 3327 §5.3: the 200 copies the request's Path, in its order, to a phone that
        # supports it (RFC 3261 §8.2.4: never an extension the phone did not list).
        if "path" in option_tags(request, "supported"):
            contacts.extend(("path", value) for value in path)
        changes: list[AgentReachability] = []
        if outcome.aor_was_empty and not outcome.aor_now_empty:
            changes.append(AgentReachability(aor_user, True))
            log.info(
                "agent %s registered from %s:%d%s", aor_user, source.host, source.port,
                f" (Path {', '.join(path)})" if path else "",
            )  # fmt: skip
        elif outcome.aor_now_empty and not outcome.aor_was_empty:
            changes.append(AgentReachability(aor_user, False))
            log.info("agent %s unregistered", aor_user)
        return make_response(request, 200, extra=contacts), changes

    def _refused(
        self, request: Request, source: Target, user: str, result: Any, now: float
    ) -> Response:
        """Credentials that do not prove `user`: counted towards the guessing bans (alerts
        for a ban or a guard), logged, answered 403."""
        self.counters["auth_failures"] += 1
        failed = self.failures.failure(source.host, user, now)
        log.warning(
            "%s for %r from %s:%d refused (%s)%s",
            request.method, user, source.host, source.port,
            result.reason if result.ok is False else "user mismatch",
            "; source banned" if failed.banned else "",
        )  # fmt: skip
        if failed.banned_until is not None:
            self.alerts.append(
                AuthAlert("source_banned", source.host, user, failed.bans, failed.banned_until)
            )
        if failed.guarded_until is not None:
            self.alerts.append(
                AuthAlert("user_guarded", source.host, user, 0, failed.guarded_until)
            )
        return make_response(request, 403)

    def authorize(
        self, request: Request, source: Target, agent_id: str, now: float
    ) -> Response | None:
        """A request (an INVITE) from the registered phone of `agent_id`: None when its
        Proxy-Authorization proves the agent's password, else the answer to send (407 with
        the realm's challenges, or 403; failures count towards the guessing bans as for
        REGISTER)."""
        if self.failures.is_banned(source.host, now):
            self.counters["banned"] += 1
            return make_response(request, 403)
        credentials = request.headers.get("proxy-authorization")
        stale = False
        if credentials is not None:
            result = self.digest.verify(credentials, request.method, now, self._lookup_ha1)
            if result.ok and result.username == agent_id:
                return None
            stale = result.stale
            if not stale:
                return self._refused(request, source, agent_id, result, now)
        values = self.digest.challenge(now, stale=stale)
        return make_response(request, 407, extra=[("proxy-authenticate", v) for v in values])

    def expired(self, events: list[BindingExpired]) -> list[AgentReachability]:
        """Bindings the location service let expire: unsaved, and the agents whose last
        binding it was become unreachable."""
        if self.store is not None:
            for event in events:
                self.store.remove(event.aor, [event.contact])
        return [AgentReachability(e.aor, False) for e in events if e.aor_now_empty]

    def restore(self, bindings: list[Binding], now: float) -> list[AgentReachability]:
        """Bindings saved before a restart, back in the location service (expired ones are
        skipped); their agents are reachable again."""
        reached = self.location.restore(bindings, now)
        for aor in reached:
            log.info("agent %s registered (restored from before the restart)", aor)
        return [AgentReachability(aor, True) for aor in reached]

    def _apply(
        self, request: Request, aor: str, source: Target, now: float, path: list[str]
    ) -> RegisterOutcome:
        call_id = request.call_id
        cseq = request.cseq[0]
        expires_header = request.headers.get("expires")
        default = int(expires_header) if expires_header and expires_header.isdigit() else None
        values = request.headers.get_all("contact")
        if values == ["*"]:
            if default != 0:
                raise RegistrarError("Contact: * needs Expires: 0")  # §10.3 step 6
            return self.location.remove_all(aor, call_id, cseq, now)
        specs: list[ContactSpec] = []
        for value in values:
            if value == "*":
                raise RegistrarError("Contact: * mixed with other contacts")
            addr = parse_name_addr(value)
            params = dict(addr.params)
            expires_param = params.pop("expires", None)
            q_param = params.pop("q", None)
            expires = int(expires_param) if expires_param is not None else default
            q = float(q_param) if q_param is not None else None
            if addr.uri[:5].lower() == "sips:" and source.transport != "TLS" and expires != 0:
                # RFC 5630 §3.2: a SIPS Contact is reached over TLS only (400).
                raise RegistrarError(f"sips: Contact registered over {source.transport}: use TLS")
            specs.append(ContactSpec(addr.uri, expires, q, params))
        return self.location.register(
            aor,
            specs,
            call_id,
            cseq,
            now,
            (source.host, source.port),
            source.transport,
            request.headers.get("user-agent"),
            path,
        )

    def _lookup_ha1(self, username: str, algorithm: str) -> str | None:
        """The agent's HA1 for `algorithm`, or None (then the digest server checks against a
        dummy) when the agent is unknown or its `algorithms` leave this one out: a restricted
        agent is held to its algorithms here, at verification, not by what it is offered."""
        agent = self.config.agent(username)
        if agent is None or algorithm not in self.config.algorithms_for(agent):
            return None
        return agent.ha1(algorithm, self.digest.realm)

    def _challenge(self, request: Request, now: float, stale: bool) -> Response:
        """401 with the realm's algorithms, the same for every user (SIP-8).

        A challenge chosen by the To user (an agent's own `algorithms`) told a scanner which
        names are agents and how each is set up; the same set for every name tells nothing,
        and each phone answers the one it supports (RFC 8760 §2.4)."""
        values = self.digest.challenge(now, stale=stale)
        return make_response(request, 401, extra=[("www-authenticate", v) for v in values])


def path_vector(request: Request) -> list[str]:
    """The REGISTER's Path values in order (RFC 3327 §5.3), each `<uri;params>`; raises
    `RegistrarError` (400) for one that is not a sip: or sips: name-addr."""
    vector: list[str] = []
    for value in request.headers.get_all("path"):
        uri = parse_uri(parse_name_addr(value).uri)
        if not uri.is_sip or not uri.host:
            raise RegistrarError(f"Path {value[:80]!r} is not a SIP URI")
        vector.append(value.strip())
    return vector
