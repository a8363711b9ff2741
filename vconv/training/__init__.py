"""Training: one loop for every trainer, from one CPU process to many GPUs under ``torchrun``.

* :mod:`vconv.training.base` - ``BaseTrainer``: loop, bf16, DDP wrapping, schedule, logging, checkpoint/resume, export;
* :mod:`vconv.training.vc_trainer` - ``ModelTrainer`` (``vconv train``): the voice-conversion model;
* :mod:`vconv.training.vocoder_trainer` - ``VocoderTrainer`` (``vconv train-vocoder``): the neural vocoder;
* :mod:`vconv.training.runs` - the run folder (config, log, atomic rotating checkpoints, safe checkpoint reads);
* :mod:`vconv.training.distributed` - process group, device choice, threads.
"""
