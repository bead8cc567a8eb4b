"""Registrations that survive a restart: the registrar's bindings in SQLite, and mobile
agents' logins (a mobile agent's equivalent of a registration, softswitch/agent_requests.py).

Without them a restarted node knows no phone, and every agent stays unavailable until its
phone registers again (up to an hour with the default expiry), while callers wait in the
queue. The registrar writes here whatever a REGISTER or an expiry changed in the location
service (`RegisterOutcome.saved` / `removed`, `BindingExpired`); the node restores the rows
not yet expired when it starts, before it handles any message, so the agents are
available to the ACD at once.

The rows live in the table ``bindings`` of the node's database (DATA/hotline.db) and are
written on the CDR store's connection: a REGISTER's binding then commits in the one
transaction the node commits per input, before the 200 OK is sent (durable before sent).
A file of its own would cost a second commit for every REGISTER, and a second connection to
hotline.db would wait for the lock the CDR connection holds until the input's commit.

Times: the location service runs on the event loop's monotonic clock, which means nothing
to another process; rows hold wall-clock epoch seconds, converted with `wall_offset`
(wall = monotonic + wall_offset, as for CDR times).

A write that fails (disk full, database locked) is logged and the binding holds in memory
until the node stops; a row that cannot be read back is logged, deleted and skipped.

The transport a phone registered over (UDP, TCP, TLS) is kept with its row. A TCP or TLS
binding is reached over the phone's own connection (its flow), which died with the old
process: a loaded one is reached at its Contact's address instead (`reach_after_restart`:
where the phone listens, port 5060 or 5061 for TLS when the Contact has none), until it
registers again over a new connection. A binding registered through a proxy keeps its Path
(RFC 3327) in its row, so the phone is reached through that proxy after a restart too. A
TLS binding stays TLS (never UDP or TCP): the
node connects out with TLS and checks the phone's certificate (docs/admin.md `tls`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable

import msgspec

from softswitch.sip.errors import SipParseError
from softswitch.sip.headers import parse_uri
from softswitch.sip.location import Binding

__all__ = ["BindingStore", "reach_after_restart"]

log = logging.getLogger("hotline.registrar")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bindings (
    aor TEXT NOT NULL, contact TEXT NOT NULL, expires_at REAL NOT NULL, q REAL NOT NULL,
    call_id TEXT NOT NULL, cseq INTEGER NOT NULL, source_host TEXT NOT NULL,
    source_port INTEGER NOT NULL, transport TEXT NOT NULL, instance TEXT, user_agent TEXT,
    registered_at REAL NOT NULL, reg_id TEXT, params TEXT NOT NULL,
    path TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (aor, contact)
)
"""
_MOBILE_SCHEMA = """
CREATE TABLE IF NOT EXISTS mobile_logins (
    agent TEXT PRIMARY KEY, queues TEXT, at REAL NOT NULL
)
"""
_queues_decoder = msgspec.json.Decoder(list[str] | None)
_COLUMNS = (
    "aor", "contact", "expires_at", "q", "call_id", "cseq", "source_host", "source_port",
    "transport", "instance", "user_agent", "registered_at", "reg_id", "params", "path",
)  # fmt: skip
_INSERT = (
    f"INSERT OR REPLACE INTO bindings ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_COLUMNS))})"
)
_params_decoder = msgspec.json.Decoder(dict[str, str | None])
_path_decoder = msgspec.json.Decoder(list[str])


def reach_after_restart(binding: Binding) -> Binding:
    """A saved stream binding (TCP, TLS) with its source moved to the Contact's address, as
    its old connection is gone; UDP bindings, and Contacts without an address, unchanged."""
    if binding.transport not in ("TCP", "TLS"):
        return binding
    try:
        uri = parse_uri(binding.contact)
    except SipParseError:
        return binding
    if not uri.is_sip or not uri.host:
        return binding
    port = uri.port or (5061 if binding.transport == "TLS" else 5060)
    host = uri.host[1:-1] if uri.host.startswith("[") else uri.host
    return msgspec.structs.replace(binding, source=(host, port))


