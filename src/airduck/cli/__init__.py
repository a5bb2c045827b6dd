"""The airduck command line."""

from airduck.cli.app import app, main

__all__ = ["app", "main"]
