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

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

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
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
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
