"""The engine child process as seen from the app: start it, send commands, turn its events into messages.

The engine runs ``python -m hero_engine.worker`` in its own process, so torch
never holds this process's GIL and a CUDA failure cannot take the UI down.
This module imports no torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from textual.message_pump import MessagePump

from hero_engine import protocol
from hero_tui.engine_messages import EngineExited, parse_event

log = logging.getLogger(__name__)

LOG_FILE = "engine.log"
_LINE_LIMIT = 16 * 1024 * 1024  # a batch of many images is one line


def worker_command(session: Path, device: str | None = None, dtype: str | None = None) -> list[str]:
    """The command line of the real engine worker for a session folder."""
    command = [sys.executable, "-m", "hero_engine.worker", "--session", str(session)]
    if device:
        command += ["--device", device]
    if dtype:
        command += ["--dtype", dtype]
    return command


class EngineClient:
    """One engine child process; its events are posted to ``target`` as EngineMessage subclasses."""

    def __init__(self, target: MessagePump, command: Sequence[str], session: Path):
        self.target = target
        self.command = list(command)
        self.log_path = Path(session) / LOG_FILE
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._next_id = 1
        self._pending: dict[int, str] = {}
        self._unanswered: set[int] = set()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        # The child's stderr (tracebacks that escape its logging) lands in the same log the user is pointed to.
        with open(self.log_path, "ab") as stderr:
            self._process = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                limit=_LINE_LIMIT,
                # Its own session: a terminal signal goes to the app, which then stops the engine at a safe
                # point; if the app dies, the engine sees stdin close and stops by itself.
                start_new_session=True,
            )
        self._reader = asyncio.create_task(self._read_events(self._process))
        log.info("engine started: pid %s", self._process.pid)

    def send(self, cmd: str, **fields: Any) -> int | None:
        """Write one command; returns its id, or None if the engine is not running."""
        if not self.running or self._process.stdin is None:
            return None
        command_id = self._next_id
        self._next_id += 1
        self._pending[command_id] = cmd
        self._unanswered.add(command_id)
        line = protocol.encode({"cmd": cmd, "id": command_id, **fields}) + "\n"
        try:
            self._process.stdin.write(line.encode())
        except (BrokenPipeError, ConnectionResetError):
            return None
        return command_id

    async def stop(self, timeout: float = 20.0) -> int | None:
        """Ask for a shutdown (the running stage stops at a safe point); kill the process if it does not go."""
        process = self._process
        if process is None:
            return None
        if process.returncode is None:
            self.send("shutdown")
            with contextlib.suppress(Exception):
                if process.stdin is not None:
                    process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except asyncio.TimeoutError:
                log.warning("engine did not stop within %.0fs; killing it", timeout)
                process.kill()
                await process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 2.0)
        return process.returncode

    def log_tail(self, lines: int = 3) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, 2)
                fh.seek(max(0, fh.tell() - 8192))
                text = fh.read().decode(errors="replace")
        except OSError:
            return ""
        # The failure screen shows these lines: never a traceback's frames, only what it ends with.
        kept = [line for line in text.strip().splitlines()
                if line.strip() and not line.startswith((" ", "\t", "Traceback (most recent call last)"))]
        return "\n".join(kept[-lines:])

    async def _read_events(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while True:
            try:
                raw = await process.stdout.readline()
            except ValueError:  # a line over the limit: not something the protocol produces
                log.error("engine wrote an over-long line; ignoring it")
                continue
            if not raw:
                break
            try:
                data = protocol.decode(raw.decode())
            except ValueError:
                log.warning("engine wrote a line that is not a protocol event: %r", raw[:200])
                continue
            reply_to = data.get("reply_to")
            command = self._pending.get(reply_to) if isinstance(reply_to, int) else None
            self._unanswered.discard(reply_to)
            message = parse_event(data, command)
            if message is not None:
                self.target.post_message(message)
        returncode = await process.wait()
        if process is self._process:
            self.target.post_message(EngineExited(returncode, self.log_tail()))
