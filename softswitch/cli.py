"""`hotline` command line: `serve` runs a node, `check` validates a configuration directory,
`reload` makes a running node take a changed one, `blacklist` edits the list of blocked
calling numbers, `voicemail list` shows the messages left, `recordings` finds, exports, plays
and deletes call recordings (`recorder.cli`), `loadtest` makes and checks the call traces of
load tests (`loadtest.cli`).

Exit status 2 means the command line or the configuration is wrong (each problem printed as
`file:line: path: message`); `serve` refuses to start on an invalid configuration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from loadtest.cli import add_parser as _loadtest_parser
from loadtest.cli import loadtest_command
from recorder.cli import add_parser as _recordings_parser
from recorder.cli import recordings_command
from softswitch import control_api, logs
from softswitch.blacklist import BlacklistError, BlacklistStore, Entry
from softswitch.config import check_command, load_config, parse_host_port
from softswitch.control_api import AGENT_ACTIONS
from softswitch.errors import ConfigError

#: Supervisor modes of `hotline agent` (the node rings the supervisor's phone).
SUPERVISE_MODES = ("monitor", "whisper", "barge")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the softswitch")
    serve.add_argument("--config", default="config", help="configuration directory")
    serve.add_argument(
        "--sip-listen",
        action="append",
        metavar="HOST:PORT",
        help="UDP+TCP listening address (repeatable; IPv6 as [::1]:5060); "
        "overrides node.sip_listen",
    )
    serve.add_argument("--data", default="var", help="data directory (SQLite, recordings)")
    serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING ...")
    serve.add_argument(
        "--clock",
        metavar="ISO-TIME",
        help="run the working-hours clock of `time` nodes from this moment (e.g. "
        "2026-12-07T10:00+08:00) instead of now, so the demo's office hours can be tried at "
        "any hour; CDR times stay real",
    )
    check = sub.add_parser("check", help="validate the configuration and exit")
    check.add_argument("--config", default="config", help="configuration directory")
    reload = sub.add_parser(
        "reload",
        help="validate the configuration, then make the running node take it (SIGHUP)",
    )
    reload.add_argument("--config", default="config", help="configuration directory")
    reload.add_argument("--data", default="var", help="data directory of the running node")
    voicemail = sub.add_parser("voicemail", help="voicemail messages (DATA/hotline.db)")
    vm_actions = voicemail.add_subparsers(dest="action", required=True)
    vm_list = vm_actions.add_parser("list", help="messages, newest first")
    vm_list.add_argument("--data", default="var", help="data directory (default: var)")
    vm_list.add_argument("--mailbox", help="only this mailbox")
    _blacklist_parser(sub)
    _recordings_parser(sub)
    _loadtest_parser(sub)
    agent = sub.add_parser(
        "agent",
        help="change a logged-in agent's state on the running node",
        description="Agents log in by registering their phone; these change what a "
        "logged-in agent is offered. login (with --queues: only those) and logout keep the "
        "phone registered; not-ready, break and logout asked during a call take effect when "
        "it ends; lock, unlock and release are a supervisor's.",
    )
    agent.add_argument(
        "action", choices=[*(a.replace("_", "-") for a in AGENT_ACTIONS), *SUPERVISE_MODES]
    )
    agent.add_argument("agent", help="agent id, e.g. 1001")
    agent.add_argument(
        "--supervisor",
        help="monitor, whisper, barge: the supervisor whose phone the node rings into the "
        "agent's call (keys 1, 2, 3 change the mode)",
    )
    agent.add_argument("--reason", default="", help="reason code for not-ready or lock")
    agent.add_argument(
        "--queues",
        default=None,
        help="login: the queues to take calls from, comma-separated (default: all the "
        "agent's queues)",
    )
    agent.add_argument("--data", default="var", help="data directory of the running node")
    callbacks = sub.add_parser(
        "callbacks",
        help="callers to call back: callback requests and abandoned calls (DATA/hotline.db)",
    )
    callbacks.add_argument("--hours", type=float, default=24.0, help="how far back (24)")
    callbacks.add_argument("--data", default="var", help="data directory (default: var)")
    cb_actions = callbacks.add_subparsers(dest="action")  # none: the list
    dial = cb_actions.add_parser(
        "dial",
        help="the running node rings the agent's phone, then calls NUMBER back through the "
        "trunk as the hotline",
    )
    dial.add_argument("number", help="the caller to call back (a task of the list)")
    dial.add_argument("--agent", required=True, help="the agent who makes the call")
    dial.add_argument("--data", dest="node_data", help="data directory of the running node")
    status = sub.add_parser("status", help="queues and agents of the running node, live")
    status.add_argument("--data", default="var", help="data directory of the running node")
    status.add_argument("--json", action="store_true", help="the raw JSON reply")
    return parser


def _ask_node(data: str, message: dict[str, Any]) -> dict[str, Any] | None:
    """One request to the running node's control socket; None (after a message on stderr)
    when no node answers there."""
    try:
        reply = control_api.request(Path(data), message)
    except (OSError, ValueError) as exc:
        print(
            f"hotline {message['op']}: no running node answers on "
            f"{Path(data) / control_api.SOCKET_NAME} ({exc})",
            file=sys.stderr,
        )
        return None
    return reply


def agent_command(args: argparse.Namespace) -> int:
    """``hotline agent ACTION AGENT``: 0 and the new state, 2 with the node's refusal."""
    action = args.action.replace("-", "_")
    if action in SUPERVISE_MODES or args.supervisor is not None:
        return _supervise_command(args, action)
    message: dict[str, Any] = {
        "op": "agent", "agent": args.agent, "action": action, "reason": args.reason,
    }  # fmt: skip
    if args.queues is not None:
        if action != "login":
            print("hotline agent: --queues goes with login", file=sys.stderr)
            return 2
        message["queues"] = [q.strip() for q in args.queues.split(",") if q.strip()]
    reply, code = _node_reply("agent", args.data, message)
    if reply is not None:
        print(f"{args.agent}: {reply['state']}")
    return code


