"""Fish Fillets NG: real human voice acting in Czech and Dutch, with transcripts.

The game's two heroes are voiced in each language by their own actor: the small fish (Czech and Dutch
female voices) and the big fish (male voices), about 35 minutes each, 2.4 hours in all. Audio lives in
``sound/<level>/<lang>/<id>.ogg`` (22.05 kHz Vorbis); the line each clip speaks is in
``script/<level>/dialogs_<lang>.lua`` as::

    dialogId("let-m-divna", "font_small", "What kind of strange ship is that?")   -- id, font, English
    dialogStr("Co je to za divnou loď?")                                           -- the localised line

The *font* tells who speaks (``font_small`` = small fish, ``font_big`` = big fish); ids alone do not,
since general lines (``m-restartuj``) carry no level prefix. Lines of the minor characters (statue,
parrot, ...) are too few per voice to make speakers and are skipped. The transcript written next to
each clip is the localised line (the language it is spoken in).
"""

from __future__ import annotations

import collections
import re
from pathlib import Path

import soundfile as sf

from corpus_common import MIN_SECONDS, log, trimmed_seconds, write_utterance

FILLETS = Path("/usr/share/games/fillets-ng")
LANGUAGES = ("cs", "nl")
APT_PACKAGES = ["fillets-ng-data", "fillets-ng-data-cs", "fillets-ng-data-nl"]
HEROES = {"font_small": "small", "font_big": "big"}

_LUA_STRING = r'"((?:[^"\\]|\\.)*)"'
_DIALOG = re.compile(
    r"dialogId\(\s*" + _LUA_STRING + r"\s*,\s*" + _LUA_STRING + r"\s*,\s*" + _LUA_STRING + r"\s*\)"
    r"\s*dialogStr\(\s*" + _LUA_STRING + r"\s*\)",
    re.S,
)
_ESCAPES = {"n": " ", "t": " ", "\\": "\\", '"': '"', "'": "'", "/": "/"}


def unescape_lua(text: str) -> str:
    """Undo the backslash escapes of a Lua string literal (newlines become spaces)."""
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text).strip()


def parse_dialogs(lua: str) -> dict[str, tuple[str, str]]:
    """``{clip id: (font, localised line)}`` from the text of one ``dialogs_<lang>.lua``."""
    return {m.group(1): (m.group(2), unescape_lua(m.group(4))) for m in _DIALOG.finditer(lua)}


def read_transcripts(lang: str, root: Path = FILLETS) -> dict[str, tuple[str, str]]:
    lines: dict[str, tuple[str, str]] = {}
    for lua in sorted((root / "script").glob(f"*/dialogs_{lang}.lua")):
        lines.update(parse_dialogs(lua.read_text(encoding="utf-8")))
    return lines


def build_fillets(root: Path, max_per: int | None, game: Path = FILLETS) -> collections.Counter:
    """Write ``root/fillets_<lang>_<small|big>/`` (wav + transcript); returns utterances per speaker."""
    if not (game / "script").is_dir():
        raise SystemExit(f"[fillets] {game} not found: apt-get install {' '.join(APT_PACKAGES)}")
    counts: collections.Counter = collections.Counter()
    for lang in LANGUAGES:
        lines = read_transcripts(lang, game)
        clips = sorted((game / "sound").glob(f"*/{lang}/*.ogg"))
        if not clips:
            raise SystemExit(f"[fillets] no {lang} speech under {game / 'sound'}: apt-get install fillets-ng-data-{lang}")
        skipped: collections.Counter = collections.Counter()
        seen: set[tuple[str, str]] = set()
        for clip in clips:
            font, text = lines.get(clip.stem, (None, ""))
            hero = HEROES.get(font or "")
            if hero is None:
                skipped["no transcript" if font is None else "minor character"] += 1
                continue
            speaker = f"fillets_{lang}_{hero}"
            if (speaker, clip.stem) in seen:  # a few general lines sit in two levels' folders
                continue
            if max_per is not None and counts[speaker] >= max_per:
                continue
            folder = root / speaker
            if not (folder / f"{clip.stem}.wav").exists():
                wav, sr = sf.read(clip, dtype="float32")
                if trimmed_seconds(wav, sr) < MIN_SECONDS:
                    skipped["too short"] += 1
                    continue
                write_utterance(folder, clip.stem, wav, sr, text)
            seen.add((speaker, clip.stem))
            counts[speaker] += 1
        log(f"[fillets] {lang}: {len(clips)} clips; kept " + ", ".join(f"{s} {n}" for s, n in sorted(counts.items()) if f"_{lang}_" in s)
            + f"; skipped {dict(skipped)}")
    return counts
