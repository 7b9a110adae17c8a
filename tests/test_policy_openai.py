"""OpenAIPolicy against a scripted fake chat-completions client (no network)."""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from add_pipeline.agents.policy import PolicyError, build_policy
from add_pipeline.agents.policy_openai import OpenAIPolicy, first_json_object
from add_pipeline.agents.schemas import CheckResult, Decision, Plan, VerifyReport
from tests.fakes import FakeClient

SECRET = "sk-test-SECRET123"
PLAN_OK = {"objects": [{"name": "dog", "casts_shadow": True}], "max_objects": 2, "notes": "a dog on grass"}


def image(seed: int = 0, h: int = 40, w: int = 60) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def report(objects: tuple[str, ...] = ("obj0", "obj1"), solidity: float = 0.5) -> VerifyReport:
    return VerifyReport(
        sample_id="s1",
        attempt=0,
        max_attempts=2,
        objects=list(objects),
        checks=[
            CheckResult(name="recomposition_mean", target="sample", value=0.001, low=0.0, high=0.01),
            CheckResult(name="alpha_solidity", target="obj0", value=solidity, low=0.8, high=1.0),
        ],
    )


def policy(client: FakeClient | None, **kw: Any) -> OpenAIPolicy:
    kw.setdefault("retry_backoff_s", 0.0)
    return OpenAIPolicy(model="test-model", client=client, **kw)


