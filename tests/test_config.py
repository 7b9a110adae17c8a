"""Workflow and tool-card loading: defaults, overrides, clear errors."""

import pytest

from add_pipeline.core.config import ConfigError, load_workflow
from add_pipeline.exec.runner import tool_spec
from add_pipeline.tools.base import ToolError, build_tool


def test_cpu_classical_resolves_every_step():
    wf = load_workflow("cpu-classical")
    for step in wf.steps:
        card = wf.card(step)
        assert card.family == step
        assert card.checkpoint is None  # classical: no weights
        tool_spec(wf, step).build()  # every card builds
    assert wf.card("inpaint", fallback=True).name == "navier-stokes"
    assert wf.digest() == load_workflow("cpu-classical").digest()
    assert wf.fallback_workflow is None


def test_cpu_default_uses_isnet_and_falls_back_to_classical():
    wf = load_workflow("cpu-default")
    for step in ("propose", "segment", "matte"):
        assert wf.card(step).checkpoint == "isnet-medium"
        tool_spec(wf, step).build()  # builds without loading weights
    assert wf.fallback_workflow == "cpu-classical"


def test_loader_gets_workflow_size_and_seed_reaches_seeded_tools():
    wf = load_workflow("cpu-classical").model_copy(update={"seed": 7})
    params = dict(tool_spec(wf, "load").params)
    assert params["working_size"] == wf.working_size
    assert tool_spec(wf, "segment").build().seed == 7  # GrabCut takes a seed
    assert not hasattr(tool_spec(wf, "matte").build(), "seed")  # closed-form matting does not


def test_unknown_workflow_and_tool_names_list_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="cpu-default"):
        load_workflow("no-such-workflow")
    with pytest.raises(ToolError, match="grabcut"):
        build_tool("segment", "nope")
    bad = tmp_path / "wf.yaml"
    bad.write_text("name: x\nsteps: {load: {tool: pillow-loader}}\n")
    with pytest.raises(ConfigError, match="steps missing"):
        load_workflow(str(bad))


def test_import_path_backends_are_checked():
    with pytest.raises(ToolError, match="cannot import"):
        build_tool("segment", "no_such_module:Thing")
    with pytest.raises(ToolError, match="not a segment tool"):
        build_tool("segment", "add_pipeline.tools.verifier:LayerVerifier")
