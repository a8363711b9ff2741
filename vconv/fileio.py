"""Atomic file output: write to a temporary file beside the target, then rename it into place.

An interrupted write never leaves half a file under the real name, and a reader never sees one.
The temporary file gets the permissions a plain ``open(path, "w")`` would give (``0o666`` less the
umask), not the private ``0o600`` of ``mkstemp``, so outputs are as shareable as the user expects.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def default_mode(directory: bool = False) -> int:
    """Permissions a new file (or folder) would get under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success rename it to ``path``, else delete it.

    ``suffix`` defaults to the target's own (some writers pick the format from the extension).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix if suffix is None else suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``Path.write_text`` (UTF-8), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
