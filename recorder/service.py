"""Full-call recording: the bus subscriber on the event loop and the worker that encodes.

One recording per call (SPEC REC-1): the media engine's *heard* tap on the caller's leg gives
two time-aligned channels — channel 0 what the caller says, channel 1 everything the node
sends the caller (the agent relayed, prompts, music on hold, a conference or barge mix) — so
the recording follows the customer's call across hold and transfer, and each agent's part is
indexed as a segment (agent, leg, from, to in seconds of the recording).

The event-loop side (`Recorder`) only moves bytes: on `TapData` it drains the tap
(`tap_read`, a memcpy in C) and queues the block. The worker thread (`_Worker`) owns the Ogg
Opus writers and the index connection: encoding (libopus, GIL released), page writes and
SQLite never delay signalling or media. A second thread runs quality inspection on finished
files, so a long QA never holds up the encoder.

Nothing a disk problem does stops a call: a recording that cannot start (too little free
space, unwritable directory) or whose writes fail raises a `RecordingAlert` on the bus, is
marked in the index, and the call goes on; pages already written stay playable (the writer
truncates a failed page away and retries it).
"""

from __future__ import annotations

import logging
import queue
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recorder.backup import file_sha256
from recorder.index import RecordingIndex
from recorder.opus import OggOpusWriter, read_ogg_opus
from softswitch.call import events as ev
from softswitch.config import RecordingConfig

log = logging.getLogger("hotline.recorder")

DAY = 86400.0
RATE = 8000
TAP_SUFFIX = "-callrec"
#: Seconds of audio waiting per recording before `encoder_behind`.
BACKLOG_SECONDS = 10.0
#: Seconds of audio waiting per recording past which new calls are not recorded.
OVERLOAD_SECONDS = 30.0
#: Call variables copied into the index (set by the IVR or associated data).
SERVICE_VARIABLE = "service_type"
CUSTOMER_VARIABLE = "customer_id"
#: Calls from agents' phones that are no conversation of their own: feature codes (beeps),
#: a supervisor's listening (the supervised call is recorded, with a barge in it) and a
#: pickup (its leg joins the ringing call). Internal, outbound and callback calls are.
UNRECORDED_ROUTES = frozenset(("phone:feature", "phone:supervise", "phone:pickup"))


def relative_path(recording_id: str, started: float) -> str:
    """`YYYY/MM/DD/<recording id>.opus`, the day in local time."""
    day = time.strftime("%Y/%m/%d", time.localtime(started))
    return f"{day}/{recording_id}.opus"


@dataclass
class _Call:
    """What the recorder knows of one call in progress."""

    call_id: str
    caller: str | None = None
    called: str | None = None
    queue: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    agents: dict[str, str] = field(default_factory=dict)  # leg id → agent id
    talking: set[str] = field(default_factory=set)  # agent legs answered and not stopped
    tap: str | None = None  # the tap's name while recording
    started: float = 0.0  # wall clock of the first recorded frame
    config: RecordingConfig | None = None  # as it was when recording began (STYLE §4)
    overflow: int = 0  # frames the tap's ring dropped so far


@dataclass
class RecorderStats:
    active: int = 0
    started: int = 0
    finished: int = 0
    refused: int = 0
    blocks: int = 0  # handed to the encoder (counted on the event loop only)
    encoded: int = 0  # taken by the encoder (counted in the worker only)
    frames: int = 0  # audio handed to the encoder (event loop) ...
    encoded_frames: int = 0  # ... and taken by it (worker): `backlog`
    max_lag: float = 0.0  # the longest a block waited for the encoder (s)
    write_errors: int = 0
    lost_frames: int = 0  # dropped by the engine's tap rings (the encoder fell far behind)

    @property
    def queued(self) -> int:
        """Blocks waiting for the encoder now."""
        return self.blocks - self.encoded

    @property
    def backlog(self) -> float:
        """Seconds of audio waiting for the encoder, all recordings together."""
        return (self.frames - self.encoded_frames) / RATE


