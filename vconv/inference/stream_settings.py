"""The stream's settings, declared once: :class:`StreamSettings`, its defaults and its bounds.

``VoiceConverter.stream`` takes it (or any of its fields by name), ``vconv stream`` reads its defaults for its options
and builds one from them, the page's live mode and the benchmarks take its defaults. Each value is checked on
construction, in one line naming the option as the caller knows it (``--block-ms`` on the command line, ``block_ms``
in Python). Torch-free, so the command line checks its options before a model loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from numbers import Integral, Real
from typing import Any, Mapping

from vconv.errors import VconvError
from vconv.inference.settings import RECENT_FRONTEND_MODES

#: each length's allowed range in ms, inclusive (a window, context + block + look-ahead, stays under Whisper's 30 s)
BOUNDS_MS = {"block_ms": (16.0, 2000.0), "lookahead_ms": (0.0, 2000.0), "crossfade_ms": (0.0, 2000.0),
             "context_ms": (0.0, 25000.0), "busy_block_ms": (0.0, 2000.0), "frontend_recent_ms": (0.0, 25000.0),
             "frontend_margin_ms": (0.0, 25000.0), "frontend_fresh_ms": (0.0, 25000.0)}
#: the most frames the window's edge is held for (a few dozen is already past any use)
MAX_EDGE_HOLD_FRAMES = 64
#: how the command line names the settings it offers (the rest are Python's only)
CLI_NAMES = {"block_ms": "--block-ms", "lookahead_ms": "--lookahead-ms", "context_ms": "--context-ms",
             "prime": "--prime", "busy_block_ms": "--busy-block-ms", "recent_frontend": "--recent-frontend"}


@dataclass(frozen=True)
class StreamSettings:
    """Block, look-ahead, cross-fade and left context in milliseconds (each rounded to whole mel hops), and how each
    block is converted; checked on construction (``names``: how errors name each field, default the field names).

    The latency is the block plus the look-ahead (:meth:`latency_ms`). ``dataclasses.replace`` gives a copy with some
    fields changed, checked again. The fields, each explained where it is declared: ``block_ms``, ``lookahead_ms``,
    ``crossfade_ms``, ``context_ms`` (the past each block is converted with), ``vocoder_passes`` (the vocoder's
    post-processing on every block), ``prime`` (start with the target's speech as past), ``edge_hold_frames`` (the
    window's last content frame held past its edge), ``prime_matching`` (the first quarter second matched on the
    converted primer), ``recent_frontend`` (``auto``/``on``/``off``: only the content front-end's last 400 ms
    recomputed while short of time), ``frontend_recent_ms``, ``frontend_margin_ms``, ``frontend_fresh_ms`` (the part
    recomputed otherwise), ``busy_block_ms`` (the block a busy machine grows it to; 0: never).
    """

    block_ms: float = 96.0
    lookahead_ms: float = 48.0
    crossfade_ms: float = 32.0
    # the past each block is converted with: with 3 s a live session's steady state kept more words than with 1.5 s
    # (CER +0.14 against +0.21 over offline on the held-out pairs, Whisper attending over all 3 s while recomputing
    # its last 1.4 s; docs/STREAMING.md, "A longer past" and "Whisper over the whole past")
    context_ms: float = 3000.0
    # the neural vocoder's post-processing passes (phase consistency, envelope matching) as offline: they work over
    # the whole window, so consecutive windows disagree a little where their blocks meet, but without them the
    # held-out CER of streamed conversions was worse (benchmarks/bench_stream.py; the note in docs/STREAMING.md)
    vocoder_passes: bool = True
    # start with the target's own speech as past context (TargetVoice.primer): the first windows otherwise hold only
    # block + look-ahead, and norms over 9 frames cost words and left the largest level step (docs/STREAMING.md)
    prime: bool = True
    # the window's last content frame held for this many more frames before the network (cut off again after it):
    # past the input's edge the offline network sees zero padding, which it learned as "the utterance ends here";
    # held, the frame says "the sound goes on", as it does in a stream. Only where the edge is speech, and not at the
    # stream's true end (flush).
    edge_hold_frames: int = 4
    # until the stream has converted a quarter second of its own speech (PRIMER_MATCHING_FRAMES), its spectrum is moved
    # with the converted primer's band means (the shape only; the first window converts the primer anyway), where it
    # was left unmatched; offline, every frame of an utterance is matched (docs/STREAMING.md measures both)
    prime_matching: bool = True
    # the content front-end recomputes only the window's last ``frontend_recent_ms`` and keeps the earlier states from
    # the previous window (Whisper's attending over them; a part that cannot reads ``frontend_margin_ms`` more as left
    # context): "auto" while the stream is short of time (a busy machine), "on" always, "off" never
    # (vconv.inference.stream_content; it costs words)
    recent_frontend: str = "auto"
    frontend_recent_ms: float = 400.0
    frontend_margin_ms: float = 250.0
    # when not short of time, the content front-end recomputes the window's last this much (block and look-ahead
    # included) and keeps the states before it: Whisper's recomputed states attend over the kept ones' keys and values
    # (vconv.audio.whisper_stream), so the pass costs ~1.4 s whatever the context (0: the whole window every block; a
    # kept state was computed with ~1.3 s of right context). A part that cannot (the log-mel) reads the margin before
    # it as left context
    frontend_fresh_ms: float = 1400.0
    # the block a stream grows to when blocks keep missing their deadlines (a busy machine; vconv.inference.stream_pace):
    # the latency grows by the difference, once. 0 (or not longer than the block): never grow
    busy_block_ms: float = 192.0
    names: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        name = lambda key: self.names.get(key, key)  # noqa: E731
        for key, (low, high) in BOUNDS_MS.items():
            value = getattr(self, key)
            number = float(value) if isinstance(value, Real) and not isinstance(value, bool) else math.nan
            if not low <= number <= high:  # (NaN never is)
                raise VconvError(f"{name(key)} {value!r}: a length in ms from {low:g} to {high:g}")
            object.__setattr__(self, key, number)  # frozen: normalised once, here
        hold = self.edge_hold_frames
        if isinstance(hold, bool) or not isinstance(hold, Integral) or not 0 <= hold <= MAX_EDGE_HOLD_FRAMES:
            raise VconvError(f"{name('edge_hold_frames')} {hold!r}: a whole number of frames from 0 to {MAX_EDGE_HOLD_FRAMES}")
        object.__setattr__(self, "edge_hold_frames", int(hold))
        if self.recent_frontend not in RECENT_FRONTEND_MODES:
            raise VconvError(f"{name('recent_frontend')} {self.recent_frontend!r}: one of {', '.join(RECENT_FRONTEND_MODES)}")
        for key in ("vocoder_passes", "prime", "prime_matching"):
            value = getattr(self, key)
            if isinstance(value, str) or value not in (True, False):  # (not "no", which bool() would read as True)
                raise VconvError(f"{name(key)} {value!r}: True or False")
            object.__setattr__(self, key, bool(value))

    @classmethod
    def with_options(cls, base: "StreamSettings | None" = None, **options: Any) -> "StreamSettings":
        """``base`` (default: the defaults) with ``options`` (field names) changed, checked; an unknown name is a
        TypeError listing the known ones, as an unexpected keyword argument would be."""
        known = {f.name for f in fields(cls)} - {"names"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown stream setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return replace(base if base is not None else cls(), **options)

    def samples(self, hop: int, rate: int) -> tuple[int, int, int, int]:
        """``(block, lookahead, crossfade, context)`` in samples at ``rate``, multiples of ``hop``."""
        def hops(ms: float, least: int) -> int:
            return whole_hops(ms, rate, hop, least)

        block, lookahead = hops(self.block_ms, 1), hops(self.lookahead_ms, 0)
        crossfade = min(hops(self.crossfade_ms, 0), lookahead)
        return block, lookahead, crossfade, hops(self.context_ms, 0)

    def busy_block(self, hop: int, rate: int) -> int:
        """:attr:`busy_block_ms` in samples at ``rate``, a multiple of ``hop`` (0: never grow)."""
        return whole_hops(self.busy_block_ms, rate, hop, 0)

    def latency_ms(self, hop: int, rate: int) -> float:
        """The algorithmic latency ``block + look-ahead``, in ms."""
        block, lookahead, _, _ = self.samples(hop, rate)
        return 1000.0 * (block + lookahead) / rate


#: the defaults, for a caller that shows them (the command line's options, the benchmarks)
DEFAULTS = StreamSettings()


def whole_hops(ms: float, rate: int, hop: int, least: int) -> int:
    """``ms`` in samples at ``rate``, rounded to whole ``hop``s, at least ``least`` of them."""
    return max(least, round(ms * rate / 1000 / hop)) * hop
