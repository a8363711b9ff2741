"""The vocoder protocol, the feature-contract check, and a small registry of vocoder factories.

A vocoder turns a natural-log mel spectrogram, exactly as :class:`vconv.audio.logmel.LogMel` makes it
(``log(max(mel_magnitude, log_floor))``, *not* normalised by corpus statistics), into a waveform:

    log_mel ``[B, n_mels, F]`` -> wav ``[B, T]`` with ``T = (F - 1) * hop_length``

``T`` is the length of the centred STFT's signal that has ``F`` frames (``F = 1 + T // hop_length``),
so a waveform of ``T`` samples, turned into a log-mel and vocoded, comes back with ``T`` rounded down to
a multiple of ``hop_length``.

Every vocoder declares the :class:`~vconv.config.FeatureConfig` it was built for; a model and a vocoder
whose configs differ must not be combined (:func:`check_compatible`), because a mel made with another
hop, sample rate or filterbank silently produces garbage audio rather than an error.

New vocoders (e.g. a neural one loaded from a bundle) plug in through :func:`register_vocoder`; callers
only use :func:`get_vocoder`.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, ClassVar, Union, cast

import numpy as np
import torch

from vconv.config import FeatureConfig
from vconv.errors import VconvError

__all__ = ["Vocoder", "VocoderFactory", "VOCODERS", "check_compatible", "get_vocoder", "register_vocoder"]

ArrayLike = Union[np.ndarray, torch.Tensor]


class Vocoder(torch.nn.Module, abc.ABC):
    """Log-mel ``[B, n_mels, F]`` -> waveform ``[B, T]``, ``T = (F - 1) * hop_length``, at ``feature_config.sample_rate``.

    Attributes:
        feature_config: the mel contract this vocoder was built for (checked by :func:`check_compatible`).
        name: short identifier, the registry key (``"griffinlim"``).
    """

    name: str = "vocoder"
    #: inference-time post-processing passes, which ``--fast`` skips and a stream may turn off per call (:meth:`render`)
    post_processing: ClassVar[bool] = False
    # whether its network may run under bfloat16 autocast at inference (vconv.inference.precision); a vocoder
    # without weights (Griffin-Lim's least-squares inversion) needs float32
    mixed_precision: bool = False

    def __init__(self, feature_config: FeatureConfig):
        super().__init__()
        self.feature_config = feature_config

    @abc.abstractmethod
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """``log_mel [B, n_mels, F]`` (natural log, un-normalised) -> ``wav [B, (F - 1) * hop_length]`` float32."""

    def num_samples(self, num_frames: int) -> int:
        """Output length ``T`` for ``F`` frames."""
        return (num_frames - 1) * self.feature_config.hop_length

    def render(self, log_mel: torch.Tensor, post_process: bool = True) -> torch.Tensor:
        """``log_mel [B, n_mels, F] -> [B, T]`` at inference, with or without the post-processing passes (a vocoder
        without any ignores ``post_process``)."""
        return self(log_mel)

    def without_post_processing(self) -> "Vocoder":
        """This vocoder with its post-processing passes off by default (``--fast``); one without any is an error."""
        raise VconvError(f"fast mode skips the neural vocoder's post-processing passes; vocoder {self.name} has none")

    def check_input(self, log_mel: torch.Tensor) -> None:
        """One-line errors for a wrong shape, a wrong mel count, too few frames or non-finite values."""
        n_mels = self.feature_config.n_mels
        if log_mel.dim() != 3 or log_mel.shape[1] != n_mels:
            raise VconvError(
                f"vocoder {self.name!r}: expected a log-mel [B, {n_mels}, F], got shape {list(log_mel.shape)}"
            )
        if log_mel.shape[2] < 2:
            raise VconvError(f"vocoder {self.name!r}: need at least 2 frames, got {log_mel.shape[2]}")
        if not torch.isfinite(log_mel).all():
            raise VconvError(f"vocoder {self.name!r}: the log-mel contains NaN or Inf values")

    def vocode(self, log_mel: ArrayLike) -> ArrayLike:
        """Convenience for inference: ``[n_mels, F]`` -> ``[T]`` or ``[B, n_mels, F]`` -> ``[B, T]``.

        Accepts a numpy array or a tensor and returns the same kind (numpy float32 / CPU-or-device
        tensor); runs under ``no_grad`` on the vocoder's device.
        """
        as_numpy = isinstance(log_mel, np.ndarray)
        x = torch.from_numpy(np.ascontiguousarray(log_mel, dtype=np.float32)) if as_numpy else cast(torch.Tensor, log_mel)
        single = x.dim() == 2
        if single:
            x = x.unsqueeze(0)
        device = _module_device(self)
        with torch.no_grad():
            wav = self(x.to(device=device, dtype=torch.float32))
        if single:
            wav = wav[0]
        return wav.cpu().numpy() if as_numpy else wav


def _module_device(module: torch.nn.Module) -> torch.device:
    for tensor in list(module.parameters()) + list(module.buffers()):
        return tensor.device
    return torch.device("cpu")


def check_compatible(model_features: FeatureConfig, vocoder: Vocoder) -> None:
    """Raise :class:`VconvError` naming every value in which ``vocoder.feature_config`` differs from the model's."""
    diffs = vocoder.feature_config.differences(model_features)  # "field: vocoder's vs model's"
    if diffs:
        raise VconvError(
            f"vocoder {vocoder.name!r} was built for other features than the model "
            f"(vocoder vs model: {'; '.join(diffs)}); use a vocoder made for the model's feature config"
        )


# ------------------------------------------------------------------------------------------- registry

VocoderFactory = Callable[..., Vocoder]
"""``factory(feature_config, **kwargs) -> Vocoder``."""

VOCODERS: dict[str, VocoderFactory] = {}
TRAINED_VOCODERS: set[str] = set()  # names whose factory builds an untrained network: a conversion takes a bundle's


def register_vocoder(name: str, factory: VocoderFactory, *, overwrite: bool = False, trained: bool = False) -> None:
    """Make ``get_vocoder(name, ...)`` call ``factory(feature_config, **kwargs)``; ``trained``: the factory builds an
    untrained network, which a conversion takes from a bundle instead (:func:`vconv.bundles.choose_vocoder`).

    Re-registering a name is refused unless ``overwrite`` (two plugins claiming one name is a bug).
    """
    if name in VOCODERS and not overwrite and VOCODERS[name] is not factory:
        raise VconvError(f"vocoder {name!r} is already registered")
    VOCODERS[name] = factory
    if trained:
        TRAINED_VOCODERS.add(name)


def check_vocoder_name(name: str, what: str = "vocoder") -> str:
    """``name`` if a vocoder is registered under it, else a one-line VconvError listing the known ones."""
    if name not in VOCODERS:
        raise VconvError(f"{what} {name!r}: unknown; known vocoders: {', '.join(sorted(VOCODERS)) or 'none'}")
    return name


def get_vocoder(name: str, feature_config: FeatureConfig, **kwargs: Any) -> Vocoder:
    """Build the registered vocoder ``name`` for ``feature_config``; unknown names list the known ones."""
    return VOCODERS[check_vocoder_name(name)](feature_config, **kwargs)