def _supervise_command(args: argparse.Namespace, mode: str) -> int:
    """``hotline agent monitor|whisper|barge AGENT --supervisor ID``."""
    if mode not in SUPERVISE_MODES or args.supervisor is None:
        print("hotline agent: --supervisor goes with monitor, whisper and barge (and they "
              "need it)", file=sys.stderr)  # fmt: skip
        return 2
    message = {"op": "supervise", "supervisor": args.supervisor, "agent": args.agent, "mode": mode}
    return _node_call("agent", args.data, message, f"{args.supervisor}'s phone rings")


def _node_call(command: str, data: str, message: dict[str, Any], what: str) -> int:
    """A call the running node places on request: 0 and its call id, 2 with its refusal."""
    reply, code = _node_reply(command, data, message)
    if reply is not None:
        print(f"{what}: call {reply['call_id']}")
    return code


def _node_reply(
    command: str, data: str, message: dict[str, Any]
) -> tuple[dict[str, Any] | None, int]:
    """The running node's answer when it carried `message` out, else None (said on stderr)
    and the exit code: 1 no node answers, 2 it refused."""
    reply = _ask_node(data, message)
    if reply is None:
        return None, 1
    if not reply.get("ok"):
        print(f"hotline {command}: {reply.get('error')}", file=sys.stderr)
        return None, 2
    return reply, 0


def callbacks_command(args: argparse.Namespace) -> int:
    """``hotline callbacks``: who asked to be called back or gave up waiting, and has not
    got through since (ACD-8), oldest first; ``hotline callbacks dial NUMBER --agent ID``:
    the running node calls one back for that agent."""
    from softswitch.cdr import CdrStore

    if args.action == "dial":
        message = {"op": "callback", "number": args.number, "agent": args.agent}
        data = args.node_data or args.data
        return _node_call("callbacks", data, message, f"{args.agent}'s phone rings")

    path = Path(args.data) / "hotline.db"
    if not path.exists():
        print(f"hotline callbacks: no {path} (has the node run with --data {args.data}?)",
              file=sys.stderr)  # fmt: skip
        return 1
    store = CdrStore(path)
    try:
        rows = store.callback_list(time.time() - args.hours * 3600)
    finally:
        store.close()
    print("time\tkind\tqueue\tcaller\twaited s\tposition\tcall id\tattempts\tlast attempt")
    for row in rows:
        waited = "-" if row["waited"] is None else f"{row['waited']:.0f}"
        position = "-" if row["position"] is None else str(row["position"])
        last = row["last_attempt"]
        tried = "-"
        if last is not None:
            cause = f" {last['sip_cause']}" if last["sip_cause"] else ""
            tried = f"{last['agent']}: {last['disposition']}{cause}"
        print(
            f"{_show_time(row['at'])}\t{row['kind']}\t{row['queue']}\t{row['caller']}\t"
            f"{waited}\t{position}\t{row['call_id']}\t{row['attempts']}\t{tried}"
        )
    return 0


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


