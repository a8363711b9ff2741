"""``python -m vconv`` runs the CLI."""

from vconv.cli import main

main()
