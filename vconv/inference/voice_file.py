"""Voice files: a prepared target voice (:class:`~vconv.inference.target.TargetVoice`) saved once, loaded in
milliseconds, and the cache of prepared targets built on them.

A voice file is safetensors (tensors and string metadata; nothing in it runs code on load) holding::

    embedding      [1, S] float32   the speaker embedding (fitted when the file says fit_steps > 0)
    spectrum_mean  [n_mels, 1]      the references' speech-frame log-mel statistics (target matching)
    spectrum_std   [n_mels, 1]
    spectrum_voiced [n_mels, 1] uint8  which bands carry the voice rather than a room's noise floor (1) (a file made
                                    before vconv told them apart has none: every band is matched, as it was then)
    primer         [n] float32      the references' last seconds of audio at the model's rate (a stream's context)
    register       [3] float64      for a model with the pitch path: the references' pitch register (mean and spread
                                    of voiced log-F0, voiced frames; vconv.models.contour.Register)
    h1_h2          [1] float64      for a model with the pitch path, when measured: the references' H1-H2 (nats;
                                    vconv.vocoders.harmonics.h1_h2); a file made before vconv measured it converts with
                                    the fundamental raised to the second harmonic's level, as it did then

and metadata: ``format`` (``vconv-voice``), ``version``, ``bundle`` (the bundle's name) and ``bundle_digest``
(of its weights: an embedding means nothing to another model), ``sample_rate``, ``fit_steps``, ``precision`` (the
arithmetic the embedding was computed, and fitted, in), ``fit_losses``,
``spectrum_frames``, ``references`` (the sha256 and length of each reference's audio at the model's rate, before the
enhancer), ``enhance`` (the enhance mode it was read with) and, with a
register, ``pitch_rules`` (:data:`~vconv.models.contour.PITCH_RULES` when it was measured: a file of older rules
still converts, with the register of its day, and a conversion says so, :func:`stale_register_note`).

Models that attend over the references' frames (a reference path) need those frames too and have no voice files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from vconv._version import __version__
from vconv.audio.enhance import ENHANCER_VERSION
from vconv.errors import VconvError
from vconv.fileio import atomic_path
from vconv.models.contour import PITCH_RULES

if TYPE_CHECKING:
    import torch

    from vconv.inference.target import TargetVoice

# torch is imported inside the functions that make or read tensors: the CLI checks a voice file named by --target
# (voice_metadata) before it loads torch and the model, so a wrong file is a one-line error at once

VOICE_FORMAT = "vconv-voice"
VOICE_VERSION = 1
VOICE_SUFFIX = ".voice"
MAX_HEADER_BYTES = 1 << 20  # a voice file's JSON header is a few KB; more is not a voice file
CACHE_ENTRIES = 64  # voices kept in the cache (each ~200 KB, mostly the primer), least recently used dropped


@dataclass(frozen=True)
class VoiceSource:
    """Where a voice comes from: the model's identity and the references' content, hashed. Two conversions with the
    same source (same references, same bundle, same fit) get the same voice, so it can be cached."""

    bundle: str
    bundle_digest: str
    sample_rate: int
    fit_steps: int
    references: tuple[tuple[str, int], ...]  # (sha256 of the float32 samples at the model's rate, samples)
    precision: str = "float32"  # the embedding's arithmetic (bfloat16 computes, and fits, a slightly different vector)
    # the enhance mode the references were read with: the digests are of the audio before the enhancer, so that a
    # cache hit need not run it (its room estimate alone took 18-37 ms of a 3.5 s reference)
    enhance: str = "off"

    @property
    def key(self) -> str:
        """The cache key: a digest of everything the voice depends on, vconv's version included (a release that
        prepares voices differently does not reuse the entries of an earlier one)."""
        enhancer = [self.enhance, ENHANCER_VERSION] if self.enhance != "off" else []
        text = json.dumps([self.bundle_digest, self.sample_rate, self.fit_steps, self.precision, VOICE_VERSION, self.references,
                           PITCH_RULES, __version__, *enhancer])  # a cached voice of earlier pitch rules is not reused
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def reference_digests(wavs: Sequence[np.ndarray]) -> tuple[tuple[str, int], ...]:
    """Each prepared reference ``[T_i]`` (float32 at the model's rate) as (sha256, length)."""
    return tuple((hashlib.sha256(np.ascontiguousarray(w, dtype=np.float32).tobytes()).hexdigest(), int(w.size)) for w in wavs)


def looks_like_voice_file(path: str | Path) -> bool:
    """Whether ``path`` is a voice file rather than audio: its suffix is :data:`VOICE_SUFFIX`, or it starts as a
    safetensors file does (an 8-byte little-endian header length, then a JSON object), which no audio format does."""
    if str(path).endswith(VOICE_SUFFIX):
        return True
    if not os.path.isfile(path):  # never open a FIFO or a device to sniff it: that could block for ever
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False  # the audio loader says why, in its own words
    return len(head) == 9 and struct.unpack("<Q", head[:8])[0] < MAX_HEADER_BYTES and head[8:9] == b"{"


def save_voice(path: str | Path, voice: "TargetVoice", source: VoiceSource, *, force: bool = False) -> Path:
    """Write ``voice`` (prepared from ``source``) as a voice file at ``path``, atomically; an existing file is kept
    unless ``force``."""
    import torch
    from safetensors.torch import save_file

    tensors = {"embedding": voice.embedding.detach().float().contiguous(), "spectrum_mean": voice.spectrum.mean.float().contiguous(),
               "spectrum_std": voice.spectrum.std.float().contiguous(),
               "primer": torch.from_numpy(np.ascontiguousarray(voice.primer if voice.primer is not None else np.zeros(0, np.float32)))}
    if voice.spectrum.voiced_bands is not None:
        tensors["spectrum_voiced"] = voice.spectrum.voiced_bands.to(torch.uint8).contiguous()
    if voice.register is not None:
        tensors["register"] = torch.tensor(voice.register.to_list(), dtype=torch.float64)  # as computed: a round trip is exact
    if voice.h1_h2 is not None:
        tensors["h1_h2"] = torch.tensor([voice.h1_h2], dtype=torch.float64)
    metadata = {"format": VOICE_FORMAT, "version": str(VOICE_VERSION), "bundle": source.bundle, "bundle_digest": source.bundle_digest,
                "sample_rate": str(source.sample_rate), "fit_steps": str(source.fit_steps), "precision": source.precision,
                "fit_losses": json.dumps(list(voice.fit_losses)),
                "spectrum_frames": str(voice.spectrum.frames),
                "references": json.dumps([{"sha256": d, "samples": n} for d, n in source.references]), "enhance": source.enhance}
    if voice.register is not None:
        metadata["pitch_rules"] = PITCH_RULES
    with atomic_path(path, overwrite=force) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def load_voice(path: str | Path, bundle: str, bundle_digest: str, origin: str = "file") -> "TargetVoice":
    """A voice file as a :class:`TargetVoice` for the bundle whose weights have ``bundle_digest``; a one-line
    :class:`VconvError` naming what is wrong for a file that is not a voice file, is corrupt, or was made with
    another bundle."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from vconv.inference.target import TargetVoice
    from vconv.inference.target_match import SpectrumStats
    from vconv.models.contour import Register

    metadata = voice_metadata(path)
    if metadata.get("bundle_digest") != bundle_digest:
        raise VconvError(f"{path}: a voice file of another model ({metadata.get('bundle', '?')}, not {bundle}); "
                         "make it again with this model (vconv voice)")
    try:
        tensors = load_file(str(path))
        spectrum = SpectrumStats(tensors["spectrum_mean"], tensors["spectrum_std"], int(metadata["spectrum_frames"]),
                                 _voiced_bands(tensors, tensors["spectrum_mean"].shape))
        primer = tensors["primer"].numpy().astype(np.float32)
        fit_losses = tuple(float(x) for x in json.loads(metadata["fit_losses"]))
        embedding = tensors["embedding"]
        register = Register.from_list(_finite(tensors["register"], 3, "register")) if "register" in tensors else None
        h1_h2 = float(_finite(tensors["h1_h2"], 1, "h1_h2")[0]) if "h1_h2" in tensors else None
    except (SafetensorError, OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise VconvError(f"{path}: corrupt voice file ({type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''})") from None
    if embedding.dim() != 2 or embedding.shape[0] != 1 or spectrum.mean.shape != spectrum.std.shape:
        raise VconvError(f"{path}: corrupt voice file (embedding {tuple(embedding.shape)}, spectrum {tuple(spectrum.mean.shape)})")
    if not torch.isfinite(embedding).all():
        raise VconvError(f"{path}: corrupt voice file (the embedding is not finite)")
    return TargetVoice(embedding=embedding, spectrum=spectrum, primer=primer if primer.size else None, fit_losses=fit_losses,
                       origin=origin, register=register, h1_h2=h1_h2, register_rules=metadata.get("pitch_rules"))


def stale_register_note(voice: "TargetVoice", path: str | Path) -> str | None:
    """A note for a voice file whose pitch register was measured under older pitch rules than this vconv's (it converts
    with that register: the references are not in the file to measure it again), else None."""
    if voice.origin != "file" or voice.register is None or voice.register_rules == PITCH_RULES:
        return None
    when = voice.register_rules or "before they were recorded"
    return (f"{path}: its pitch register was measured under older pitch rules ({when}; now: {PITCH_RULES}); it converts "
            "as then: make the voice again with `vconv voice` for the current ones")


def _voiced_bands(tensors: dict[str, "torch.Tensor"], shape: "torch.Size") -> "torch.Tensor | None":
    """A voice file's ``spectrum_voiced`` as ``[n_mels, 1]`` bool (``None`` when the file has none), else a
    ValueError: it must have the spectrum's shape and hold only 0 and 1."""
    voiced = tensors.get("spectrum_voiced")
    if voiced is None:
        return None
    if voiced.shape != shape or not bool(((voiced == 0) | (voiced == 1)).all()):
        raise ValueError(f"spectrum_voiced is not {tuple(shape)} zeros and ones")
    return voiced.bool()


