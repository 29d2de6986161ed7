"""The version of orsight (one place: the package, the CLI and the audit log read it)."""
__version__ = "0.1.0"
