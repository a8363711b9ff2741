"""Write the twins file of a manifest: each augmented utterance grouped with its original recording.

    python recipes/voices/local/twins.py exp/voices/data/train.jsonl -o exp/voices/data/twins.json

`corpus_augment.py` writes the copies of ``<voice>/<stem>.wav`` as ``aug_<voice>_p<pitch>_f<formant>/<stem>.wav``
(WORLD resynthesis: the same frames in another voice), so the manifest id ``aug_<voice>_pNNN_fNNN/<stem>``
belongs with ``<voice>/<stem>``. Only groups with the original and at least one copy in the manifest are
written. Training reads the file with ``train.content_twins`` (``vconv.data.twins``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

AUG_SPEAKER = re.compile(r"^aug_(?P<voice>.+)_p\d{3}_f\d{3}$")


def twin_groups(ids: list[str]) -> list[list[str]]:
    """Manifest ids -> ``[[original, copy, ...], ...]``, sorted, for originals that have a copy."""
    present = set(ids)
    copies: dict[str, list[str]] = defaultdict(list)
    for utt_id in ids:
        speaker, _, stem = utt_id.partition("/")
        match = AUG_SPEAKER.match(speaker)
        if match and stem:
            copies[f"{match['voice']}/{stem}"].append(utt_id)
    return [[original, *sorted(found)] for original, found in sorted(copies.items()) if original in present]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if not args.manifest.is_file():
        parser.exit(1, f"error: {args.manifest}: manifest not found\n")
    ids = [json.loads(line)["id"] for line in args.manifest.read_text().splitlines() if line.strip()]
    groups = twin_groups(ids)
    args.out.write_text(json.dumps({"groups": groups}) + "\n")
    print(f"{args.out}: {len(groups)} recordings with {sum(len(g) - 1 for g in groups)} warped copies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
