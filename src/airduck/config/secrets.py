"""Keeping secrets out of output: every message, log line and record passes through `redact`.

The one place that knows what a secret looks like:

- DSNs are parsed here (:func:`parse_dsn`): the URL form (``postgresql://user:pass@host/db``, also with a
  password that holds ``/ @ : ? #`` or spaces unencoded, and ``?password=``) and libpq's key=value form
  (``password='it''s'`` with backslash escapes). :func:`normalize_dsn` percent-encodes a URL password
  that drivers would mis-parse, so what reaches psycopg or DuckDB is never split into pieces.
- :func:`register_secret` remembers a value in every form it may be printed in (as written,
  percent-encoded and decoded, quoted and escaped for libpq, SQL, JSON and Python); :func:`register_dsn`
  adds the pieces of a DSN password that a driver's error could echo.
- :func:`redact` masks them all with one compiled alternation (longest first, rebuilt when the set
  changes) plus linear patterns for DSNs and ``password=`` pairs nobody registered. Each pattern is
  bounded so the whole is linear in the length of the text.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from urllib.parse import quote, quote_plus, unquote

MASK = "***"
#: shorter values are not registered (they would mask ordinary words)
MIN_SECRET = 4

_lock = threading.Lock()
_secrets: set[str] = set()
_known: list[str] | None = None  # the secrets, longest first (rebuilt when the set changes)

# -- parsing DSNs -------------------------------------------------------------------------------
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$", re.S)
_ONE_HOST = r"(?:\[[0-9A-Fa-f:.]*\]|[\w.%~-]*)(?::\d*)?"
#: what follows the `@` that ends the user info: host[:port][,host[:port]...] then the path, query or end
_HOST = re.compile(rf"{_ONE_HOST}(?:,{_ONE_HOST})*(?=[/?#]|$)")
_QUERY_PASSWORD = re.compile(r"[?&]password=([^&#]*)", re.I)
_KV_PAIR = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.)*'|(?:[^\s'\\]|\\.)+)", re.S)
#: characters a URL's user info may hold as they are (RFC 3986 unreserved + sub-delims); the rest is encoded
_USERINFO_OK = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=")
_PCT = re.compile(r"%[0-9A-Fa-f]{2}")
#: characters at which a driver that mis-parses a DSN splits the password
_SPLIT = re.compile(r"[/@:?#&=\s'\"\\,;%]+")


@dataclass(frozen=True)
class Dsn:
    """A DSN's password as written in the text (`written`, with its span) and as the server sees it."""

    password: str | None
    written: str | None = None
    start: int = -1
    end: int = -1
    form: str = ""  # "url", "query" or "kv"


def _strip_prefix(dsn: str) -> tuple[str, int]:
    for prefix in ("postgresql:", "postgres:"):
        if dsn.startswith(prefix) and not dsn.startswith(prefix + "//"):
            return dsn[len(prefix):], len(prefix)
    return dsn, 0


def parse_dsn(dsn: str | None) -> Dsn:
    """Find the password of a PostgreSQL DSN (URL or key=value form). Not a validator: odd input gives None.

    In the URL form the user info ends at the last ``@`` that is followed by a host (so a password may
    hold ``@``, ``/``, ``:`` … unencoded); ``?password=`` in the query counts too.
    """
    if not dsn:
        return Dsn(None)
    m = _URL.match(dsn)
    if m:
        base = m.start("rest")
        rest = m.group("rest")
        at = -1
        pos = rest.rfind("@")
        while pos >= 0:
            if _HOST.match(rest, pos + 1):
                at = pos
                break
            pos = rest.rfind("@", 0, pos)
        if at >= 0:
            user, sep, written = rest[:at].partition(":")
            if sep:
                start = base + len(user) + 1
                return Dsn(unquote(written), written, start, start + len(written), "url")
        q = _QUERY_PASSWORD.search(rest, at + 1 if at >= 0 else 0)
        if q:
            return Dsn(unquote(q.group(1)), q.group(1), base + q.start(1), base + q.end(1), "query")
        return Dsn(None)
    text, offset = _strip_prefix(dsn)
    pos = 0
    while pos < len(text):
        kv = _KV_PAIR.match(text, pos)
        if not kv:
            break
        if kv.group(1).lower() == "password":
            raw = kv.group(2)
            value = raw[1:-1] if raw.startswith("'") else raw
            value = re.sub(r"\\(.)", r"\1", value, flags=re.S)
            return Dsn(value, raw, offset + kv.start(2), offset + kv.end(2), "kv")
        pos = kv.end()
    return Dsn(None)


def dsn_password(dsn: str | None) -> str | None:
    """The password of a DSN (percent-decoded / unescaped), or None."""
    return parse_dsn(dsn).password


