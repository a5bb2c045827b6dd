"""airduck: an open-source lakehouse for Python data teams."""

from airduck._version import __version__

__all__ = ["__version__"]
