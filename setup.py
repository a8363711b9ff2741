"""The package list, found rather than written out (a hand-written list once missed two sub-packages, and the
installed wheel could not convert). Everything else is in pyproject.toml; the top-level pretrained/ folder
ships inside the package as the data package ``vconv._bundles`` (see [tool.setuptools.package-dir] there)."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["vconv", "vconv.*"]), "vconv._bundles"])
