"""Using a trained model: bundles, the registry of shipped models, the converter and batch conversion.

* :mod:`vconv.inference.bundle` - save / load / verify a model bundle; attach a vocoder to one;
* :mod:`vconv.inference.package` - a finished training run as a shipped fp16 bundle with its model card;
* :mod:`vconv.inference.registry` - where bundles are found (shipped, ``$VCONV_MODELS``, a path);
* :mod:`vconv.inference.converter` - ``VoiceConverter`` and ``load()``: the Python API (audio in, audio out);
* :mod:`vconv.inference.chunking` - long inputs in overlapping, cross-faded chunks;
* :mod:`vconv.inference.batch` - ``vconv convert`` / ``vconv embed`` over files and folders.
"""
