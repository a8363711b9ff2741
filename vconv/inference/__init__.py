"""Using a trained model: the registry of shipped models, the converter and batch conversion (the bundle
format itself, below both training and inference, is :mod:`vconv.bundles`).

* :mod:`vconv.inference.registry` - where bundles are found (shipped, ``$VCONV_MODELS``, a path);
* :mod:`vconv.inference.converter` - ``VoiceConverter`` and ``load()``: the Python API (audio in, audio out);
* :mod:`vconv.inference.chunking` - long inputs in overlapping, cross-faded chunks;
* :mod:`vconv.inference.batch` - ``vconv convert`` / ``vconv embed`` over files and folders.
"""
