"""The package version, in a module of its own so anything can import it without importing vconv's API."""

__version__ = "0.1.0"