class BindingStore:
    """The saved bindings of one node, on the connection `db` (the CDR store's)."""

    def __init__(self, db: sqlite3.Connection, wall_offset: float) -> None:
        self._db = db
        self.wall_offset = wall_offset
        db.execute(_SCHEMA)
        db.execute(_MOBILE_SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(bindings)").fetchall()}
        if "path" not in columns:  # a database from before Path (RFC 3327) was kept
            db.execute("ALTER TABLE bindings ADD COLUMN path TEXT NOT NULL DEFAULT '[]'")

    def save(self, bindings: Iterable[Binding]) -> None:
        """Write new or refreshed bindings (a row per AOR and contact URI)."""
        offset = self.wall_offset
        rows = [
            (
                b.aor,
                b.contact,
                b.expires_at + offset,
                b.q,
                b.call_id,
                b.cseq,
                b.source[0],
                b.source[1],
                b.transport,
                b.instance,
                b.user_agent,
                b.registered_at + offset,
                b.reg_id,
                msgspec.json.encode(b.params).decode(),
                msgspec.json.encode(b.path).decode(),
            )
            for b in bindings
        ]
        try:
            self._db.executemany(_INSERT, rows)
        except sqlite3.Error as exc:
            aors = ", ".join(sorted({row[0] for row in rows}))
            log.error("bindings of %s not saved (they hold until the node stops): %s", aors, exc)

    def remove(self, aor: str, contacts: Iterable[str]) -> None:
        """Delete the bindings of `aor` to these contact URIs."""
        try:
            self._db.executemany(
                "DELETE FROM bindings WHERE aor = ? AND contact = ?",
                [(aor, contact) for contact in contacts],
            )
        except sqlite3.Error as exc:
            log.error("removed bindings of %s stay saved (a restart drops them): %s", aor, exc)

    def load(self, wall_now: float) -> list[Binding]:
        """Every binding not expired at `wall_now` (epoch seconds), in monotonic time; the
        expired rows, and rows that cannot be read, are deleted."""
        self._db.execute("DELETE FROM bindings WHERE expires_at <= ?", (wall_now,))
        found: list[Binding] = []
        bad: list[tuple[str, str]] = []
        offset = self.wall_offset
        select = f"SELECT {', '.join(_COLUMNS)} FROM bindings ORDER BY registered_at"
        for row in self._db.execute(select).fetchall():
            values = dict(zip(_COLUMNS, tuple(row), strict=True))
            try:
                values["params"] = _params_decoder.decode(values["params"])
                values["path"] = _path_decoder.decode(values["path"])
                values["source"] = (values.pop("source_host"), values.pop("source_port"))
                values["expires_at"] -= offset
                values["registered_at"] -= offset
                found.append(reach_after_restart(msgspec.convert(values, Binding)))
            except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
                log.error(
                    "saved binding of %r to %r unreadable, dropped: %s",
                    values["aor"],
                    values["contact"],
                    exc,
                )
                bad.append((values["aor"], values["contact"]))
        if bad:
            self._db.executemany("DELETE FROM bindings WHERE aor = ? AND contact = ?", bad)
        return found

    # --- mobile agents' logins -------------------------------------------------------------
    def save_mobile(self, agent_id: str, queues: list[str] | None, wall_now: float = 0.0) -> None:
        """Mobile agent `agent_id` is logged in (to `queues`, None: all its queues)."""
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO mobile_logins (agent, queues, at) VALUES (?, ?, ?)",
                (agent_id, msgspec.json.encode(queues).decode(), wall_now),
            )
        except sqlite3.Error as exc:
            log.error("mobile login of %s not saved (a restart logs it out): %s", agent_id, exc)

    def remove_mobile(self, agent_id: str) -> None:
        """Mobile agent `agent_id` logged out."""
        try:
            self._db.execute("DELETE FROM mobile_logins WHERE agent = ?", (agent_id,))
        except sqlite3.Error as exc:
            log.error("mobile logout of %s not saved (a restart logs it in): %s", agent_id, exc)

    def load_mobile(self) -> list[tuple[str, list[str] | None]]:
        """The saved mobile logins, oldest first: (agent, queues or None); unreadable rows
        are logged and deleted."""
        found: list[tuple[str, list[str] | None]] = []
        for agent_id, queues in self._db.execute(
            "SELECT agent, queues FROM mobile_logins ORDER BY at, agent"
        ).fetchall():
            try:
                found.append((agent_id, _queues_decoder.decode(queues or "null")))
            except msgspec.DecodeError as exc:
                log.error("saved mobile login of %r unreadable, dropped: %s", agent_id, exc)
                self.remove_mobile(agent_id)
        return found
