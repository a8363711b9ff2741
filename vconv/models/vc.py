"""The voice converter: composition of content encoder, quantiser, speaker encoder, decoder, adversary.

``VoiceConversionModel.reconstruct``: ``mel [B, n_mels, T], ref_mel [B, n_mels, T_ref]`` ->
``ReconstructionOutput(mel [B, n_mels, T], quantizer, speaker_embedding [B, S], speaker_logits)``.

``VoiceConversionModel.convert``: ``src_mel [B, n_mels, T]`` (or ``[n_mels, T]``) + reference mel(s) or a
speaker embedding -> ``mel`` of the same shape as ``src_mel``. It is the one inference path: the Python
API, the CLI and evaluation all convert through it (:mod:`vconv.inference.converter`).

All mels here are in the front-end's model space (normalised log-mel, :class:`vconv.audio.frontend.FrontEnd`).

The parts are built elsewhere and handed to the constructor (as in EnCodec), so a variant is a
different part, not a copied model; :func:`build_model` builds each part from its own section of a
:class:`~vconv.config.ModelConfig` (``model.decoder: {kind: adain, ...}``; :data:`MODEL_PARTS`, :func:`register_model_part`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, Union

import torch
from torch import nn

from vconv.config import ConfigSection, ModelConfig
from vconv.config.model_parts import register_part_section
from vconv.config.parts import build_part
from vconv.errors import VconvError
from vconv.models.adversary import SpeakerClassifier
from vconv.models.budget import build_within_budget, load_network
from vconv.models.content import ContentEncoder
from vconv.models.decoder import AdaINDecoder
from vconv.models.quantize import PassThroughQuantizer, Quantizer, QuantizerOutput, VectorQuantizer
from vconv.models.speaker import SpeakerEncoder

__all__ = ["MODEL_PARTS", "ReconstructionOutput", "VoiceConversionModel", "build_model", "register_model_part"]

References = Union[torch.Tensor, Sequence[torch.Tensor]]


@dataclass
class ReconstructionOutput:
    """What :meth:`VoiceConversionModel.reconstruct` returns.

    Attributes:
        mel: ``[B, n_mels, T]`` the decoded spectrogram, same ``T`` as the content input.
        quantizer: the content path's :class:`~vconv.models.quantize.QuantizerOutput` (codes, VQ loss, ...).
        speaker_embedding: ``[B, S]`` the embedding the decoder was conditioned on.
        speaker_logits: ``[B, n_speakers]`` the adversary's logits on the (gradient-reversed) code, or
            None when the model has no adversary.
    """

    mel: torch.Tensor
    quantizer: QuantizerOutput
    speaker_embedding: torch.Tensor
    speaker_logits: torch.Tensor | None


class VoiceConversionModel(nn.Module):
    """Disentangling auto-encoder for one-shot voice conversion.

    Shapes: content ``mel [B, n_mels, T]`` -> code ``[B, code_dim, T']``; reference ``[B, n_mels, T_ref]``
    -> ``e [B, S]``; decoder -> ``mel [B, n_mels, T]``.

    Args:
        content_encoder: ``mel -> z``, with a ``total_stride`` attribute.
        quantizer: ``z -> QuantizerOutput``.
        speaker_encoder: ``mel -> e``, with ``embed_many(list of [n_mels, T_i]) -> [S]``.
        decoder: ``(q, e, length) -> mel``, with a ``stride`` attribute equal to the encoder's.
        adversary: optional speaker classifier ``(q, reversal_weight) -> logits``.
        config: the :class:`ModelConfig` the parts were built from (stored with checkpoints).
    """

    def __init__(
        self,
        content_encoder: ContentEncoder,
        quantizer: Quantizer,
        speaker_encoder: SpeakerEncoder,
        decoder: AdaINDecoder,
        adversary: SpeakerClassifier | None = None,
        *,
        config: ModelConfig,
    ) -> None:
        super().__init__()
        enc_stride = getattr(content_encoder, "total_stride", None)
        dec_stride = getattr(decoder, "stride", None)
        if enc_stride is not None and dec_stride is not None and enc_stride != dec_stride:
            raise VconvError(
                f"model: decoder up-samples by {dec_stride} but the content encoder down-samples by {enc_stride}"
            )
        self.content_encoder = content_encoder
        self.quantizer = quantizer
        self.speaker_encoder = speaker_encoder
        self.decoder = decoder
        self.adversary = adversary
        self.config = config
        # the content encoder in float32 even under an outer bfloat16 autocast (the converter sets it: its codes carry
        # the words, and bfloat16 rounding of the encoder flips code choices; vconv.inference.precision)
        self.content_in_float32 = False

    # ----------------------------------------------------------------------------------------------
    # the two paths

    def encode_content(self, mel: torch.Tensor) -> QuantizerOutput:
        """``x [B, C_in, T] -> QuantizerOutput(quantized [B, code_dim, T'], codes [B, T'] or [B, T', G], ...)``."""
        return self.quantizer(self._content_states(mel))

    def _content_states(self, x: torch.Tensor) -> torch.Tensor:
        """The content encoder's output ``[B, code_dim, T']`` for ``x [B, C_in, T]``, in float32 when
        :attr:`content_in_float32` (the quantiser's distances are float32 anyway)."""
        if self.content_in_float32:
            with torch.autocast(x.device.type, enabled=False):
                return self.content_encoder(x.float())
        return self.content_encoder(x)

    def embed_speaker(self, mels: References) -> torch.Tensor:
        """Speaker embedding(s).

        * tensor ``[B, n_mels, T]`` -> ``[B, S]`` (one embedding per item);
        * tensor ``[n_mels, T]`` -> ``[1, S]``;
        * list of ``[n_mels, T_i]`` tensors -> ``[1, S]``, the average over the references.
        """
        if isinstance(mels, torch.Tensor):
            if mels.dim() == 2:
                mels = mels.unsqueeze(0)
            return self.speaker_encoder(mels)
        return self.speaker_encoder.embed_many(list(mels)).unsqueeze(0)

    # ----------------------------------------------------------------------------------------------
    # training and inference

    def reconstruct(
        self, mel: torch.Tensor, ref_mel: References, adversary_weight: float = 0.0, pitch: torch.Tensor | None = None,
    ) -> ReconstructionOutput:
        """Rebuild ``mel [B, n_mels, T]`` from its codes and the speaker embedding of ``ref_mel``.

        ``ref_mel`` is ``[B, n_mels, T_ref]`` (another segment of the same speaker during training, so
        content cannot leak through the speaker path), or anything :meth:`embed_speaker` takes that
        gives one embedding. ``adversary_weight`` scales the reversed gradient that the adversary sends into the
        content encoder (0 trains the classifier without touching the encoder). ``pitch [B, 3, T]``: the
        decoder's contour (:func:`vconv.models.contour.decoder_contour`), for a model with the pitch path.
        """
        quant = self.encode_content(mel)
        embedding = self.embed_speaker(ref_mel)
        if embedding.shape[0] not in (1, mel.shape[0]):
            raise ValueError(f"{embedding.shape[0]} speaker embeddings for a batch of {mel.shape[0]}")
        embedding = embedding.expand(mel.shape[0], -1)
        out = self.decode(quant.quantized, embedding, mel.shape[-1], pitch)
        logits = None
        if self.adversary is not None:
            logits = self.adversary(quant.quantized, reversal_weight=adversary_weight)
        return ReconstructionOutput(mel=out, quantizer=quant, speaker_embedding=embedding, speaker_logits=logits)

    def forward(self, mel: torch.Tensor, ref_mel: References, adversary_weight: float = 0.0,
                pitch: torch.Tensor | None = None) -> ReconstructionOutput:
        """Same as :meth:`reconstruct` (so DDP wraps the training computation)."""
        return self.reconstruct(mel, ref_mel, adversary_weight, pitch)

    @property
    def reads_pitch(self) -> bool:
        """Whether the decoder reads a pitch contour (``model.pitch_frontend`` is a tracker)."""
        return self.decoder.pitch_in is not None

    def decode(self, quantized: torch.Tensor, embedding: torch.Tensor, length: int,
               pitch: torch.Tensor | None = None) -> torch.Tensor:
        """``quantized [B, code_dim, T'] + embedding [B or 1, S]`` (+ the contour ``pitch [B or 1, 3, length]`` for a
        model with the pitch path) ``-> mel [B, n_mels, length]``."""
        if embedding.shape[0] not in (1, quantized.shape[0]):
            raise ValueError(f"{embedding.shape[0]} speaker embeddings for {quantized.shape[0]} sources")
        if pitch is not None and pitch.shape[0] != quantized.shape[0]:
            pitch = pitch.expand(quantized.shape[0], -1, -1)
        return self.decoder(quantized, embedding.expand(quantized.shape[0], -1), length, pitch)

    @torch.no_grad()
    def convert(self, src_mel: torch.Tensor, ref_mels: References | None = None, *,
                embedding: torch.Tensor | None = None, pitch: torch.Tensor | None = None) -> torch.Tensor:
        """Say ``src_mel``'s content in the voice of ``ref_mels`` (or of a precomputed ``embedding``).

        Args:
            src_mel: ``[B, n_mels, T]`` or ``[n_mels, T]``.
            ref_mels: a tensor ``[n_mels, T_ref]`` or ``[B or 1, n_mels, T_ref]``, or a list of
                ``[n_mels, T_i]`` references of one target speaker (their embeddings are averaged).
            embedding: ``[B or 1, S]``, what :meth:`embed_speaker` returned; instead of ``ref_mels``, so a
                caller converting many sources (or chunks of one) embeds the target once.
            pitch: for a model with the pitch path, the decoder's contour ``[B or 1, 3, T]`` or ``[3, T]``
                (:func:`vconv.models.contour.decoder_contour`: the source's melody in the output's register).

        Returns:
            mel of ``src_mel``'s shape (same number of frames).

        Runs in eval mode (restoring the previous mode afterwards) so that converting never updates the
        codebook or its usage counters.
        """
        if (ref_mels is None) == (embedding is None):
            raise ValueError("convert needs exactly one of ref_mels or embedding")
        squeeze = src_mel.dim() == 2
        src = src_mel.unsqueeze(0) if squeeze else src_mel
        was_training = self.training
        # Module.eval sets every submodule (~0.25 ms here; a stream converts every block): only when one is training
        switch = any(module.training for module in self.modules())
        if switch:
            self.eval()
        try:
            if embedding is None:
                assert ref_mels is not None  # exactly one of the two, checked above
                embedding = self.embed_speaker(ref_mels)
            if pitch is not None and pitch.dim() == 2:
                pitch = pitch.unsqueeze(0)
            out = self.decode(self.encode_content(src).quantized, embedding, src.shape[-1], pitch)
        finally:
            if switch:
                self.train(was_training)
        return out[0] if squeeze else out


def build_model(cfg: ModelConfig) -> VoiceConversionModel:
    """The standard :class:`VoiceConversionModel` for ``cfg``.

    The adversary is built only when ``cfg.adversary`` names a kind and ``cfg.n_speakers > 0``; otherwise the
    model has no classifier parameters and ``speaker_logits`` is None. A config whose model would exceed
    the parameter budget (:mod:`vconv.models.budget`) is refused before anything is allocated.
    """
    return build_within_budget(lambda: build_model_unchecked(cfg), "model config")


def load_model(cfg: ModelConfig, state: Mapping[str, torch.Tensor], what: str) -> VoiceConversionModel:
    """The model of ``cfg`` holding the weights ``state``, assigned in place (nothing initialised that is
    then overwritten; :mod:`vconv.skeleton`); a mismatch is a one-line VconvError naming ``what``."""
    return load_network(lambda: build_model_unchecked(cfg), state, what)


def build_model_unchecked(cfg: ModelConfig) -> VoiceConversionModel:
    """The model of ``cfg`` without the budget check: for callers that build under one themselves
    (:func:`vconv.models.budget.load_network`). Each part from its own section (``model.<role>: {kind, ...}``) and the
    sizes the model shares; the front-end parts say what the encoders read."""
    from vconv.frontends import model_parts, pitch_part

    content_input, speaker_input = model_parts(cfg)
    # built in this order, so a seed gives the initial weights it gave before the parts had sections
    content = _part(cfg, "content_encoder", in_channels=content_input.channels(cfg.n_mels), code_dim=cfg.code_dim)
    speaker = _part(cfg, "speaker_encoder", in_channels=speaker_input.channels(cfg.n_mels), speaker_dim=cfg.speaker_dim)
    quantizer = _part(cfg, "quantizer", code_dim=cfg.code_dim)
    pitch = pitch_part(cfg)
    decoder = _part(cfg, "decoder", code_dim=cfg.code_dim, speaker_dim=cfg.speaker_dim, n_mels=cfg.n_mels,
                    stride=content.total_stride, pitch_channels=pitch.channels(cfg.n_mels) if pitch else 0)
    adversary = _part(cfg, "adversary", code_dim=cfg.code_dim, n_speakers=cfg.n_speakers) if cfg.n_speakers > 0 else None
    return VoiceConversionModel(content, quantizer, speaker, decoder, adversary, config=cfg)


def _part(cfg: ModelConfig, role: str, **sizes: Any) -> Any:
    """The ``role`` part of ``cfg``, built from its section by its kind's builder, given the model's ``sizes``."""
    return build_part(f"model.{role}", MODEL_PARTS[role], getattr(cfg, role), **sizes)


def _vector_quantizer(code_dim: int, codebook_size: int, groups: int, beta: float, ema: bool, decay: float,
                      dead_after: int) -> VectorQuantizer:
    """``quantizer: {kind: vq}``: ``groups`` codes per frame, each of ``code_dim / groups`` dimensions."""
    if code_dim % groups:
        raise VconvError(f"model.quantizer.groups must divide model.code_dim ({code_dim}), got {groups}")
    return VectorQuantizer(code_dim // groups, codebook_size, groups=groups, beta=beta, ema=ema, decay=decay,
                           dead_after=dead_after)


def _no_part() -> None:
    """``{kind: none}`` of an optional part (the adversary): the model has none."""
    return None


# role -> kind -> builder, taking the section's settings and the sizes it names (vconv.config.model_parts has the sections)
MODEL_PARTS: dict[str, dict[str, Callable[..., Any]]] = {
    "content_encoder": {"conv": ContentEncoder},
    "quantizer": {"vq": _vector_quantizer, "none": PassThroughQuantizer},
    "speaker_encoder": {"conv": SpeakerEncoder},
    "decoder": {"adain": AdaINDecoder},
    "adversary": {"classifier": SpeakerClassifier, "none": _no_part},
}


def register_model_part(role: str, kind: str, builder: Callable[..., Any], section: type[ConfigSection]) -> None:
    """Make ``model.<role>: {kind: KIND, ...}`` build ``builder(**sizes it names, **section's settings)``; ``section``
    (a :class:`~vconv.config.ConfigSection`) checks the settings when a config is read."""
    register_part_section(role, kind, section)
    MODEL_PARTS[role][kind] = builder
