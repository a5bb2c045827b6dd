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


#: the prefix of the branches of write-audit-publish runs (`run --atomic`, an atomic Airflow DAG run)
RUN_BRANCH_PREFIX = "run-"


def run_branch(run_id: str) -> str:
    """The branch of an orchestrated run (an Airflow DAG run's id): ``run-`` and the id in lower case, each run of
    characters other than a-z, 0-9, _ and - made one '-', cut to a branch name's 48 characters with a hash of the
    whole id when longer. The same id always gives the same name (a retried task finds its run's branch)."""
    import hashlib
    import re

    text = re.sub(r"[^a-z0-9_-]+", "-", run_id.lower()).strip("-_") or "x"
    name = f"{RUN_BRANCH_PREFIX}{text}"
    if len(name) > 48:
        name = f"{name[:39].rstrip('-_')}-{hashlib.sha1(run_id.encode()).hexdigest()[:8]}"
    return name


def is_id(text: str) -> bool:
    """Whether `text` is a snapshot id: ASCII digits only (``str.isdigit`` also takes '²', which ``int`` refuses,
    and other scripts' digits)."""
    return text.isascii() and text.isdigit()
