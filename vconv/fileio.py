"""Files every stage writes and reads: atomic output, sha256 digests, digest-checked weight files.

Atomic output: write to a temporary file beside the target, then rename it into place.

An interrupted write never leaves half a file under the real name, and a reader never sees one.
The temporary file gets the permissions a plain ``open(path, "w")`` would give (``0o666`` less the
umask), not the private ``0o600`` of ``mkstemp``, so outputs are as shareable as the user expects.

Path safety: nothing the user owns is written over, and nothing is written outside where they pointed.

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

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator, Literal, Sequence

from vconv.errors import VconvError


def default_mode(directory: bool = False) -> int:
    """Permissions a new file (or folder) would get under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success rename it to ``path``, else delete it.

    ``suffix`` defaults to the target's own (some writers pick the format from the extension). With
    ``overwrite=False`` the file is put in place only if ``path`` still does not exist (a hard link, which
    fails rather than replaces): two processes writing the same output never silently replace each other.
    Every failure, a full disk included, is a one-line VconvError.
    """
    path = Path(path)
    try:  # a folder that cannot be made or written is the user's to fix: one line, not a traceback
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix if suffix is None else suffix)
    except OSError as exc:
        raise VconvError(f"{path}: cannot write here ({exc.strerror or exc})") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, default_mode())
        _put_in_place(Path(tmp), path, overwrite)
    except OSError as exc:
        raise VconvError(f"{path}: {write_failure(path, exc)}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _put_in_place(tmp: Path, path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise VconvError(f"{path}: is a folder; an output file cannot replace it")
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if the name exists: nothing is replaced
    except FileExistsError:
        raise VconvError(f"{path}: was created by something else while this ran; pass --force to overwrite") from None


def write_failure(path: Path, exc: BaseException) -> str:
    """Why writing ``path`` failed, in a few words: a full disk is named as such (libsndfile says only
    "System error")."""
    try:
        full = shutil.disk_usage(path.parent).free < 1 << 20
    except OSError:
        full = False
    if full or getattr(exc, "errno", None) == errno.ENOSPC:
        return "no space left on the device"
    reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"could not write ({reason})"


def discard_unwritten(stream: Any) -> None:
    """Point ``stream``'s file descriptor at ``/dev/null`` once writing to it failed (standard output on a full
    disk or ``/dev/full``) and the failure has been reported: a buffered stream keeps the bytes it could not
    write and retries them at every flush, the interpreter's own at exit too, which would print a second,
    unasked-for error and change the exit code. A stream without a descriptor (a test's buffer) is left as it is."""
    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both an OSError and a ValueError
        return
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``Path.write_text`` (UTF-8), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def read_text(path: str | Path, what: str) -> str:
    """A UTF-8 text file the user gave (a protocol, a speaker list, a template), with one-line errors naming ``what``."""
    path = Path(path)
    if not path.is_file():
        raise VconvError(f"{path}: {what} not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise VconvError(f"{path}: {what} is not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise VconvError(f"{path}: unreadable {what} ({exc.strerror or exc})") from None


def read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    """Parse a JSON file that must hold an object; a corrupt one is a one-line error naming ``what`` it is."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise VconvError(f"{path}: corrupt {what} ({exc.msg} at line {exc.lineno})") from None
    except (ValueError, RecursionError) as exc:  # a 5000-digit number, nesting thousands deep
        raise VconvError(f"{path}: corrupt {what} ({type(exc).__name__}: {str(exc)[:80]})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VconvError(f"{path}: unreadable {what} ({exc})") from None
    if not isinstance(data, dict):
        raise VconvError(f"{path}: corrupt {what} (expected a JSON object)")
    return data


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_path(folder: str | Path, name: str, config: dict[str, Any]) -> Path:
    """``folder/name``, after checking that it exists and that its sha256 is ``config['sha256'][name]``.

    Weights are data, not code: a file without a recorded digest, or whose digest differs, is refused
    before a byte of it is parsed. (For a file that is parsed in Python, :func:`verified_bytes` reads it
    once, so what is parsed is exactly what was checked.)
    """
    path, expected = _recorded_digest(folder, name, config)
    _check_digest(path, expected, sha256_of(path))
    return path


def verified_bytes(folder: str | Path, name: str, config: dict[str, Any]) -> bytes:
    """The content of ``folder/name``, read once and checked against ``config['sha256'][name]``."""
    path, expected = _recorded_digest(folder, name, config)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise VconvError(f"{path}: unreadable weights ({exc.strerror or exc})") from None
    _check_digest(path, expected, hashlib.sha256(data).hexdigest())
    return data


def _recorded_digest(folder: str | Path, name: str, config: dict[str, Any]) -> tuple[Path, str]:
    path = Path(folder) / name
    expected = config.get("sha256", {}).get(name)
    if not path.is_file():
        raise VconvError(f"{path}: weight file missing from the bundle")
    if expected is None:
        raise VconvError(f"{path}: no sha256 recorded for this file in its config; refusing unverified weights")
    return path, expected


def _check_digest(path: Path, expected: str, actual: str) -> None:
    if actual != expected:
        raise VconvError(f"{path}: sha256 mismatch (expected {expected[:12]}..., got {actual[:12]}...); the file is corrupt or was modified")


def load_weights(folder: str | Path, name: str, config: dict[str, Any], *, float32: bool = False) -> dict[str, Any]:
    """The tensors ``{name: tensor}`` of the safetensors file ``folder/name``, digest-checked
    (:func:`load_weights_and_metadata`, without the metadata)."""
    return load_weights_and_metadata(folder, name, config, float32=float32)[0]


def load_weights_and_metadata(folder: str | Path, name: str, config: dict[str, Any], *,
                              float32: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """``(tensors, the header's string metadata)`` of the safetensors file ``folder/name``, digest-checked.

    The file is read once (:func:`verified_bytes`) and parsed from those bytes, so nothing can change it
    between the check and the parse. ``float32`` widens floating-point tensors (a bundle stores fp16):
    done on tensors in ordinary memory it costs a third of what it costs on a memory-mapped file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(folder) / name
    data = verified_bytes(folder, name, config)
    try:
        state = load(data)
        header_size = int.from_bytes(data[:8], "little")  # the format: u64 length, then a JSON header
        metadata = json.loads(data[8 : 8 + header_size]).get("__metadata__") or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise VconvError(f"{path}: unreadable weights ({exc})") from None
    if float32:
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return state, metadata


# ---------------------------------------------------------------------------------------------- path safety

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
