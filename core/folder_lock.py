"""One process per output folder: an exclusive OS lock held by ``fsx train`` and ``fsx prepare`` for their lifetime.

``fcntl.flock`` on ``FOLDER/.fsx.lock``: the kernel releases it when the process ends in any way (kill -9
included), so a lock never outlives its holder and ``--resume`` after a crash is never blocked. The file holds the
holder's pid, command and start time, so that a second process is refused with a line that names them. Readers
(``fsx eval``, ``encode``) take no lock: they read files that are written atomically.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".fsx.lock"
_HELD: set[int] = set()  # this process's lock descriptors


def _drop_in_child() -> None:
    """A forked child (a DataLoader or preparation worker) lets go of its copies of the lock descriptors: a lock
    lasts while any copy is open, and a worker outliving a killed trainer must not block its --resume."""
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_in_child)


class FolderBusyError(RuntimeError):
    """Another process holds the folder's lock."""


@contextmanager
def folder_lock(folder: str | os.PathLike, command: str):
    """Hold ``folder``'s lock (creating the folder) for the ``with`` block, or raise FolderBusyError at once."""
    if sys.platform == "win32":  # no flock: nothing to hold (the checks of the run folder still apply)
        yield
        return
    import fcntl

    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    locked = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusyError(f"{folder} is in use by {_holder(fd)}; wait for it to end or stop it "
                                  f"(nothing was changed)") from None
        locked = True
        _HELD.add(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "command": command,
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}).encode())
        yield
    finally:
        if locked and created and [p.name for p in folder.iterdir()] == [LOCK_NAME]:
            (folder / LOCK_NAME).unlink()  # a folder this process made and left empty (it failed at once) goes
            folder.rmdir()
        _HELD.discard(fd)
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"{info.get('command', 'another fsx process')} (pid {info['pid']}, started {info['started']})"
    except (OSError, ValueError, KeyError):
        return "another fsx process"
