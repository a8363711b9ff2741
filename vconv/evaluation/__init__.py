"""Evaluation (``vconv evaluate``): independent judges, objective metrics, and the protocol that combines them.

* :mod:`vconv.evaluation.metrics` - pure measures of arrays and strings: CER/WER, MCD (DTW), F0 scores, EER;
* :mod:`vconv.evaluation.pitch_judge` - the F0 contour of every pitch measure: Praat's autocorrelation tracker (parselmouth);
* :mod:`vconv.evaluation.judge_common` - what the judges share: the install line, 16 kHz input, weights loaded once, per-file caches;
* :mod:`vconv.evaluation.speaker_judge` - ``SpeakerJudge``: Resemblyzer speaker embeddings and similarity;
* :mod:`vconv.evaluation.asr_judge` - ``AsrJudge``: Whisper transcripts (faster-whisper; base by default, or tiny.en);
* :mod:`vconv.evaluation.quality_judge` - ``QualityJudge``: DNSMOS scores (speechmos);
* :mod:`vconv.evaluation.judges` - ``Judges``: the bundle of judges one evaluation uses;
* :mod:`vconv.evaluation.pairs` - ``EvalPair``: reading a protocol, making pairs by converting held-out speakers, the speaker pool;
* :mod:`vconv.evaluation.scoring` - every pair as four systems, scored by every judge; the verifier and its threshold;
* :mod:`vconv.evaluation.aggregate` - the per-system summary and its Markdown table;
* :mod:`vconv.evaluation.plots` - similarity histograms and the embedding projection (matplotlib);
* :mod:`vconv.evaluation.report` - ``write_report`` (``results.json``, ``summary.md``, ``plots/``) and ``Report``;
* :mod:`vconv.evaluation.run` - ``run_evaluation``: the whole evaluation in one call.
"""
