"""File modes for atomic writes: what a plain open() / mkdir() would have given.

tempfile.mkstemp creates 0600 files and mkdtemp 0700 folders, on purpose (for
secrets). Our temp names are renamed into place as datasets, checkpoints and
results that colleagues on a shared machine must be able to read, so each
writer sets the umask-derived mode before the rename.
"""

from __future__ import annotations

import os

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
