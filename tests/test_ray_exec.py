"""The Ray executor: tasks with card resources, actor pools, system-error retries, tool errors as is."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from add_pipeline.core.config import load_workflow
from add_pipeline.exec.runner import LocalToolRunner, tool_steps
from add_pipeline.tools.base import ToolError

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_session():
    repo_root = str(Path(__file__).resolve().parents[1])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": repo_root}})
    yield
    ray.shutdown()


def _image_and_mask():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20:40] = True
    return image, mask


def _with_card(step: str, **changes):
    wf = load_workflow("cpu-classical")
    name = wf.steps[step].tool
    cards = {**wf.cards, name: wf.cards[name].model_copy(update=changes)}
    return wf.model_copy(update={"cards": cards})


def test_worker_crash_is_retried_and_recorded(ray_session, tmp_path):
    from add_pipeline.exec.ray_exec import RayToolRunner

    wf = _with_card("inpaint", backend="tests.crashy_tools:CrashOnceInpainter", params={"flag": str(tmp_path / "f")})
    image, mask = _image_and_mask()
    result = RayToolRunner(wf).call("inpaint", image, mask)
    assert len(result.retries) == 1 and "Worker" in result.retries[0].error
    assert (tmp_path / "f").exists()
    assert result.value.shape == image.shape and (result.value[~mask] == image[~mask]).all()


def test_tool_errors_are_raised_as_the_tools_own_exception(ray_session):
    from add_pipeline.exec.ray_exec import RayToolRunner

    runner = RayToolRunner(load_workflow("cpu-classical"))
    image, _ = _image_and_mask()
    with pytest.raises(ToolError, match="mask"):
        runner.call("inpaint", image, np.zeros((3, 3), bool))


def test_actor_pool_serves_concurrent_calls_like_local(ray_session):
    from add_pipeline.exec.ray_exec import RayToolRunner

    wf = _with_card("inpaint", actor=True, replicas=2)
    image, mask = _image_and_mask()
    runner = RayToolRunner(wf)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: runner.call("inpaint", image, mask), range(6)))
    expected = LocalToolRunner(wf).call("inpaint", image, mask).value
    assert all((r.value == expected).all() and not r.retries for r in results)
    assert len(runner._actors) == 1 and len(next(iter(runner._actors.values()))[0]) == 2
    runner.close()


def test_prepare_builds_every_in_process_tool_once():
    from add_pipeline.exec.ray_exec import WorkerToolRunner

    wf = load_workflow("cpu-classical")
    pairs = tool_steps(wf)
    assert len(pairs) == len(wf.steps) + 1 and ("inpaint", True) in pairs  # telea, and navier-stokes as fallback
    local = LocalToolRunner(wf)
    assert local.prepare() == len(pairs) == len(local._tools)  # every step, plus the inpaint fallback
    image, mask = _image_and_mask()
    local.call("inpaint", image, mask)
    assert len(local._tools) == len(pairs)  # calls reuse the prepared tools
    # A tool that cannot be built is skipped; the sample that calls it meets the error.
    broken = LocalToolRunner(_with_card("inpaint", backend="no_such_module:Nothing"))
    assert broken.prepare() == len(pairs) - 1
    with pytest.raises(Exception, match="no_such_module"):
        broken.call("inpaint", image, mask)
    # On a sample-task worker, actor tools are left to their actors.
    assert WorkerToolRunner(_with_card("inpaint", actor=True)).prepare() == len(pairs) - 1
