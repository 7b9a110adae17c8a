"""IS-Net: the network against an ONNX export and onnxruntime, the instance split, and the three tools.

Known answers: a tiny random-weight ISNet exported to ONNX must load back by node name and give
the same output in PyTorch and onnxruntime; the tools, given a soft map of known shapes, must
return those shapes. The real weights are checked against onnxruntime when they are fetched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from add_pipeline.tools.base import ToolError  # noqa: E402
from add_pipeline.tools.classical.instances import split_instances  # noqa: E402
from add_pipeline.tools.models import isnet as isnet_tools  # noqa: E402
from add_pipeline.tools.models.isnet_net import ISNet, load_onnx_weights, onnx_state_dict  # noqa: E402

pytestmark = pytest.mark.models


class _AllSides(ISNet):
    """ISNet whose forward returns every side output, so an export holds every weight (as the real one)."""

    def forward(self, x):  # type: ignore[override]
        return tuple(self.sides(x))


def _disc(hw: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : hw[0], 0 : hw[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ISNet]:
    torch.manual_seed(0)
    net = _AllSides(fused=True, width=16).eval()
    path = tmp_path_factory.mktemp("isnet") / "tiny.onnx"
    torch.onnx.export(net, (torch.rand(1, 3, 64, 64) - 0.5,), str(path), input_names=["input"],
                      output_names=[f"side{i}" for i in range(1, 7)], dynamo=False, opset_version=17)
    return path, net


@pytest.fixture()
def tiny_pt(tmp_path: Path) -> Path:
    torch.manual_seed(1)
    net = ISNet(fused=True, width=16)
    path = tmp_path / "tiny.pt"
    torch.save({"isnet": {"fused": True, "width": 16}, "state_dict": net.state_dict()}, path)
    return path


def test_any_size_and_batch() -> None:
    net = ISNet(width=16).eval()
    with torch.inference_mode():
        out = net(torch.zeros(2, 3, 100, 76))
        sides = net.sides(torch.zeros(1, 3, 70, 90))
    assert out.shape == (2, 1, 100, 76)
    assert [tuple(s.shape) for s in sides] == [(1, 1, 70, 90)] * 6


def test_onnx_export_loads_back_by_name_and_matches_onnxruntime(tiny_onnx: tuple[Path, ISNet]) -> None:
    ort = pytest.importorskip("onnxruntime")
    path, net = tiny_onnx
    state = onnx_state_dict(path)
    assert set(state) == set(net.state_dict())
    fresh = load_onnx_weights(ISNet(fused=True, width=16), path).eval()
    x = torch.rand(1, 3, 64, 64) - 0.5
    with torch.inference_mode():
        ours = torch.sigmoid(fresh(x)).numpy()
        theirs_torch = torch.sigmoid(net(x)[0]).numpy()
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["side1"], {"input": x.numpy()})[0]
    assert np.abs(ours - theirs_torch).max() < 1e-6
    assert np.abs(ours - 1 / (1 + np.exp(-ref))).max() < 1e-4


def test_onnx_of_another_network_is_refused(tiny_onnx: tuple[Path, ISNet]) -> None:
    path, _ = tiny_onnx
    with pytest.raises(ValueError, match="shape mismatch"):
        load_onnx_weights(ISNet(fused=True, width=8), path)
    with pytest.raises(ValueError, match="missing"):
        load_onnx_weights(ISNet(fused=False, width=16), path)  # BatchNorm weights absent from a fused export


def test_real_weights_match_onnxruntime() -> None:
    """The fetched IS-Net in PyTorch against the ONNX file itself in onnxruntime, on a real photo."""
    ort = pytest.importorskip("onnxruntime")
    from add_pipeline import weights

    try:
        path = weights.resolve("isnet-medium")
    except weights.WeightsError:
        pytest.skip("isnet-medium is not fetched (liwi weights fetch)")
    from skimage import data

    img = np.asarray(torch.nn.functional.interpolate(torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float(),
                                                     size=(1024, 1024), mode="bilinear")[0].permute(1, 2, 0))
    x = (img / 255.0 - 0.5).astype(np.float32).transpose(2, 0, 1)[None].copy()
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["output"], {"input": x})[0]
    net = load_onnx_weights(ISNet(fused=True), path).eval()
    with torch.inference_mode():
        ours = torch.sigmoid(net(torch.from_numpy(x))).numpy()
    diff = np.abs(ours - ref)
    assert diff.max() < 5e-3, diff.max()  # the export computes in fp16
    assert (ref > 0.5).mean() > 0.2  # the astronaut is found


def test_real_weights_onnxruntime_runtime_matches_torch() -> None:
    """The cards' runtime (our module's any-size export on onnxruntime) against PyTorch at 640 px."""
    pytest.importorskip("onnxruntime")
    from add_pipeline import weights

    try:
        weights.resolve("isnet-medium")
    except weights.WeightsError:
        pytest.skip("isnet-medium is not fetched (liwi weights fetch)")
    from skimage import data

    image = data.astronaut()[:, 64:448]  # 512 x 384: not square, as photos are
    isnet_tools._MAPS.clear()
    tools = [isnet_tools.IsNetProposer(device="cpu", runtime=r) for r in ("torch", "onnxruntime")]
    maps = [t.soft_map(image) for t in tools]
    assert maps[0] is not maps[1] and tools[1]._net.path.is_file()  # onnxruntime really ran, on the export
    assert np.abs(maps[0] - maps[1]).max() < 1e-3
    assert (maps[1] > 0.5).mean() > 0.2


# ---------------------------------------------------------------- instances


def test_split_two_discs_joined_by_a_thin_bridge() -> None:
    hw = (120, 220)
    a, b = _disc(hw, 60, 55, 40), _disc(hw, 60, 165, 40)
    bridge = np.zeros(hw, bool)
    bridge[57:63, 90:132] = True
    comp = a | b | bridge
    parts = split_instances(comp)
    assert len(parts) == 2
    assert not (parts[0] & parts[1]).any() and ((parts[0] | parts[1]) == comp).all()
    for disc in (a, b):
        best = max(float((p & disc).sum()) / float((p | disc).sum()) for p in parts)
        assert best > 0.9


def test_no_split_at_a_wide_junction_or_a_thin_limb() -> None:
    hw = (120, 220)
    wide = _disc(hw, 60, 60, 40) | _disc(hw, 60, 150, 40)
    wide[35:85, 60:150] = True
    assert len(split_instances(wide)) == 1
    limb = _disc(hw, 60, 80, 45)
    limb[58:62, 120:200] = True  # an arm: thin, and small next to the body
    assert len(split_instances(limb)) == 1


def test_split_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        split_instances(np.ones((10, 10), bool), neck_ratio=0.0)


# ---------------------------------------------------------------- tools on a known soft map


@pytest.fixture()
def known_map(monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    """Make every IS-Net tool see a fixed soft map: two touching discs and a separate soft blob."""
    hw = (120, 220)
    prob = np.zeros(hw, np.float32)
    prob[_disc(hw, 60, 55, 40) | _disc(hw, 60, 165, 40)] = 1.0
    prob[57:63, 90:132] = 1.0
    prob[_disc(hw, 15, 200, 8)] = 0.9
    monkeypatch.setattr(isnet_tools.IsNetRuntime, "soft_map", lambda self, image: prob)
    return prob


def test_proposer_gives_instances_best_first(known_map: np.ndarray) -> None:
    image = np.zeros(known_map.shape + (3,), np.uint8)
    props = isnet_tools.IsNetProposer(checkpoint="unused")(image, max_objects=5)
    assert len(props) == 3
    areas = [int(p.mask.sum()) for p in props]
    assert areas[0] > 4000 and areas[1] > 4000 and areas[2] < 300
    assert props[0].score == pytest.approx(1.0)
    x0, y0, x1, y1 = props[2].box
    assert (x0, y0) == (192, 7) and (x1, y1) == (209, 24)
    assert len(isnet_tools.IsNetProposer(checkpoint="unused", split=False)(image, max_objects=5)) == 2


def test_segmenter_uses_prior_or_box(known_map: np.ndarray) -> None:
    image = np.zeros(known_map.shape + (3,), np.uint8)
    seg = isnet_tools.IsNetSegmenter(checkpoint="unused")
    prior = _disc(known_map.shape, 60, 55, 40)
    prior[60, 55] = False  # a one-pixel hole is filled
    out = seg(image, (15, 20, 96, 101), prior)
    assert out.mask[60, 55] and out.mask.sum() == _disc(known_map.shape, 60, 55, 40).sum()
    boxed = seg(image, (190, 0, 220, 26), None)
    assert boxed.mask.sum() == _disc(known_map.shape, 15, 200, 8).sum()
    assert boxed.score == pytest.approx(0.9)
    assert seg(image, (0, 110, 10, 120), None).mask.sum() == 0  # nothing in the box


def test_matter_recovers_a_soft_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    """A red disc with a soft (linear ramp) edge over a textured background: alpha comes back."""
    hw = (96, 96)
    yy, xx = np.mgrid[0:96, 0:96]
    r = np.hypot(yy - 48, xx - 48)
    alpha = np.clip((30 - r) / 6 + 0.5, 0, 1).astype(np.float32)
    rng = np.random.default_rng(0)
    bg = np.clip(0.2 + 0.1 * rng.standard_normal(hw + (3,)), 0, 1)
    bg[..., 1] += 0.3 * (xx / 96.0)
    fg = np.array([0.9, 0.1, 0.1])
    image = np.round(np.clip(alpha[..., None] * fg + (1 - alpha[..., None]) * bg, 0, 1) * 255).astype(np.uint8)
    monkeypatch.setattr(isnet_tools.IsNetRuntime, "soft_map", lambda self, img: alpha)
    m = isnet_tools.IsNetMatter(checkpoint="unused")(image, alpha > 0.5, band=3)
    def soft_iou(a: np.ndarray) -> float:
        return float(np.minimum(a, alpha).sum() / np.maximum(a, alpha).sum())

    hard = soft_iou((alpha > 0.5).astype(np.float32))
    assert soft_iou(m.alpha) > 0.93 and soft_iou(m.alpha) > hard + 0.03, (soft_iou(m.alpha), hard)
    assert m.alpha.dtype == np.float32 and m.foreground.shape == hw + (3,)
    with pytest.raises(ToolError, match="low < high"):
        isnet_tools.IsNetMatter(checkpoint="unused", low=0.9, high=0.1)


# ---------------------------------------------------------------- tools on a tiny random network


def test_tools_run_a_tiny_checkpoint_and_share_one_forward(tiny_pt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isnet_tools._MAPS.clear()
    calls = []
    original = isnet_tools.IsNetRuntime._forward
    monkeypatch.setattr(isnet_tools.IsNetRuntime, "_forward",
                        lambda self, items: calls.append(len(items)) or original(self, items))
    image = np.random.default_rng(0).integers(0, 255, (90, 130, 3), np.uint8)
    prop = isnet_tools.IsNetProposer(checkpoint=str(tiny_pt), input_size=128, threshold=0.0, min_area_frac=0.0,
                                     device="cpu")
    seg = isnet_tools.IsNetSegmenter(checkpoint=str(tiny_pt), input_size=128, device="cpu")
    out = prop(image, max_objects=3)
    m = prop.soft_map(image)
    assert m.shape == (90, 130) and m.dtype == np.float32 and 0.0 <= m.min() and m.max() <= 1.0
    seg(image, (0, 0, 130, 90), None)
    assert calls == [1]  # one forward for the proposer, the segmenter and the second soft_map call
    assert all(p.mask is not None and p.mask.shape == (90, 130) for p in out)
    assert isnet_tools.network_size((90, 130), 128) == (96, 128)


def test_onnxruntime_runtime_matches_torch_and_exports_once(tiny_pt: Path) -> None:
    pytest.importorskip("onnxruntime")
    from add_pipeline.tools.models import isnet_ort

    isnet_tools._MAPS.clear()
    stale = isnet_ort.export_path(tiny_pt).with_name(isnet_ort.export_path(tiny_pt).name + ".tmp-999999")
    stale.write_bytes(b"half an export from a killed worker")
    image = np.random.default_rng(2).integers(0, 255, (90, 130, 3), np.uint8)
    maps = {}
    for runtime in ("torch", "onnxruntime"):
        tool = isnet_tools.IsNetProposer(checkpoint=str(tiny_pt), input_size=128, device="cpu", runtime=runtime)
        x = np.random.default_rng(3).random((3, 96, 128), np.float32) - 0.5
        tool.ensure_loaded()
        maps[runtime] = (tool.forward(x), tool._forward([x, x, x[:, :64]]))  # one, a batch of two sizes
    (one_t, batch_t), (one_o, batch_o) = maps["torch"], maps["onnxruntime"]
    assert np.abs(one_t - one_o).max() < 1e-4 and one_t.shape == (96, 128)
    assert [b.shape for b in batch_o] == [(96, 128), (96, 128), (64, 128)]
    assert max(float(np.abs(a - b).max()) for a, b in zip(batch_t, batch_o)) < 1e-4
    # the export sits beside the weights, named by their digest, and is reused, not rebuilt
    export = isnet_ort.export_path(tiny_pt)
    assert export.is_file() and export.parent == tiny_pt.parent
    stamp = export.stat().st_mtime_ns
    assert isnet_ort.ensure_export(tiny_pt, lambda: pytest.fail("rebuilt")) == export
    assert export.stat().st_mtime_ns == stamp
    assert not list(tiny_pt.parent.glob("*.tmp-*"))  # the stale one removed, ours renamed
    # the soft maps of the two runtimes are computed (and cached) apart
    by_runtime = [isnet_tools.IsNetProposer(checkpoint=str(tiny_pt), input_size=128, device="cpu", runtime=r)
                  .soft_map(image) for r in ("torch", "onnxruntime")]
    assert by_runtime[0] is not by_runtime[1] and np.abs(by_runtime[0] - by_runtime[1]).max() < 1e-3


def test_onnxruntime_threads_follow_omp_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from add_pipeline.tools.models import isnet_ort

    for value, want in (("1", 1), ("4,2", 4), ("", 0), ("many", 0)):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert isnet_ort.omp_threads() == want


def test_onnxruntime_runtime_refuses_cuda_and_half_precision(tiny_pt: Path) -> None:
    for kw in ({"device": "cuda"}, {"precision": "fp16"}):
        with pytest.raises(ToolError, match="use runtime: torch"):
            isnet_tools.IsNetProposer(checkpoint=str(tiny_pt), runtime="onnxruntime", **kw)
    with pytest.raises(ToolError, match="runtime must be one of"):
        isnet_tools.IsNetProposer(checkpoint=str(tiny_pt), runtime="tensorrt")


def test_missing_weights_name_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIWI_WEIGHTS_DIR", str(tmp_path))
    tool = isnet_tools.IsNetProposer(checkpoint="isnet-medium")
    problems = tool.check()
    assert problems and "liwi weights fetch" in problems[0]
    with pytest.raises(ToolError, match="liwi weights fetch"):
        tool(np.zeros((64, 64, 3), np.uint8), max_objects=1)
    assert "not found" in isnet_tools.IsNetProposer(checkpoint=str(tmp_path / "nope.onnx")).check()[0]


# ---------------------------------------------------------------- the default workflow, with and without weights


def _one_photo(tmp_path: Path) -> Path:
    from PIL import Image
    from skimage import data

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(data.astronaut()).save(folder / "astronaut.png")
    return folder


def test_without_weights_the_run_falls_back_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from click.testing import CliRunner

    from add_pipeline.cli import main
    from add_pipeline.core.config import load_workflow
    from add_pipeline.exec.fallback import runnable_workflow

    monkeypatch.setenv("LIWI_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    wf, note = runnable_workflow(load_workflow("cpu-default"))
    assert wf.name == "cpu-classical" and note is not None
    assert note["from"] == "cpu-default" and "liwi weights fetch" in note["reason"]
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", "--input", str(_one_photo(tmp_path)), "--out", str(out), "--local",
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "instead of cpu-default" in res.output
    run = json.loads((out / "run.json").read_text())
    assert run["workflow"]["name"] == "cpu-classical" and run["fallback"]["to"] == "cpu-classical"
    stats = CliRunner().invoke(main, ["stats", str(out)])
    assert "fallback     cpu-default -> cpu-classical" in stats.output


@pytest.mark.slow
def test_default_workflow_cuts_the_whole_astronaut(tmp_path: Path) -> None:
    """With the real weights: one object layer holding the astronaut, face and suit, recomposing exactly."""
    from add_pipeline import weights

    try:
        weights.resolve("isnet-medium")
    except weights.WeightsError:
        pytest.skip("isnet-medium is not fetched (liwi weights fetch)")
    from add_pipeline.core.composite import alpha_over
    from add_pipeline.eval.readers import read_shard_stacks
    from add_pipeline.exec.run import RunOptions, run

    out = tmp_path / "out"
    stats = run(RunOptions(input=str(_one_photo(tmp_path)), out=out, local=True, progress=False))
    assert stats["accepted"] == 1 and stats["fallback"] is None and stats["workflow"] == "cpu-default"
    stack = read_shard_stacks(out)["astronaut.png"]
    objects = [lay.rgba[..., 3] / 255.0 for lay in stack if lay.kind == "object"]
    best = max(objects, key=lambda a: float(a[90:140, 180:250].mean()))
    assert best[90:140, 180:250].mean() > 0.8  # her face
    assert best[330:400, 120:200].mean() > 0.8  # her suit, in the same layer
    assert best[20:60, 440:500].mean() < 0.1  # not the sky beside the shuttle
    from skimage import data

    recomposed = np.round(alpha_over([lay.rgba for lay in stack]) * 255)
    assert np.abs(recomposed - data.astronaut().astype(float)).max() <= 8
