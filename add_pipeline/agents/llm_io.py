"""Pure helpers of the LLM policy: image encoding, request hashing, reply parsing, prompts.

Kept apart from :mod:`add_pipeline.agents.policy_openai` (the client, retries and cache) so that
each stays small; nothing here talks to a server.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from PIL import Image
from pydantic import ValidationError

log = logging.getLogger("add_pipeline.agents.policy_openai")

DEFAULT_PROMPTS_DIR = Path(__file__).resolve().parents[2] / "agents"
CACHE_VERSION = 1
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)  # reasoning models (Qwen, DeepSeek) on local servers

_FALLBACK_PROMPTS = {
    "planner": (
        "You plan the decomposition of a photo into a background layer and object layers (with shadows). "
        "Reply with one JSON object with the fields max_objects, min_area_frac, max_area_frac, shadows, "
        "objects (a list of {name, casts_shadow}) and notes. Object names are short noun phrases used as "
        "detection prompts. Keep the workflow defaults unless the photo gives a reason to change them."
    ),
    "verifier": (
        "You review the quality checks of a layer decomposition. Reply with one JSON object "
        '{"verdict": "accept"|"revise"|"reject", "actions": [{"kind", "target", "reason"}], "reason"}. '
        "revise needs at least one action; accept and reject take none; never accept when a "
        "recomposition check failed; retry_inpaint targets only 'background', every other action an object id."
    ),
}


class OutputError(ValueError):
    """The reply could not be read as a JSON object."""


# ---------------------------------------------------------------- pure helpers


def check_image(image: object) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected an HxWx3 uint8 image, got {got}")
    return image


def png_data_url(image: np.ndarray, max_side: int) -> str:
    """Encode an ``HxWx3 uint8`` RGB image as a PNG data URL, downscaled so its longer side is <= ``max_side``."""
    check_image(image)
    pil = Image.fromarray(np.ascontiguousarray(image))
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1.0:
        pil = pil.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def request_hash(model: str, schema: str, temperature: float, messages: list[dict[str, Any]]) -> str:
    """SHA-256 of the canonical JSON of a request, images replaced by the SHA-256 of their PNG bytes."""

    def scrub(part: Any) -> Any:
        if isinstance(part, dict) and part.get("type") == "image_url":
            png = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
            return {"type": "image", "png_sha256": hashlib.sha256(png).hexdigest()}
        return part

    msgs = [
        {**m, "content": [scrub(p) for p in m["content"]]} if isinstance(m.get("content"), list) else m
        for m in messages
    ]
    payload = {
        "version": CACHE_VERSION,
        "model": model,
        "schema": schema,
        "temperature": temperature,
        "messages": msgs,
    }
    canon = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def first_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in ``text``; fences, prose around it and ``<think>`` blocks are skipped."""
    text = _THINK.sub("", text)
    decoder = json.JSONDecoder()
    first_error = None
    i = text.find("{")
    while i != -1:
        try:
            obj, _ = decoder.raw_decode(text, i)
            return obj  # raw_decode from "{" can only yield a dict
        except json.JSONDecodeError as e:
            first_error = first_error or e
        i = text.find("{", i + 1)
    if first_error is not None:
        raise OutputError(f"reply holds no valid JSON object ({first_error.msg} at char {first_error.pos})")
    raise OutputError("reply holds no JSON object")


def error_text(exc: BaseException) -> str:
    """A short, single-line description of why an attempt failed."""
    if isinstance(exc, ValidationError):
        text = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors())
    elif isinstance(exc, ValueError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:400]


def reply_content(response: Any) -> str:
    try:
        content = response.choices[0].message.content
    except (AttributeError, IndexError, KeyError, TypeError) as e:
        raise OutputError(f"response has no choices[0].message.content ({type(e).__name__})") from None
    if not isinstance(content, str) or not content.strip():
        raise OutputError("empty reply")
    return content


def add_usage(total: dict[str, int], response: Any) -> None:
    usage = getattr(response, "usage", None)
    if usage is None:
        return
    if hasattr(usage, "model_dump"):
        usage = usage.model_dump()
    elif not isinstance(usage, dict):
        usage = vars(usage)
    for k in ("prompt_tokens", "completion_tokens", "total_tokens"):
        v = usage.get(k)
        if isinstance(v, (int, float)):
            total[k] = total.get(k, 0) + int(v)


def public_url(url: str | None) -> str | None:
    """``url`` without user info, query or fragment (they may carry credentials)."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "<unparseable>"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def load_prompts(prompts_dir: str | Path | None) -> tuple[dict[str, str], dict[str, str]]:
    folder = DEFAULT_PROMPTS_DIR if prompts_dir is None else Path(prompts_dir)
    if prompts_dir is not None and not folder.is_dir():
        raise ValueError(f"prompts_dir {str(folder)!r} is not a directory")
    texts, sources = {}, {}
    for role in ("planner", "verifier"):
        path = folder / f"{role}.md"
        if path.is_file():
            texts[role], sources[role] = path.read_text(encoding="utf-8").strip(), str(path)
        else:
            log.info("no %s; using the built-in %s prompt", path, role)
            texts[role], sources[role] = _FALLBACK_PROMPTS[role], "built-in"
    return texts, sources


# ---------------------------------------------------------------- the policy


