"""The one translation of older configs: what bundles, checkpoints and YAML files written before the
front-end parts (:mod:`vconv.frontends`) said, in today's keys. Everything else reads only today's keys.

Before: ``content_input: mel | whisper`` with ``whisper_layer: N`` and ``speaker_input: mel | dvector``.
Now: ``content_frontend: {kind: mel}`` / ``{kind: whisper, layer: N}`` and ``speaker_frontend: {kind: ...}``.

Before: one flat model section for the five core parts (``channels``, ``content_blocks``, ``vq_groups``,
``quantize: false``, ``adversary: false``, ...). Now: a section per part (:mod:`vconv.config.model_parts`), the
booleans as part swaps (``quantizer: {kind: none}``). A flat key given beside a section (an override on a newer
config) wins over the section's key.

Options measured as not helping left the package in House III (their figures: ``recipes/voices/MODEL_HISTORY.md``;
their code: git commit ``e8db0bd``, the last with them), and after it the vocoder's GAN and its training on a VC
model's reconstructions (commit ``0993412``) and the decoder's Fourier basis of the contour with the learning rate of
grown parts (commit ``1d69df6``). A config that names one at its "off" value (the bundles shipped before
House III name ``reference`` and ``causal``; the voices recipe's vocoder config said ``adversarial: false``) reads as
before; one that turns it on is refused in one line. A vocoder config that tuned the GAN (``gan_start_step``, ...)
without saying ``adversarial`` had it on (its default was true): refused too.
"""

from __future__ import annotations

from typing import Any, Mapping

from vconv.config.model_parts import DEFAULT_KINDS
from vconv.errors import VconvError

LEGACY_KEYS = ("content_input", "whisper_layer", "speaker_input")
LAB_COMMIT = "e8db0bd"  # the last commit of vconv that holds the model and train options below
VOCODER_LAB_COMMIT = "0993412"  # the last with the vocoder's GAN and its training on a VC model's reconstructions
ANY = object()  # a removed key's "off value" when any value is off (its switch is another key)
# model / train keys that left the package, each with its "off" value
REMOVED_MODEL_KEYS = {"reference": {"kind": "none"}, "causal": {}}
REMOVED_TRAIN_KEYS = {"speaker_dropout": 0.0, "content_twins": ANY, "content_twin_probability": ANY,
                      "speaker_consistency_weight": 0.0, "speaker_consistency_items": ANY}
PITCH_LAB_COMMIT = "1d69df6"  # the last with the decoder's Fourier basis of the contour and the grown parts' rate
REMOVED_PITCH_KEYS = {"pitch_harmonics": 0}  # flat, or in the decoder's section
REMOVED_PITCH_TRAIN_KEYS = {"grown_lr_scale": 1.0}
GAN_TUNING_KEYS = ("gan_start_step", "gan_loss", "adv_weight", "fm_weight", "disc_lr", "mpd_channels", "mrd_channels")
REMOVED_VOCODER_TRAIN_KEYS = {"adversarial": False, "vc_model": None, **{key: ANY for key in GAN_TUNING_KEYS}}
REMOVED_PARTS = {("speaker_frontend", "dvector")}  # part kinds that left: the d-vector speaker input


def is_off(value: Any, off: Any) -> bool:
    """Whether a removed key's ``value`` (as a file or a command-line override gives it) is its ``off`` value."""
    if off is ANY:
        return True
    if isinstance(value, bool) and not isinstance(off, bool):
        return False  # true / false for a number or a path is no "off" value (True == 1.0 in Python)
    if value == off:
        return True
    if isinstance(off, bool):
        return str(value).lower() in ("false", "0", "no", "off")
    if isinstance(off, (int, float)):
        try:
            return float(value) == off
        except (TypeError, ValueError):
            return False
    return off is None and str(value).lower() in ("", "null", "none")


