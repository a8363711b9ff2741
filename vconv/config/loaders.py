"""Run configs: the YAML sections of ``vconv train`` and ``vconv train-vocoder`` as config dataclasses.

Both read the same way (:func:`vconv.config.base.load_sections`): a YAML file or a packaged preset
(``vconv/config/presets``), its ``base:`` chain, then ``section.key=value`` overrides from the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from vconv.config.base import load_sections
from vconv.config.legacy import upgrade_model_config
from vconv.config.sections import FeatureConfig, ModelConfig, TrainConfig, VocoderConfig, VocoderTrainConfig
from vconv.errors import VconvError


def load_run_config(
    name_or_path: str | Path | None, overrides: Sequence[str] | None = None
) -> tuple[FeatureConfig, ModelConfig, TrainConfig]:
    """The ``features`` / ``model`` / ``train`` sections of a model run, as dataclasses."""
    data = load_run_sections(name_or_path, overrides or [], ("features", "model", "train"))
    features = FeatureConfig.from_dict(data["features"])
    model = ModelConfig.from_dict(data["model"])
    if model.n_mels != features.n_mels:
        raise VconvError(f"model.n_mels {model.n_mels} differs from features.n_mels {features.n_mels}")
    return features, model, TrainConfig.from_dict(data["train"])


def load_run_sections(name_or_path: str | Path | None, overrides: Sequence[str], sections: Sequence[str]) -> dict[str, Any]:
    """:func:`~vconv.config.base.load_sections` with each file's ``model`` section in today's keys before the files of
    a ``base:`` chain merge (:mod:`vconv.config.legacy`): an older base's flat ``channels: 512`` lies under a newer
    file's ``decoder: {channels: 128}`` instead of winning over it. Overrides still win over every file."""
    return load_sections(name_or_path, overrides, sections, translate=_model_in_todays_keys)


def _model_in_todays_keys(data: dict[str, Any]) -> dict[str, Any]:
    if isinstance(data.get("model"), Mapping):
        return {**data, "model": dict(upgrade_model_config(data["model"]))}
    return data


def load_vocoder_run_config(
    name_or_path: str | Path | None, overrides: Sequence[str] = ()
) -> tuple[FeatureConfig, VocoderConfig, VocoderTrainConfig]:
    """The ``features`` / ``vocoder`` / ``train`` sections of a vocoder run, as dataclasses."""
    data = load_sections(name_or_path, overrides, ("features", "vocoder", "train"))
    return (FeatureConfig.from_dict(data["features"]), VocoderConfig.from_dict(data["vocoder"]),
            VocoderTrainConfig.from_dict(data["train"]))
