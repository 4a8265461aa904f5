"""One training run per run folder: an exclusive lock file held while ``train`` runs.

    with run_lock(out_dir):     # refused (ValueError naming the owner's pid and the lock file) while another lives
        ...                     # released at exit, also on errors

The lock file ``OUT/.train.lock`` holds the owner's pid and host ("PID HOST") and, where the system has
it, the owner's ``flock``, which the kernel drops when the process dies (and which decides between two
runs that start at the same moment). A lock of this host whose flock nobody holds is taken over (its
owner is dead, even if its pid now belongs to another process; without flock, as on Windows, a pid that
no process has); one of another host is refused (its pid cannot be checked from here): delete the
file once that run has ended.
"""
from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from data_prep._write import alive as pid_alive  # the builders' staging folders ask the same question

try:
    import fcntl
except ImportError:  # Windows: the pid alone decides
    fcntl = None

LOCK_NAME = ".train.lock"


@contextlib.contextmanager
def run_lock(out_dir: str | Path) -> Iterator[Path]:
    """Hold the lock of the run folder ``out_dir`` (created if missing; removed again if left empty)."""
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_NAME
    fd = _acquire(path)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            if os.fstat(fd).st_ino == path.stat().st_ino:
                path.unlink()
        os.close(fd)  # drops the flock
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # only when empty: a run that failed before writing anything


def _acquire(path: Path) -> int:
    """An open descriptor of the lock file ``path``, now holding this process's pid and host."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            owner = os.read(fd, 200).decode(errors="replace").split()
            if _held(fd, owner):
                who = f"pid {owner[0]} on {owner[1]}" if len(owner) == 2 else "a process that is starting"
                hint = ("wait for it to end, or train into another --out" if owner[1:] == [socket.gethostname()]
                        else f"if that run has ended, delete {path}")
                raise ValueError(f"{path.parent} is in use by another training run ({who}, lock file {path}): {hint}")
            if os.fstat(fd).st_ino != _inode(path):  # released and deleted while we opened it: try again
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
            return fd
        except BaseException:
            os.close(fd)
            raise


def _held(fd: int, owner: list[str]) -> bool:
    """Whether the lock file open as ``fd`` (holding ``owner``: [pid, host] or less) belongs to a live run.
    Otherwise this process now holds its flock."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    if len(owner) != 2 or not owner[0].isdigit():
        return False  # empty (a lock released, or its owner killed before writing) or not ours
    pid, host = int(owner[0]), owner[1]
    if host != socket.gethostname():
        return True  # neither its flock (another machine's) nor its pid can be checked from here
    # On this host a live run holds the flock, so with flock the pid is not asked: a dead owner's pid may
    # have been given to an unrelated process since. Without flock (Windows) the pid alone decides.
    return fcntl is None and pid_alive(pid)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None