def _drop_removed(data: Mapping[str, Any], removed: Mapping[str, Any], section: str,
                  commit: str = LAB_COMMIT) -> dict[str, Any]:
    """``data`` without the ``removed`` keys it holds at their off value; one that is on is a one-line VconvError."""
    out = dict(data)
    for key, off in removed.items():
        if key in out and not is_off(out.pop(key), off):
            raise VconvError(f"{section}.{key}: this option left vconv (measured as not helping: "
                             f"recipes/voices/MODEL_HISTORY.md); vconv at commit {commit} still reads it")
    return out


def upgrade_vocoder_train_config(data: Any) -> Any:
    """A vocoder's ``train`` section without the keys of the GAN and of ``vc_model`` (at their off values)."""
    if not isinstance(data, Mapping):
        return data
    tuned = [key for key in GAN_TUNING_KEYS if key in data]
    if tuned and "adversarial" not in data:  # the GAN's default was on: these keys mean it ran
        raise VconvError(f"train.{tuned[0]}: the vocoder's GAN left vconv (measured as not helping: "
                         f"recipes/voices/MODEL_HISTORY.md) and this config tunes it without adversarial: false, so it "
                         f"was on; vconv at commit {VOCODER_LAB_COMMIT} still reads it")
    return _drop_removed(data, REMOVED_VOCODER_TRAIN_KEYS, "train", VOCODER_LAB_COMMIT)


# the flat keys of the training critics before each had its own section (vconv.config.critics): key -> (critic, key)
FLAT_CRITIC_KEYS = {"mel_gan_weight": ("mel_gan", "weight"), "mel_fm_weight": ("mel_gan", "fm_weight"),
                    "mel_gan_start_step": ("mel_gan", "start_step"), "mel_disc_lr": ("mel_gan", "lr"),
                    "mel_disc_channels": ("mel_gan", "channels"),
                    "content_consistency_weight": ("content_consistency", "weight"),
                    "content_consistency_items": ("content_consistency", "items")}


def upgrade_train_config(data: Any) -> Any:
    """A ``train`` section without the keys that left the package (at their off values), its flat critic keys
    (``mel_gan_weight: 0.1``) as critic sections (``critics: {mel_gan: {weight: 0.1}}``), meaning what they meant: a
    critic's flat weight (``mel_gan_weight``, ``content_consistency_weight``) at 0 is that critic off, whatever its
    other keys say; its other flat keys alone (e.g. ``mel_fm_weight``) left it off, unless a section turns it on, which
    they then adjust. Flat keys given beside a section (an override on a newer config) win over its keys."""
    if not isinstance(data, Mapping):
        return data
    out = _drop_removed(data, REMOVED_TRAIN_KEYS, "train")
    out = _drop_removed(out, REMOVED_PITCH_TRAIN_KEYS, "train", PITCH_LAB_COMMIT)
    flat = {key: out.pop(key) for key in FLAT_CRITIC_KEYS if key in out}
    if not flat:
        return out
    critics = dict(out.get("critics") or {})
    given: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        name, inner = FLAT_CRITIC_KEYS[key]
        given.setdefault(name, {})[inner] = value
    for name, section in given.items():
        weight = section.get("weight")
        if weight is not None and _is_zero(weight):
            critics.pop(name, None)  # "mel_gan_weight: 0" was that critic off
        elif isinstance(critics.get(name), Mapping):
            critics[name] = {**critics[name], **section}
        elif weight is not None:  # on, with the flat keys' other defaults (mel_fm_weight was 0)
            critics[name] = {**({"fm_weight": 0.0} if name == "mel_gan" else {}), **section}
    out["critics"] = critics
    return out


def _is_zero(value: Any) -> bool:
    try:
        return float(value) == 0.0
    except (TypeError, ValueError):
        return False


