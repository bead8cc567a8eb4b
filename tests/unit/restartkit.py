"""What a node does at start about its last run (`Node._restore`), on a pure harness."""

from __future__ import annotations

from pathlib import Path

from sipflow import Harness

from softswitch.bindings import BindingStore
from softswitch.call.restart import DialogRecorder, Recovered, close_unfinished


def start(h: Harness) -> BindingStore:
    """Wire `h`'s switch as the node does: bindings saved, answered legs' dialogs saved."""
    bindings = BindingStore(h.cdr.connection, h.switch.control.wall_offset)
    h.switch.registrar.store = bindings
    h.switch.mobile_store = bindings
    recorder = DialogRecorder(h.cdr, h.switch.control.sessions)
    h.switch.bus.subscribe(recorder, recorder.kinds)
    h.cdr.run_started(h.switch.control.wall(h.now))
    return bindings


def restarted(
    tmp_path: Path, after: float, previous: Harness, config_dir: Path | None = None
) -> tuple[Harness, Recovered]:
    """A new node on `previous`'s database, `after` seconds after `previous` last ran
    (nothing of a clean stop happened: as after kill -9)."""
    h = Harness(tmp_path, config_dir)
    h.now = previous.now + after
    recovered = close_unfinished(h.cdr)
    bindings = start(h)
    h.switch.restore_bindings(bindings.load(h.switch.control.wall(h.now)), h.now)
    h.switch.restore_mobile_logins(h.now)
    h.switch.send_restart_byes(recovered.dialogs, h.now)
    h._collect()
    return h, recovered
