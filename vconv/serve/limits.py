"""The limits of one `vconv serve` process: upload size and duration, concurrency, queue depth.

They bound what a client can make the server hold: at most ``workers + queue_depth`` requests are
admitted at once, each with at most ``1 + max_references`` files of ``max_upload_mb`` (streamed to a
temporary folder, not memory) and ``max_seconds`` of audio; the rest are answered "busy, retry".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from vconv.errors import VconvError

MAX_WORKERS = 2  # conversions share the CPU's cores; more than two in parallel only slows each one down
MAX_QUEUE_DEPTH = 32
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers on top of the files themselves


@dataclass(frozen=True)
class ServeLimits:
    """Per-file upload limits (``max_upload_mb`` bytes read, ``max_seconds`` decoded), number of target
    references, conversions running at once (``workers``), requests waiting (``queue_depth``) and
    converted results kept for download (``results_kept``, least recently used dropped first)."""

    max_upload_mb: float = 20.0
    max_seconds: float = 60.0
    max_references: int = 4
    workers: int = 1
    queue_depth: int = 4
    results_kept: int = 16
    uploads: int = 8  # uploads in progress at once (each holds a temporary folder, not a conversion place)
    read_timeout: float = 20.0  # seconds an upload may go without sending a byte before it is dropped (408)
    # after the first upload_grace seconds an upload must arrive at min_upload_rate bytes/s on average, else it is
    # dropped (408): this bounds its total time (20 MB at 16 KB/s: 21 min; a byte every 15 s: 5 s)
    min_upload_rate: float = 16 * 1024
    upload_grace: float = 5.0
    # one live session's audio (it holds a conversion worker while it lasts): a whole conversation
    max_live_seconds: float = 3600.0

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_request_bytes(self) -> int:
        """The most one request may send: every file at its limit plus the multipart framing."""
        return self.max_upload_bytes * (1 + self.max_references) + MULTIPART_OVERHEAD

    @property
    def capacity(self) -> int:
        """Requests admitted at once (converting + waiting); one more is answered busy."""
        return self.workers + self.queue_depth

    def check(self) -> "ServeLimits":
        """Raise a one-line :class:`VconvError` naming the option for a value out of range; return self."""
        if not 0 < self.max_upload_mb <= 1024:
            raise VconvError(f"--max-upload-mb {self.max_upload_mb:g}: expected a size in MB above 0 and at most 1024")
        if not 0 < self.max_seconds <= 3600:
            raise VconvError(f"--max-seconds {self.max_seconds:g}: expected a duration above 0 and at most 3600 s")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise VconvError(f"--workers {self.workers}: expected 1 or {MAX_WORKERS} (conversions share the CPU)")
        if not 0 <= self.queue_depth <= MAX_QUEUE_DEPTH:
            raise VconvError(f"--queue {self.queue_depth}: expected 0 to {MAX_QUEUE_DEPTH} waiting requests")
        if not 1 <= self.uploads <= 256 or not 0 < self.read_timeout <= 600:
            raise VconvError("uploads must be 1..256 and read_timeout 0..600 s")
        if not 0 < self.min_upload_rate or not 0 <= self.upload_grace <= 600:
            raise VconvError("min_upload_rate must be above 0 bytes/s and upload_grace 0..600 s")
        if not 0 < self.max_live_seconds <= 86400:
            raise VconvError(f"max_live_seconds {self.max_live_seconds:g}: expected above 0 and at most a day")
        if self.max_references < 1 or self.results_kept < 1:
            raise VconvError("max_references and results_kept must be at least 1")
        return self

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)