def upgrade_model_config(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` (a ``model`` section) with the legacy front-end keys and the flat part keys replaced by part sections
    and the keys that left the package dropped (at their off values); else unchanged."""
    if not isinstance(data, Mapping):
        return data
    data = _drop_removed(data, REMOVED_MODEL_KEYS, "model")
    data = _drop_removed(data, REMOVED_PITCH_KEYS, "model", PITCH_LAB_COMMIT)
    if isinstance(data.get("decoder"), Mapping):
        data = {**data, "decoder": _drop_removed(data["decoder"], REMOVED_PITCH_KEYS, "model.decoder", PITCH_LAB_COMMIT)}
    for key, kind in REMOVED_PARTS:
        part = data.get(key, {"kind": data.get("speaker_input")} if key == "speaker_frontend" else {})
        if isinstance(part, Mapping) and part.get("kind") == kind:
            raise VconvError(f"model.{key}: kind {kind!r} left vconv (measured as not helping: "
                             f"recipes/voices/MODEL_HISTORY.md); vconv at commit {LAB_COMMIT} still reads it")
    data = _part_sections_of_flat_keys(data)
    if not any(key in data for key in LEGACY_KEYS):
        return data
    clash = [key for key in ("content_frontend", "speaker_frontend") if key in data]
    if clash:
        raise VconvError(f"model: give either {', '.join(LEGACY_KEYS)} (older configs) or {', '.join(clash)}, not both")
    out = {k: v for k, v in data.items() if k not in LEGACY_KEYS}
    content = data.get("content_input", "mel")
    out["content_frontend"] = {"kind": content}
    if content == "whisper":
        out["content_frontend"]["layer"] = data.get("whisper_layer", 4)
    out["speaker_frontend"] = {"kind": data.get("speaker_input", "mel")}
    return out


# the flat model keys before each core part had its own section (vconv.config.model_parts): key -> the (part, key)s it set
_SHARED_BY_PARTS = ("content_encoder", "speaker_encoder", "decoder", "adversary")
FLAT_PART_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "channels": (("content_encoder", "channels"), ("decoder", "channels")),
    "content_blocks": (("content_encoder", "blocks"),), "downsample": (("content_encoder", "downsample"),),
    "codebook_size": (("quantizer", "codebook_size"),), "vq_groups": (("quantizer", "groups"),),
    "vq_beta": (("quantizer", "beta"),), "vq_ema": (("quantizer", "ema"),), "vq_decay": (("quantizer", "decay"),),
    "vq_dead_after": (("quantizer", "dead_after"),),
    "speaker_channels": (("speaker_encoder", "channels"),), "speaker_blocks": (("speaker_encoder", "blocks"),),
    "decoder_blocks": (("decoder", "blocks"),),
    "adversary_hidden": (("adversary", "hidden"),),
    "kernel_size": tuple((part, "kernel_size") for part in _SHARED_BY_PARTS),
    "dropout": tuple((part, "dropout") for part in _SHARED_BY_PARTS),
}
# the flat booleans that turned a part on or off: key -> (part, its kind when on); off is {kind: none}
FLAT_PART_SWITCHES = {"quantize": ("quantizer", "vq"), "adversary": ("adversary", "classifier")}


def _part_sections_of_flat_keys(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` with its flat part keys (``channels: 128``, ``quantize: false``) moved into the parts' sections."""
    switches = {key: data[key] for key in FLAT_PART_SWITCHES if key in data and not isinstance(data[key], Mapping)}
    flat = {key: data[key] for key in FLAT_PART_KEYS if key in data}
    if not switches and not flat:
        return data
    out = {key: value for key, value in data.items() if key not in switches and key not in flat}
    for key, on in switches.items():
        if not isinstance(on, bool):
            raise VconvError(f"model.{key}: expected true or false, got {on!r}")
        part, kind = FLAT_PART_SWITCHES[key]
        given = out.get(part)
        if not on:
            out[part] = {"kind": "none"}
        elif not (isinstance(given, Mapping) and given.get("kind", kind) == kind):
            out[part] = {"kind": kind}
    for key, value in flat.items():
        for part, inner in FLAT_PART_KEYS[key]:
            section = out.get(part) or {"kind": DEFAULT_KINDS[part]}
            if isinstance(section, Mapping) and section.get("kind") != "none":  # else reported by its section's check
                out[part] = {**section, inner: value}
    return out
