"""The OpenAI-compatible policy against a scripted chat-completions HTTP server on 127.0.0.1.

The real ``openai`` client talks to a local ``http.server`` that answers from a script: valid
structured output, malformed JSON, schema violations, a reply slower than the timeout. The API
key must reach the server (Authorization header) and nothing else: not traces, logs or cache.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import pytest

from add_pipeline.agents.graph import build_graph
from add_pipeline.agents.policy import PolicyError, build_policy
from add_pipeline.agents.schemas import Plan
from add_pipeline.core.config import load_workflow
from add_pipeline.core.synthetic import make_scene
from add_pipeline.exec.runner import LocalToolRunner
from add_pipeline.exec.sample import decompose_one
from add_pipeline.io.inputs import InputItem

KEY = "sk-test-HTTPSECRET42"
PLAN = {"max_objects": 2, "objects": [{"name": "blob", "casts_shadow": True}], "notes": "one blob"}
ACCEPT = {"verdict": "accept", "reason": "fine"}


class ScriptedServer:
    """``POST /v1/chat/completions`` answers with the next scripted reply: a dict (the message
    content, as JSON), a str (raw content), or ("sleep", seconds) to outlast the client's timeout."""

    def __init__(self) -> None:
        self.replies: list[Any] = []
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                outer.auth.append(self.headers.get("Authorization", ""))
                reply = outer.replies.pop(0) if outer.replies else "no scripted reply left"
                if isinstance(reply, tuple):
                    time.sleep(reply[1])
                    reply = ACCEPT
                content = reply if isinstance(reply, str) else json.dumps(reply)
                payload = json.dumps({
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                }).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server(monkeypatch):
    monkeypatch.setenv("LIWI_TEST_KEY", KEY)
    s = ScriptedServer()
    yield s
    s.close()


def _policy(server: ScriptedServer, cache: Path | None = None, **kw: Any):
    return build_policy("openai", model="scripted-vlm", base_url=server.url, api_key_env="LIWI_TEST_KEY",
                        retry_backoff_s=0.0, cache_dir=str(cache) if cache else None, **kw)


def _image():
    return make_scene(5, size=(96, 128), n_objects=1).image


def test_structured_output_is_accepted_and_the_key_only_reaches_the_server(server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    server.replies = [PLAN]
    policy = _policy(server, tmp_path / "cache")
    plan = policy.plan(_image(), Plan(), {"sample_id": "s"})
    assert plan.max_objects == 2 and plan.objects[0].name == "blob"
    assert server.auth == [f"Bearer {KEY}"]
    req = server.requests[0]
    assert req["model"] == "scripted-vlm" and req["response_format"]["type"] == "json_schema"
    assert any(part.get("type") == "image_url" for m in req["messages"] if isinstance(m["content"], list)
               for part in m["content"])
    cached = "".join(p.read_text() for p in (tmp_path / "cache").rglob("*.json"))
    assert cached and KEY not in cached
    assert KEY not in json.dumps(policy.describe()) + json.dumps(policy.last_call, default=str) + caplog.text


def test_malformed_json_and_schema_violations_are_retried_then_fail_cleanly(server):
    server.replies = ["{not json", {"max_objects": 99}, PLAN]
    policy = _policy(server, max_retries=2)
    assert policy.plan(_image(), Plan(), {}).max_objects == 2
    assert policy.last_call["attempts"] == 3 and len(policy.last_call["errors"]) == 2
    server.replies = ["nope", {"max_objects": 0}, {"unknown_field": 1}]
    with pytest.raises(PolicyError) as err:
        policy.plan(_image(), Plan(), {})
    assert KEY not in str(err.value)
    assert len(server.requests) == 6


def test_a_reply_slower_than_the_timeout_fails_cleanly(server):
    server.replies = [("sleep", 1.5), ("sleep", 1.5)]
    policy = _policy(server, max_retries=1, timeout_s=0.5)
    t0 = time.monotonic()
    with pytest.raises(PolicyError, match="(?i)time"):
        policy.plan(_image(), Plan(), {})
    assert time.monotonic() - t0 < 5


def test_a_rerun_pays_for_no_call_twice(server, tmp_path):
    server.replies = [PLAN]
    _policy(server, tmp_path / "cache").plan(_image(), Plan(), {})
    again = _policy(server, tmp_path / "cache")  # a new run, same cache folder
    assert again.plan(_image(), Plan(), {}).max_objects == 2
    assert again.last_call["cache_hit"] and len(server.requests) == 1


def test_graph_with_http_policy_keeps_the_key_out_of_traces(server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    server.replies = [PLAN, ACCEPT]
    scene = make_scene(3, size=(256, 256), n_objects=1)
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
    wf = load_workflow("cpu-classical").model_copy(update={"working_size": 256})
    out = decompose_one(InputItem("scene", str(path)), build_graph(), wf, LocalToolRunner(wf),
                        _policy(server, tmp_path / "cache"), "cpu-classical")
    assert out.row is not None, out.reject
    assert len(server.requests) == 2
    assert KEY not in json.dumps(out.traces, default=str) + caplog.text + json.dumps(out.row["meta"])
