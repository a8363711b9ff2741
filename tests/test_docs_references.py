"""Docs name only what exists: every vconv path, module and name in README.md, docs/, the recipe READMEs,
docstrings and ``--help`` texts resolves (a class or function at the module the text names, not merely
imported there; a package may re-export its parts)."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATH = re.compile(r"(?<![\w/.])((?:vconv|docs|recipes|benchmarks|tests|pretrained|examples)/[\w./-]*\w)")
MODULE = re.compile(r"(?<![\w.])(vconv(?:\.[A-Za-z_]\w*)+)")
RELATIVE = re.compile(r"`([a-z_]+/[\w/]*\w\.(?:py|md|yaml|json))`")


def _texts() -> list[tuple[str, str]]:
    texts = [(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8"))
             for p in [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("recipes/*/README.md"), ROOT / "pretrained/README.md"]
             if p.is_file()]
    for path in sorted((ROOT / "vconv").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 1)}"
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and ast.get_docstring(node):
                texts.append((where, ast.get_docstring(node) or ""))
            if isinstance(node, ast.keyword) and node.arg == "help" and isinstance(node.value, ast.Constant):
                texts.append((where, str(node.value.value)))
    return texts


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            owner = obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                owner, obj = obj, getattr(obj, attr)
        except AttributeError:
            return False
        if inspect.isclass(obj) or inspect.isfunction(obj):
            return obj.__module__ == owner.__name__ or inspect.isclass(owner) or hasattr(owner, "__path__")
        return True
    return False


def _path_exists(ref: str) -> bool:
    if re.match(r"recipes/\w+/(data|exp)\b", ref):
        return True  # the folders a recipe writes
    return (ROOT / ref).exists() or (ROOT / "vconv" / ref).exists() or any((ROOT / "vconv").glob(f"*/{ref}")) \
        or any(ROOT.glob(f"recipes/*/{ref}"))


def test_every_named_path_module_and_name_exists():
    dead = []
    for where, text in _texts():
        dead += [f"{where}: {m.group(1)}" for m in PATH.finditer(text) if not _path_exists(m.group(1).rstrip("."))]
        dead += [f"{where}: {m.group(1)}" for m in RELATIVE.finditer(text) if not _path_exists(m.group(1))]
        dead += [f"{where}: {m.group(1)}" for m in MODULE.finditer(text)
                 if not m.group(1).startswith("vconv._bundles") and not _resolves(m.group(1).rstrip("."))]
    assert not dead, "dead references (fix the text or the name):\n" + "\n".join(dead)


def test_the_architecture_lists_the_layers_of_the_import_contract_in_order():
    """docs/ARCHITECTURE.md's "Top to bottom" list names every layer of import-linter's contract, in its order."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    contract = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    text = (root / "docs" / "ARCHITECTURE.md").read_text()
    listed = text[text.index("bottom: `__main__`"):].split(".", 1)[0]
    positions = []
    for layer in contract:
        for name in (n.strip().removeprefix("vconv.") for n in layer.split("|")):
            assert f"`{name}`" in listed, f"layer {name} is missing from ARCHITECTURE.md's list"
            positions.append(listed.index(f"`{name}`"))
    assert positions == sorted(positions), "ARCHITECTURE.md lists the layers in another order than pyproject.toml"


def _table_cells(text: str) -> list[str]:
    return [cell.strip() for line in text.splitlines() if line.lstrip().startswith("|")
            for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def test_the_readme_is_a_users_page():
    """README.md: at most 200 lines and no table cell over 400 characters (history lives in docs/BENCHMARKS.md and
    recipes/voices/MODEL_HISTORY.md); its test command is exactly what .ci/run runs."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    longest = max(_table_cells(text), key=len)
    assert len(longest) <= 400, longest[:120]
    ci = (ROOT / ".ci" / "run").read_text()
    command = ci.strip().splitlines()[-1]
    assert command.startswith("python3 -m venv .venv") and command in text


REMOVED = ("model.reference", "speaker_dropout", "content_twins", "kind: dvector", "model.causal", "stream_twin",
           "speaker_consistency", "attach_stream_twin", "TWINS=")


def test_the_docs_do_not_offer_the_options_that_left_the_package():
    """The lab options removed in House III are described only in recipes/voices/MODEL_HISTORY.md (with the commit that
    has their code), not offered by the README, docs/, the recipe READMEs, scripts or configs."""
    files = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("recipes/*/README.md"), *ROOT.glob("recipes/*/*.sh"),
             *ROOT.glob("recipes/*/conf/**/*.yaml")]
    found = [f"{p.relative_to(ROOT)}: {name}" for p in files for name in REMOVED if name in p.read_text(encoding="utf-8")]
    assert not found, found
    history = (ROOT / "recipes" / "voices" / "MODEL_HISTORY.md").read_text(encoding="utf-8")
    assert "the commit before House III's lab removal" in history


def test_recipes_find_the_venv_and_keep_the_shipped_bundle():
    """Every recipe script runs vconv with ${PYTHON:-...}: the repository's .venv/bin/python when it exists, else python3
    (the README's set-up does not activate the venv for them); the voices recipe's stage 6 writes under EXP by default."""
    for script in sorted(ROOT.glob("recipes/*/*.sh")):
        text = script.read_text()
        if "$VCONV" not in text and "$PYTHON" not in text:
            continue
        assert re.search(r'^PYTHON=\$\{PYTHON:-.*\.venv/bin/python.*python3', text, re.M), script
        assert "VCONV=${VCONV:-$PYTHON -m vconv}" in text, script
    assert "PRETRAINED=${PRETRAINED:-$EXP/pretrained}" in (ROOT / "recipes" / "voices" / "run.sh").read_text()


def test_the_page_labels_its_similarities_as_the_models_own_encoder():
    """The web page never shows a bare "Similarity to target": each similarity is labelled as the model's own speaker
    encoder's, with a note that it is not an independent judge."""
    page = (ROOT / "vconv" / "serve" / "static" / "index.html").read_text(encoding="utf-8")
    labels = re.findall(r"<dt>([^<]*)</dt>\s*<dd id=\"sim-", page)
    assert len(labels) == 3 and all(label.startswith("Own-encoder") for label in labels), labels
    assert "not an independent judge" in page
