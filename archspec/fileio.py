"""The two file rules: what archspec reads, and what it writes.

Input: a spec or checkpoint is read only from a regular file, or from standard input ('-' on the
command line) with the same size limit. A directory, FIFO, device or socket is refused before a
byte is read, so nothing ever blocks on a pipe nobody writes to.

Output: archspec never damages what is not its own. A new path or a regular file is written
atomically: a temporary file beside it (named .NAME.archspec-PID-XXXX.tmp), then a rename. A
symlink is followed (the link stays, its target is replaced). Standard output ('-', /dev/stdout,
or any path that is the file standard output already goes to), a FIFO with a reader, and
/dev/null are written in place. Anything else that exists (a directory, a socket, a device such
as /dev/full) is refused. Temporary files are removed on failure and on SIGTERM/SIGINT/SIGHUP,
and ones left by a killed process (dead pid) are removed by the next write to that folder.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import FileError
from .units import human_bytes

STDIO = "-"
TEMP = re.compile(r"^\..*\.archspec-(\d+)-[A-Za-z0-9_]+\.tmp$")
STALE_SECONDS = 60  # a dead process's temp file this old is garbage (not one mid-rename elsewhere)
SIGNALS = tuple(getattr(signal, s) for s in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, s))
OTHER_HINT = "choose a regular file, or - for standard output"


def kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def _os_failure(path: str | os.PathLike, exc: OSError, doing: str, hint: str) -> FileError:
    reason = {errno.ENOENT: "no such file or directory", errno.EACCES: "permission denied",
              errno.EISDIR: "it is a directory", errno.ENOSPC: "no space left on the device",
              }.get(exc.errno, exc.strerror or str(exc))
    return FileError(f"cannot {doing} '{os.fspath(path)}': {reason}", hint)


# --------------------------------------------------------------------------- input

def open_input(path: str | os.PathLike, what: str = "file") -> BinaryIO:
    """The regular file at path, opened for reading; FileError for anything else. Opened
    non-blocking first, so a FIFO is refused instead of waiting for a writer."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        mode = _mode_or_none(path)  # a socket cannot be opened at all (ENXIO): name what it is
        if mode is not None and not stat.S_ISREG(mode):
            raise _not_regular(path, what, mode) from None
        raise _os_failure(path, exc, f"read {what}", "check that the path exists and is a "
                          "readable file") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _not_regular(path, what, mode)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _mode_or_none(path) -> int | None:
    try:
        return os.stat(path).st_mode
    except OSError:
        return None


def _not_regular(path, what: str, mode: int) -> FileError:
    return FileError(f"cannot read {what} '{os.fspath(path)}': it is {kind_of(mode)}, not a "
                     "regular file", "give a regular file, or - to read standard input"
                     if what.startswith("spec") else "give a regular file")


def read_bounded(stream: BinaryIO, limit: int) -> bytes:
    """At most limit + 1 bytes, so the caller can tell 'over the limit' without reading it all."""
    return stream.read(limit + 1)


# --------------------------------------------------------------------------- output

@dataclass
class Target:
    how: str          # 'atomic' (temp + rename), 'stream' (our stdout/stderr), 'in_place'
    path: str         # for 'atomic': the real path (symlinks resolved)
    fd: int | None = None


def _same_file(a: os.stat_result, fd: int) -> bool:
    try:
        b = os.fstat(fd)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def output_target(path: str | os.PathLike) -> Target:
    """How archspec writes to path (see the module's rule); FileError when it refuses to."""
    name = os.fspath(path)
    if name == STDIO:
        return Target("stream", name, 1)
    try:
        st = os.stat(name)
    except FileNotFoundError:
        return Target("atomic", os.path.realpath(name))
    except OSError as exc:
        raise _os_failure(name, exc, "write", "check that the output folder exists and is "
                          "writable") from None
    for fd in (1, 2):
        if _same_file(st, fd):
            return Target("stream", name, fd)
    if stat.S_ISREG(st.st_mode):
        return Target("atomic", os.path.realpath(name))
    if _in_place_kind(st):
        return Target("in_place", name)
    raise FileError(f"refusing to write to '{name}': it is {kind_of(st.st_mode)}, not a regular "
                    "file", OTHER_HINT)


def _in_place_kind(st: os.stat_result) -> bool:
    """A FIFO, or the null device: written where it is, never renamed over."""
    return stat.S_ISFIFO(st.st_mode) or (stat.S_ISCHR(st.st_mode) and st.st_rdev == _null_device())


def _null_device() -> int | None:
    try:
        return os.stat(os.devnull).st_rdev
    except OSError:
        return None