def user_parts(request: dict[str, Any]) -> list[dict[str, Any]]:
    return next(m for m in request["messages"] if m["role"] == "user")["content"]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    for name in ("LIWI_LLM_MODEL", "LIWI_LLM_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------- plan


def test_valid_plan_is_accepted_and_keeps_defaults() -> None:
    fake = FakeClient(json.dumps(PLAN_OK))
    p = policy(fake)
    defaults = Plan(min_area_frac=0.01, shadows=False)
    got = p.plan(image(), defaults, {"caption": "a dog"})
    assert got.objects[0].name == "dog" and got.max_objects == 2
    assert got.min_area_frac == 0.01 and got.shadows is False  # omitted fields keep the workflow defaults
    call = p.last_call
    assert call["attempts"] == 1 and call["cache_hit"] is False and call["errors"] == []
    assert call["model"] == "test-model" and len(call["request_hash"]) == 64
    assert call["usage"] == {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    req = fake.requests[0]
    assert req["model"] == "test-model" and req["temperature"] == 0.0
    assert req["response_format"]["type"] == "json_schema"
    assert req["response_format"]["json_schema"]["name"] == "Plan"
    assert req["messages"][0]["role"] == "system" and "Planner" in req["messages"][0]["content"]


def test_fenced_reply_with_prose_and_think_block_is_parsed() -> None:
    reply = "<think>maybe {not json}</think>Sure!\n```json\n" + json.dumps(PLAN_OK) + "\n```\nDone."
    got = policy(FakeClient(reply)).plan(image(), Plan(), {})
    assert got.objects[0].name == "dog"
    assert first_json_object('x {"a": {"b": 1}} {"c": 2}') == {"a": {"b": 1}}


def test_malformed_json_then_valid_feeds_the_error_back() -> None:
    fake = FakeClient('{"objects": [', json.dumps(PLAN_OK))
    p = policy(fake)
    p.plan(image(), Plan(), {})
    call = p.last_call
    assert call["attempts"] == 2 and len(call["errors"]) == 1
    assert "JSON" in call["errors"][0]
    second = fake.requests[1]["messages"]
    assert second[-2] == {"role": "assistant", "content": '{"objects": ['}
    assert second[-1]["role"] == "user" and call["errors"][0] in second[-1]["content"]
    assert call["usage"]["total_tokens"] == 240  # summed over attempts


# ---------------------------------------------------------------- schema violations


BAD_PLANS = [
    ({**PLAN_OK, "max_objects": 99}, "max_objects"),
    ({**PLAN_OK, "colour": "red"}, "colour"),
    ({"min_area_frac": 0.5, "max_area_frac": 0.4}, "min_area_frac"),
]


@pytest.mark.parametrize(("bad", "word"), BAD_PLANS)
def test_invalid_plan_is_retried_then_raises(bad: dict[str, Any], word: str) -> None:
    fake = FakeClient(*[json.dumps(bad)] * 3)
    p = policy(fake, max_retries=2)
    with pytest.raises(PolicyError) as err:
        p.plan(image(), Plan(), {})
    assert len(fake.requests) == 3 and not fake.replies
    assert "test-model" in str(err.value) and word in str(err.value)
    assert p.last_call["attempts"] == 3 and len(p.last_call["errors"]) == 3
    assert word in fake.requests[-1]["messages"][-1]["content"]


BAD_DECISIONS = [
    ({"verdict": "revise", "actions": [{"kind": "retry_matte", "target": "obj9"}]}, "obj9"),
    ({"verdict": "revise", "actions": []}, "at least one action"),
    ({"verdict": "accept", "actions": [{"kind": "drop_object", "target": "obj0"}]}, "takes no actions"),
    ({"verdict": "revise", "actions": [{"kind": "retry_inpaint", "target": "obj0"}]}, "retry_inpaint"),
    ({"verdict": "maybe"}, "verdict"),
]


@pytest.mark.parametrize(("bad", "word"), BAD_DECISIONS)
def test_invalid_decision_is_retried_then_raises(bad: dict[str, Any], word: str) -> None:
    fake = FakeClient(json.dumps(bad), json.dumps(bad))
    p = policy(fake, max_retries=1)
    with pytest.raises(PolicyError, match="test-model") as err:
        p.decide(report())
    assert word in str(err.value)
    assert len(fake.requests) == 2 and p.last_call["attempts"] == 2


def test_valid_decision_is_accepted() -> None:
    good = {"verdict": "revise", "actions": [{"kind": "retry_matte", "target": "obj0", "reason": "ragged"}]}
    fake = FakeClient(json.dumps(good))
    p = policy(fake)
    got = p.decide(report())
    assert got == Decision.model_validate(good)
    assert fake.requests[0]["response_format"]["json_schema"]["name"] == "Decision"
    text = user_parts(fake.requests[0])[0]["text"]
    assert "alpha_solidity" in text and '"passed": false' in text and "obj1" in text


# ---------------------------------------------------------------- transport errors


def _timeout() -> openai.APITimeoutError:
    return openai.APITimeoutError(request=httpx.Request("POST", "http://llm.invalid/v1/chat/completions"))


def _connection() -> openai.APIConnectionError:
    return openai.APIConnectionError(request=httpx.Request("POST", "http://llm.invalid/v1/chat/completions"))


@pytest.mark.parametrize("make", [_timeout, _connection, lambda: TimeoutError("read timed out")])
def test_transport_errors_end_in_policy_error(make: Any) -> None:
    fake = FakeClient(make(), make())
    p = policy(fake, max_retries=1)
    with pytest.raises(PolicyError, match="test-model"):
        p.plan(image(), Plan(), {})
    assert p.last_call["attempts"] == 2 and len(p.last_call["errors"]) == 2


def test_timeout_then_valid_succeeds_without_feedback() -> None:
    fake = FakeClient(_timeout(), json.dumps(PLAN_OK))
    p = policy(fake)
    p.plan(image(), Plan(), {})
    assert p.last_call["attempts"] == 2
    assert fake.requests[0]["messages"] == fake.requests[1]["messages"]  # same request sent again


def test_bad_request_is_not_retried_and_hints_at_json_mode() -> None:
    req = httpx.Request("POST", "http://llm.invalid/v1/chat/completions")
    bad = openai.BadRequestError("response_format unsupported", response=httpx.Response(400, request=req), body=None)
    fake = FakeClient(bad, json.dumps(PLAN_OK))
    with pytest.raises(PolicyError, match="json_mode"):
        policy(fake).plan(image(), Plan(), {})
    assert len(fake.requests) == 1


# ---------------------------------------------------------------- cache


def test_cache_hit_makes_no_call_and_different_image_misses(tmp_path: Path) -> None:
    first = FakeClient(json.dumps(PLAN_OK))
    a = policy(first, cache_dir=tmp_path).plan(image(0), Plan(), {"caption": "x"})
    files = list(tmp_path.rglob("*.json"))
    assert len(files) == 1 and not list(tmp_path.rglob("*.tmp"))
    h = json.loads(files[0].read_text())["request_hash"]
    assert files[0] == tmp_path / "Plan" / h[:2] / f"{h}.json"

    rerun = FakeClient()  # a fresh process: no scripted replies, any call would fail
    p = policy(rerun, cache_dir=tmp_path)
    b = p.plan(image(0), Plan(), {"caption": "x"})
    assert a == b and rerun.requests == []
    assert p.last_call["cache_hit"] is True and p.last_call["attempts"] == 0 and p.last_call["request_hash"] == h

    other = FakeClient(json.dumps(PLAN_OK))
    p = policy(other, cache_dir=tmp_path)
    p.plan(image(1), Plan(), {"caption": "x"})
    assert len(other.requests) == 1 and p.last_call["cache_hit"] is False
    assert len(list(tmp_path.rglob("*.json"))) == 2


def test_decision_cache_and_failures_are_not_cached(tmp_path: Path) -> None:
    good = json.dumps({"verdict": "reject", "reason": "bad"})
    fake = FakeClient("nope", good)
    p = policy(fake, cache_dir=tmp_path, max_retries=0)
    with pytest.raises(PolicyError):
        p.decide(report())
    assert not list(tmp_path.rglob("*.json"))
    assert p.decide(report()).verdict == "reject"
    assert p.decide(report()).verdict == "reject" and p.last_call["cache_hit"] is True
    assert len(fake.requests) == 2


def test_corrupt_cache_entry_is_ignored(tmp_path: Path) -> None:
    p = policy(FakeClient(json.dumps(PLAN_OK), json.dumps(PLAN_OK)), cache_dir=tmp_path)
    p.plan(image(), Plan(), {})
    (entry,) = tmp_path.rglob("*.json")
    entry.write_text("{half")
    p.plan(image(), Plan(), {})
    assert p.last_call["cache_hit"] is False
    assert json.loads(entry.read_text())["result"]["objects"][0]["name"] == "dog"


# ---------------------------------------------------------------- secrets


def test_api_key_never_leaks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    built: list[dict[str, Any]] = []
    fake = FakeClient(
        json.dumps(PLAN_OK),
        f'{{"verdict": "revise", "actions": [], "reason": "{SECRET}"}}',
        openai.APIConnectionError(  # e.g. a proxy echoing the request headers
            message=f"proxy refused Authorization: Bearer {SECRET}",
            request=httpx.Request("POST", "http://llm.invalid/v1/chat/completions"),
        ),
    )

    def fake_openai(**kw: Any) -> FakeClient:
        built.append(kw)
        return fake

    monkeypatch.setattr(openai, "OpenAI", fake_openai)
    p = OpenAIPolicy(model="test-model", cache_dir=tmp_path, max_retries=1, retry_backoff_s=0)
    assert built == []  # lazily built, not at construction
    p.plan(image(), Plan(), {})
    assert built[0]["api_key"] == SECRET and built[0]["max_retries"] == 0  # the key does reach the client
    seen = [json.dumps(p.describe()), json.dumps(p.last_call)]
    with pytest.raises(PolicyError) as err:
        p.decide(report())
    seen += [str(err.value), repr(err.value), json.dumps(p.last_call), caplog.text]
    seen += [f.read_text() for f in tmp_path.rglob("*") if f.is_file()]
    assert "***" in str(err.value)  # the echoed key was scrubbed, not just absent
    for text in seen:
        assert SECRET not in text
    assert len(built) == 1


def test_missing_key_raises_naming_the_variable_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    p = OpenAIPolicy(model="m", retry_backoff_s=0)
    with pytest.raises(PolicyError, match="OPENAI_API_KEY"):
        p.plan(image(), Plan(), {})


def test_a_key_pasted_as_api_key_env_is_refused_without_echo() -> None:
    with pytest.raises(ValueError) as err:
        OpenAIPolicy(model="m", api_key_env=SECRET)
    assert SECRET not in str(err.value) and "NAME" in str(err.value)


# ---------------------------------------------------------------- request shape


def _decode_data_url(url: str) -> Image.Image:
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_vision_sends_a_downscaled_png_data_url() -> None:
    fake = FakeClient(json.dumps(PLAN_OK))
    policy(fake, vision=True, max_image_side=32).plan(image(h=40, w=80), Plan(), {})
    images = [p for p in user_parts(fake.requests[0]) if p["type"] == "image_url"]
    assert len(images) == 1
    assert _decode_data_url(images[0]["image_url"]["url"]).size == (32, 16)


def test_no_vision_sends_text_only() -> None:
    fake = FakeClient(json.dumps(PLAN_OK), json.dumps({"verdict": "reject"}))
    p = policy(fake, vision=False)
    p.plan(image(), Plan(), {})
    p.decide(report(), crops={"obj0": image(3)})
    for req in fake.requests:
        assert "image_url" not in json.dumps(req)


def test_decide_sends_labelled_crops() -> None:
    fake = FakeClient(json.dumps({"verdict": "reject"}))
    policy(fake).decide(report(), crops={"obj0": image(1), "background": image(2)})
    parts = user_parts(fake.requests[0])
    assert [p["type"] for p in parts] == ["text", "text", "image_url", "text", "image_url"]
    assert parts[1]["text"] == "Crop of background:" and parts[3]["text"] == "Crop of obj0:"


@pytest.mark.parametrize(("mode", "expected"), [("object", {"type": "json_object"}), ("none", None)])
def test_json_mode_object_and_none_show_the_schema_in_the_prompt(mode: str, expected: Any) -> None:
    fake = FakeClient(json.dumps(PLAN_OK))
    policy(fake, json_mode=mode).plan(image(), Plan(), {})
    assert fake.requests[0].get("response_format") == expected
    assert "max_objects" in user_parts(fake.requests[0])[0]["text"]


def test_prompts_dir_overrides_the_system_prompts(tmp_path: Path) -> None:
    (tmp_path / "planner.md").write_text("CUSTOM PLANNER")
    fake = FakeClient(json.dumps(PLAN_OK), json.dumps({"verdict": "reject"}))
    p = policy(fake, prompts_dir=tmp_path)
    p.plan(image(), Plan(), {})
    p.decide(report())
    assert fake.requests[0]["messages"][0]["content"] == "CUSTOM PLANNER"
    assert p.describe()["prompts"]["verifier"]["source"] == "built-in"


# ---------------------------------------------------------------- construction and threads


def test_build_policy_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeClient(json.dumps(PLAN_OK))
    p = build_policy("openai", model="m", client=fake, retry_backoff_s=0)
    assert isinstance(p, OpenAIPolicy) and p.name == "openai"
    assert p.plan(image(), Plan(), {}).objects[0].name == "dog"
    with pytest.raises(TypeError, match="bogus"):
        build_policy("openai", model="m", bogus=1)
    with pytest.raises(ValueError, match="json_mode"):
        build_policy("openai", model="m", json_mode="xml")
    with pytest.raises(ValueError, match="LIWI_LLM_MODEL"):
        build_policy("openai")
    monkeypatch.setenv("LIWI_LLM_MODEL", "env-model")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://fallback:1/v1")
    monkeypatch.setenv("LIWI_LLM_BASE_URL", "http://user:pw@local:8000/v1?token=x")
    d = build_policy("openai").describe()
    assert d["model"] == "env-model" and d["base_url"] == "http://local:8000/v1"  # no user info or query


def test_threads_share_one_lazy_client_and_keep_their_own_last_call(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 8
    fake = FakeClient(*[json.dumps(PLAN_OK)] * n)
    builds: list[int] = []
    barrier = threading.Barrier(n)

    def fake_openai(**kw: Any) -> FakeClient:
        builds.append(1)
        return fake

    monkeypatch.setattr(openai, "OpenAI", fake_openai)
    p = OpenAIPolicy(model="m", retry_backoff_s=0)
    hashes: dict[int, str] = {}

    def work(i: int) -> None:
        barrier.wait()
        p.plan(image(i), Plan(), {"i": i})
        hashes[i] = p.last_call["request_hash"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert builds == [1] and len(fake.requests) == n
    assert len(set(hashes.values())) == n and p.last_call is None  # the main thread made no call


# ---------------------------------------------------------------- the real SDK, offline


def test_real_openai_client_over_a_mock_transport() -> None:
    """Our request kwargs pass the real SDK, and its ChatCompletion parses (no network: httpx mock transport)."""
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        body = {
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": json.dumps(PLAN_OK)}}
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        }
        return httpx.Response(200, json=body)

    client = openai.OpenAI(
        api_key=SECRET,
        base_url="http://llm.invalid/v1",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    p = policy(client)
    assert p.plan(image(), Plan(), {}).objects[0].name == "dog"
    assert p.last_call["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert sent[0]["response_format"]["json_schema"]["name"] == "Plan"


def test_unreachable_server_ends_in_policy_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIWI_LLM_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens on the discard port
    p = OpenAIPolicy(model="m", max_retries=1, timeout_s=2, retry_backoff_s=0)
    with pytest.raises(PolicyError, match="model 'm'") as err:
        p.plan(image(), Plan(), {})
    assert SECRET not in str(err.value) and p.last_call["attempts"] >= 1


def test_bad_image_is_refused() -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        policy(FakeClient()).plan(np.zeros((4, 4), np.float32), Plan(), {})