def _encode_userinfo(written: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(written):
        ch = written[i]
        if ch in _USERINFO_OK:
            out.append(ch)
        elif ch == "%" and _PCT.match(written, i):
            out.append(written[i:i + 3])
            i += 3
            continue
        else:
            out.append(quote(ch, safe=""))
        i += 1
    return "".join(out)


def normalize_dsn(dsn: str) -> str:
    """A URL DSN whose password holds characters drivers mis-parse (``/ @ : ? #``, spaces, a stray ``%``),
    with those characters percent-encoded; every other DSN as it is."""
    parts = parse_dsn(dsn)
    if parts.form != "url" or parts.written is None:
        return dsn
    encoded = _encode_userinfo(parts.written)
    return dsn if encoded == parts.written else dsn[:parts.start] + encoded + dsn[parts.end:]


# -- registering --------------------------------------------------------------------------------
def _forms(value: str) -> set[str]:
    """The ways a value may be printed: as it is, percent-decoded and -encoded, quoted/escaped for
    libpq, SQL, JSON and Python."""
    out = {value}
    decoded = unquote(value)
    for v in {value, decoded}:
        out |= {
            v,
            quote(v, safe=""),
            quote(v),
            quote_plus(v),
            _encode_userinfo(v),
            v.replace("\\", "\\\\").replace("'", "\\'"),
            v.replace("'", "''"),
            json.dumps(v, ensure_ascii=False)[1:-1],
            json.dumps(v)[1:-1],
            repr(v)[1:-1],
        }
    return {f for f in out if len(f) >= MIN_SECRET}


def _add(values: set[str]) -> None:
    global _known
    with _lock:
        new = values - _secrets
        if new:
            _secrets.update(new)
            _known = None


def register_secret(value: str | None) -> None:
    """Remember a value that must never appear in output (S3 secret keys, passwords, tokens), in all its forms."""
    if value and len(value) >= MIN_SECRET:
        _add(_forms(value))


def register_dsn(dsn: str | None) -> None:
    """Register a DSN's password: as written and decoded, and the pieces of it a driver that splits the
    DSN at ``/ @ : ?`` … could echo (e.g. ``hunter2`` of ``p@ss:hunter2``)."""
    parts = parse_dsn(dsn)
    if not parts.password:
        return
    register_secret(parts.password)
    if parts.written and parts.written != parts.password:
        register_secret(parts.written)
    pieces: set[str] = set()
    for text in {parts.password, parts.written or ""}:
        pieces.update(p for p in _SPLIT.split(text) if len(p) >= MIN_SECRET)
    _add(pieces)


# -- masking ------------------------------------------------------------------------------------
# Masking is anchored on cheap substring searches (`str.find` runs at memory speed): the registered
# secrets are replaced where they occur, and the DSN / `password=` patterns are only tried at a `://` or at
# a keyword. Each pattern is bounded, so the work is linear in the text and a text without secrets,
# URLs or keywords costs a few scans.
#: `://user:` — found by a literal search, then the password is matched from the ':' on
_URL_USER = re.compile(r"://[^\s:/@'\"]{0,256}:")
#: the password up to the last '@' (in 256 characters) that is followed by a host
_URL_PASSWORD = re.compile(
    rf"(?P<pw>[^\n\"]{{1,256}})(?P<tail>@{_ONE_HOST}(?:,{_ONE_HOST})*)(?=[/?#\s\"'),;]|$)"
)
_SCHEME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+.-")
_QUOTED = r"'(?:[^'\\\n]|\\.){0,512}'|\"(?:[^\"\\\n]|\\.){0,512}\""
#: password=…, PGPASSWORD=…, "password": "…", secret=… : the value quoted (quotes kept) or up to a delimiter
_PAIR = re.compile(
    r"(?P<head>(?:pg)?(?:password|passwd|pwd|secret_access_key|secret)\"?\s*[=:]\s*)"
    rf"(?:(?P<quoted>{_QUOTED})|(?P<pw>[^\s&#'\",;]+))",
    re.I,
)
_KEYWORDS = ("pass", "pwd", "secret")


def _ordered_secrets() -> list[str]:
    global _known
    with _lock:
        if _known is None:
            _known = sorted(_secrets, key=len, reverse=True)
        return _known


def _splice(text: str, edits: list[tuple[int, int, str]]) -> str:
    if not edits:
        return text
    out, pos = [], 0
    for start, end, repl in edits:
        out.append(text[pos:start])
        out.append(repl)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _mask_urls(text: str) -> str:
    edits: list[tuple[int, int, str]] = []
    for m in _URL_USER.finditer(text):
        pos = m.start()
        if pos == 0 or text[pos - 1] not in _SCHEME_CHARS:
            continue  # `://` without a scheme before it
        following = text.find("://", m.end())  # the password never runs into the next URL
        pw = _URL_PASSWORD.match(text, m.end(), following if following >= 0 else len(text))
        if pw:
            edits.append((pw.start("pw"), pw.end("pw"), MASK))
    return _splice(text, edits)


def _mask_pairs(text: str) -> str:
    lowered = text.lower()
    if len(lowered) != len(text):  # a few characters change length when lowered: fall back to the pattern
        return _PAIR.sub(_pair, text)
    starts: set[int] = set()
    for word in _KEYWORDS:
        pos = lowered.find(word)
        while pos >= 0:
            begin = pos - 2 if word == "pass" and lowered.startswith("pg", pos - 2) else pos
            if begin == 0 or not (text[begin - 1].isalnum() or text[begin - 1] == "_"):
                starts.add(begin)
            pos = lowered.find(word, pos + 1)
    edits: list[tuple[int, int, str]] = []
    end = 0
    for start in sorted(starts):
        if start < end:
            continue
        m = _PAIR.match(text, start)
        if m:
            edits.append((m.start(), m.end(), _pair(m)))
            end = m.end()
    return _splice(text, edits)


def _pair(m: re.Match[str]) -> str:
    quoted = m.group("quoted")
    return f"{m.group('head')}{quoted[0]}{MASK}{quoted[0]}" if quoted else f"{m.group('head')}{MASK}"


def redact(text: str) -> str:
    """Mask every registered secret, DSN passwords and `password=` / `secret=` values in `text` (linear time)."""
    if not text:
        return text
    # `key=value` pairs first too: a registered secret that is part of a key's name ("word" in "password=…") must
    # not break the key before its value is masked
    out = _mask_pairs(text)
    for secret in _ordered_secrets():  # longest first: a secret that holds another is masked whole
        if secret in out:
            out = out.replace(secret, MASK)
    if "://" in out:
        out = _mask_urls(out)
    return _mask_pairs(out)
