"""``vconv evaluate`` as a library call: check the inputs, load the model, convert held-out pairs (or take
a protocol's), score them with the independent judges, say what the matching did.

:func:`evaluate_model` holds the command's policy; the CLI only parses options and prints the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vconv.errors import VconvError
from vconv.evaluation.judges import Judges
from vconv.evaluation.pairs import read_protocol
from vconv.evaluation.report import Report
from vconv.evaluation.run import run_evaluation
from vconv.inference.settings import ConversionSettings


@dataclass
class EvaluationRequest:
    """What to evaluate: exactly one of ``manifest`` (convert and score held-out pairs with ``bundle``), ``protocol``
    (score given triples) or ``corpus`` (score a corpus that ``vconv convert MANIFEST`` converted: its folder or output
    manifest, :mod:`~vconv.evaluation.corpus_pairs`); with ``bundle`` the latter two get its copy-synthesis row too."""

    out: Path
    bundle: Path | None = None
    manifest: Path | None = None
    protocol: Path | None = None
    corpus: Path | None = None
    sources_per_pair: int | None = None
    target_refs: int = 1
    # how the bundle converts (vocoder, target matching, precision, voice fit, harmonics; checked on construction)
    settings: ConversionSettings = field(default_factory=ConversionSettings)
    room: str | None = None  # the sources and references in a simulated room (vconv.audio.rooms.parse_room)
    seed: int = 0
    plots: bool = True
    asr_model: str = "base"
    force: bool = False
    progress: bool = True

    def check(self) -> None:
        """Every option against the others and the output folder, before anything loads."""
        from vconv.fileio import check_output_path

        if sum(given is not None for given in (self.manifest, self.protocol, self.corpus)) != 1:
            raise VconvError("pass exactly one of --manifest (convert and score held-out pairs), --protocol (score given "
                             "triples) or --corpus (score a corpus converted by `vconv convert MANIFEST`)")
        if self.manifest is not None and self.bundle is None:
            raise VconvError("--manifest needs a model to convert with")
        if self.sources_per_pair is not None and self.sources_per_pair < 1:
            raise VconvError(f"--sources-per-pair {self.sources_per_pair}: expected 1 or more")
        if self.room is not None:
            from vconv.audio.rooms import parse_room

            parse_room(self.room)
            if self.manifest is None:
                raise VconvError("--room converts the held-out pairs in a room: it needs --manifest")
        if self.target_refs < 1:
            raise VconvError(f"--target-refs {self.target_refs}: expected 1 or more")
        check_output_path(self.out, expect="folder", what="report folder")  # inputs and outputs before the model load
        if (self.out / "results.json").exists() and not self.force:
            raise VconvError(f"{self.out / 'results.json'}: already exists; pass --force to overwrite")


@dataclass
class _Conversions:
    """The converter as evaluation calls it, counting the conversions whose target matching was skipped."""

    converter: Any
    target_match: str
    skipped_matching: list[str] = field(default_factory=list)
    room: str | None = None  # --room: the sources and references the converter reads, as recorded in a simulated room
    seed: int = 0

    def heard(self, path: str, role: str) -> Any:
        """The audio of ``path`` at the model's rate as the converter gets it: as recorded, or in its room (one per
        file and role, by seed: :mod:`vconv.audio.rooms`)."""
        wav = self.converter.prepare_audio(path, None, str(path))
        if self.room is None:
            return wav
        from vconv.audio.rooms import draw_room, in_room, parse_room

        rt60, snr = parse_room(self.room)
        key = f"{role}:{Path(path).parent.name}/{Path(path).name}"
        return in_room(wav, self.converter.sample_rate, draw_room(self.seed, key, rt60, snr))

    def convert(self, src: str, refs: list[str]) -> tuple[Any, int, Any]:
        """``(converted, sample rate, the model's own output)``; the latter only when matching is on (else
        the two are one and the report has no separate row)."""
        wav = self.heard(src, "source")
        target = self.converter.target_voice(refs) if self.room is None else \
            self.converter.target_voice([self.heard(r, "reference") for r in refs], self.converter.sample_rate)
        if self.converter.matching_skipped(target):
            self.skipped_matching.append(str(src))
        matched, own = self.converter.convert_wav_pair(wav, target, unmatched=self.target_match != "off")
        return matched, self.converter.sample_rate, own

    def vocode(self, path: str) -> tuple[Any, int]:
        return self.converter.copy_synthesis(path), self.converter.sample_rate

    def notes(self) -> list[str]:  # asked after the conversions
        said = [f"Target-spectrum matching: {self.target_match}. Networks computed in "
                f"{str(self.converter.compute_dtype).removeprefix('torch.')}."]
        if self.room is not None:
            said.append(f"In a room (`--room {self.room}`, seed {self.seed}): every source and target reference the converter "
                        "read was recorded in a simulated room (vconv.audio.rooms: reverberation and noise at RT60 and SNR "
                        "as given, or drawn per file from 0.2-0.8 s and 10-30 dB for `mixed`); the judges compare with "
                        "the clean recordings.")
        if self.converter.enhance != "off":
            said.append(f"`--enhance {self.converter.enhance}`: the late reverberation and steady noise were taken out of "
                        + ("every source and target reference" if self.converter.enhance == "on" else
                           "each source and target reference that the estimates placed in a room")
                        + " (vconv.audio.enhance) before the networks read it.")
        if self.converter.fit_steps:
            said.append(f"The speaker embedding was fitted to each pair's target references in {self.converter.fit_steps} "
                        "steps (`--fit-voice`): every row of the model, matched and unmatched, converts with it.")
        if self.converter.model.reads_pitch:
            said.append("The model reads the source's pitch contour; the harmonic excitation "
                        f"(vconv.vocoders.harmonics) was {'on' if self.converter.harmonics else 'off'}.")
        if self.skipped_matching:
            said.append(f"Target-spectrum matching was skipped for {len(self.skipped_matching)} conversion(s): their target "
                        "references hold too little speech for trusted statistics, so they are the model's own output.")
        return said


def evaluate_model(request: EvaluationRequest) -> Report:
    """Run ``request`` (checked first); writes ``results.json``, ``summary.md`` and plots into ``request.out``."""
    request.check()
    pairs, utterances = None, None
    said: list[str] = []  # the corpus's notes
    if request.protocol is not None:
        pairs = read_protocol(request.protocol)
    elif request.corpus is not None:
        from vconv.evaluation.corpus_pairs import corpus_pairs

        pairs, said = corpus_pairs(request.corpus, request.seed)
    else:
        from vconv.data.manifest import read_manifest

        assert request.manifest is not None  # check(): exactly one of the two
        utterances = read_manifest(request.manifest, nonempty=True)
    conversions = None
    if request.bundle is not None:
        from vconv.inference.converter import load

        conversions = _Conversions(load(request.bundle, request.settings), request.settings.target_match,
                                   room=request.room, seed=request.seed)
    name = conversions.converter.info.path.name if conversions else (request.protocol or request.corpus)
    notes = (lambda: said + conversions.notes()) if conversions else said
    return run_evaluation(
        pairs, out_dir=request.out, utterances=utterances,
        convert_fn=conversions.convert if conversions and request.manifest is not None else None,
        vocode_fn=conversions.vocode if conversions else None, max_sources_per_speaker_pair=request.sources_per_pair,
        target_refs=request.target_refs, seed=request.seed, force=request.force, progress=request.progress,
        plots=request.plots, title=f"vconv evaluate: {name}", notes=notes,
        judges=Judges.load(asr_model=request.asr_model),
        model_config=conversions.converter.info.model_config if conversions else None,
    )
