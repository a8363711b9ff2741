"""Model bundles: the self-describing folders a trained model ships in (:mod:`vconv.bundles.format`) and
their neural vocoder (:mod:`vconv.bundles.vocoder`).

This layer sits below both training (which writes bundles) and inference (which reads them); it needs
only audio, config, front-ends, models and vocoders.
"""

from __future__ import annotations

from vconv.bundles.format import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    BundleInfo,
    load_bundle,
    read_bundle_config,
    read_bundle_info,
    save_bundle,
)
from vconv.bundles.vocoder import VOCODER_PASSES, attach_vocoder, choose_vocoder, load_bundle_vocoder, with_vocoder_passes

__all__ = ["CONFIG_FILE", "VOCODER_PASSES", "WEIGHTS_FILE", "BundleInfo", "attach_vocoder", "choose_vocoder", "load_bundle",
           "load_bundle_vocoder", "read_bundle_config", "read_bundle_info", "save_bundle", "with_vocoder_passes"]
