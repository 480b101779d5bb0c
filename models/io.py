"""File modes for atomic writes: what a plain open() / mkdir() would have given.

tempfile.mkstemp creates 0600 files and mkdtemp 0700 folders, on purpose (for
secrets). Our temp names are renamed into place as datasets, checkpoints and
results that colleagues on a shared machine must be able to read, so each
writer sets the umask-derived mode before the rename.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

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


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file under a temporary name in the same directory, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:  # transcripts: never the locale's encoding
            os.fchmod(handle.fileno(), default_file_mode())  # mkstemp's 0600 would hide results from colleagues
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())  # the rename must not publish an empty file after a crash
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a finished temporary directory into place, replacing any older version."""
    final_dir = Path(final_dir)
    old = None
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old-{os.getpid()}")
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
