"""Configuration dataclasses and their YAML round trip.

Three configs describe a vconv run:

* :class:`FeatureConfig` - how audio becomes a log-mel spectrogram. It travels with every feature file,
  model and vocoder, so the mel settings can never drift between training and conversion.
* :class:`ModelConfig` - the sizes of the content encoder, quantizer, speaker encoder, decoder, adversary.
* :class:`TrainConfig` - what the trainer needs; the data paths have no defaults on purpose.

Configs are plain dataclasses (no global mutable hparams dict). ``load_yaml`` / ``save_yaml`` convert to and
from YAML; ``apply_overrides`` applies ``section.key=value`` strings from the command line.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from vconv.errors import VconvError
from vconv.fileio import write_text_atomic

T = TypeVar("T")


class ConfigSection:
    """Base of every config dataclass (features, model, train, vocoder): the plain-dict round trip.

    ``from_dict`` refuses unknown keys, so a typo in a YAML file or an override is an error.
    """

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        return from_dict(cls, data)


@dataclass(frozen=True)
class FeatureConfig(ConfigSection):
    """Log-mel front end.

    Defaults are those of the shipped model: 16 kHz, n_fft 1024, hop 256 (16 ms), win 1024, 80 mels,
    0-8 kHz. ``log_floor`` is added before the natural log so that silence stays finite.
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = 8000.0
    log_floor: float = 1e-5

    def __post_init__(self) -> None:
        if self.win_length > self.n_fft:
            raise VconvError(f"feature config: win_length {self.win_length} > n_fft {self.n_fft}")
        top = self.sample_rate / 2
        if self.fmax is not None and not (self.fmin < self.fmax <= top):
            raise VconvError(f"feature config: need fmin < fmax <= sample_rate/2, got {self.fmin}, {self.fmax}")


    def differences(self, other: "FeatureConfig") -> list[str]:
        """Human-readable ``name: mine vs theirs`` for each field that differs."""
        return [
            f"{f.name}: {getattr(self, f.name)!r} vs {getattr(other, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]


@dataclass
class ModelConfig(ConfigSection):
    """Sizes of the voice-conversion model (AdaIN-VC / VQVC lineage).

    ``downsample`` gives one temporal stride per content-encoder block; the decoder derives its
    up-sampling from the same list, so the two can never disagree.
    """

    n_mels: int = 80
    channels: int = 256
    content_blocks: int = 4
    downsample: list[int] = field(default_factory=lambda: [1, 2, 1, 1])
    code_dim: int = 64
    quantize: bool = True  # false = no VQ bottleneck (ablation): the content code passes through
    codebook_size: int = 256
    vq_beta: float = 0.25
    vq_ema: bool = True
    vq_decay: float = 0.99
    vq_dead_after: int = 200  # steps without use before a code is re-initialised
    vq_groups: int = 1  # codes per frame (product quantisation of code_dim into equal parts, one codebook)
    speaker_channels: int = 256
    speaker_blocks: int = 4
    speaker_dim: int = 128
    decoder_blocks: int = 4
    kernel_size: int = 5
    dropout: float = 0.0
    adversary: bool = True
    adversary_hidden: int = 256
    n_speakers: int = 0  # classifier classes; set from the training manifest


@dataclass
class TrainConfig(ConfigSection):
    """What the trainer needs. ``train_manifest`` and ``run_dir`` are required: no hidden default paths."""

    train_manifest: str
    run_dir: str
    valid_manifest: str | None = None
    features_dir: str | None = None  # where `vconv extract` wrote features; None = compute on the fly
    steps: int = 10000
    batch_size: int = 16
    segment_frames: int = 128
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 500
    grad_clip: float = 1.0
    recon_weight: float = 1.0
    vq_weight: float = 1.0
    adversary_weight: float = 0.1
    adversary_ramp_steps: int = 2000
    perturb_content: bool = True  # timbre-perturb the content path's input (vconv.perturb)
    # P(speaker) ∝ utterances**power per batch item: 1 = every utterance equally likely (big speakers
    # dominate), 0 = every speaker equally likely; 0.5 lets small speakers be seen without overfitting them
    speaker_sampling_power: float = 1.0
    bf16: bool = False  # CPU bf16 autocast; on CUDA this means bf16 mixed precision
    seed: int = 0
    log_every: int = 50
    valid_every: int = 500
    save_every: int = 500
    keep_checkpoints: int = 2
    num_workers: int = 0
    threads: int | None = None


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys are an error (typos must not pass silently)."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise VconvError(f"{cls.__name__}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(cls)
    values = {key: _as_number(cls.__name__, key, value, hints[key]) for key, value in data.items()}
    try:
        return cls(**values)
    except TypeError as exc:  # a required field is missing
        raise VconvError(f"{cls.__name__}: {exc}") from None


def _as_number(owner: str, key: str, value: Any, hint: Any) -> Any:
    """A string given for a numeric field, as the number it spells.

    YAML 1.1 reads ``1e-5`` (no dot) as a *string*, so ``lr: 1e-5`` or ``train.lr=1e-5`` would otherwise
    reach the optimiser as text and fail there with a traceback.
    """
    allowed = typing.get_args(hint) or (hint,)
    if not isinstance(value, str) or str in allowed or not ({int, float} & set(allowed)):
        return value
    try:
        number = float(value)
    except ValueError:
        raise VconvError(f"{owner}.{key}: expected a number, got {value!r}") from None
    if float in allowed:
        return number
    if not number.is_integer():
        raise VconvError(f"{owner}.{key}: expected a whole number, got {value!r}")
    return int(number)  # "2e3" -> 2000


def save_yaml(data: Mapping[str, Any], path: str | Path) -> None:
    """Write ``data`` as YAML atomically (temporary file + rename)."""
    write_text_atomic(path, yaml.safe_dump(_plain(data), sort_keys=False))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with a one-line error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise VconvError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise VconvError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VconvError(f"{path}: expected a mapping at the top level")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict; values are parsed as YAML (``3``, ``true``, ``[1,2]``)."""
    out = _deep_copy(data)
    for item in overrides:
        if "=" not in item:
            raise VconvError(f"override {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise VconvError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def _plain(data: Any) -> Any:
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return _plain(asdict(data))
    if isinstance(data, Mapping):
        return {str(k): _plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_plain(v) for v in data]
    return data


PACKAGED_CONFIGS = Path(__file__).parent / "configs"


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A YAML path, or the name of a config shipped in ``vconv/configs`` (``debug``, ``base``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = PACKAGED_CONFIGS / f"{name_or_path}.yaml"
    if packaged.is_file():
        return packaged
    names = ", ".join(sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml")))
    raise VconvError(f"{name_or_path}: config not found (neither a file nor a packaged config: {names})")


def load_run_config(
    name_or_path: str | Path | None, overrides: list[str] | None = None
) -> tuple[FeatureConfig, ModelConfig, TrainConfig]:
    """Read ``features`` / ``model`` / ``train`` sections, apply dotted overrides, build the dataclasses.

    A YAML may start from another one with a top-level ``base:`` key: a name without ``.yaml``/``.yml``
    (``debug``) is a packaged config, anything else a path relative to the YAML's own folder
    (``../base.yaml``). The base is loaded first (recursively) and the file's sections are deep-merged
    over it, so an ablation is a few lines (``base: ../base.yaml`` + ``model: {adversary: false}``).
    """
    data = _load_with_base(resolve_config_path(name_or_path)) if name_or_path else {}
    data = apply_overrides(data, overrides or [])
    unknown = sorted(set(data) - {"features", "model", "train"})
    if unknown:
        raise VconvError(f"unknown config section(s): {', '.join(unknown)}; expected features, model, train")
    features = FeatureConfig.from_dict(data.get("features") or {})
    model = ModelConfig.from_dict(data.get("model") or {})
    if model.n_mels != features.n_mels:
        raise VconvError(f"model.n_mels {model.n_mels} differs from features.n_mels {features.n_mels}")
    train = TrainConfig.from_dict(data.get("train") or {})
    return features, model, train


def _load_with_base(path: Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """``load_yaml`` plus ``base:`` inheritance (see :func:`load_run_config`); cycles are an error."""
    path = path.resolve()
    if path in _chain:
        raise VconvError(f"{path}: config inherits from itself via base: ({' -> '.join(p.name for p in (*_chain, path))})")
    data = load_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base.strip():
        raise VconvError(f"{path}: base must be a config name or a relative YAML path, got {base!r}")
    if Path(base).suffix in (".yaml", ".yml"):
        base_path = path.parent / base
        if not base_path.is_file():
            raise VconvError(f"{path}: base config {base_path} not found")
    else:
        base_path = PACKAGED_CONFIGS / f"{base}.yaml"
        if not base_path.is_file():
            names = ", ".join(sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml")))
            raise VconvError(f"{path}: base {base!r} is not a packaged config ({names}); use a path ending in .yaml")
    return _deep_merge(_load_with_base(base_path, (*_chain, path)), data)


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings merge key by key, anything else (lists too) is replaced.

    An empty section (``model:`` with nothing under it, i.e. ``None``) keeps the base's section.
    """
    out = _deep_copy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        elif value is None and isinstance(out.get(key), dict):
            continue
        else:
            out[key] = _deep_copy(value)
    return out
