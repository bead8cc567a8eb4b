"""`KamailioSbc`: Kamailio 5.6 as a carrier SBC / edge proxy in front of the node, one
foreground process per test module, with a config of our own written to a temp dir.

The proxy listens on 127.0.0.2 (so the node tells it apart from peers on 127.0.0.1: the
trunk ACL lists 127.0.0.2 only) and is stateful (tm). What it does, per RFC:

- REGISTER from a phone: adds itself to Path with the address the REGISTER came from
  (`add_path_received()`, RFC 3327 §5.2) and forwards it to the node, the registrar.
- Dialog-creating requests are record-routed (RFC 3261 §16.6 step 4); in-dialog ones are
  loose-routed (§16.4, `loose_route()`); an initial request from the node carries the
  phone's Path as preloaded Route, which `loose_route()` consumes, the `received` parameter
  sending it to the phone's registered address.
- Requests from the node go on by Request-URI / Route; every other initial request (the
  carrier's calls, phones' REGISTERs) goes to the node.

Every request and reply it handles is logged (`xlog`) with its Route, Record-Route and Path,
so a test reads what the SBC relayed from `log_lines()`, not only whether calls worked.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .harness import HarnessError, _kill_process_group, free_port, read_tail, require_peer

KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
#: The SBC's address: on the loopback net, apart from the peers on 127.0.0.1.
SBC_HOST = "127.0.0.2"
START_TIMEOUT = 10.0

_CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
log_prefix="SBC "
children=2
auto_aliases=no
listen=udp:{host}:{port}
alias="{host}:{port}"

loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "path.so"

# A Route that names this proxy with ;received= sends the request to that address.
modparam("path", "use_received", 1)

request_route {{
    xlog("L_NOTICE", "RELAY-IN $rm $ru from $si:$sp route=[$hdr(Route)] path=[$hdr(Path)] rr=[$hdr(Record-Route)]\\n");
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) route(RELAY);
        exit;
    }}
    if (!is_method("ACK")) {{
        if (t_precheck_trans()) {{
            t_check_trans();
            exit;
        }}
        t_check_trans();
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            xlog("L_NOTICE", "LOOSE-ROUTED $rm to $ru du=[$du]\\n");
            route(RELAY);
        }}
        if (is_method("ACK") && t_check_trans()) route(RELAY);
        sl_send_reply("404", "Not Here");
        exit;
    }}
    if (is_present_hf("Route")) {{
        # The node's call to a phone: the Path it stored, preloaded as Route.
        loose_route();
        xlog("L_NOTICE", "PRELOADED-ROUTE $rm to $ru du=[$du]\\n");
    }}
    if (is_method("INVITE|SUBSCRIBE")) record_route();
    if ($si == "{node_host}" && $sp == {node_port}) route(RELAY);
    if (is_method("REGISTER")) {{
        add_path_received();
        xlog("L_NOTICE", "PATH-ADDED for $tu\\n");
    }}
    rewritehostport("{node_host}:{node_port}");
    route(RELAY);
}}

route[RELAY] {{
    if (!t_relay()) sl_reply_error();
    exit;
}}

onreply_route {{
    xlog("L_NOTICE", "REPLY $rs $rm from $si:$sp path=[$hdr(Path)] rr=[$hdr(Record-Route)]\\n");
}}
"""


@functools.cache
def kamailio_available() -> bool:
    return os.access(KAMAILIO, os.X_OK)


def require_kamailio() -> None:
    require_peer("kamailio", kamailio_available(), "apt-get install kamailio")


class KamailioSbc:
    """One Kamailio process in the foreground (`-DD -E`), its config, pid file and runtime
    dir in `work_dir`, its stderr (the log) in `work_dir/kamailio.log`; in front of the node
    at `node_address` ("HOST:PORT")."""

    def __init__(self, node_address: str, work_dir: Path | None = None) -> None:
        self.name = "kamailio"
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="kamailio-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port("udp")
        node_host, node_port = node_address.rsplit(":", 1)
        self.config_path = self.work_dir / "kamailio.cfg"
        self.config_path.write_text(
            _CONFIG.format(
                host=SBC_HOST, port=self.port, node_host=node_host, node_port=int(node_port)
            ),
            encoding="utf-8",
        )
        self.log_path = self.work_dir / "kamailio.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{SBC_HOST}:{self.port}"

    def start(self) -> KamailioSbc:
        runtime = self.work_dir / "run"
        runtime.mkdir(exist_ok=True)
        args = [
            KAMAILIO, "-DD", "-E", "-f", str(self.config_path), "-Y", str(runtime),
            "-P", str(self.work_dir / "kamailio.pid"), "-w", str(self.work_dir),
            "-m", "32", "-M", "4",
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HarnessError(f"kamailio exited at start:\n{self.describe()}")
            if self._listening():
                return self
            time.sleep(0.05)
        raise HarnessError(f"kamailio did not listen within {START_TIMEOUT}s:\n{self.describe()}")

    def _listening(self) -> bool:
        # /proc/net/udp lists bound sockets as HEXADDR:HEXPORT (127.0.0.2 is 0200007F).
        needle = f"0200007F:{self.port:04X}"
        try:
            return needle in Path("/proc/net/udp").read_text()
        except OSError:
            return False

    def _log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_lines(self, marker: str) -> list[str]:
        """The log lines that carry `marker` (RELAY-IN, LOOSE-ROUTED, PATH-ADDED …)."""
        return [line for line in self._log().splitlines() if marker in line]

    def wait_for_line(self, marker: str, text: str, timeout: float = 5.0) -> str:
        """The first log line with `marker` and `text`, waited for up to `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_lines(marker):
                if text in line:
                    return line
            if time.monotonic() >= deadline:
                raise HarnessError(f"no {marker} line with {text!r}:\n{self.describe()}")
            time.sleep(0.05)

    def describe(self) -> str:
        return f"kamailio at {self.address}, log {self.log_path}:\n{read_tail(self.log_path)}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            _kill_process_group(self.process, 3.0)
        self.process = None
