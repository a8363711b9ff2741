"""`vconv evaluate` end to end through the CLI: a tiny model on held-out fixture voices, all judges."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vconv.cli import app
from vconv.data.prepare import prepare_corpus


@pytest.mark.slow
def test_cli_evaluate_writes_json_markdown_and_plots(tiny_bundle, corpus_dir, tmp_path):
    prepare_corpus(corpus_dir, tmp_path / "m", test_speakers=["flite_slt", "flite_rms", "espeak_f3"])
    out = tmp_path / "eval"
    args = ["evaluate", "--model", str(tiny_bundle), "--manifest", str(tmp_path / "m" / "test.jsonl"), "-o", str(out),
            "--sources-per-pair", "1", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    kinds = {row["system"] if "system" in row else row.get("kind") for row in data["rows"]}
    assert {"converted", "unmatched", "source", "ground_truth", "copy_synthesis"} <= kinds
    assert len(data["pairs"]) == 6  # 3 speakers -> 6 ordered pairs, 1 source each
    # the model's own output (matching off) is its own row, from the same conversions: one file per pair
    assert sorted(p.name for p in (out / "unmatched").iterdir()) == sorted(p.name for p in (out / "converted").iterdir())
    assert all(pair["unmatched"] for pair in data["pairs"])
    assert data["summary"]["unmatched"]["n"] == data["summary"]["converted"]["n"] == 6
    summary = (out / "summary.md").read_text()
    assert "| unmatched |" in summary and "copy_synthesis" in summary.replace(" ", "_")
    assert (out / "plots" / "similarity.png").stat().st_size > 1000
    assert (out / "plots" / "embeddings.png").stat().st_size > 1000
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "already exists" in again.output


def test_cli_evaluate_needs_exactly_one_input(tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "-o", str(tmp_path / "e")])
    assert result.exit_code == 1 and "exactly one of --manifest" in result.output
