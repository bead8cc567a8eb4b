"""Emulated agents of `hotline loadtest run`, the pure parts: who they are, how they answer a
digest challenge, and which trace call an agent's INVITE belongs to.

- `load_agents`: agent ids and passwords from the node's own agents.yaml (``--register-agents
  config/agents.yaml``: entries with a plain ``password``; ``ha1_*``-only entries cannot be
  used and are reported) or from a password file (``--agent-password-file``: one
  ``ID PASSWORD`` or ``ID:PASSWORD`` per line, ``#`` comments).
- `authorization`: the Authorization value answering a WWW-Authenticate (or
  Proxy-Authenticate) challenge, RFC 7616 digest with MD5 (or SHA-256), qop=auth when
  offered; the hashes are `softswitch.sip.auth`'s.
- `Correlator`: the node's INVITE to an agent names the caller in its From user (after the
  trunk's number rules, e.g. ``+86`` stripped) and the called number in X-Hotline-Called;
  the waiting caller with that number is the call. Numbers match exactly or, failing that,
  when one ends with the other (at least `MIN_SUFFIX` digits), so normalised numbers still
  match. Several waiting callers with the number: the one that called first, counted as
  ambiguous; none: counted as unmatched (the agent answers all the same).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import msgspec
import yaml

from softswitch.sip.auth import AuthError, _auth_params, digest_response, ha1

MIN_SUFFIX = 7


class AgentSetupError(Exception):
    """Agents that cannot be set up (a bad file, no usable password): one line."""


class AgentAccount(msgspec.Struct, frozen=True):
    agent_id: str
    password: str


def load_agents(path: Path, *, yaml_file: bool) -> list[AgentAccount]:
    """The accounts in `path`: an agents.yaml (`yaml_file`) or an ``ID PASSWORD`` file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentSetupError(f"{path}: {exc}") from None
    if yaml_file:
        return _from_yaml(path, text)
    accounts = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1) if " " in line or "\t" in line else line.split(":", 1)
        if len(parts) != 2 or not parts[0] or not parts[1].strip():
            raise AgentSetupError(f"{path}:{number}: expected ID PASSWORD (or ID:PASSWORD)")
        accounts.append(AgentAccount(parts[0], parts[1].strip()))
    if not accounts:
        raise AgentSetupError(f"{path}: no agents")
    return accounts


def _from_yaml(path: Path, text: str) -> list[AgentAccount]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AgentSetupError(f"{path}: {exc}".replace("\n", " ")) from None
    entries = data.get("agents") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise AgentSetupError(f"{path}: expected a mapping with a list `agents`")
    accounts = []
    without = []
    for entry in entries:
        if not isinstance(entry, dict) or "id" not in entry:
            continue
        if entry.get("mobile"):
            continue  # a mobile agent is reached through the trunk, not by REGISTER
        if isinstance(entry.get("password"), str | int):
            accounts.append(AgentAccount(str(entry["id"]), str(entry["password"])))
        else:
            without.append(str(entry["id"]))
    if not accounts:
        why = f" (only ha1 for {', '.join(without)})" if without else ""
        raise AgentSetupError(f"{path}: no agent with a plain password{why}")
    return accounts


# --- digest, client side (RFC 7616 §3.4) -------------------------------------------------------
class Challenge(msgspec.Struct, frozen=True):
    realm: str
    nonce: str
    algorithm: str
    qop: str | None
    opaque: str | None


def pick_challenge(values: Sequence[str]) -> Challenge | None:
    """The first Digest challenge of `values` with MD5 (else SHA-256); None when none fits."""
    found: dict[str, Challenge] = {}
    for value in values:
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() != "digest":
            continue
        try:
            params = _auth_params(rest, 0)
        except AuthError:
            continue
        if "realm" not in params or "nonce" not in params:
            continue
        algorithm = params.get("algorithm", "MD5").upper()
        qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
        qop = "auth" if "auth" in qops else None
        if qops and qop is None:
            continue  # auth-int only
        found.setdefault(
            algorithm,
            Challenge(params["realm"], params["nonce"], algorithm, qop, params.get("opaque")),
        )
    return found.get("MD5") or found.get("SHA-256")


def authorization(
    challenge: Challenge, username: str, password: str, method: str, uri: str, nc: int = 1
) -> str:
    """The Authorization value answering `challenge` for `method` on `uri`."""
    stored = ha1(username, challenge.realm, password, challenge.algorithm)
    cnonce = secrets.token_hex(8) if challenge.qop else None
    nc_text = f"{nc:08x}" if challenge.qop else None
    response = digest_response(
        stored, challenge.algorithm, method, uri, challenge.nonce, challenge.qop, nc_text, cnonce
    )
    parts = [
        f'username="{username}"', f'realm="{challenge.realm}"', f'nonce="{challenge.nonce}"',
        f'uri="{uri}"', f'response="{response}"', f"algorithm={challenge.algorithm}",
    ]  # fmt: skip
    if challenge.qop:
        parts += [f"qop={challenge.qop}", f"nc={nc_text}", f'cnonce="{cnonce}"']
    if challenge.opaque is not None:
        parts.append(f'opaque="{challenge.opaque}"')
    return "Digest " + ", ".join(parts)


# --- which call an agent got ----------------------------------------------------------------
class Waiting(Protocol):
    """What the correlator reads of a caller."""

    @property
    def waiting_for_agent(self) -> bool: ...


def digits_of(number: str) -> str:
    return number.lstrip("+")


def numbers_match(trace_number: str, signalled: str) -> bool:
    """Whether a number the node signalled is this trace number, allowing for the trunk's
    prefix rules (exact, or one a suffix of the other with at least MIN_SUFFIX digits)."""
    a, b = digits_of(trace_number), digits_of(signalled)
    if not a or not b:
        return False
    if a == b:
        return True
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    return len(short) >= MIN_SUFFIX and long.endswith(short)


class Correlator:
    """Finds the waiting caller an agent's INVITE is for (see the module docstring).

    Callers are registered in arrival order with `add`; `counts` has ``matched``,
    ``ambiguous`` (more than one waiting caller had the number; the one that called first
    was taken) and ``unmatched``."""

    def __init__(self) -> None:
        self._by_number: dict[str, list[tuple[str, str, Waiting]]] = {}
        self.counts = {"matched": 0, "ambiguous": 0, "unmatched": 0}

    def add(self, caller: str, called: str, party: Waiting) -> None:
        key = digits_of(caller)[-MIN_SUFFIX:]
        self._by_number.setdefault(key, []).append((caller, called, party))

    def candidates(self, caller: str, called: str | None) -> list[Waiting]:
        key = digits_of(caller)[-MIN_SUFFIX:]
        pool: Iterable[tuple[str, str, Waiting]] = self._by_number.get(key, [])
        found = [
            (number, dialled, party)
            for number, dialled, party in pool
            if party.waiting_for_agent and numbers_match(number, caller)
        ]
        exact = [entry for entry in found if digits_of(entry[0]) == digits_of(caller)]
        found = exact or found
        if called and len(found) > 1:
            same = [entry for entry in found if numbers_match(entry[1], called)]
            found = same or found
        return [party for _number, _dialled, party in found]

    def match(self, caller: str, called: str | None) -> Waiting | None:
        """The caller this agent INVITE is for, counted; the first added of several."""
        found = self.candidates(caller, called)
        if not found:
            self.counts["unmatched"] += 1
            return None
        self.counts["ambiguous" if len(found) > 1 else "matched"] += 1
        return found[0]
