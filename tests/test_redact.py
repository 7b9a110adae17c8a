"""Credentials in URLs and secret-looking settings never reach run.json, and do not change the workflow hash."""

from __future__ import annotations

import json
from pathlib import Path

from add_pipeline.core.config import load_workflow
from add_pipeline.core.redact import redact, redact_url
from add_pipeline.exec.run import ExecOptions, prepare_out
from add_pipeline.io.inputs import InputItem

URL = "http://alice:s3cr3t@llm.example:8000/v1?api-key=SK-LIVE-123&model=x&token=T0K"


def test_urls_lose_user_info_and_secret_query_values() -> None:
    got = redact_url(URL)
    assert "alice" not in got and "s3cr3t" not in got and "SK-LIVE-123" not in got and "T0K" not in got
    assert got.startswith("http://***@llm.example:8000/v1?") and "model=x" in got
    assert redact_url("plain text, no url") == "plain text, no url"
    assert redact_url("ray://10.0.0.1:10001") == "ray://10.0.0.1:10001"


def test_secret_keys_are_masked_but_variable_names_kept() -> None:
    got = redact({"policy": {"options": {"api_key": "sk-abc", "api_key_env": "OPENAI_API_KEY", "base_url": URL,
                                         "password": "pw", "model": "gpt"}}, "n": [1, {"token": "t"}]})
    opts = got["policy"]["options"]
    assert opts["api_key"] == "***" and opts["password"] == "***" and opts["api_key_env"] == "OPENAI_API_KEY"
    assert opts["model"] == "gpt" and "s3cr3t" not in opts["base_url"] and got["n"][1]["token"] == "***"


def test_run_json_and_hash_hold_no_secret(tmp_path: Path) -> None:
    def workflow(password: str):
        wf = load_workflow("cpu-classical")
        url = URL.replace("s3cr3t", password)
        return wf.model_copy(update={"policy": wf.policy.model_copy(update={
            "name": "openai", "options": {"base_url": url, "api_key": f"sk-{password}", "model": "m"}})})

    photo = tmp_path / "a.png"
    photo.write_bytes(b"")
    ex = ExecOptions(out=tmp_path / "out", workers=1, ray_address="ray://bob:hunter2@head:10001")
    prepare_out([InputItem("a.png", str(photo))], workflow("s3cr3t"), ex, {"stage": "decompose"})
    text = (tmp_path / "out" / "run.json").read_text()
    for secret in ("s3cr3t", "SK-LIVE-123", "T0K", "hunter2", "sk-s3cr3t", "alice"):
        assert secret not in text
    assert json.loads(text)["workflow"]["policy"]["options"]["model"] == "m"
    assert workflow("one").digest() == workflow("two").digest()