def status_command(args: argparse.Namespace) -> int:
    """``hotline status``: queues (waiting, longest wait, calls since the node started with
    the RPT-3 service level and human answer rate, agents by state), then agents."""
    reply = _ask_node(args.data, {"op": "status"})
    if reply is None:
        return 1
    if args.json:
        print(json.dumps(reply, indent=2))
        return 0
    print(f"calls in progress: {reply['calls']}")
    print(
        "queue\twaiting\tringing\tlongest wait s\tentered\tanswered\tabandoned\t"
        "service level\thuman answer rate\tagents"
    )
    for q in reply["queues"]:
        agents = ", ".join(f"{state} {n}" for state, n in q["agents"].items() if n)
        k = q.get("kpis") or {}
        print(
            f"{q['queue']}\t{q['waiting']}\t{q['ringing']}\t{q['longest_wait']:.0f}\t"
            f"{k.get('entered', 0)}\t{k.get('answered', 0)}\t{k.get('abandoned', 0)}\t"
            f"{_percent(k.get('service_level'))}\t{_percent(k.get('human_answer_rate'))}\t"
            f"{agents}"
        )
    if reply.get("trunks"):
        print("trunk\taddress\tstate\tfor s\tkeep-alive s")
        for t in reply["trunks"]:
            every = f"{t['keepalive']:.0f}" if t["keepalive"] else "off"
            print(f"{t['trunk']}\t{t['address']}\t{t['state']}\t{_seconds(t['seconds'])}\t{every}")
    print("agent\tstate\tfor s\treason\tanswered\tmissed in a row\tdirect calls\tphone")
    for a in reply["agents"]:
        state = a["state"]
        if a.get("signed_out") and state != "logged_out":
            state += " (logging out)"
        phone = "registered" if a.get("registered") else "-"
        if a.get("signed_out"):
            phone += ", logged out by the agent"
        print(
            f"{a['agent_id']}\t{state}\t{_seconds(a['seconds'])}\t{a['reason'] or '-'}\t"
            f"{a['answered']}\t{a['missed']}\t{a.get('direct_calls', 0)}\t{phone}"
        )
    return 0


def _blacklist_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    blacklist = sub.add_parser(
        "blacklist",
        help="list, add or remove blocked calling numbers (DATA/blacklist.db)",
        description="Times are ISO 8601 (2026-10-01T08:00, 2026-10-01, or with an offset "
        "such as +08:00); without an offset they are this machine's local time.",
    )
    actions = blacklist.add_subparsers(dest="action", required=True)
    user = _unix_user()
    add = actions.add_parser("add", help="block a number or a prefix")
    add.add_argument("number", help="calling number as routed (after trunk normalisation)")
    add.add_argument("--prefix", action="store_true", help="block every number starting so")
    add.add_argument("--start", metavar="ISO", help="blocked from this time (default: now)")
    add.add_argument("--end", metavar="ISO", help="blocked until this time (default: for ever)")
    add.add_argument("--reason", required=True, help="why (shown in the list and the log)")
    remove = actions.add_parser(
        "remove", help="unblock: an entry id, or every entry written for a number"
    )
    remove.add_argument("target", metavar="ID|NUMBER")
    listing = actions.add_parser("list", help="entries in force now or later")
    listing.add_argument("--all", action="store_true", help="also entries that have ended")
    log = actions.add_parser("log", help="every change: who, when, what")
    for action in (add, remove, listing, log):
        action.add_argument("--data", default="var", help="data directory (default: var)")
    for action in (add, remove):
        action.add_argument("--by", default=user, help=f"who makes the change (default: {user})")


def _unix_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _parse_time(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BlacklistError(
            f"{option} {text!r}: not an ISO 8601 time (e.g. 2026-10-01T08:00)"
        ) from None
    return moment.timestamp()  # naive: local time of this machine


def _show_time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="minutes")


def _show(entry: Entry) -> str:
    number = f"{entry.number}*" if entry.prefix else entry.number
    return (
        f"{entry.id}\t{number}\t{_show_time(entry.start)}\t{_show_time(entry.end)}\t"
        f"{entry.reason}\t{entry.created_by}\t{_show_time(entry.created_at)}"
    )


