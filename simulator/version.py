"""The version of sim, in one place."""

__version__ = "0.1.0"
