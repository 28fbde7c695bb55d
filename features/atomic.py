"""Files written whole or not at all: into a temporary file beside the target, then renamed.

A reader, or a later run, sees either the previous file or the complete new one: never a file
cut short by a full disk, a killed process or a failed conversion.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """A temporary path to write ``target``'s content to; renamed onto ``target`` on success.

    The temporary file is in ``target``'s folder (created when missing), so the rename stays
    on one filesystem and is atomic. When the block raises, the temporary file is removed and
    ``target`` is left as it was.

    Raises
    ------
    OSError
        When the folder cannot be created or written, or the disk is full; ``target`` is
        untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    # mkstemp makes the file private; the result gets the permissions a plain open would give.
    os.chmod(temporary, 0o666 & ~_UMASK)
    try:
        yield temporary
        _sync(temporary)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _sync(path: Path) -> None:
    # Flushed to disk before the rename, so that a crash cannot leave the new name on old blocks.
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())
