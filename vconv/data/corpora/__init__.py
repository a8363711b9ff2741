"""Corpus-specific preparation (layouts, metadata, known quirks, fixed splits) beyond the generic
``ROOT/<speaker>/*.wav`` layout of :mod:`vconv.data.manifest`. One module per corpus."""

from vconv.data.corpora.vctk import UNSEEN_SPEAKERS, prepare_vctk, scan_vctk, split_seen_unseen

__all__ = ["UNSEEN_SPEAKERS", "prepare_vctk", "scan_vctk", "split_seen_unseen"]