def _finite(values: "torch.Tensor", size: int, name: str) -> list[float]:
    """``values`` as ``size`` finite floats, else a ValueError naming ``name`` (a voice file's small tensors)."""
    listed = [float(v) for v in values.reshape(-1).tolist()]
    if len(listed) != size or not all(math.isfinite(v) for v in listed):
        raise ValueError(f"{name} is not {size} finite number(s)")
    return listed


def voice_metadata(path: str | Path) -> dict[str, str]:
    """A voice file's metadata (see the module's docstring), read from its header alone (no torch): a one-line
    :class:`VconvError` for a file that is missing, unreadable, not a voice file, or of another version."""
    if os.path.exists(path) and not os.path.isdir(path) and not os.path.isfile(path):
        raise VconvError(f"{path}: not a regular file (a pipe or a device), so not a voice file")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            size = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if not 2 <= size <= MAX_HEADER_BYTES:
                raise VconvError(f"{path}: not a vconv voice file (no safetensors header)")
            header = json.loads(f.read(size))
    except FileNotFoundError:
        raise VconvError(f"{path}: file not found") from None
    except PermissionError:
        raise VconvError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise VconvError(f"{path}: a folder, not a voice file") from None
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise VconvError(f"{path}: corrupt voice file (its header does not read: {type(exc).__name__})") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or metadata.get("format") != VOICE_FORMAT:
        raise VconvError(f"{path}: not a vconv voice file (a safetensors file of something else)")
    if metadata.get("version") != str(VOICE_VERSION):
        raise VconvError(f"{path}: voice file version {metadata.get('version')!r}; this vconv reads version {VOICE_VERSION}")
    return {str(k): str(v) for k, v in metadata.items()}


