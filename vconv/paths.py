"""Path safety: nothing the user owns is written over, and nothing is written outside where they pointed.

Every command that writes checks its output paths here *before* any slow work (model loading, training):

* :func:`check_output_path` - a file or folder that can be created or replaced where the user asked:
  not under a system folder (``/proc``, ``/sys``, ``/dev``), not below a file, in a writable folder,
  a file where a file is expected and a folder where a folder is;
* :func:`check_distinct_outputs` - a batch's outputs never equal one of its inputs (sources, target
  references) nor each other (``g.wav`` and ``g.flac`` would both become ``g.wav``);
* :func:`check_not_inside` - an output folder is neither an input folder nor inside one;
* :func:`safe_relative_id` - a name taken from a file (a manifest id) that becomes a path below an
  output folder: relative, no ``..``, no backslash or drive letter, no NUL, so it cannot escape it.

Each refusal is one :class:`~vconv.errors.VconvError` line naming the path and the reason.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Iterable, Literal, Sequence

from vconv.errors import VconvError

SYSTEM_ROOTS = ("/proc", "/sys", "/dev")  # kernel interfaces and devices: never an output
_DRIVE = re.compile(r"^[A-Za-z]:")


def absolute(path: str | Path) -> Path:
    """``path`` made absolute with symlinks resolved (the file a write would really reach)."""
    return Path(os.path.realpath(os.path.abspath(path)))


TEMP_NAME_EXTRA = 10  # what atomic writing adds to a name: "." + name + "." + 8 random characters


def check_name_length(path: Path, what: str = "output") -> None:
    """Refuse a file name too long for its folder once the temporary name it is written under is longer
    still (checked before any work, not found after it)."""
    try:
        limit = os.pathconf(absolute(path).parent if absolute(path).parent.exists() else "/", "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    size = len(os.fsencode(path.name))
    if size + TEMP_NAME_EXTRA > limit:
        raise VconvError(f"{path.name[:40]}...: {what} file name too long ({size} bytes; at most "
                         f"{limit - TEMP_NAME_EXTRA} here, leaving room for the temporary name it is written under)")


def check_output_path(
    path: str | Path, *, expect: Literal["file", "folder"] = "file", extensions: Sequence[str] | None = None,
    what: str = "output",
) -> Path:
    """``path`` if something can be written there as a ``expect`` (file or folder), else a one-line VconvError.

    ``extensions`` (lower case, with the dot) are the suffixes a file output may have. Refused: a path under
    :data:`SYSTEM_ROOTS`; an existing folder where a file is expected and the other way round; a path below
    an existing file; a path whose first existing ancestor is not a writable folder.
    """
    path = Path(path)
    real = absolute(path)
    for root in SYSTEM_ROOTS:
        if real == Path(root) or Path(root) in real.parents:
            raise VconvError(f"{path}: {what} is under {root}, a system folder; choose a path in your own folders")
    if path.exists():
        if expect == "file" and path.is_dir():
            raise VconvError(f"{path}: {what} is an existing folder, expected a file name")
        if expect == "folder" and not path.is_dir():
            raise VconvError(f"{path}: {what} is an existing file, expected a folder")
    if expect == "file":
        check_name_length(path, what)
    if expect == "file" and extensions is not None and path.suffix.lower() not in extensions:
        raise VconvError(f"{path}: unsupported {what} extension {path.suffix or '(none)'!r}; use {', '.join(extensions)}")
    folder = real if expect == "folder" else real.parent
    ancestor = folder
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise VconvError(f"{path}: {ancestor} is a file, so nothing can be written below it")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise VconvError(f"{path}: cannot write in {ancestor} (permission denied)")
    return path


def check_distinct_outputs(jobs: Iterable[tuple[Path | None, Path]], inputs: Iterable[tuple[Path, str]] = ()) -> None:
    """Refuse a batch where an output is one of ``inputs`` or two jobs share an output.

    ``jobs``: ``(input, output)`` pairs; ``inputs``: ``(path, role)`` of every other file read (e.g. target
    references, role ``"target reference"``). Each job's input counts as a ``"source"``; None is an input that
    is no file (standard input, a microphone), so only ``inputs`` can be overwritten.
    """
    jobs = list(jobs)
    readers = [(src, "source") for src, _ in jobs if src is not None] + list(inputs)
    by_input = {absolute(p): (p, role) for p, role in readers}
    by_inode = {inode: (p, role) for p, role in readers if (inode := _inode(p)) is not None}  # hard links too
    writers: dict[Path, Path | None] = {}
    for src, dest in jobs:
        key = absolute(dest)
        inode = _inode(dest)
        hit = by_input.get(key) or (by_inode.get(inode) if inode is not None else None)
        if hit is not None:
            raise VconvError(f"{dest}: output would overwrite the {hit[1]} {hit[0]}; choose another output")
        if key in writers:
            raise VconvError(f"{writers[key]} and {src} would both be written to {dest}; rename one of them "
                             "or convert them separately")
        writers[key] = src


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_not_inside(out_dir: Path, in_dir: Path, role: str = "source folder") -> None:
    """Refuse an output folder that is the input folder ``in_dir`` or lies inside it."""
    out_real, in_real = absolute(out_dir), absolute(in_dir)
    if out_real == in_real:
        raise VconvError(f"{out_dir}: output folder is the {role}; choose another folder so the inputs are never written over")
    if in_real in out_real.parents:
        raise VconvError(f"{out_dir}: output folder is inside the {role} {in_dir}; choose a folder outside it")


def safe_relative_id(text: object, where: str) -> str:
    """``text`` if it is a safe relative name for a file below an output folder, else a one-line VconvError.

    ``where`` says where it came from (``manifest.jsonl:12``). Safe: a non-empty string of ``/``-separated
    parts, none empty, ``.`` or ``..``, no backslash, no drive letter, no NUL, not absolute.
    """
    if not isinstance(text, str):
        raise VconvError(f"{where}: id must be a string, got {type(text).__name__} {text!r}")
    reason = None
    if not text.strip():
        reason = "is empty"
    elif "\x00" in text:
        reason = "contains a NUL character"
    elif "\\" in text or _DRIVE.match(text):
        reason = "contains a backslash or a drive letter"
    elif text.startswith("/") or PurePosixPath(text).is_absolute():
        reason = "is an absolute path"
    elif any(part in ("", ".", "..") for part in text.split("/")):
        reason = "has an empty, '.' or '..' part"
    if reason:
        raise VconvError(f"{where}: id {text!r} {reason}; ids must be relative names such as speaker/utterance")
    return text