def blacklist_command(args: argparse.Namespace) -> int:
    """``hotline blacklist add|remove|list|log``; 2 with a message for a change that cannot
    be made."""
    data = Path(args.data)
    try:
        start = _parse_time(getattr(args, "start", None), "--start")
        end = _parse_time(getattr(args, "end", None), "--end")
        data.mkdir(parents=True, exist_ok=True)
        with BlacklistStore(data / "blacklist.db") as store:
            if args.action == "add":
                entry = store.add(
                    args.number,
                    prefix=args.prefix,
                    start=start,
                    end=end,
                    reason=args.reason,
                    by=args.by,
                )
                print(f"added {_show(entry)}")
            elif args.action == "remove":
                for entry in _remove(store, args.target, args.by):
                    print(f"removed {_show(entry)}")
            elif args.action == "list":
                now = time.time()
                print("id\tnumber\tstart\tend\treason\tby\tcreated")
                for entry in store.entries():
                    if args.all or entry.end is None or entry.end > now:
                        print(_show(entry))
            else:
                for change in store.log():
                    number = f"{change.number}*" if change.prefix else change.number
                    print(
                        f"{_show_time(change.at)}\t{change.who}\t{change.change}\t"
                        f"{change.entry_id}\t{number}\t{_show_time(change.start)}\t"
                        f"{_show_time(change.end)}\t{change.reason}"
                    )
    except BlacklistError as exc:
        print(f"hotline blacklist: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # includes sqlite3 failures to open the file
        print(f"hotline blacklist: {exc}", file=sys.stderr)
        return 1
    return 0


def _remove(store: BlacklistStore, target: str, by: str) -> list[Entry]:
    """A value that is the number of entries removes them all; otherwise it is an id."""
    if any(e.number == target for e in store.entries()):
        return store.remove_number(target, by=by)
    if not target.isdigit():
        raise BlacklistError(f"no blacklist entry for {target}")
    try:
        return [store.remove(int(target), by=by)]
    except BlacklistError:
        raise BlacklistError(f"no blacklist entry with id or number {target}") from None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        return check_command(args.config)
    if args.command == "blacklist":
        return blacklist_command(args)
    if args.command == "agent":
        return agent_command(args)
    if args.command == "status":
        return status_command(args)
    if args.command == "callbacks":
        return callbacks_command(args)
    if args.command == "reload":
        return reload_command(args.config, Path(args.data))
    if args.command == "voicemail":
        from ivr.voicemail import list_command

        return list_command(args.data, args.mailbox)
    if args.command == "recordings":
        return recordings_command(args)
    if args.command == "loadtest":
        return loadtest_command(args)
    clock_offset = 0.0
    if args.clock is not None:
        try:
            clock_offset = dt.datetime.fromisoformat(args.clock).timestamp() - time.time()
        except ValueError:
            print(f"hotline: --clock {args.clock!r}: not an ISO 8601 time", file=sys.stderr)
            return 2
    logs.configure(getattr(logging, str(args.log_level).upper(), logging.INFO), sys.stderr)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for issue in exc.errors:
            print(issue, file=sys.stderr)
        print("hotline: refusing to start on an invalid configuration", file=sys.stderr)
        return 2
    listen_texts = args.sip_listen or list(config.node.sip_listen)
    listen: list[tuple[str, int]] = []
    for text in listen_texts:
        try:
            listen.append(parse_host_port(text))
        except ValueError as exc:
            print(f"hotline: --sip-listen {text}: {exc}", file=sys.stderr)
            return 2
    from softswitch.node import run_node  # imported late: `check` needs no event loop

    try:
        return run_node(config, listen, Path(args.data), Path(args.config), clock_offset)
    except OSError as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 1


def reload_command(config_dir: str, data: Path) -> int:
    """``hotline reload``: refuse an invalid configuration here (exit 2, every problem
    printed), else signal the node whose pid is in DATA/hotline.pid. The node validates it
    again, keeps calls in progress on their version, and logs the result."""
    if check_command(config_dir) != 0:
        print("hotline reload: not sent; the running configuration stays", file=sys.stderr)
        return 2
    pid_file = data / "hotline.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except FileNotFoundError:
        print(f"hotline reload: no running node ({pid_file} not found)", file=sys.stderr)
        return 1
    except (ValueError, ProcessLookupError):
        print(f"hotline reload: {pid_file} names no running node", file=sys.stderr)
        return 1
    except PermissionError as exc:
        print(f"hotline reload: {exc}", file=sys.stderr)
        return 1
    print(f"reload sent to node {pid}; it logs the result")
    return 0


if __name__ == "__main__":
    sys.exit(main())