class VoiceCache:
    """Prepared voices by :attr:`VoiceSource.key`, as voice files in ``folder`` (default: ``$XDG_CACHE_HOME/vconv/voices``
    or ``~/.cache/vconv/voices``). At most :data:`CACHE_ENTRIES` files, the least recently used removed first; safe to
    delete at any time; an unreadable or stale entry is a miss, never an error. ``fitted_only``: keep only fitted
    voices (``vconv serve``, whose targets are other people's uploads: only the fit is worth keeping them for).

    Why every voice, not only fitted ones: preparing a target (the room estimate, the speaker embedding, the pitch
    register, the spectrum) took ~50 ms of the example's conversion on two idle cores; a hit reads one small file."""

    def __init__(self, folder: str | Path | None = None, entries: int = CACHE_ENTRIES, *, fitted_only: bool = False):
        self.folder = Path(folder) if folder else default_cache_folder()
        self.entries = entries
        self.fitted_only = fitted_only

    def _path(self, source: VoiceSource) -> Path:
        return self.folder / f"{source.key}{VOICE_SUFFIX}"

    def _keeps(self, source: VoiceSource) -> bool:
        return bool(source.fit_steps) or not self.fitted_only

    def get(self, source: VoiceSource) -> "TargetVoice | None":
        if not self._keeps(source):
            return None
        path = self._path(source)
        try:
            if not path.is_file():  # (raises on a folder that cannot be searched)
                return None
            voice = load_voice(path, source.bundle, source.bundle_digest, origin="cache")
        except (OSError, VconvError):
            return None
        try:
            os.utime(path)  # recently used: the last to go
        except OSError:
            pass
        return voice

    def put(self, source: VoiceSource, voice: "TargetVoice") -> None:
        """Store ``voice``; a cache that cannot be written (read-only home, full disk) is skipped silently: the
        conversion does not depend on it."""
        if not self._keeps(source):
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            save_voice(self._path(source), voice, source, force=True)
            self._trim()
        except (OSError, VconvError):
            pass

    def _trim(self) -> None:
        files = sorted(self.folder.glob(f"*{VOICE_SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[self.entries:]:
            old.unlink(missing_ok=True)


def default_cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vconv" / "voices"


def voice_file_in(refs: object) -> Path | None:
    """The voice file that ``refs`` (a converter's target: one path or array, or a sequence of them) names, or None
    when it names audio only. A voice file is a whole target: one among other references is a one-line error."""
    items = list(refs) if isinstance(refs, (list, tuple)) else [refs]
    voices = [Path(r) for r in items if isinstance(r, (str, Path)) and looks_like_voice_file(r)]
    if voices and len(items) > 1:
        raise VconvError(f"{voices[0]}: a voice file is a whole target; give it alone, not beside other references")
    return voices[0] if voices else None


def check_target_files(refs: Sequence[str | Path], check_audio: Callable[[Path], object]) -> None:
    """Each file of a target read as what it is, before the model loads: a voice file's header (not a voice file,
    corrupt, another version: one line), any other file by ``check_audio``; a voice file beside other references
    is a one-line error too."""
    for ref in refs:
        voice_metadata(ref) if looks_like_voice_file(ref) else check_audio(Path(ref))
    voice_file_in(list(refs))
