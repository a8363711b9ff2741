"""Validation of the model trainer (:class:`~vconv.training.vc_trainer.ModelTrainer`): held-out speakers rebuilt as
training poses the task, codebook use, speaker separation, and the adversary on fixed training batches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ContextManager, Mapping

import torch
import torch.nn.functional as F

from vconv.audio.frontend import FrontEnd
from vconv.data.segments import FeatureStore, SegmentBatches
from vconv.frontends import FrontEndPart
from vconv.models import ReconstructionOutput, VoiceConversionModel


def adversary_accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Plain and balanced accuracy of the speaker adversary on ``[N]`` predicted / true speaker indices.

    Plain accuracy rewards always naming the most frequent speaker (with per-utterance sampling that
    is Joe, half of a batch); balanced accuracy, the mean per-speaker recall, does not: chance is
    ``1 / speakers`` whatever the mix.
    """
    recalls = [(predicted[labels == s] == s).float().mean() for s in labels.unique()]
    return {"adv_acc": (predicted == labels).float().mean().item(), "adv_bal_acc": torch.stack(recalls).mean().item()}


class ModelValidation:
    """The trainer's :meth:`validate` (a mixin of :class:`~vconv.training.vc_trainer.ModelTrainer`, which gives it the
    model, the held-out store, the front-end parts and the precision)."""

    model: VoiceConversionModel
    valid_store: FeatureStore | None
    frontend: FrontEnd
    device: torch.device
    content_part: FrontEndPart
    speaker_part: FrontEndPart
    pitch_part: FrontEndPart | None
    batches: SegmentBatches
    speakers: list[str]

    if TYPE_CHECKING:  # given by the trainer (a stub here would shadow BaseTrainer's in the method order)
        def autocast(self) -> ContextManager[Any]: ...

        def _contour(self, pitch: torch.Tensor | None) -> torch.Tensor | None: ...


    @property
    def has_validation(self) -> bool:
        return self.valid_store is not None

    @torch.no_grad()
    def validate(self, max_utterances: int = 64) -> dict[str, float]:
        """Scores on held-out speakers, and the adversary on training speakers.

        * ``recon``: reconstruction L1 as training poses it - the speaker path reads *another* utterance
          of the same speaker (the other half of the utterance for a speaker with only one), so content
          cannot leak through it; ``recon_self_ref``: the easier task with the utterance as its own reference;
        * ``perplexity``: codebook usage on the held-out utterances;
        * ``adv_acc`` / ``adv_bal_acc``: the adversary on content codes of four fixed training batches (it
          only knows training speakers; chance is ``adv_chance``);
        * ``spk_separation``: mean cosine of same-speaker minus different-speaker pairs of held-out embeddings.
        """
        assert self.valid_store is not None
        self.model.eval()
        store = self.valid_store
        total = len(store.utterances)
        n = min(total, max_utterances)
        # spread the picks over the whole manifest: it is sorted by speaker, and the first n utterances
        # would often be one speaker only, leaving nothing to measure speaker separation on
        picks = sorted({round(k * (total - 1) / max(1, n - 1)) for k in range(n)})
        n = len(picks)
        by_speaker: dict[str, list[int]] = {}
        for i, utt in enumerate(store.utterances):
            by_speaker.setdefault(utt.speaker, []).append(i)
        recon, recon_self, ppl, embeddings, speakers = [], [], [], [], []
        for i in picks:
            out, target, own, mel = self._valid_reconstructions(i, by_speaker)
            recon.append(F.l1_loss(out.mel.float(), target).item())
            recon_self.append(F.l1_loss(own.mel.float(), mel).item())
            ppl.append(own.quantizer.perplexity.item())
            embeddings.append(F.normalize(own.speaker_embedding.float(), dim=-1)[0])
            speakers.append(store.utterances[i].speaker)
        result = {"recon": sum(recon) / n, "recon_self_ref": sum(recon_self) / n, "perplexity": sum(ppl) / n}
        emb = torch.stack(embeddings)
        cos = emb @ emb.T
        same = torch.tensor([[a == b for b in speakers] for a in speakers], device=cos.device)
        off_diag = ~torch.eye(n, dtype=torch.bool, device=cos.device)
        if (same & off_diag).any() and (~same).any():
            result["spk_same_cos"] = cos[same & off_diag].mean().item()
            result["spk_diff_cos"] = cos[~same].mean().item()
            result["spk_separation"] = result["spk_same_cos"] - result["spk_diff_cos"]
        if self.model.adversary is not None:
            predicted, labels = [], []
            for k in range(4):  # fixed batches, never drawn in training
                probe = self.batches[10**9 + k].to(self.device)
                predicted.append(self.model.adversary(self.model.encode_content(probe.content).quantized).argmax(-1))
                labels.append(probe.speaker)
            result.update(adversary_accuracy(torch.cat(predicted), torch.cat(labels)))
            result["adv_chance"] = 1.0 / len(self.speakers)
        return result

    def _valid_inputs(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(target mel [1, n_mels, F], content input [1, C, F], speaker input)`` of a held-out utterance."""
        assert self.valid_store is not None  # validation runs only with a validation store (has_validation)
        tensors = self.valid_store.tensors(index)
        mel = self.frontend.normalize(tensors["mel"])[None].to(self.device)
        return mel, self._path_input(self.content_part, tensors, mel), self._path_input(self.speaker_part, tensors, mel)

    def _valid_reconstructions(self, i: int, by_speaker: Mapping[str, list[int]]) -> tuple[ReconstructionOutput, torch.Tensor,
                                                                                         ReconstructionOutput, torch.Tensor]:
        """``(reconstruction with another utterance's speaker path, its target, reconstruction with its own, the
        utterance's mel)`` of held-out utterance ``i`` (:meth:`validate`)."""
        mel, full_content, own_ref = self._valid_inputs(i)
        full_pitch = self._valid_contour(i)
        content, target, other, pitch = full_content, mel, self._other_reference(i, by_speaker), full_pitch
        if other is None:  # a lone utterance: content from one half, speaker from the other
            half = mel.shape[-1] // 2
            target, content = mel[..., :half], content[..., :half]
            pitch = pitch[..., :half] if pitch is not None else None
            ref = own_ref[..., half:]
        else:
            ref = other
        with self.autocast():
            out = self.model.reconstruct(content, ref, pitch=pitch)
            own = self.model.reconstruct(full_content, own_ref, pitch=full_pitch)
        return out, target, own, mel

    def _valid_contour(self, index: int) -> torch.Tensor | None:
        """The decoder's contour ``[1, 3, F]`` of a held-out utterance (its own register), or None without the pitch path."""
        if not self.model.reads_pitch:
            return None
        assert self.valid_store is not None  # as in _valid_inputs
        assert self.pitch_part is not None  # a model that reads pitch has a tracker
        return self._contour(self.valid_store.tensors(index)[self.pitch_part.feature_key].float()[None].to(self.device))

    def _path_input(self, part: FrontEndPart, tensors: Mapping[str, torch.Tensor], mel: torch.Tensor) -> torch.Tensor:
        """What one path reads of a stored utterance: the normalised ``mel``, or the part's tensor (batch of 1)."""
        return mel if part.is_log_mel else tensors[part.feature_key].float()[None].to(self.device)

    def _other_reference(self, index: int, by_speaker: Mapping[str, list[int]]) -> torch.Tensor | None:
        """The speaker input of the next utterance of the same speaker (cyclically), or None."""
        store = self.valid_store
        assert store is not None  # as in _valid_inputs
        siblings = by_speaker[store.utterances[index].speaker]
        if len(siblings) < 2:
            return None
        return self._valid_inputs(siblings[(siblings.index(index) + 1) % len(siblings)])[2]
