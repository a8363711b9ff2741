"""The conversion path stays lean: what it imports, and a bundle's networks built once with weights assigned."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from vconv.skeleton import assign_weights, parameters_on_meta

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import sys
from vconv.cli import main
sys.argv = ["vconv", "convert", {src!r}, "--target", {ref!r}, "-o", {out!r}, "--force", *{extra!r}]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("scipy", "librosa", "numba", "sympy", "pydantic", "yaml")
               or m.startswith("torch._dynamo"))
print("HEAVY", ",".join(heavy))
"""


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--fit-voice", "2", "--no-cache"]], ids=["plain", "fitted"])
def test_convert_imports_neither_scipy_nor_librosa(tmp_path, extra):
    """A whole `vconv convert` of the shipped example with the shipped bundle, in a fresh interpreter; with a voice
    fit too (a torch optimiser would import torch._dynamo: 1.5 s of a fitted conversion's start). pydantic is typer
    0.29's per-option validation (0.08 s of every start), kept out by pyproject's pin; yaml reads only recipes' configs
    (~11 ms of a start: a bundle's config is JSON)."""
    code = PROBE.format(src=str(ROOT / "examples/source.wav"), ref=str(ROOT / "examples/target.wav"),
                        out=str(tmp_path / "out.wav"), extra=extra)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out.wav").stat().st_size > 10_000
    heavy = proc.stdout.split("HEAVY", 1)[1].strip()
    assert heavy == "", f"the convert path imported {heavy}"


GC_PROBE = """
import gc, sys
import vconv.cli.common as common
full, at_release = [], []
gc.callbacks.append(lambda phase, info: phase == "start" and info["generation"] == 2 and full.append(1))
release = common.release_collection
common.release_collection = lambda: at_release.append((len(full), gc.isenabled())) or release()
from vconv.cli import main
sys.argv = ["vconv", *{args!r}]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print("GC", at_release, gc.isenabled())
"""


@pytest.mark.parametrize("command", ["convert", "info"])
def test_a_conversion_start_holds_the_garbage_collector_until_its_model_is_loaded(tiny_bundle, tmp_path, command):
    """`vconv convert` makes no full collection over torch's import (three of them were 130-145 ms of the example's
    conversion): the collector is off until its model is loaded, then on; any other command keeps it on throughout."""
    src = tmp_path / "s.wav"
    sf.write(src, np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32), 16000)
    args = ["info", str(src)] if command == "info" else ["convert", str(src), "-t", str(src), "-o", str(tmp_path / "o.wav"),
                                                        "-m", str(tiny_bundle), "--no-cache"]
    proc = subprocess.run([sys.executable, "-c", GC_PROBE.format(args=args)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    at_release, enabled_at_exit = proc.stdout.split("GC", 1)[1].rsplit(" ", 1)
    assert enabled_at_exit.strip() == "True"
    # convert: released once, with no full collection before it and the collector off until then; info: never held
    assert at_release.strip() == ("[(0, False)]" if command == "convert" else "[]")


def test_help_imports_no_torch():
    code = ("import sys\nfrom vconv.cli import main\nsys.argv=['vconv','--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nprint('TORCH', 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.rstrip().endswith("TORCH False"), proc.stdout[-500:] + proc.stderr[-500:]


def _record_initialisers(monkeypatch) -> list[bool]:
    """Wrap torch.nn.init's fills; the list gets ``tensor.is_meta`` for every call."""
    seen: list[bool] = []
    for name in ("uniform_", "normal_", "trunc_normal_", "zeros_", "ones_", "constant_", "kaiming_uniform_",
                 "kaiming_normal_", "xavier_uniform_", "xavier_normal_", "orthogonal_"):
        original = getattr(torch.nn.init, name)

        def wrapper(tensor, *args, _original=original, **kwargs):
            seen.append(bool(tensor.is_meta))
            return _original(tensor, *args, **kwargs)

        monkeypatch.setattr(torch.nn.init, name, wrapper)
    return seen


def test_loading_a_bundle_initialises_no_weight_it_overwrites(tiny_bundle, monkeypatch):
    from vconv.bundles import load_bundle
    from vconv.models.vc import VoiceConversionModel

    seen = _record_initialisers(monkeypatch)
    builds: list[int] = []
    original_init = VoiceConversionModel.__init__

    def counting_init(self, *args, **kwargs):
        builds.append(1)
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(VoiceConversionModel, "__init__", counting_init)
    model, _, _ = load_bundle(tiny_bundle)
    assert len(builds) == 1, "the model is built once"
    assert seen and all(seen), f"{seen.count(False)} of {len(seen)} initialisers filled real weights"
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_parameters_on_meta_keeps_buffers_and_only_this_thread():
    import threading

    with parameters_on_meta():
        layer = torch.nn.Linear(3, 2)
        norm = torch.nn.BatchNorm1d(2)  # running statistics are buffers: real
        other: list[torch.nn.Module] = []
        worker = threading.Thread(target=lambda: other.append(torch.nn.Linear(3, 2)))
        worker.start()
        worker.join()
    assert layer.weight.is_meta and layer.bias.is_meta and layer.weight.requires_grad
    assert not norm.running_mean.is_meta and torch.equal(norm.running_var, torch.ones(2))
    assert not other[0].weight.is_meta, "another thread's modules are left alone"
    assert not torch.nn.Linear(3, 2).weight.is_meta, "the hook is gone after the block"


def test_assign_weights_takes_the_tensors_and_refuses_mismatches():
    from vconv.errors import VconvError

    with parameters_on_meta():
        layer = torch.nn.Linear(3, 2)
    state = {"weight": torch.arange(6.0).view(2, 3), "bias": torch.zeros(2)}
    assign_weights(layer, state, "toy")
    assert layer.weight.data_ptr() == state["weight"].data_ptr() and layer.weight.requires_grad
    with parameters_on_meta():
        other = torch.nn.Linear(3, 2)
    with pytest.raises(VconvError, match=r"toy: weights do not match .*weight: \(3, 2\) in the file, \(2, 3\)"):
        assign_weights(other, {"weight": torch.zeros(3, 2), "bias": torch.zeros(2)}, "toy")
