"""LLM policy for the planner and verifier nodes, over any OpenAI-compatible endpoint.

Works with OpenAI, vLLM, Ollama and the llama.cpp server (chat completions).
The model's reply is untrusted text: it is parsed into :class:`Plan` /
:class:`Decision`, checked against the report it answers, and on failure the
model is asked again with the error appended to the conversation, up to
``max_retries`` times, before :class:`PolicyError`.

Secrets: the config names only the *environment variable* that holds the API
key.  The key is read when the client is first built and is scrubbed from every
error text made here; it never reaches ``describe()``, ``last_call``, logs or
the cache.

Cache layout (``cache_dir``), one JSON file per answered request::

    <cache_dir>/<schema>/<hash[:2]>/<hash>.json
        {"version", "request_hash", "model", "schema", "attempts", "usage", "created", "result"}

``hash`` is the SHA-256 of the canonical JSON (sorted keys, no spaces) of
``{"version", "model", "schema", "temperature", "messages"}``, where each image
part is replaced by the SHA-256 of its PNG bytes.  The system prompt is part of
the messages, so editing ``agents/*.md`` invalidates the cache by itself.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import openai
from pydantic import BaseModel

from add_pipeline.agents.llm_io import (
    CACHE_VERSION,
    add_usage,
    check_image,
    error_text,
    first_json_object,
    load_prompts,
    png_data_url,
    public_url,
    reply_content,
    request_hash,
)
from add_pipeline.agents.policy import PolicyError
from add_pipeline.agents.schemas import Decision, Plan, VerifyReport

log = logging.getLogger(__name__)

JsonMode = Literal["schema", "object", "none"]
JSON_MODES: tuple[str, ...] = ("schema", "object", "none")
MAX_CROPS = 9  # 8 objects + background: the most a report can name

# Errors worth another attempt: the request may well succeed if sent again.
_TRANSIENT = (
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.RateLimitError,
    openai.InternalServerError,
    TimeoutError,
    ConnectionError,
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_M = TypeVar("_M", bound=BaseModel)

class OpenAIPolicy:
    """Planner + verifier policy backed by a chat-completions model.

    Thread-safe: one instance serves many graphs at once.  The client is built
    on first use under a lock, cache files are written to a temporary name and
    renamed, and :attr:`last_call` is kept per thread.
    """

    name = "openai"

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        vision: bool = True,
        json_mode: JsonMode = "schema",
        max_retries: int = 2,
        timeout_s: float = 60.0,
        temperature: float = 0.0,
        retry_backoff_s: float = 1.0,
        cache_dir: str | Path | None = None,
        max_image_side: int = 512,
        prompts_dir: str | Path | None = None,
        client: Any | None = None,
    ) -> None:
        model = model or os.environ.get("LIWI_LLM_MODEL")
        if not model or not isinstance(model, str):
            raise ValueError("openai policy needs a model: set `model:` in the policy block or LIWI_LLM_MODEL")
        if not isinstance(api_key_env, str) or not _ENV_NAME.fullmatch(api_key_env):
            # Never echo the value: a common mistake is to paste the key itself here.
            raise ValueError(
                "api_key_env must be the NAME of the environment variable holding the key "
                "(e.g. 'OPENAI_API_KEY'), not the key itself"
            )
        if json_mode not in JSON_MODES:
            raise ValueError(f"json_mode must be one of {list(JSON_MODES)}, got {json_mode!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        if not 0.0 <= temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {temperature!r}")
        if not retry_backoff_s >= 0:
            raise ValueError(f"retry_backoff_s must be >= 0, got {retry_backoff_s!r}")
        if not isinstance(max_image_side, int) or max_image_side < 32:
            raise ValueError(f"max_image_side must be an int >= 32, got {max_image_side!r}")
        self.model = model
        self.base_url = base_url or os.environ.get("LIWI_LLM_BASE_URL") or os.environ.get("OPENAI_BASE_URL") or None
        self.api_key_env = api_key_env
        self.vision = bool(vision)
        self.json_mode = json_mode
        self.max_retries = max_retries
        self.timeout_s = float(timeout_s)
        self.temperature = float(temperature)
        self.retry_backoff_s = float(retry_backoff_s)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.max_image_side = max_image_side
        self._prompts, self._prompt_sources = load_prompts(prompts_dir)
        self._injected = client is not None
        self._client = client
        self._client_lock = threading.Lock()
        self._local = threading.local()

    # ------------------------------------------------------------ Policy protocol

    def plan(self, image: np.ndarray, defaults: Plan, context: dict[str, Any]) -> Plan:
        """Ask the model for a :class:`Plan` of ``image`` (HxWx3 uint8 RGB); omitted fields keep ``defaults``."""
        h, w = check_image(image).shape[:2]
        text = (
            f"Plan the layer decomposition of this photo ({w}x{h} pixels).\n\n"
            f"Workflow defaults (keep a field unless the photo gives a reason to change it):\n"
            f"{json.dumps(defaults.model_dump(mode='json'), sort_keys=True)}\n\n"
            f"Context:\n{json.dumps(context, sort_keys=True, default=str)}"
        )
        content = [self._text(text, Plan)]
        if self.vision:
            content.append({"type": "image_url", "image_url": {"url": png_data_url(image, self.max_image_side)}})
        base = defaults.model_dump()

        def parse(obj: dict[str, Any]) -> Plan:
            return Plan.model_validate({**base, **obj})

        return self._ask("Plan", Plan, self._messages("planner", content), parse)

    def decide(self, report: VerifyReport, crops: dict[str, np.ndarray] | None = None) -> Decision:
        """Ask the model for a :class:`Decision` on ``report``.

        ``crops`` (HxWx3 uint8 RGB, keyed by target) are shown to the model when ``vision`` is on.
        """
        data = report.model_dump(mode="json")
        for check, c in zip(data["checks"], report.checks, strict=True):
            check["passed"] = c.passed
        text = (
            f"Verifier report for sample {report.sample_id!r}, attempt {report.attempt} of at most "
            f"{report.max_attempts} ({len(report.failed)} of {len(report.checks)} checks failed):\n"
            f"{json.dumps(data, sort_keys=True)}\n\n"
            f"Valid action targets: {json.dumps(sorted(set(report.objects) | {'background'}))}"
        )
        content: list[dict[str, Any]] = [self._text(text, Decision)]
        if self.vision and crops:
            for target in sorted(crops)[:MAX_CROPS]:
                content.append({"type": "text", "text": f"Crop of {target}:"})
                content.append(
                    {"type": "image_url", "image_url": {"url": png_data_url(crops[target], self.max_image_side)}}
                )

        def parse(obj: dict[str, Any]) -> Decision:
            decision = Decision.model_validate(obj)
            decision.check_against(report)
            return decision

        return self._ask("Decision", Decision, self._messages("verifier", content), parse)

    def describe(self) -> dict[str, Any]:
        """JSON-able settings for traces; holds the key's variable name, never the key."""
        return {
            "policy": self.name,
            "model": self.model,
            "base_url": public_url(self.base_url),
            "api_key_env": self.api_key_env,
            "client": "injected" if self._injected else "openai",
            "vision": self.vision,
            "json_mode": self.json_mode,
            "max_retries": self.max_retries,
            "timeout_s": self.timeout_s,
            "temperature": self.temperature,
            "retry_backoff_s": self.retry_backoff_s,
            "max_image_side": self.max_image_side,
            "cache_dir": None if self.cache_dir is None else str(self.cache_dir),
            "prompts": {
                role: {"source": self._prompt_sources[role], "sha256": hashlib.sha256(t.encode()).hexdigest()[:16]}
                for role, t in self._prompts.items()
            },
        }

    @property
    def last_call(self) -> dict[str, Any] | None:
        """This thread's record of its latest ``plan``/``decide`` (a copy), or ``None`` before the first.

        Keys: model, schema, attempts, cache_hit, request_hash, errors, elapsed_s and, when the server
        reported it, usage (token counts summed over attempts).  No key, no image bytes.
        """
        record = getattr(self._local, "last_call", None)
        return None if record is None else copy.deepcopy(record)

    # ------------------------------------------------------------ internals

    def _text(self, text: str, model_cls: type[BaseModel]) -> dict[str, Any]:
        if self.json_mode != "schema":  # the server will not enforce the schema, so show it
            text += "\n\nReply with one JSON object matching this JSON schema:\n" + json.dumps(
                model_cls.model_json_schema(), sort_keys=True, separators=(",", ":")
            )
        return {"type": "text", "text": text}

    def _messages(self, role: str, content: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"role": "system", "content": self._prompts[role]}, {"role": "user", "content": content}]

    def _get_client(self) -> Any:
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    key = os.environ.get(self.api_key_env)
                    if not key:
                        if self.base_url is None:
                            raise PolicyError(
                                f"openai policy: environment variable {self.api_key_env} is not set "
                                "(it must hold the API key)"
                            )
                        key = "EMPTY"  # local servers accept any key; the SDK insists on one
                    self._client = openai.OpenAI(
                        base_url=self.base_url, api_key=key, timeout=self.timeout_s, max_retries=0
                    )
        return self._client

    def _redact(self, text: str) -> str:
        key = os.environ.get(self.api_key_env)
        return text.replace(key, "***") if key and len(key) >= 6 else text

    def _create_kwargs(self, schema: str, model_cls: type[BaseModel], messages: list[dict[str, Any]]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature}
        if self.json_mode == "schema":
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema, "schema": model_cls.model_json_schema(), "strict": False},
            }
        elif self.json_mode == "object":
            kwargs["response_format"] = {"type": "json_object"}
        return kwargs

    def _ask(
        self,
        schema: str,
        model_cls: type[_M],
        messages: list[dict[str, Any]],
        parse: Callable[[dict[str, Any]], _M],
    ) -> _M:
        t0 = time.monotonic()
        h = request_hash(self.model, schema, self.temperature, messages)
        usage: dict[str, int] = {}
        record: dict[str, Any] = {
            "model": self.model,
            "schema": schema,
            "attempts": 0,
            "cache_hit": False,
            "request_hash": h,
            "errors": [],
        }
        self._local.last_call = record  # set first, so a failure is traced too
        try:
            cached = self._cache_get(schema, h, parse)
            if cached is not None:
                record["cache_hit"] = True
                return cached
            result = self._attempts(schema, model_cls, messages, parse, record, usage)
            self._cache_put(schema, h, result, record, usage)
            return result
        finally:
            if usage:
                record["usage"] = usage
            record["elapsed_s"] = round(time.monotonic() - t0, 3)

    def _attempts(
        self,
        schema: str,
        model_cls: type[_M],
        messages: list[dict[str, Any]],
        parse: Callable[[dict[str, Any]], _M],
        record: dict[str, Any],
        usage: dict[str, int],
    ) -> _M:
        client = self._get_client()
        convo = list(messages)
        last_error = "no attempt made"
        for attempt in range(self.max_retries + 1):
            record["attempts"] = attempt + 1
            try:
                response = client.chat.completions.create(**self._create_kwargs(schema, model_cls, convo))
            except _TRANSIENT as e:
                last_error = self._redact(error_text(e))
                record["errors"].append(last_error)
                log.warning("%s: %s attempt %d failed: %s", self.model, schema, attempt + 1, last_error)
                if attempt < self.max_retries and self.retry_backoff_s > 0:
                    time.sleep(self.retry_backoff_s * 2**attempt)
                continue
            except openai.APIError as e:  # auth, bad request, ...: asking again will not help
                msg = self._redact(error_text(e))
                record["errors"].append(msg)
                hint = ""
                if isinstance(e, openai.BadRequestError) and self.json_mode != "none":
                    hint = " (if the server rejects response_format, set json_mode to 'object' or 'none')"
                raise PolicyError(f"openai policy: model {self.model!r} request failed: {msg}{hint}") from None
            add_usage(usage, response)
            content = None
            try:
                content = reply_content(response)
                return parse(first_json_object(content))
            except ValueError as e:  # OutputError, pydantic ValidationError, check_against
                last_error = self._redact(error_text(e))
                record["errors"].append(last_error)
                log.warning("%s: %s attempt %d gave an invalid reply: %s", self.model, schema, attempt + 1, last_error)
                if content is not None:
                    convo.append({"role": "assistant", "content": content})
                convo.append(
                    {
                        "role": "user",
                        "content": f"Your reply was not valid: {last_error}\n"
                        "Reply again with one JSON object that fixes this, and nothing else.",
                    }
                )
        raise PolicyError(
            f"openai policy: model {self.model!r} gave no valid {schema} after "
            f"{record['attempts']} attempt(s); last error: {last_error}"
        )

    def _cache_path(self, schema: str, h: str) -> Path:
        return Path(self.cache_dir or ".") / schema / h[:2] / f"{h}.json"

    def _cache_get(self, schema: str, h: str, parse: Callable[[dict[str, Any]], _M]) -> _M | None:
        if self.cache_dir is None:
            return None
        path = self._cache_path(schema, h)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            return parse(entry["result"])
        except FileNotFoundError:
            return None
        except (OSError, KeyError, TypeError, ValueError) as e:
            log.warning("ignoring unusable cache entry %s: %s", path, self._redact(error_text(e)))
            return None

    def _cache_put(self, schema: str, h: str, result: BaseModel, record: dict[str, Any], usage: dict[str, int]) -> None:
        if self.cache_dir is None:
            return
        path = self._cache_path(schema, h)
        entry = {
            "version": CACHE_VERSION,
            "request_hash": h,
            "model": self.model,
            "schema": schema,
            "attempts": record["attempts"],
            "usage": usage,
            "created": time.time(),
            "result": result.model_dump(mode="json"),
        }
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{h[:12]}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry, f, sort_keys=True, indent=1)
            os.replace(tmp, path)  # atomic: readers see the old file or the new one, never half of it
            tmp = None
        except OSError as e:  # the answer is valid and paid for; a full disk should not fail the sample
            log.warning("could not write cache entry %s: %s", path, e)
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
