"""Corpora, manifests, feature files and training batches (what training reads).

* :mod:`vconv.data.manifest` - ``Utterance``, JSONL manifests, the generic corpus scan, speaker-disjoint splits;
* :mod:`vconv.data.prepare` - ``vconv prepare``: scan + split + write the manifests;
* :mod:`vconv.data.corpora` - corpus-specific layouts (VCTK);
* :mod:`vconv.data.extract` - ``vconv extract``: log-mel feature files and normalisation statistics;
* :mod:`vconv.data.feature_files` - the self-describing feature file format;
* :mod:`vconv.data.segments` - the model trainer's batches (mel segments, speaker path from another utterance);
* :mod:`vconv.data.audio_segments` - the vocoder trainer's batches (audio windows).
"""
