"""What each corpus source needs from Debian and PyPI, and installing what is missing.

``build_corpus.py`` calls :func:`ensure` before building: it checks every requirement of the chosen
sources (``dpkg-query`` for apt packages, installed distributions for pip ones) and installs what is
missing with ``apt-get install -y`` (as root; otherwise it prints the command and stops) and
``python -m pip install`` into the running interpreter. ``--no-install`` only reports.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

import corpus_bass
import corpus_fillets
import corpus_fotaq
import neural_tts
from corpus_common import log

FESTIVAL_INTL = ["festvox-italp16k", "festvox-itapc16k", "festvox-suopuhe-lj", "festvox-suopuhe-mv", "festvox-ca-ona-hts",
                 "festvox-czech-dita", "festvox-czech-krb", "festvox-czech-machac", "festvox-czech-ph"]


@dataclass(frozen=True)
class Needs:
    apt: list[str] = field(default_factory=list)
    pip: list[str] = field(default_factory=list)


REQUIREMENTS: dict[str, Needs] = {
    "fotaq": Needs(apt=corpus_fotaq.APT_PACKAGES),
    "fotaq-minor": Needs(apt=corpus_fotaq.APT_PACKAGES, pip=["resemblyzer"]),  # the same-actor check's embedder
    "fillets": Needs(apt=corpus_fillets.APT_PACKAGES),
    "bass": Needs(apt=corpus_bass.APT_PACKAGES, pip=corpus_bass.PIP_PACKAGES),
    "flite": Needs(apt=["flite"]),
    "festival": Needs(apt=["festival", "festvox-kdlpc16k"]),
    # the Czech and Italian voices read the game's script lines in their language (corpus_tts)
    "festival-intl": Needs(apt=["festival", *FESTIVAL_INTL, *corpus_fillets.APT_PACKAGES[:1]]),
    "espeak": Needs(apt=["espeak-ng"]),
    "piper": Needs(pip=neural_tts.PIP_PACKAGES["piper"]),
    "kokoro": Needs(apt=["espeak-ng"], pip=neural_tts.PIP_PACKAGES["kokoro"]),
    "augment": Needs(pip=["pyworld-prebuilt"]),
}


def apt_missing(packages: list[str]) -> list[str]:
    if not packages:
        return []
    if not shutil.which("dpkg-query"):  # not Debian-like: nothing to check or install with, the user's call
        log(f"[install] no dpkg-query here: cannot check the apt packages {' '.join(packages)}; "
            "make sure their equivalents are installed")
        return []
    missing = []
    for pkg in packages:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if out.returncode != 0 or "install ok installed" not in out.stdout:
            missing.append(pkg)
    return missing


def pip_missing(packages: list[str]) -> list[str]:
    missing = []
    for pkg in packages:
        name = pkg.split("=")[0].split("<")[0].split(">")[0].strip()
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(pkg)
    return missing


def missing_for(sources: list[str]) -> Needs:
    """Every apt / pip requirement of ``sources`` that is not installed (deduplicated, in order)."""
    apt = list(dict.fromkeys(p for s in sources for p in REQUIREMENTS[s].apt))
    pip = list(dict.fromkeys(p for s in sources for p in REQUIREMENTS[s].pip))
    return Needs(apt=apt_missing(apt), pip=pip_missing(pip))


def install_commands(needs: Needs) -> list[list[str]]:
    commands = []
    if needs.apt:
        commands.append(["apt-get", "install", "-y", "--no-install-recommends", *needs.apt])
    if needs.pip:
        commands.append([sys.executable, "-m", "pip", "install", "-q", *needs.pip])
    return commands


def ensure(sources: list[str], install: bool = True) -> None:
    """Install what ``sources`` miss, or stop with the exact commands when that is not possible."""
    needs = missing_for(sources)
    commands = install_commands(needs)
    if not commands:
        return
    shown = "; ".join(" ".join(c) for c in commands)
    if not install:
        raise SystemExit(f"missing requirements; run: {shown}")
    if needs.apt and os.geteuid() != 0:
        raise SystemExit(f"missing apt packages and not root; run as root: {' '.join(commands[0])}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in commands:
        log(f"[install] {' '.join(command)}")
        ok = subprocess.run(command, env=env).returncode == 0
        if not ok and command[0] == "apt-get":
            # a fresh machine has no package lists yet: refresh them once and retry
            subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
            ok = subprocess.run(command, env=env).returncode == 0
        if not ok:
            raise SystemExit(f"[install] failed: {' '.join(command)}")
