"""Small helpers for the words of messages (no I/O, importable from every layer)."""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None, *, sep: bool = False) -> str:
    """`n` and `word` in the right number: ``plural(1, "row")`` is "1 row", ``plural(2, "row")`` "2 rows".

    `many` is the plural when it is not `word` + "s"; `sep` writes thousands separators (``1,000 rows``).
    """
    count = f"{n:,}" if sep else str(n)
    return f"{count} {word if n == 1 else (many or word + 's')}"


def safe_url(url: str) -> str:
    """A URL without user info, query or fragment (where tokens and passwords hide); not a URL: as it is."""
    from urllib.parse import urlsplit

    if "://" not in url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def is_id(text: str) -> bool:
    """Whether `text` is a snapshot id: ASCII digits only (``str.isdigit`` also takes '²', which ``int`` refuses,
    and other scripts' digits)."""
    return text.isascii() and text.isdigit()
