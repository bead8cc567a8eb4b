"""The asyncio edge of a node: sockets, the one timer, signals, and the CDR store's life.

Everything protocol-shaped happens in `Switch`; this module only moves bytes between it and
the transports and calls `handle_timer` when the earliest deadline passes (aioquic's pattern).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from acd import AcdError
from ivr.prompts import PromptLibrary
from ivr.voicemail import VoicemailStore
from media.wavsink import WavSink
from softswitch.bindings import BindingStore
from softswitch.blacklist import BlacklistStore
from softswitch.call.events import VoicemailLeft
from softswitch.call.restart import RESTART_DISPOSITION, DialogRecorder, Recovered, close_unfinished
from softswitch.cdr import CdrStore
from softswitch.config import Config, load_config, parse_host_port, summary
from softswitch.config_tls import TlsFileError
from softswitch.control_api import SOCKET_NAME, ControlServer, handle_request
from softswitch.errors import ConfigError
from softswitch.switch import CallServices, Switch
from softswitch.transport import TransportManager, hostport
from softswitch.transport.descriptors import raise_open_file_limit
from softswitch.transport.tls import TlsContexts, TlsTransport

if TYPE_CHECKING:
    from media.engine import RtpEngine
    from recorder.service import Recorder

log = logging.getLogger("hotline.node")

#: Seconds between heartbeats: after a crash, the calls left open end at the last one.
HEARTBEAT_SECONDS = 1.0


class Node:
    def __init__(
        self,
        config: Config,
        listen: list[tuple[str, int]],
        data_dir: Path,
        config_dir: Path | None = None,
        clock_offset: float = 0.0,
    ) -> None:
        self.config = config
        self.clock_offset = clock_offset
        self._prompts: PromptLibrary | None = None
        self._stores: list[Any] = []
        self._reloading = False
        self._reload_task: asyncio.Task[bool] | None = None
        self.config_dir = config_dir
        self.listen = listen
        self.data_dir = data_dir
        self.switch: Switch | None = None
        self.transports: TransportManager | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._stopping = asyncio.Event()
        self._media: RtpEngine | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        self._control: ControlServer | None = None
        self._wall_offset = 0.0
        self._recorder: Recorder | None = None
        self._recording_jobs: asyncio.Task[None] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        log.info("open file limit: %s", raise_open_file_limit().describe())
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cdr = CdrStore(self.data_dir / "hotline.db", commit_on_flush=True)
        self._cdr = cdr
        recovered = self._close_unfinished(cdr)
        self.transports = TransportManager(
            self._receive,
            self.config.node.max_message_size,
            self.config.node.tcp_idle_timeout,
            failed=self._transport_failed,
            limits=self.config.limits,
            is_trunk_source=self._is_trunk_source,
            flush=self._flush_inputs,
        )
        try:
            for host, port in self.listen:
                await self.transports.listen(host, port)
            await self._listen_tls()
            sent_by: dict[str, str] = {}
            for transport, host, port in self.transports.bound:
                family = "6" if ":" in host else ""
                sent_by.setdefault(transport + family, hostport(host, port))
            for transport, host, port in self.transports.bound:
                sent_by.setdefault(transport, hostport(host, port))  # IPv6-only nodes
            media = self._media_engine()
            services = await self._services()
            self._wall_offset = time.time() - loop.time()
            self.switch = Switch(
                self.config,
                cdr,
                sent_by,
                media=media,
                wall_offset=self._wall_offset,
                services=services,
            )
            self.switch.control.sink_factory = WavSink
            self.switch.control.send_now = self._flush
            self.switch.control.speech_factory = self._speech_factory(loop)
            self.switch.bus.subscribe(self._voicemail_left, (VoicemailLeft,))
            self._start_recorder(loop, media)
            self._restore(recovered)
            pid_file = self.data_dir / "hotline.pid"
            pid_file.write_text(f"{os.getpid()}\n")
            await self._start_control()
            if media is not None:
                media.attach(loop, self._media_event)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._stopping.set)
            loop.add_signal_handler(signal.SIGHUP, self.reload)
            bound = ", ".join(f"{t} {hostport(h, p)}" for t, h, p in self.transports.bound)
            log.info("hotline listening on %s; data in %s", bound, self.data_dir)
            # What start-up built (modules, configuration, prompts, ACD tables) lives as long
            # as the node: out of the collector's sight, full collections walk only calls.
            gc.collect()
            gc.freeze()
            await self._stopping.wait()
            log.info("stopping: releasing %d calls", len(self.switch.control.sessions))
            log.info("counters: %s", self.switch.stats())
            log.info("transport counters: %s", self.transports.stats())
            self.switch.shutdown(loop.time())
            self._flush()
            # Give BYE/CANCEL a moment to leave and their answers to arrive.
            deadline = loop.time() + 1.0
            while self.switch.control.sessions and loop.time() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.1)
        finally:
            if self._control is not None:
                await self._control.close()
            if self._timer is not None:
                self._timer.cancel()
            if self._heartbeat is not None:
                self._heartbeat.cancel()
            await self.transports.close()
            if self._recording_jobs is not None:
                self._recording_jobs.cancel()
            if self._recorder is not None:
                # Every file finished (the calls were released above) before media goes.
                await asyncio.to_thread(self._recorder.close)
            if self._media is not None:
                self._media.close()
            for store in self._stores:
                store.close()
            cdr.close()
            log.info("stopped")

    async def _listen_tls(self) -> None:
        """The TLS listener (`tls.listen`) and the contexts for TLS connections out; the
        files were checked when the configuration was loaded."""
        assert self.transports is not None
        tls = self.config.tls
        try:
            contexts = TlsContexts.from_config(self.config)
        except TlsFileError as exc:  # changed on disk since the configuration was checked
            raise OSError(f"node.yaml: tls.{exc.key}: {exc}") from None
        transport = TlsTransport(self.transports, contexts)
        for text in tls.listen:
            await transport.listen(*parse_host_port(text))
        if tls.enabled:
            log.info(
                "TLS: certificate %s, client certificates %s, TLS %s and later",
                tls.certificate,
                tls.client_certificates,
                tls.min_version,
            )

    @staticmethod
    def _close_unfinished(cdr: CdrStore) -> Recovered:
        """Before listening: close the CDR rows a crash left open (softswitch/call/restart.py)."""
        recovered = close_unfinished(cdr)
        cdr.flush()
        if recovered.calls or recovered.legs:
            log.warning(
                "the last run left %d calls and %d legs open: closed as %s at its last sign of "
                "life (%.3f); %d parties get a BYE",
                recovered.calls,
                recovered.legs,
                RESTART_DISPOSITION,
                recovered.end,
                len(recovered.dialogs),
            )
        return recovered

    def _restore(self, recovered: Recovered) -> None:
        """Before any message is handled: the registrations saved by the last run, a BYE to
        each party of its lost calls, then the heartbeat."""
        switch = self.switch
        assert switch is not None
        now = asyncio.get_running_loop().time()
        bindings = BindingStore(self._cdr.connection, self._wall_offset)
        switch.registrar.store = bindings
        switch.mobile_store = bindings
        recorder = DialogRecorder(self._cdr, switch.control.sessions)
        switch.bus.subscribe(recorder, recorder.kinds)
        restored = bindings.load(now + self._wall_offset)
        switch.restore_bindings(restored, now)
        if restored:
            log.info("restored %d registrations saved by the last run", len(restored))
        mobile = switch.restore_mobile_logins(now)
        if mobile:
            log.info("restored %d mobile agents' logins saved by the last run", mobile)
        switch.send_restart_byes(recovered.dialogs, now)
        self._cdr.run_started(now + self._wall_offset)
        self._flush()
        self._beat()

    def _beat(self) -> None:
        """The heartbeat: the node runs now (where a crash's open calls will end)."""
        loop = asyncio.get_running_loop()
        try:
            self._cdr.alive(loop.time() + self._wall_offset)
            self._cdr.flush()
        except sqlite3.Error as exc:
            log.error("heartbeat not written to %s: %s", self._cdr.path, exc)
        self._heartbeat = loop.call_later(HEARTBEAT_SECONDS, self._beat)

    async def _services(self) -> CallServices:
        """Prompts rendered ahead (no call waits for TTS), the blacklist and voicemail."""
        config = self.config
        library = PromptLibrary(
            config.prompts,
            Path(config.directory or self.config_dir or "."),
            self.data_dir / "prompts",
            default_voice=config.tts.voice,
        )
        problems = await asyncio.to_thread(library.prepare)
        for problem in problems:
            log.warning("%s", problem)
        stats = library.last_prepare
        log.info(
            "prompts ready: %d (%d rendered, %d from cache) in %.2f s",
            len(library.prepared()),
            stats.rendered + stats.converted,
            stats.reused,
            stats.seconds,
        )
        self._prompts = library
        blacklist = BlacklistStore(self.data_dir / "blacklist.db")
        self._voicemail = VoicemailStore(self.data_dir / "hotline.db", self.data_dir / "voicemail")
        self._stores = [blacklist, self._voicemail]
        return CallServices(
            prompts=library,
            blacklist=blacklist,
            voicemail_path=self._voicemail.path_for,
            clock_offset=self.clock_offset,
        )

    def _speech_factory(self, loop: asyncio.AbstractEventLoop) -> Any:
        """DP-6: vosk speech where a model is configured (ivr/speech.py); None: keys only."""
        from ivr.speech import SpeechUnavailable, speech_from_environment

        def deliver(leg_id: str, text: str, confidence: float) -> None:
            if self.switch is not None:
                try:
                    self.switch.control.speech_result(leg_id, text, confidence, loop.time())
                except Exception:
                    log.exception("error handling speech on %s", leg_id)
                self._flush()

        try:
            speech = speech_from_environment(loop, deliver)
        except SpeechUnavailable as exc:
            log.error("speech navigation off: %s", exc)
            return None
        if speech is None:
            log.info("speech navigation off: no model configured (HOTLINE_VOSK_MODEL)")
            return None
        log.info("speech navigation: vosk model %s", speech.model_path)
        return speech.open

    def _voicemail_left(self, event: Any) -> None:
        if isinstance(event, VoicemailLeft):
            self._voicemail.add(
                call_id=event.call_id,
                mailbox=event.mailbox,
                at=event.at,
                path=event.path,
                seconds=event.seconds,
                caller=event.caller,
            )

    def _start_recorder(self, loop: asyncio.AbstractEventLoop, media: RtpEngine | None) -> None:
        """Full-call recording (REC-1) where media is anchored and `recording.enabled`."""
        settings = self.config.recording
        if not settings.enabled:
            log.info("call recording off (recording.enabled: false)")
            return
        if media is None:
            log.warning("call recording off: media is not anchored, no audio reaches the node")
            return
        from recorder.service import Recorder

        assert self.switch is not None
        directory = recordings_directory(self.data_dir, settings.directory)
        recorder = Recorder(
            settings,
            directory,
            self.data_dir / "recordings.db",
            media,
            publish=self.switch.bus.publish,
            post=loop.call_soon_threadsafe,
        )
        recorder.voicemail_moved = self._voicemail_moved
        self.switch.bus.subscribe(recorder, recorder.kinds)
        self._recorder = recorder
        self._recording_jobs = loop.create_task(self._run_recording_jobs(directory))
        from recorder.opus import encoder

        log.info(
            "recording calls to %s (Ogg Opus, %d bit/s a channel, %s)",
            directory,
            settings.bitrate,
            encoder(),
        )

    async def _run_recording_jobs(self, directory: Path) -> None:
        """Retention every `retention_every` seconds and backup every `backup.every`, each
        pass in a thread of its own with its own index connection (recorder/jobs.py)."""
        from recorder.jobs import backup_pass, retention_pass

        loop = asyncio.get_running_loop()
        next_retention = loop.time() + 60.0  # not in the middle of start-up
        next_backup = loop.time() + 30.0
        while True:
            settings = self.config.recording
            now = loop.time()
            if now >= next_retention:
                next_retention = now + settings.retention_every
                await self._recording_job(
                    retention_pass, settings, self.data_dir, directory, name="retention"
                )
            if settings.backup.target and now >= next_backup:
                next_backup = now + settings.backup.every
                await self._recording_job(
                    backup_pass, settings, self.data_dir, directory, name="backup"
                )
            wake = min(next_retention, next_backup if settings.backup.target else next_retention)
            await asyncio.sleep(max(1.0, wake - loop.time()))

    async def _recording_job(self, job: Any, *args: Any, name: str) -> None:
        try:
            await asyncio.to_thread(job, *args)
        except Exception:  # a bad pass is logged; the next one runs on time
            log.exception("recording %s pass failed", name)

    def _voicemail_moved(self, call_id: str, mailbox: str, path: str, old: str) -> None:
        """The recorder encoded a voicemail WAV to Ogg Opus: list the new file, drop the WAV."""
        try:
            self._voicemail.move(call_id, mailbox, path)
        except sqlite3.Error as exc:
            log.error("voicemail %s/%s stays at %s: %s", mailbox, call_id, old, exc)
            return
        Path(old).unlink(missing_ok=True)

    def _media_engine(self) -> RtpEngine | None:
        """The RTP engine when `media.anchor` is on (the default), else None (pass-through)."""
        settings = self.config.media
        if not settings.anchor:
            log.info("media anchoring off: SDP passes through, RTP flows end to end")
            return None
        from media.engine import RtpEngine

        rtp_ip6 = settings.ip6(self.listen)
        self._media = RtpEngine(
            settings.rtp_ip,
            settings.port_min,
            settings.port_max,
            settings.rtp_timeout,
            local_ip6=rtp_ip6,
        )
        log.info(
            "anchoring RTP on %s%s ports %d-%d",
            settings.rtp_ip,
            f" and {rtp_ip6}" if rtp_ip6 else " (no IPv6 media address)",
            settings.port_min,
            settings.port_max,
        )
        return self._media

    def _media_event(self, event) -> None:  # type: ignore[no-untyped-def]
        if self.switch is None:
            return
        recorder = self._recorder
        if (
            recorder is not None
            and type(event).__name__ == "TapData"
            and recorder.owns(event.call_id)
        ):
            recorder.tap_data(event.call_id)
            return
        try:
            self.switch.media_event(event, asyncio.get_running_loop().time())
        except Exception:
            log.exception("error handling media event %s", event)
        self._flush()

    def reload(self) -> None:
        """SIGHUP: validate the configuration directory again and swap it in (DP-9); the
        new prompts are rendered first, off the event loop, so no call waits for TTS."""
        if self._reloading:
            log.warning("reload already in progress; this one is ignored")
            return
        self._reloading = True
        self._reload_task = asyncio.get_running_loop().create_task(self._reload())

    async def _reload(self) -> bool:
        try:
            return await self._reload_config()
        finally:
            self._reloading = False

    async def _reload_config(self) -> bool:
        """An invalid configuration is reported line by line and the running one stays."""
        if self.switch is None or self.config_dir is None:
            log.warning("reload ignored: no configuration directory to read")
            return False
        try:
            config = load_config(self.config_dir)
        except ConfigError as exc:
            for issue in exc.errors:
                log.error("reload refused: %s", issue)
            log.error(
                "reload refused: %d error(s); the running configuration stays", len(exc.errors)
            )
            return False
        try:
            contexts = TlsContexts.from_config(config)
        except TlsFileError as exc:  # changed on disk since it was checked
            log.error("reload refused: node.yaml: tls.%s: %s", exc.key, exc)
            return False
        if self._prompts is not None:
            for problem in await asyncio.to_thread(self._prompts.prepare, config.prompts):
                log.warning("%s", problem)
        now = asyncio.get_running_loop().time()
        try:
            restart_only = self.switch.reload(config, now)
        except AcdError as exc:
            log.error("reload refused by the ACD: %s; the running configuration stays", exc)
            return False
        self.config = config
        if self.transports is not None:
            self.transports.configure(config.limits)
            if self.transports.tls is not None:
                self.transports.tls.configure(contexts)
        if self._recorder is not None:
            self._recorder.config = config.recording
        log.info(
            "configuration reloaded: %s; %d calls in progress untouched",
            summary(config),
            len(self.switch.control.sessions),
        )
        if restart_only:
            log.warning("changed settings that need a restart: %s", ", ".join(restart_only))
        self._flush()
        return True

    def stop(self) -> None:
        self._stopping.set()

    async def _start_control(self) -> None:
        """The local control socket (`hotline agent`, `hotline status`); a node that cannot
        open it runs without (logged)."""
        server = ControlServer(self.data_dir / SOCKET_NAME, self._control_request)
        try:
            await server.start()
        except OSError as exc:
            log.error("no control socket at %s: %s", server.path, exc)
            return
        self._control = server

    def _control_request(self, request: object) -> dict[str, Any]:
        switch = self.switch
        assert switch is not None
        reply = handle_request(switch, request, asyncio.get_running_loop().time())
        self._flush()  # an agent made ready may be offered a call at once
        return reply

    def _receive(self, data: bytes, source) -> None:  # type: ignore[no-untyped-def]
        switch = self.switch
        if switch is None:
            return  # still starting: the peer retransmits
        try:
            switch.receive(data, source, asyncio.get_running_loop().time())
        except Exception:
            # A bug must not take the node down with every call on it; log it loudly.
            log.exception("error handling a message from %s", source)

    def _flush_inputs(self) -> None:
        """After a batch of messages (the transports call it): commit, then send."""
        if self.switch is not None:
            self._flush()

    def _is_trunk_source(self, host: str) -> bool:
        """TCP limits exempt trunks (none are known until the switch is built)."""
        return self.switch is not None and self.switch.is_trunk_source(host)

    def _transport_failed(self, target) -> None:  # type: ignore[no-untyped-def]
        if self.switch is not None:
            self.switch.transport_failed(target, asyncio.get_running_loop().time())
            self._flush()

    def _flush(self) -> None:
        switch = self.switch
        assert switch is not None and self.transports is not None
        # Durable before anyone hears of it: commit the CDR rows this input produced first.
        self._cdr.flush()
        outbox = switch.outbox
        if outbox:
            send = self.transports.send
            for message in outbox:
                send(message)
            outbox.clear()
        self._schedule()

    def _schedule(self) -> None:
        assert self.switch is not None
        when = self.switch.get_timer()
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None:
            self._timer = asyncio.get_running_loop().call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        assert self.switch is not None
        self._timer = None
        self._timer_at = None
        try:
            self.switch.handle_timer(asyncio.get_running_loop().time())
        except Exception:
            log.exception("error in timer handling")
        self._flush()


def recordings_directory(data_dir: Path, configured: str) -> Path:
    """`recording.directory`, relative to the data directory unless absolute."""
    path = Path(configured)
    return path if path.is_absolute() else data_dir / path


def run_node(
    config: Config,
    listen: list[tuple[str, int]],
    data_dir: Path,
    config_dir: Path | None = None,
    clock_offset: float = 0.0,
) -> int:
    """Run until SIGINT/SIGTERM (SIGHUP reloads `config_dir`); uvloop when installed."""
    node = Node(config, listen, data_dir, config_dir, clock_offset)
    try:
        import uvloop
    except ImportError:
        asyncio.run(node.run())
    else:
        uvloop.run(node.run())
    return 0
