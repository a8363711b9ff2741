"""What a conversion is asked to do besides its model and target: one settings object, validated once.

:class:`ConversionSettings` is what ``vconv.load`` takes and what every command that converts (convert, stream,
serve, evaluate, voice) builds from its options: the vocoder and its post-processing, target matching, precision,
the voice fit, the pitch controls and the device. Each value is checked on construction, so a typo fails before a
model loads, in one line naming the option as the caller knows it (``--target-match`` on the command line,
``target_match`` in Python: :data:`CLI_NAMES`).

What needs the model itself (a pitch shift on a model without the pitch path) is checked by the converter.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Mapping

#: how the command line names each setting
CLI_NAMES = {"vocoder": "--vocoder", "fast": "--fast", "target_match": "--target-match", "precision": "--precision",
             "fit_steps": "--fit-voice", "pitch_shift": "--pitch-shift", "pitch_register": "--pitch-register",
             "harmonics": "--harmonics", "enhance": "--enhance", "device": "--device"}
#: the stream's ``recent_frontend`` (vconv.inference.stream_content): while short of time, always, never; here, where
#: the command line can check it without importing torch
RECENT_FRONTEND_MODES = ("auto", "on", "off")


# A default that changed keys outputs by the one before it: outputs made under the old default keep counting as done
# for it only (``enhance`` was ``off`` until the quick room estimate made ``auto`` the default).
KEY_BASELINES = {"enhance": "off"}


@dataclass(frozen=True)
class ConversionSettings:
    """The conversion's settings (see the module docstring), checked and normalised on construction.

    ``vocoder``: a registered vocoder's name (:func:`vconv.vocoders.get_vocoder`; the bundle's own trained one by its
    kind, e.g. ``vocos``), or None for the bundle's own; ``fast``: the vocoder without its post-processing passes;
    ``target_match``: ``meanstd``, ``mean`` or ``off`` (:mod:`vconv.inference.target_match`); ``precision``: ``auto``,
    ``float32`` or ``bfloat16`` (:mod:`vconv.inference.precision`); ``fit_steps``: Adam steps fitting the target's
    embedding (:mod:`vconv.inference.voice_fit`); ``pitch_shift`` (semitones, ±24) and ``pitch_register``
    (``target`` or ``source``): a pitch-path model's controls (:mod:`vconv.models.contour`); ``harmonics``: the
    harmonic excitation (:mod:`vconv.vocoders.harmonics`; None: on for a model with the pitch path); ``enhance``: the
    room's late reverberation and noise floor taken out of the source and the references first (:mod:`vconv.audio.enhance`:
    ``off``, ``auto`` (default) for the recordings its estimates place in a room, or ``on`` for all; ``on`` costs words on clean ones); ``device``: where
    the networks run. ``names``: how errors name each setting (:data:`CLI_NAMES` for a command; default the field
    names).
    """

    vocoder: str | None = None
    fast: bool = False
    target_match: str = "meanstd"
    precision: str = "auto"
    fit_steps: int = 0
    pitch_shift: float = 0.0
    pitch_register: str = "target"
    harmonics: bool | None = None
    enhance: str = "auto"
    device: str = "cpu"
    names: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        from vconv.audio.enhance import check_mode as check_enhance
        from vconv.inference.devices import check_device
        from vconv.inference.precision import check_precision
        from vconv.inference.target_match import check_mode
        from vconv.inference.voice_fit import check_fit_steps
        from vconv.models.contour import check_pitch_shift, check_register_mode
        from vconv.vocoders import check_vocoder_name

        name = lambda key: self.names.get(key, key)  # noqa: E731
        set_ = lambda key, value: object.__setattr__(self, key, value)  # noqa: E731  (frozen: normalised once here)
        set_("target_match", check_mode(self.target_match, name("target_match")))
        set_("precision", check_precision(self.precision, name("precision")))
        set_("fit_steps", check_fit_steps(self.fit_steps, name("fit_steps")))
        set_("pitch_shift", check_pitch_shift(self.pitch_shift, name("pitch_shift")))
        set_("pitch_register", check_register_mode(self.pitch_register, name("pitch_register")))
        if self.vocoder is not None:
            check_vocoder_name(self.vocoder, name("vocoder"))
        set_("device", str(check_device(self.device)))
        set_("fast", bool(self.fast))
        set_("harmonics", None if self.harmonics is None else bool(self.harmonics))
        set_("enhance", check_enhance(self.enhance, name("enhance")))

    def key(self) -> str:
        """What an output depends on among the settings: each one not at its default (for a default that changed, not at
        the old one: :data:`KEY_BASELINES`), ``name=value`` joined by ``;``
        (the corpus engine keys finished outputs by it). A field a later vconv adds at a default that keeps the
        earlier behaviour leaves every key as it was, so a corpus converted before it still counts as done."""
        defaults = {f.name: f.default_factory() if f.default is MISSING and f.default_factory is not MISSING else f.default
                    for f in fields(self)}
        defaults.update(KEY_BASELINES)
        changed = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                   if f.compare and getattr(self, f.name) != defaults[f.name]]
        return ";".join(changed)
