"""One run dir, one writer: ``lema run`` holds an exclusive lock on its run dir before it writes anything there."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

LOCK_FILE = ".lema-run.lock"


class RunDirBusy(RuntimeError):
    """Another `lema run` holds the run dir."""


def _holder(lock: Path) -> str:
    """Who holds `lock`, from what the holder wrote into it (it writes right after locking: wait a moment)."""
    for _ in range(20):
        text = lock.read_text(encoding="utf-8") if lock.exists() else ""
        if text.strip():
            h = json.loads(text)
            return f"pid {h['pid']} on {h['host']}, started {h['started']}: {h['command']}"
        time.sleep(0.05)
    return "a process that has not said who it is yet"


@contextlib.contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``<run_dir>/.lema-run.lock`` for the block; raise RunDirBusy at once,
    naming the holder, when another process holds it.  The kernel releases it when the holder dies."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_FILE
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirBusy(f"run dir {run_dir} is in use by another lema run ({_holder(lock)}); wait for it "
                             "to finish or give this run another run_dir (--set run_dir=...)") from None
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.now(UTC).isoformat(timespec="seconds"), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        try:
            yield lock
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the lock
