"""Audio in and out, and the front-end that turns it into model input (stage 1 of the data flow).

* :mod:`vconv.audio.io` - load anything libsndfile reads as mono float32 at a chosen rate, validate, save atomically;
* :mod:`vconv.audio.logmel` - ``LogMel``, the one STFT / mel analysis (and its inverse STFT);
* :mod:`vconv.audio.frontend` - ``FrontEnd``: log-mel + normalisation statistics, audio <-> model space;
* :mod:`vconv.audio.perturb` - timbre perturbation of the content path's input during training.
"""
