"""Secrets out of everything we record: credentials in URLs and secret-looking settings.

A workflow may carry ``base_url: http://user:pass@host/v1?api-key=...`` or an ``api_key``
option; ``run.json``, traces and hashes must not. :func:`redact` returns a copy of any JSON-like
value with URL user info replaced by ``***``, secret-looking query parameters' values replaced
by ``***``, and the values of secret-looking keys (``api_key``, ``token``, ``password``, ...; but
not ``api_key_env``, which names a variable) replaced by ``***``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET = re.compile(r"key|token|secret|passw|pwd|auth|signature|sig$|credential|session", re.IGNORECASE)
MASK = "***"


def _secret_name(name: str) -> bool:
    return bool(SECRET.search(name)) and not name.lower().endswith("_env")


def redact_url(text: str) -> str:
    """``text`` with a URL's user info and secret-looking query values masked; other strings unchanged."""
    if "://" not in text and "@" not in text:
        return text
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError:
        return MASK
    if not parts.scheme or host is None:
        return text
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if _secret_name(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact(value: Any) -> Any:
    """A copy of ``value`` (dicts, lists, strings, numbers) with every secret masked."""
    if isinstance(value, dict):
        return {k: (MASK if isinstance(v, str) and v and _secret_name(str(k)) else redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_url(value)
    return value
