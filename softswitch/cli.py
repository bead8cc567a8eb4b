"""`hotline` command line: `serve` runs a node, `check` validates a configuration directory.

Exit status 2 means the command line or the configuration is wrong (each problem printed as
`file:line: path: message`); `serve` refuses to start on an invalid configuration.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from softswitch.config import check_command, load_config, parse_host_port
from softswitch.errors import ConfigError


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
    check = sub.add_parser("check", help="validate the configuration and exit")
    check.add_argument("--config", default="config", help="configuration directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        return check_command(args.config)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
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
        return run_node(config, listen, Path(args.data), Path(args.config))
    except OSError as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
