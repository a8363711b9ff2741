"""Where a conversion's register error comes from, per target voice, on the files of a `vconv evaluate` report.

Usage: python benchmarks/register_error.py REPORT_DIR [--model BUNDLE]

``vconv evaluate`` reports the register error: the distance, in cents, of a conversion's mean voiced log-F0 (its
pitch judge, Praat's tracker) from that of another recording of the target. The ground truth's own error (the
reference against that other recording) is what a voice varies between two of its recordings. This splits a
conversion's error into the steps that make it, for each target voice of a clean report (a report made with
``--room`` converted what the room made of each recording, which this does not rebuild):

- ``ref → other``: the judge's ground truth, the reference's mean against the other recording's;
- ``register − ref``: the register vconv measured on the reference (its pitch part, trimmed: the
  :class:`~vconv.models.contour.Register` a conversion puts the melody in) against the judge's mean of the reference;
- ``out − commanded``: the output's log-F0 against the F0 the pitch stage asked for, on the frames both voice;
- ``lost``: the share of the frames the pitch stage voiced that the judge hears unvoiced in the output, and the median
  F0 asked for on those frames beside the kept ones' (a vocoder that cannot hold a low voice's voicing loses its
  lowest frames: the output's voiced mean then rises although every voiced frame is where it was asked to be);
- ``out − register``: the output's mean voiced log-F0 against the register, what the two steps before add up to.

The bundle must be the report's (``--model``, default the shipped one), with the default settings the report ran with.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

import vconv
from vconv.audio.io import load
from vconv.errors import VconvError
from vconv.evaluation.metrics import cents
from vconv.evaluation.metrics import log_f0_mean as voiced_mean
from vconv.evaluation.pitch_judge import f0_contour

JUDGE_RATE = 16000
JUDGE_HOP_SECONDS = 0.005  # the pitch judge's frame step
COLUMNS = ("ref → other", "conv → other", "register − ref", "out − commanded", "lost", "lost F0 / kept F0",
           "out − register")


def judged_f0(path: str | Path) -> np.ndarray:
    """The pitch judge's F0 ``[frames]`` of a recording, in Hz (0 where unvoiced)."""
    wav, _ = load(str(path), JUDGE_RATE)
    return f0_contour(wav, JUDGE_RATE)


def output_path(report: Path, written: str) -> Path:
    """A converted file as the report wrote it: relative to where ``vconv evaluate`` ran, usually the report's parent."""
    for candidate in (Path(written), report.parent / written, report / Path(written).name):
        if candidate.exists():
            return candidate
    raise VconvError(f"{written}: the report's output is not there (run from where vconv evaluate ran)")


def commanded_f0(converter: Any, pair: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, float]:
    """The F0 the pitch stage asks for ``[F]`` (Hz, the model's frames), where it voices ``[F]``, and the register's
    mean log-F0, for one pair converted as the report did."""
    target = converter.target_voice(pair["target_refs"])
    heard = converter.heard(converter.prepare_audio(pair["source"], None))  # cleaned first where a conversion cleans it
    pitch = converter.source_pitch(heard, target.register)
    return pitch.f0[0].float().numpy(), pitch.voicing[0].float().numpy() > 0.5, target.register.mean


def pair_steps(converter: Any, report: Path, pair: dict[str, Any]) -> dict[str, Any]:
    """The register error's steps (module docstring) of one pair, in cents, and the F0 asked for on lost / kept frames."""
    asked, asked_voiced, register = commanded_f0(converter, pair)
    out = judged_f0(output_path(report, pair["converted"]))
    reference = voiced_mean(judged_f0(pair["target_refs"][0]))
    other = voiced_mean(judged_f0(pair["target_other"]))
    frame_of = np.minimum((np.arange(out.size) * JUDGE_HOP_SECONDS * converter.sample_rate
                           / converter.features.hop_length).astype(int), asked.size - 1)
    asked, asked_voiced = asked[frame_of], asked_voiced[frame_of]
    both, lost = asked_voiced & (out > 0), asked_voiced & (out == 0)
    return {
        "ref → other": cents(abs(reference - other)),
        "conv → other": cents(abs(voiced_mean(out) - other)),
        "register − ref": cents(register - reference),
        "out − commanded": cents(float(np.mean(np.log(out[both]) - np.log(asked[both])))) if both.any() else math.nan,
        "lost": float(lost.sum() / max(1, asked_voiced.sum())),
        "out − register": cents(voiced_mean(out) - register),
        "lost_hz": asked[lost].tolist(), "kept_hz": asked[both].tolist(),
    }


def table(steps: dict[str, list[dict[str, Any]]]) -> str:
    """The per-voice means (and all voices') as a markdown table."""
    lines = ["| target voice | pairs | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    everyone = [row for voice_rows in steps.values() for row in voice_rows]
    for voice, rows in [*sorted(steps.items()), ("all", everyone)]:
        mean = {c: float(np.nanmean([r[c] for r in rows])) for c in COLUMNS if c != "lost F0 / kept F0"}
        lost_hz = np.concatenate([r["lost_hz"] for r in rows]) if rows else np.zeros(0)
        kept_hz = np.concatenate([r["kept_hz"] for r in rows]) if rows else np.zeros(0)
        hz = f"{np.median(lost_hz):.0f} / {np.median(kept_hz):.0f} Hz" if lost_hz.size and kept_hz.size else "–"
        cells = [f"{mean['ref → other']:.0f} ¢", f"{mean['conv → other']:.0f} ¢", f"{mean['register − ref']:+.0f} ¢",
                 f"{mean['out − commanded']:+.0f} ¢", f"{100 * mean['lost']:.1f} %", hz, f"{mean['out − register']:+.0f} ¢"]
        lines.append(f"| {voice} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a vconv evaluate report folder (clean, made with --model)")
    parser.add_argument("--model", default=None, help="the bundle the report converted with (default: the shipped one)")
    args = parser.parse_args()
    try:
        data = json.loads((args.report / "results.json").read_text())
        if any("In a room" in note for note in data["meta"].get("notes", [])):
            raise VconvError(f"{args.report}: a --room report; its conversions read rooms this does not rebuild")
        converter = vconv.load(args.model)
        if not converter.model.reads_pitch:
            raise VconvError("this bundle has no pitch path: no register is asked for")
        steps: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for pair in data["pairs"]:
            steps[pair["target_speaker"]].append(pair_steps(converter, args.report, pair))
    except (VconvError, OSError, KeyError) as error:
        sys.exit(f"error: {error}")
    print(table(steps))


if __name__ == "__main__":
    main()
