"""The one atomic writer of ``models``: ``atomic_write`` for a file, ``atomic_dir`` for a directory.

Both write under a temporary name next to the target and rename it into
place, so a crash never leaves half a dataset, checkpoint or result file.

File modes: what a plain open() / mkdir() would have given. tempfile.mkstemp
creates 0600 files and mkdtemp 0700 folders, on purpose (for secrets). Our
temp names are renamed into place as datasets, checkpoints and results that
colleagues on a shared machine must be able to read, so both writers set the
umask-derived mode before the rename.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from models.errors import DiskFullError, OutputError

FILE_MODE = 0o666  # open(..., "w") before the umask
DIR_MODE = 0o777  # os.mkdir before the umask


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc), else by a swap."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def default_file_mode() -> int:
    """0666 & ~umask: the mode of a file created by open()."""
    return FILE_MODE & ~current_umask()


def default_dir_mode() -> int:
    """0777 & ~umask: the mode of a folder created by mkdir()."""
    return DIR_MODE & ~current_umask()


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the device is full: an OSError ENOSPC/EDQUOT, or a writer's own error with its text.

    safetensors raises ``SafetensorError("... No space left on device ...")``,
    not an OSError, so its message is the only sign.
    """
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return not isinstance(exc, OSError) and "No space left on device" in str(exc)


def _disk_full(target: Path) -> DiskFullError:
    return DiskFullError(
        f"no space left on the device while writing {target}; the previous version is kept: "
        f"free some space in {target.parent}"
    )


def atomic_write(path: Path, content: str | bytes | Callable[[BinaryIO], object]) -> Path:
    """Write one file under a temporary name in its directory, then rename it into place; return ``path``.

    ``content``: text (written as UTF-8, never the locale's encoding), bytes,
    or a function that writes to the binary file object it is given (large
    arrays stream through it: ``lambda fh: np.savez(fh, **arrays)``). The file
    gets the mode a plain ``open()`` would give; a reader sees the old file or
    the whole new one, never a part, and a failed write leaves no temp file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), default_file_mode())  # mkstemp's 0600 would hide results from colleagues
            if isinstance(content, str):
                handle.write(content.encode("utf-8"))
            elif isinstance(content, (bytes, bytearray, memoryview)):
                handle.write(content)
            else:
                content(handle)
            handle.flush()
            os.fsync(handle.fileno())  # the rename must not publish an empty file after a crash
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(exc):
            raise _disk_full(path) from exc
        raise
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """``atomic_write`` for text (UTF-8); kept for its many callers."""
    atomic_write(path, text)


@contextmanager
def atomic_dir(final_dir: Path) -> Iterator[Path]:
    """Build a directory in a fresh temporary one next to ``final_dir``, then swap it in.

    ``with atomic_dir(out) as tmp:`` write the files into ``tmp``. On a clean
    exit every file and folder in it gets the mode a plain ``open()`` /
    ``mkdir()`` gives under the umask (third-party writers such as safetensors
    make 0600 files) and it replaces ``final_dir`` (an older version is moved
    aside first, then deleted). On an error the temporary directory is removed
    and ``final_dir`` is left as it was: a reader never sees half a directory.
    A full disk (whichever writer hit it) becomes a DiskFullError naming ``final_dir``.
    """
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name per call in the same parent: the renames stay on one file
    # system and parallel writers never share a temp name.
    tmp = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.", suffix=".tmp", dir=final_dir.parent))
    try:
        yield tmp
        _share_modes(tmp)
        _swap_in(tmp, final_dir)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc):  # one line instead of the writer's traceback; the old directory stands
            raise _disk_full(final_dir) from exc
        raise


def _share_modes(root: Path) -> None:
    """Give ``root`` and everything under it the umask-derived modes of open() / mkdir()."""
    file_mode, dir_mode = default_file_mode(), default_dir_mode()
    os.chmod(root, dir_mode)  # mkdtemp makes 0700
    for parent, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(parent, name), dir_mode)
        for name in files:
            os.chmod(os.path.join(parent, name), file_mode)


def _swap_in(tmp_dir: Path, final_dir: Path) -> None:
    """Move a finished temporary directory into place, replacing any older version."""
    if not final_dir.exists():
        os.replace(tmp_dir, final_dir)
        return
    # A rename cannot replace a non-empty directory: move the old one aside
    # first, onto a fresh empty directory (which rename may replace).
    old = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.", suffix=".old", dir=final_dir.parent))
    try:
        os.replace(final_dir, old)
    except BaseException:
        old.rmdir()
        raise
    os.replace(tmp_dir, final_dir)
    shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- #
# One writer per output folder
# --------------------------------------------------------------------------- #

LOCK_NAME = ".deepmlf.lock"  # inside the folder it guards; removed when the writer is done


def _holder_pid(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii").strip() or "unknown"
    except (OSError, UnicodeDecodeError):
        return "unknown"


def unwritable_reason(exc: OSError) -> str:
    """A few words for why a write failed: the file system is read-only, full, or the folder is not ours."""
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOTDIR:
        return str(exc.strerror)
    return exc.strerror or str(exc)


def _probe(directory: Path) -> OSError | None:
    """Create and remove a file in ``directory``, or in its nearest existing parent when it is missing
    (nothing is left behind); the OSError that stopped it, or None.

    A real probe file, not os.access: permission bits do not stop root, and
    neither sees a read-only mount or an immutable folder the way a write does.
    """
    while not directory.exists() and directory.parent != directory:
        directory = directory.parent
    if not directory.is_dir():
        return NotADirectoryError(errno.ENOTDIR, f"{directory} is a file")
    try:
        fd, probe = tempfile.mkstemp(prefix=".deepmlf-probe.", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return exc
    return None


def check_writable_dir(directory: Path, option: str = "--out") -> None:
    """Raise OutputError (one line) unless ``directory`` can be made (when missing) and written in."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"{option} {directory} is a file; give a directory")
    failure = _probe(directory)
    if failure is not None:
        raise OutputError(
            f"{option} {directory}: cannot write there ({unwritable_reason(failure)}); choose another {option}"
        )


def check_writable_file(path: Path, option: str) -> None:
    """Raise OutputError (one line) unless file ``path`` can be written: not a folder, its folder writable."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{option} {path} is a folder; give a file name")
    if path.parent.exists() and not path.parent.is_dir():
        raise OutputError(f"{option} {path}: {path.parent} is a file, not a folder")
    failure = _probe(path.parent)
    if failure is not None:
        raise OutputError(
            f"{option} {path}: cannot write in {path.parent} ({unwritable_reason(failure)}); choose another {option}"
        )


@contextmanager
def output_lock(directory: Path, what: str = "writer", option: str = "--out") -> Iterator[Path]:
    """Hold an exclusive lock on output folder ``directory`` (made if missing) while the block runs.

    The lock is an flock on ``directory/.deepmlf.lock``, which records the
    holder's pid: a second writer gets OutputError naming that pid instead of
    mixing its files with the first's. The kernel releases an flock when its
    process dies, so a lock file left by a killed run is simply taken over.
    The file is removed on exit; a writer that locked a file just removed
    (it opened it before the unlink) sees another inode at the path and retries.
    """
    directory = Path(directory)
    check_writable_dir(directory, option)
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, default_file_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(
                f"{directory} is in use by another deepmlf {what} (pid {_holder_pid(path)}); "
                f"wait for it to finish, or choose another {option}"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed this file as it finished: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield path
    finally:
        path.unlink(missing_ok=True)  # while still held: no one can lock this inode and think it is current
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):  # a writer that failed before writing leaves no empty folder
                directory.rmdir()
