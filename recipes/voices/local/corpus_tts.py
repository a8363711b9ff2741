"""Synthetic voices: flite, festival (English and other languages) and espeak-ng, plus the neural
Piper and Kokoro voices of :mod:`neural_tts`.

English voices all speak the same ``sentences.txt`` so parallel pairs exist. Festival's other-language
voices speak their own language best: the Czech and Italian ones read lines of the Fish
Fillets NG script in their language when the game's data is installed, the Finnish and Catalan ones
(and any voice whose language has no lines) read the English sentences with their own accent. flite,
festival and espeak-ng are bit-exact across runs, so a rebuilt corpus is the same corpus.

Same person twice (never split across training and evaluation): flite slt = festival
cmu_us_slt_arctic_hts and flite kal16 = festival kal_diphone; only the flite ones are built.
"""

from __future__ import annotations

import collections
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import soundfile as sf

import neural_tts
from corpus_common import log, write_text, write_utterance
from corpus_fillets import FILLETS, HEROES, read_transcripts

SENTENCES = Path(__file__).resolve().parents[1] / "sentences.txt"  # recipes/voices/sentences.txt
OTHER_LANGUAGE_LINES = (20, 110)  # characters: skip one-word grunts and paragraph-long speeches
KOKORO_SENTENCES = 80  # sentences per Kokoro voice (the slowest source)


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: ``synth(voice_id, text, out_wav)`` writes any-rate audio."""

    source: str
    voice_id: str
    folder: str
    language: str = "en"
    encoding: str = "latin-1"  # festival reads its input in the voice's 8-bit charset
    sentences: int | None = None  # cap on the sentence list (the slow neural voices)

    def synth(self, text: str, out: Path) -> None:
        SYNTHESISERS[self.source](self, text, out)


def synth_flite(voice: Voice, text: str, out: Path) -> None:
    subprocess.run(["flite", "-voice", voice.voice_id, "-t", text, "-o", str(out)], check=True, capture_output=True)


def synth_festival(voice: Voice, text: str, out: Path) -> None:
    subprocess.run(["text2wave", "-eval", f"(voice_{voice.voice_id})", "-o", str(out)],
                   input=text.encode(voice.encoding, errors="replace"), check=True, capture_output=True)


def synth_espeak(voice: Voice, text: str, out: Path) -> None:
    subprocess.run(["espeak-ng", "-v", voice.voice_id, "-w", str(out), text], check=True, capture_output=True)


SYNTHESISERS: dict[str, Callable[[Voice, str, Path], None]] = {
    "flite": synth_flite,
    "festival": synth_festival,
    "festival-intl": synth_festival,
    "espeak": synth_espeak,
    "piper": lambda v, text, out: neural_tts.synth_piper(v.voice_id, text, out),
    "kokoro": lambda v, text, out: neural_tts.synth_kokoro(v.voice_id, text, out),
}


def _espeak_folder(voice_id: str) -> str:
    return "espeak_" + voice_id.replace("+", "_").replace("-", "_")


VOICES: dict[str, list[Voice]] = {
    "flite": [Voice("flite", v, f"flite_{v}") for v in ("kal16", "awb", "rms", "slt")],
    "festival": [Voice("festival", "ked_diphone", "festival_ked_diphone")],
    "festival-intl": [
        Voice("festival-intl", v, f"festival_{v}", lang, enc)
        for v, lang, enc in [
            ("czech_dita", "cs", "iso-8859-2"), ("czech_krb", "cs", "iso-8859-2"),
            ("czech_machac", "cs", "iso-8859-2"), ("czech_ph", "cs", "iso-8859-2"),
            ("lp_diphone", "it", "latin-1"), ("pc_diphone", "it", "latin-1"),
            ("hy_fi_mv_diphone", "fi", "latin-1"), ("suo_fi_lj_diphone", "fi", "latin-1"),
            ("upc_ca_ona_hts", "ca", "latin-1"),
        ]
    ],
    "espeak": [Voice("espeak", v, _espeak_folder(v))
               for v in ("en-us+m1", "en-us+m3", "en-us+f2", "en-us+f4", "en-gb-x-rp+m2", "en-us+f1")],
    "piper": [Voice("piper", v, f"piper_{v}") for v in neural_tts.PIPER_VOICES],
    # Kokoro runs at ~0.3-1x real time here: 80 sentences per voice keep the source near 10 minutes
    "kokoro": [Voice("kokoro", v, f"kokoro_{v}", sentences=KOKORO_SENTENCES) for v in neural_tts.KOKORO_VOICES],
}


def english_sentences() -> list[str]:
    return [s.strip() for s in SENTENCES.read_text(encoding="utf-8").splitlines() if s.strip()]


def sentences_for(language: str, count: int, game: Path = FILLETS) -> list[str]:
    """``count`` lines to speak: English sentences, or the heroes' lines of the game in ``language``."""
    english = english_sentences()
    if language == "en" or not (game / "script").is_dir():
        return english[:count]
    lo, hi = OTHER_LANGUAGE_LINES
    lines = [text for _id, (font, text) in sorted(read_transcripts(language, game).items())
             if font in HEROES and lo <= len(text) <= hi]
    return lines[:count] if lines else english[:count]


def build_synthetic(source: str, root: Path, max_per: int | None) -> collections.Counter:
    """Every voice of ``source`` speaks its sentence list into ``root/<folder>/s<NNN>.wav`` + ``.txt``."""
    counts: collections.Counter = collections.Counter()
    for voice in VOICES[source]:
        folder = root / voice.folder
        count = min(n for n in (len(english_sentences()), max_per, voice.sentences) if n is not None)
        for i, text in enumerate(sentences_for(voice.language, count), start=1):
            stem = f"s{i:03d}"
            if not (folder / f"{stem}.wav").exists():
                with tempfile.TemporaryDirectory() as tmp:
                    raw = Path(tmp) / "raw.wav"
                    voice.synth(text, raw)
                    wav, sr = sf.read(raw, dtype="float32")
                write_utterance(folder, stem, wav, sr, text)
            elif not (folder / f"{stem}.txt").exists():
                write_text(folder / f"{stem}.txt", text)  # the wav survived an interrupted run
            counts[voice.folder] += 1
        log(f"[{source}] {voice.folder} ({voice.language}): {counts[voice.folder]} utterances")
    return counts
