"""Copy the README demo pair into examples/: two held-out voices of the voices corpus.

Usage: python recipes/voices/local/make_examples.py [--root DIR] [--out DIR]

``--root`` defaults to the corpus ``build_corpus.py`` writes by default (``data/voices`` in the recipe's
folder), ``--out`` to the repository's ``examples/``.

source.wav: a real English male voice (FOTAQ conversation 61); target.wav: a real English female voice
(FOTAQ conversation 39). Both speakers are in held_out.txt, so the shipped model never trained on
them. The clip chosen is, per speaker, the one whose duration is closest to 3.5 s (ties: name order),
so the choice is reproducible from the corpus alone. Flight of the Amazon Queen is freeware whose
licence allows redistribution (see /usr/share/doc/flight-of-the-amazon-queen/copyright).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import soundfile as sf

EXAMPLES = {"source": "fotaq_61", "target": "fotaq_39"}
TARGET_SECONDS = 3.5
RECIPE = Path(__file__).resolve().parents[1]  # recipes/voices


def pick(folder: Path) -> Path:
    clips = sorted(folder.glob("*.wav"))
    return min(clips, key=lambda p: (abs(sf.info(str(p)).duration - TARGET_SECONDS), p.name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=RECIPE / "data" / "voices", help="corpus built by build_corpus.py")
    parser.add_argument("--out", type=Path, default=RECIPE.parents[1] / "examples", help="folder for source.wav and target.wav")
    args = parser.parse_args()
    for name, speaker in EXAMPLES.items():
        clip = pick(args.root / speaker)
        shutil.copyfile(clip, args.out / f"{name}.wav")
        print(f"{args.out / f'{name}.wav'} <- {clip} ({sf.info(str(clip)).duration:.2f} s)")


if __name__ == "__main__":
    main()