class _Counting:
    """A binary file wrapper that counts the bytes written through it."""

    def __init__(self, handle: BinaryIO):
        self.handle, self.written = handle, 0

    def write(self, data) -> int:
        n = self.handle.write(data)
        self.written += len(data) if n is None else n
        return n

    def flush(self) -> None:
        self.handle.flush()


def write_output(path: str | os.PathLike, write: Callable[[BinaryIO], object], *,
                 size: int | None = None) -> int:
    """Call write(file) for path as the output rule says; return the bytes written. `size`, when
    known, is checked against the free space first (FileError, nothing written)."""
    target = output_target(path)
    if target.how == "stream":
        sys.stdout.flush()  # what we printed before comes first
        stream = os.fdopen(os.dup(target.fd), "wb")
        with stream:
            return _write_through(path, stream, write)
    if target.how == "in_place":
        return _write_in_place(path, write)
    folder = os.path.dirname(target.path) or "."
    if size is not None:
        check_space(path, folder, size)
    remove_stale_temps(folder)
    return _write_atomic(path, target.path, folder, write)


def _write_through(path, stream: BinaryIO, write) -> int:
    counter = _Counting(stream)
    try:
        write(counter)
        stream.flush()
    except OSError as exc:
        raise _os_failure(path, exc, "write", OTHER_HINT) from None
    return counter.written


def _write_in_place(path, write) -> int:
    try:  # non-blocking open: a FIFO without a reader fails (ENXIO) instead of hanging
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise FileError(f"cannot write '{os.fspath(path)}': no process is reading from "
                            "this FIFO", "start the reader first") from None
        raise _os_failure(path, exc, "write", OTHER_HINT) from None
    if not _in_place_kind(os.fstat(fd)):  # the path was swapped after we looked at it
        os.close(fd)
        raise FileError(f"refusing to write to '{os.fspath(path)}': it is no longer a FIFO or "
                        "the null device", OTHER_HINT)
    os.set_blocking(fd, True)
    with os.fdopen(fd, "wb") as stream:
        return _write_through(path, stream, write)


def check_space(path, folder: str, size: int) -> None:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # the write itself will report a folder that does not exist
    if size > free:
        raise FileError(f"not enough disk space for '{os.fspath(path)}': it needs "
                        f"{human_bytes(size)}, and {folder} has {human_bytes(free)} free",
                        "free some space or write to another disk (nothing was written)")


def remove_stale_temps(folder: str) -> None:
    """Remove temporary files of ours whose writer died (SIGKILL, power loss) a while ago."""
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = TEMP.match(entry.name)
        if not match or _alive(int(match.group(1))):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and now - info.st_mtime > STALE_SECONDS:
                os.unlink(entry.path)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


class _Interrupted(BaseException):
    """Raised by our signal handler to stop the write (torch may wrap it in a RuntimeError)."""


def _write_atomic(path, real: str, folder: str, write) -> int:
    name = os.path.basename(real)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.archspec-{os.getpid()}-",
                                   suffix=".tmp")
    except OSError as exc:  # name the file the user asked for, not our temporary
        raise _os_failure(path, exc, "write", "check that the output folder exists and is "
                          "writable") from None
    caught: list[int] = []
    previous = _catch_signals(tmp, caught)
    try:
        with os.fdopen(fd, "wb") as handle:
            counter = _Counting(handle)
            write(counter)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, real)
        return counter.written
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if caught:  # let the handler we replaced act on the signal now that the file is gone
            _restore_signals(previous)
            os.kill(os.getpid(), caught[0])
            raise FileError(f"writing '{os.fspath(path)}' was interrupted (nothing was "
                            "written)") from None
        if isinstance(exc, OSError):
            raise _os_failure(path, exc, "write", "check the free space and that the output "
                              "folder is writable") from None
        raise
    finally:
        _restore_signals(previous)


def _catch_signals(tmp: str, caught: list[int]) -> dict:
    """While a temporary file exists, a termination signal removes it first, then stops the
    write. Main thread only: Python delivers signals there."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum, frame):
        caught.append(signum)
        Path(tmp).unlink(missing_ok=True)
        raise _Interrupted(signum)

    previous = {}
    for signum in SIGNALS:
        old = signal.getsignal(signum)
        if old is not signal.SIG_IGN and old is not None:
            previous[signum] = signal.signal(signum, handler)
    return previous


def _restore_signals(previous: dict) -> None:
    for signum, old in previous.items():
        signal.signal(signum, old)
    previous.clear()
