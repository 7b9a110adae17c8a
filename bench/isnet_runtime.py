"""Is there a cheaper IS-Net on this CPU? Our PyTorch module against onnxruntime on its own export, fp32
and statically quantised to int8, at the pipeline's 640 px.

For the 13 photos of ``../shared/data/photos`` (resized so the long side is 640, aspect kept, multiples
of 32 as :func:`~add_pipeline.tools.models.isnet.network_size`): median seconds of one forward on one
thread, and the int8 map's agreement with fp32 (mean absolute difference of the min-max normalised
maps, IoU of their masks > 0.5). The export and the quantised copy live in a temporary folder.

    python bench/isnet_runtime.py [--out bench/results]

Writes ``isnet_runtime.md`` and ``.json``. Needs the weights (``liwi weights fetch``) and onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quant_pre_process, quantize_static

from add_pipeline import weights
from add_pipeline.eval.real import read_image
from add_pipeline.tools.models.isnet import network_size
from add_pipeline.tools.models.isnet_net import ISNet, load_onnx_weights

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos"


def inputs() -> list[tuple[str, np.ndarray]]:
    """``(name, 1x3xHxW float32 = RGB/255 - 0.5)`` per photo at 640 px long side."""
    out = []
    for path in sorted(PHOTOS.glob("*.jpg")):
        img = read_image(path)
        h, w = network_size(img.shape[:2], 640)
        x = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0 - 0.5
        out.append((path.name, x.transpose(2, 0, 1)[None].copy()))
    return out


def normalised(logits: np.ndarray) -> np.ndarray:
    """``HxW`` map in [0, 1]: sigmoid, then min-max, as the tools do."""
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    return (p - p.min()) / max(p.max() - p.min(), 1e-6)


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def timed(fn, data: list[tuple[str, np.ndarray]]) -> tuple[float, list[np.ndarray]]:  # type: ignore[no-untyped-def]
    fn(data[0][1])  # warm-up
    secs, outs = [], []
    for _, x in data:
        t0 = time.perf_counter()
        outs.append(fn(x))
        secs.append(time.perf_counter() - t0)
    return statistics.median(secs), outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    net = load_onnx_weights(ISNet(fused=True), weights.resolve("isnet-medium")).eval()
    data = inputs()
    with torch.inference_mode():
        t_torch, _ = timed(lambda x: net(torch.from_numpy(x)).numpy()[0, 0], data)
    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre, int8 = Path(tmp) / "isnet.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        torch.onnx.export(net, torch.from_numpy(data[0][1]), str(fp32), input_names=["input"],
                          output_names=["output"], opset_version=17, dynamo=False,
                          dynamic_axes={"input": {2: "h", 3: "w"}, "output": {2: "h", 3: "w"}})
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.items = iter([{"input": x} for _, x in data[:8]])

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self.items, None)

        quantize_static(str(pre), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        s32, s8 = session(fp32), session(int8)
        t_fp32, out32 = timed(lambda x: s32.run(None, {"input": x})[0][0, 0], data)
        t_int8, out8 = timed(lambda x: s8.run(None, {"input": x})[0][0, 0], data)
    agree = {}
    for (name, _), a, b in zip(data, out32, out8):
        pa, pb = normalised(a), normalised(b)
        ma, mb = pa > 0.5, pb > 0.5
        agree[name] = {"mad": float(np.abs(pa - pb).mean()),
                       "mask_iou": float((ma & mb).sum() / max((ma | mb).sum(), 1))}
    res = {"seconds": {"torch fp32": t_torch, "onnxruntime fp32": t_fp32, "onnxruntime int8 (static, QDQ)": t_int8},
           "int8_vs_fp32": agree, "photos": len(data)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "isnet_runtime.json").write_text(json.dumps(res, indent=2))
    ious = [v["mask_iou"] for v in agree.values()]
    md = ["# IS-Net runtimes on this CPU (`python bench/isnet_runtime.py`)", "",
          f"{len(data)} photos at 640 px long side, one thread, median seconds per forward (after one warm-up).", "",
          "| runtime | s / photo |", "|---|---|"]
    md += [f"| {k} | {v:.2f} |" for k, v in res["seconds"].items()]
    md += ["", f"int8 against fp32 (onnxruntime): mask IoU (> 0.5) median {np.median(ious):.3f}, min {min(ious):.3f}; "
           "per photo: " + ", ".join(f"{n} {v['mask_iou']:.2f}" for n, v in agree.items()) + "."]
    (args.out / "isnet_runtime.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
