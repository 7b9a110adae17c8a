"""Test doubles shared by several test files."""

from __future__ import annotations

import copy
import threading
from types import SimpleNamespace
from typing import Any


class FakeClient:
    """A scripted OpenAI-compatible chat model: pops one reply per ``chat.completions.create`` call.

    A reply is a str (the message content) or an exception instance (raised). Requests are recorded.
    """

    def __init__(self, *replies: str | BaseException) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        self.chat = SimpleNamespace(completions=self)
        self._lock = threading.Lock()

    def create(self, **kwargs: Any) -> Any:
        with self._lock:
            self.requests.append(copy.deepcopy(kwargs))
            if not self.replies:
                raise AssertionError("fake client: no scripted reply left")
            reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        usage = SimpleNamespace(prompt_tokens=100, completion_tokens=20, total_tokens=120)
        return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=reply))], usage=usage)