class Recorder:
    """Records every anchored call. `alert` publishes a `RecordingAlert` (on the event loop;
    the worker hands alerts over through `post`, e.g. `loop.call_soon_threadsafe`)."""

    def __init__(
        self,
        config: RecordingConfig,
        directory: Path,
        index_path: Path,
        media: Any,
        *,
        publish: Callable[[Any], None],
        post: Callable[[Callable[[], None]], object] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.directory = directory
        self.media = media
        self._publish = publish
        self.post = post or (lambda fn: fn())
        #: Called on the event loop after a voicemail WAV became Ogg Opus: (call id, mailbox,
        #: new path, old path); the callee points its list at the new file and removes the old.
        self.voicemail_moved: Callable[[str, str, str, str], None] | None = None
        self._clock = clock
        self._calls: dict[str, _Call] = {}
        self._taps: dict[str, _Call] = {}
        self.stats = RecorderStats()
        self._behind = False
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # every call will raise an alert; the node runs on
            log.error("recordings directory %s cannot be created: %s", directory, exc)
        self._worker = _Worker(self, index_path)
        self._worker.start()

    kinds = (
        ev.CallStarted,
        ev.LegJoined,
        ev.CallQueued,
        ev.CallAnsweredByNode,
        ev.CallAnswered,
        ev.LegStarted,
        ev.LegProgress,
        ev.LegStopped,
        ev.VariableChanged,
        ev.CallEnded,
        ev.VoicemailLeft,
    )

    # --- bus --------------------------------------------------------------------------------
    def __call__(self, event: Any) -> None:
        kind = type(event)
        if kind is ev.CallStarted:
            if event.route not in UNRECORDED_ROUTES:
                self._calls[event.call_id] = _Call(event.call_id, event.caller, event.called)
            return
        if kind is ev.VoicemailLeft:
            self._worker.put(("voicemail", event, self._clock()))
            return
        call = self._calls.get(event.call_id)
        if call is None:
            return
        if kind is ev.CallEnded:
            self._calls.pop(event.call_id, None)
            call.variables.update(event.variables)
            self._stop(call, event.at)
        elif kind is ev.CallAnsweredByNode:
            if self.config.start == "answer" and event.leg_id == f"{call.call_id}-a":
                self._begin(call, event.leg_id, event.at)
        elif kind is ev.CallAnswered:
            self._begin(call, event.caller_leg, event.at)
        elif kind is ev.LegStarted:
            if event.agent_id is not None:
                call.agents[event.leg_id] = event.agent_id
        elif kind is ev.LegProgress:
            agent = call.agents.get(event.leg_id)
            if event.what == "answer" and agent is not None:
                call.talking.add(event.leg_id)
                if call.tap is None and self.config.start == "agent":
                    self._begin(call, f"{call.call_id}-a", event.at)
                elif call.tap is not None:
                    offset = max(0.0, event.at - call.started)
                    self._worker.put(("segment", call.call_id, agent, event.leg_id, offset))
        elif kind is ev.LegJoined:
            # A picked-up or attended-transfer party: a segment from now, as for an answer.
            if event.agent_id is not None:
                call.agents[event.leg_id] = event.agent_id
                call.talking.add(event.leg_id)
                if call.tap is not None:
                    offset = max(0.0, event.at - call.started)
                    self._worker.put(
                        ("segment", call.call_id, event.agent_id, event.leg_id, offset)
                    )
        elif kind is ev.LegStopped:
            call.talking.discard(event.leg_id)
            if call.tap is not None and event.leg_id in call.agents:
                offset = max(0.0, event.at - call.started)
                self._worker.put(("segment_end", call.call_id, event.leg_id, offset))
        elif kind is ev.CallQueued:
            call.queue = event.queue
            if call.tap is not None:
                self._worker.put(("update", call.call_id, {"queue": event.queue}))
        elif kind is ev.VariableChanged:
            call.variables[event.name] = event.value
            if call.tap is not None and event.name in (SERVICE_VARIABLE, CUSTOMER_VARIABLE):
                self._worker.put(("update", call.call_id, {event.name: event.value}))

    # --- taps -------------------------------------------------------------------------------
    def owns(self, tap: str) -> bool:
        return tap in self._taps

    def tap_data(self, tap: str) -> None:
        """The engine has a block for one of our taps: drain it to the worker."""
        call = self._taps.get(tap)
        if call is not None:
            self._drain(call)

    def _drain(self, call: _Call) -> None:
        assert call.tap is not None
        try:
            block = self.media.tap_read(call.tap)
        except Exception as exc:  # the engine lost the tap: keep what we have
            log.warning("recording of %s: tap read failed: %s", call.call_id, exc)
            return
        if block.overflow > call.overflow:
            if not call.overflow:
                log.error(
                    "recording of %s: the tap dropped audio (%d frames so far)",
                    call.call_id,
                    block.overflow,
                )
            self.stats.lost_frames += block.overflow - call.overflow
            call.overflow = block.overflow
        if block.frames:
            self.stats.blocks += 1
            self.stats.frames += block.frames
            self._worker.put(("pcm", call.call_id, block.pcm, time.monotonic()))
            self._watch_backlog()

    def _overloaded(self) -> str | None:
        """While the encoder is `OVERLOAD_SECONDS` behind per recording, new calls are not
        recorded: the recordings already running go on whole and the backlog (in memory)
        stops growing with every call; recording resumes once the encoder has caught up."""
        backlog = self.stats.backlog
        if backlog > OVERLOAD_SECONDS * max(1, self.stats.active):
            return f"the encoder is {backlog:.0f} s of audio behind: this machine is overloaded"
        return None

    def _watch_backlog(self) -> None:
        """One alert when the encoder falls `BACKLOG_SECONDS` behind per recording (more calls
        than this machine encodes: the backlog grows in memory), one log line when it is back."""
        limit = BACKLOG_SECONDS * max(1, self.stats.active)
        backlog = self.stats.backlog
        if not self._behind and backlog > limit:
            self._behind = True
            self._alert(
                "encoder_behind",
                None,
                f"{backlog:.0f} s of audio wait for the encoder ({self.stats.active} "
                "recordings): more calls than this machine encodes in real time",
            )
        elif self._behind and backlog < limit / 2:
            self._behind = False
            log.warning("recording encoder caught up (%.1f s of audio waiting)", backlog)

    def _begin(self, call: _Call, leg_id: str, at: float) -> None:
        if call.tap is not None or not self.config.enabled:
            return
        if not getattr(self.media, "anchors", False):
            return  # pass-through media: the audio never reaches the node
        problem = self._worker.unusable or self._overloaded() or self._no_room()
        if problem is not None:
            self.stats.refused += 1
            self._alert("not_recorded", call.call_id, problem)
            return
        tap = f"{call.call_id}{TAP_SUFFIX}"
        try:
            self.media.tap_start(tap, leg_id, None, heard=True)
        except Exception as exc:
            self.stats.refused += 1
            self._alert("not_recorded", call.call_id, f"tap on {leg_id}: {exc}")
            return
        call.tap, call.started, call.config = tap, at, self.config
        self._taps[tap] = call
        self.stats.started += 1
        self.stats.active += 1
        meta = {
            "call_id": call.call_id,
            "leg": leg_id,
            "started": at,
            "caller": call.caller,
            "called": call.called,
            "queue": call.queue,
            "service_type": call.variables.get(SERVICE_VARIABLE),
            "customer_id": call.variables.get(CUSTOMER_VARIABLE),
            "bitrate": self.config.bitrate,
            "page_ms": self.config.page_ms,
        }
        self._worker.put(("open", meta))
        for leg in sorted(call.talking):  # answered before the recording began
            self._worker.put(("segment", call.call_id, call.agents[leg], leg, 0.0))

    def _stop(self, call: _Call, at: float) -> None:
        if call.tap is None:
            return
        self._drain(call)
        try:
            self.media.tap_stop(call.tap)
        except Exception as exc:
            log.warning("recording of %s: tap stop: %s", call.call_id, exc)
        del self._taps[call.tap]
        call.tap = None
        self.stats.active -= 1
        final = {
            "ended": at,
            "queue": call.queue,
            "service_type": call.variables.get(SERVICE_VARIABLE),
            "customer_id": call.variables.get(CUSTOMER_VARIABLE),
            "called": call.called,
            # The retention policy of the configuration the call was recorded under.
            "policy": (call.config or self.config).policy_for(call.queue, call.called),
            "lost": call.overflow / RATE,
        }
        self._worker.put(("close", call.call_id, final))

    def _no_room(self) -> str | None:
        try:
            free = shutil.disk_usage(self.directory).free
        except OSError as exc:
            return f"{self.directory}: {exc}"
        if free < self.config.min_free_mb * 1024 * 1024:
            return f"{self.directory}: only {free // (1024 * 1024)} MB free"
        return None

    def _alert(self, kind: str, call_id: str | None, detail: str) -> None:
        """On the event loop: log and publish."""
        log.error("recording alert %s (%s): %s", kind, call_id or "-", detail)
        self._publish(ev.RecordingAlert(self._clock(), kind, call_id, detail))

    def alert_from_worker(self, kind: str, call_id: str | None, detail: str) -> None:
        self.post(lambda: self._alert(kind, call_id, detail))

    # --- lifecycle --------------------------------------------------------------------------
    def stop_all(self) -> None:
        """Node stopping: close every recording (complete up to now)."""
        now = self._clock()
        for call in list(self._calls.values()):
            self._stop(call, now)
        self._calls.clear()

    def close(self, timeout: float = 30.0) -> None:
        """Stop recording, let the worker finish every file, and join it."""
        self.stop_all()
        self._worker.stop(timeout)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until the worker has handled everything queued so far (tests, benchmarks)."""
        return self._worker.wait_idle(timeout)


class _Pending:
    """Work queued to a thread and not yet done, to wait for (tests, benchmarks, shutdown)."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def add(self) -> None:
        with self._idle:
            self._count += 1

    def done(self) -> None:
        with self._idle:
            self._count -= 1
            if not self._count:
                self._idle.notify_all()

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True


class _Worker(threading.Thread):
    """Encodes and indexes, in the order the event loop queued things."""

    def __init__(self, recorder: Recorder, index_path: Path) -> None:
        super().__init__(name="recorder", daemon=True)
        self.recorder = recorder
        self.index_path = index_path
        self.inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.writers: dict[str, Any] = {}
        self.failed: set[str] = set()
        #: Why the worker cannot record (its index would not open), or None.
        self.unusable: str | None = None
        self.qa = _QaWorker(recorder, index_path)
        self.pending = _Pending()
        self.put(("recover",))

    def put(self, item: tuple[Any, ...]) -> None:
        self.pending.add()
        self.inbox.put(item)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return self.pending.wait(timeout) and self.qa.pending.wait(deadline - time.monotonic())

    def stop(self, timeout: float) -> None:
        self.inbox.put(("stop",))
        self.join(timeout)
        self.qa.stop(timeout)

    def run(self) -> None:
        try:
            self.index = RecordingIndex(self.index_path)
        except (sqlite3.Error, OSError) as exc:  # corrupt or unreadable: say so, record nothing
            self.unusable = f"recording index {self.index_path}: {exc}"
            log.error("%s; no call is recorded", self.unusable)
            self.recorder.alert_from_worker("not_recorded", None, self.unusable)
            self._discard()
            return
        self.qa.start()
        try:
            while True:
                item = self.inbox.get()
                if item[0] == "stop":
                    break
                try:
                    getattr(self, f"_{item[0]}")(*item[1:])
                except Exception:  # one bad recording must not stop the others
                    log.exception("recorder worker failed on %s", item[0])
                finally:
                    self.pending.done()
            for call_id in list(self.writers):
                self._close(call_id, {"ended": self.recorder._clock()})
        finally:
            self.index.close()

    def _discard(self) -> None:
        """Without an index: drop what was queued (before `unusable` was seen) until stopped,
        so that nothing piles up in memory and `wait_idle` returns."""
        while (item := self.inbox.get())[0] != "stop":
            if item[0] == "pcm":
                self.recorder.stats.encoded += 1
                self.recorder.stats.encoded_frames += len(item[2]) // 4
            self.pending.done()

    # --- commands -----------------------------------------------------------------------------
    def _open(self, meta: dict[str, Any]) -> None:
        call_id = meta["call_id"]
        rel = relative_path(call_id, meta["started"])
        path = self.recorder.directory / rel
        self.index.start(
            call_id,
            kind="call",
            call_id=call_id,
            path=rel,
            started=meta["started"],
            legs=[meta["leg"]],
            caller=meta["caller"],
            called=meta["called"],
            queue=meta["queue"],
            service_type=meta["service_type"],
            customer_id=meta["customer_id"],
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writers[call_id] = OggOpusWriter(
                str(path),
                2,
                bitrate=meta["bitrate"],
                page_ms=meta["page_ms"],
                title=f"call {call_id}: left the caller, right what the caller heard",
            )
        except OSError as exc:
            self.failed.add(call_id)
            self.index.update(call_id, error=f"cannot open {path}: {exc}")
            self.recorder.alert_from_worker("write_failed", call_id, f"{path}: {exc}")

    def _pcm(self, call_id: str, pcm: bytes, queued_at: float) -> None:
        stats = self.recorder.stats
        stats.encoded += 1
        stats.encoded_frames += len(pcm) // 4
        stats.max_lag = max(stats.max_lag, time.monotonic() - queued_at)
        writer = self.writers.get(call_id)
        if writer is None:
            return
        try:
            writer.write(pcm)
        except OSError as exc:
            stats.write_errors += 1
            if call_id not in self.failed:  # one alert per recording, not per block
                self.failed.add(call_id)
                self.index.update(call_id, error=str(exc))
                self.recorder.alert_from_worker("write_failed", call_id, str(exc))

    def _update(self, call_id: str, fields: dict[str, Any]) -> None:
        self.index.update(call_id, **fields)

    def _segment(self, call_id: str, agent: str, leg_id: str, offset: float) -> None:
        self.index.segment_start(call_id, agent, leg_id, offset)

    def _segment_end(self, call_id: str, leg_id: str, offset: float) -> None:
        self.index.segment_end(call_id, leg_id, offset)

    def _close(self, call_id: str, final: dict[str, Any]) -> None:
        writer = self.writers.pop(call_id, None)
        fields = {k: final[k] for k in ("queue", "service_type", "customer_id") if final.get(k)}
        self.index.update(call_id, **fields)
        recording = self.index.get(call_id)
        if recording is None:
            return
        error = None
        if writer is not None:
            try:
                writer.close()
            except OSError as exc:
                error = f"closing: {exc}"
                self.recorder.alert_from_worker("write_failed", call_id, error)
        incomplete = writer is None or call_id in self.failed or error is not None
        self.failed.discard(call_id)
        path = self.recorder.directory / recording.path
        self._finish(
            call_id,
            path,
            started=recording.started,
            ended=final["ended"],
            duration=writer.seconds if writer is not None else 0.0,
            lost=final.get("lost", 0.0),
            incomplete=incomplete,
            error=error,
            queue=final.get("queue") or recording.queue,
            called=final.get("called") or recording.called,
            policy=final.get("policy"),
        )
        self.recorder.stats.finished += 1

    def _finish(
        self,
        recording_id: str,
        path: Path,
        *,
        started: float,
        ended: float,
        duration: float,
        lost: float,
        incomplete: bool,
        error: str | None,
        queue: str | None,
        called: str | None,
        policy: tuple[str, int, int] | None = None,
    ) -> None:
        try:
            sha, size = file_sha256(path)
        except OSError as exc:
            sha, size = "", 0
            error = error or f"cannot read {path}: {exc}"
            incomplete = True
        name, audio_days, records_days = policy or self.recorder.config.policy_for(queue, called)
        self.index.finish(
            recording_id,
            ended=ended,
            duration=duration,
            size=size,
            sha256=sha,
            incomplete=incomplete,
            lost_seconds=lost,
            error=error,
            policy=name,
            expires=started + audio_days * DAY,
            records_expire=started + records_days * DAY,
        )
        if size and self.recorder.config.qa.enabled:
            self.qa.put(recording_id, path)

    def _voicemail(self, event: Any, now: float) -> None:
        """A voicemail message: the IVR wrote a WAV (cheap and crash safe on the event loop);
        here it becomes a mono Ogg Opus file among the recordings, indexed like a call, the
        voicemail list is pointed at it and the WAV removed. A WAV that cannot be encoded
        stays where it is and is indexed as it is."""
        source = Path(event.path)
        recording_id = f"{event.call_id}-vm-{event.mailbox}"
        started = event.at - event.seconds
        rel = relative_path(recording_id, started)
        target = self.recorder.directory / rel
        error = None
        if source.suffix.lower() == ".wav":
            try:
                self._encode_wav(source, target)
            except (OSError, ValueError) as exc:
                error = f"kept as WAV, not encoded: {exc}"
                log.error("voicemail %s: %s", recording_id, error)
                target.unlink(missing_ok=True)
                target = source
        else:
            target = source
        try:
            rel = str(target.relative_to(self.recorder.directory))
        except ValueError:
            rel = str(target)  # outside the recordings directory: kept by absolute path
        self.index.start(
            recording_id,
            kind="voicemail",
            call_id=event.call_id,
            path=rel,
            started=started,
            caller=event.caller,
            mailbox=event.mailbox,
        )
        self._finish(
            recording_id,
            target,
            started=started,
            ended=event.at,
            duration=event.seconds,
            lost=0.0,
            incomplete=False,
            error=error,
            queue=None,
            called=event.mailbox,
        )
        if target != source:
            moved = self.recorder.voicemail_moved
            if moved is not None:
                self.recorder.post(
                    lambda: moved(event.call_id, event.mailbox, str(target), str(source))
                )
            else:
                source.unlink(missing_ok=True)

    def _encode_wav(self, source: Path, target: Path) -> None:
        import soundfile

        try:
            pcm, rate = soundfile.read(str(source), dtype="int16", always_2d=True)
        except soundfile.LibsndfileError as exc:
            raise ValueError(str(exc)) from exc
        if rate != RATE:
            raise ValueError(f"{source}: {rate} Hz, expected {RATE}")
        target.parent.mkdir(parents=True, exist_ok=True)
        writer = OggOpusWriter(
            target, 1, bitrate=self.recorder.config.bitrate, title=f"voicemail {source.stem}"
        )
        try:
            writer.write(pcm[:, 0].tobytes())
        finally:
            writer.close()

    def _recover(self) -> None:
        """Rows a crash left open: finish them from what their files hold (REC-4)."""
        for recording in self.index.unfinished():
            path = self.recorder.directory / recording.path
            try:
                pcm, channels, _complete = read_ogg_opus(str(path))
                duration = len(pcm) / (2 * channels * RATE)
            except (OSError, ValueError) as exc:
                duration = 0.0
                log.warning("recording %s: cannot read %s: %s", recording.id, path, exc)
            log.warning(
                "recording %s was cut short by a node stop: %.1f s kept", recording.id, duration
            )
            self._finish(
                recording.id,
                path,
                started=recording.started,
                ended=recording.started + duration,
                duration=duration,
                lost=0.0,
                incomplete=True,
                error="the node stopped before the call ended",
                queue=recording.queue,
                called=recording.called,
            )


class _QaWorker(threading.Thread):
    """Decodes finished recordings and stores their quality flags (REC-5)."""

    def __init__(self, recorder: Recorder, index_path: Path) -> None:
        super().__init__(name="recorder-qa", daemon=True)
        self.recorder = recorder
        self.index_path = index_path
        self.inbox: queue.SimpleQueue[tuple[str, Path] | None] = queue.SimpleQueue()
        self.pending = _Pending()

    def put(self, recording_id: str, path: Path) -> None:
        self.pending.add()
        self.inbox.put((recording_id, path))

    def stop(self, timeout: float) -> None:
        self.inbox.put(None)
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        index = RecordingIndex(self.index_path)
        try:
            while (item := self.inbox.get()) is not None:
                try:
                    self._inspect(index, *item)
                except Exception:
                    log.exception("quality inspection of %s failed", item[0])
                finally:
                    self.pending.done()
        finally:
            index.close()

    def _inspect(self, index: RecordingIndex, recording_id: str, path: Path) -> None:
        from ivr.speech import SpeechUnavailable
        from recorder.qa import analyse, transcribe

        settings = self.recorder.config.qa
        recording = index.get(recording_id)
        if recording is None or not recording.segments:
            return  # no agent took part (IVR only, abandoned, voicemail): nothing to inspect
        pcm, channels, _complete = read_ogg_opus(path)
        if channels != 2:
            return
        # The conversation only: before the first agent answered, the right channel holds
        # prompts and music, which are not the agent talking. QA times count from there.
        first = min(s.start for s in recording.segments)
        last = max(
            s.end if s.end is not None else len(pcm) / (4 * RATE) for s in recording.segments
        )
        pcm = pcm[int(first * RATE) * 4 : int(last * RATE) * 4]
        rules = qa_rules(settings)
        transcript = None
        if settings.model:
            try:
                transcript = transcribe(pcm, settings.model)
            except SpeechUnavailable as exc:  # the level flags still apply
                log.warning("recording %s: no transcript: %s", recording_id, exc)
        result = analyse(pcm, rules, transcript=transcript)
        index.set_qa(recording_id, result.to_json(), result.flags)


def qa_rules(settings: Any) -> Any:
    """The `recorder.qa.QaRules` of a `recording.qa` configuration section."""
    from recorder.qa import QaRules

    return QaRules(
        level_dbfs=settings.level_dbfs,
        silence_seconds=settings.silence_seconds,
        overtalk_seconds=settings.overtalk_seconds,
        greeting_seconds=settings.greeting_seconds,
        greetings=tuple(settings.greetings),
        forbidden=tuple(settings.forbidden),
    )


__all__ = ["Recorder", "RecorderStats", "file_sha256", "qa_rules", "relative_path"]
