"""Configuration: the dataclasses every stage is built from, and how run configs are read.

* :mod:`vconv.config.sections` - FeatureConfig, ModelConfig, VocoderConfig, LoopConfig and the two trainers'
  sections extending it, TrainConfig and VocoderTrainConfig;
* :mod:`vconv.config.base` - dict/YAML round trips, overrides, ``base:`` inheritance;
* :mod:`vconv.config.loaders` - ``load_run_config`` (train) and ``load_vocoder_run_config`` (train-vocoder);
* ``presets/`` - the packaged YAML run configs (``debug``, ``base``, ``vocoder_debug``).
"""

from __future__ import annotations

from vconv.config.base import (
    PACKAGED_CONFIGS,
    ConfigSection,
    apply_overrides,
    from_dict,
    load_sections,
    load_yaml,
    resolve_config_path,
    save_yaml,
)
from vconv.config.loaders import load_run_config, load_vocoder_run_config
from vconv.config.sections import FeatureConfig, LoopConfig, ModelConfig, TrainConfig, VocoderConfig, VocoderTrainConfig

__all__ = [
    "PACKAGED_CONFIGS", "ConfigSection", "FeatureConfig", "LoopConfig", "ModelConfig", "TrainConfig", "VocoderConfig",
    "VocoderTrainConfig", "apply_overrides", "from_dict", "load_run_config", "load_sections",
    "load_vocoder_run_config", "load_yaml", "resolve_config_path", "save_yaml",
]
