"""Per-tool latency of the model tools on CPU, BASE-size architectures with RANDOM weights.

This measures architecture cost (what a forward pass of the real model's shape costs here), not
quality: no trained weights are used or needed. Each tool runs through its own adapter (load from a
``save_pretrained`` folder, preprocessing, forward, postprocessing) on a 512x384 photo-sized input
(the default working size); the networks then resize to their own input resolution, noted per row.
Writes ``bench/results/models.json`` and ``models.md``.

    python bench/bench_models.py            # every tool, median of 3 runs after one warm-up
    python bench/bench_models.py --quick    # one run each, skips Grounding DINO (the slowest build)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from add_pipeline.tools.models.offline_tokenizers import write_bert_tokenizer, write_clip_tokenizer

NOTE = ("random-weight BASE-size architectures on CPU: measures architecture cost, not quality; "
        "outputs of these models are meaningless")




def _pre(d: Path, cfg: dict[str, Any]) -> None:
    (d / "preprocessor_config.json").write_text(json.dumps(cfg))


IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}


def build_grounding_dino(d: Path) -> str:
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection

    GroundingDinoForObjectDetection(GroundingDinoConfig()).save_pretrained(d)  # = grounding-dino-tiny's shape
    write_bert_tokenizer(d)
    _pre(d, {**IMAGENET, "size": {"shortest_edge": 800, "longest_edge": 1333}})
    return "Swin-T + BERT-base, short side 800"


def build_owlv2(d: Path) -> str:
    from transformers import Owlv2Config, Owlv2ForObjectDetection

    cfg = Owlv2Config(vision_config={"image_size": 960, "patch_size": 16},
                      text_config={"bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 1})
    Owlv2ForObjectDetection(cfg).save_pretrained(d)
    write_clip_tokenizer(d)
    return "ViT-B/16, 960x960"


def build_sam(d: Path) -> str:
    from transformers import SamConfig, SamModel

    SamModel(SamConfig()).save_pretrained(d)
    return "ViT-B, 1024x1024"


def build_sam2(d: Path) -> str:
    from transformers import Sam2Config, Sam2Model

    Sam2Model(Sam2Config()).save_pretrained(d)
    return "Hiera-T, 1024x1024"


def build_vitmatte(d: Path) -> str:
    from transformers import VitMatteConfig, VitMatteForImageMatting

    backbone = {"model_type": "vitdet", "hidden_size": 384, "num_attention_heads": 6, "num_hidden_layers": 12,
                "num_channels": 4, "image_size": 512, "pretrain_image_size": 224, "patch_size": 16,
                "out_features": ["stage12"], "use_relative_position_embeddings": True,
                "window_block_indices": [0, 1, 3, 4, 6, 7, 9, 10], "residual_block_indices": [2, 5, 8, 11],
                "window_size": 14}
    cfg = VitMatteConfig(backbone_config=backbone, hidden_size=384, convstream_hidden_sizes=[48, 96, 192],
                         fusion_hidden_sizes=[256, 128, 64, 32])
    VitMatteForImageMatting(cfg).save_pretrained(d)
    _pre(d, {"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "size_divisibility": 32})
    return "ViTDet-S, crop around the unknown band"


def build_depth_anything(d: Path) -> str:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation

    backbone = {"model_type": "dinov2", "hidden_size": 384, "num_attention_heads": 6, "num_hidden_layers": 12,
                "image_size": 518, "patch_size": 14, "out_indices": [3, 6, 9, 12], "reshape_hidden_states": False,
                "apply_layernorm": True}
    DepthAnythingForDepthEstimation(DepthAnythingConfig(backbone_config=backbone)).save_pretrained(d)
    _pre(d, {**IMAGENET, "size": {"height": 518, "width": 518}, "ensure_multiple_of": 14})
    return "DINOv2-S + DPT, 518 short side"


def _inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (384, 512, 3), dtype=np.uint8)
    a = np.zeros((384, 512), bool)
    a[100:300, 150:350] = True
    b = np.zeros((384, 512), bool)
    b[50:200, 300:480] = True
    return image, a, b


def cases() -> dict[str, tuple[str, str, Callable[[Path], str], Callable[[Any], Any]]]:
    image, a, b = _inputs()
    return {
        "grounding-dino": ("propose", "grounding-dino", build_grounding_dino, lambda t: t(image, 4, labels=["cat"])),
        "owlv2": ("propose", "owlv2", build_owlv2, lambda t: t(image, 4, labels=["cat"])),
        "sam": ("segment", "sam", build_sam, lambda t: t(image, (150, 100, 350, 300), a)),
        "sam2": ("segment", "sam2", build_sam2, lambda t: t(image, (150, 100, 350, 300), a)),
        "vitmatte": ("matte", "vitmatte", build_vitmatte, lambda t: t(image, a)),
        "depth-anything": ("order", "depth-anything", build_depth_anything, lambda t: t(image, [a, b])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one run per tool, skip grounding-dino")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=None, help="tool names to run")
    ap.add_argument("--lama", default=None, help="a LaMa TorchScript file to time as well")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()

    import torch

    import add_pipeline.tools.models  # noqa: F401  (registers the model tools)
    from add_pipeline.tools.base import build_tool

    runs = 1 if args.quick else args.runs
    rows = []
    todo = cases()
    names = args.only or [n for n in todo if not (args.quick and n == "grounding-dino")]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            family, backend, build, call = todo[name]
            d = Path(tmp) / name
            d.mkdir()
            arch = build(d)
            tool = build_tool(family, backend, checkpoint=str(d), device="cpu")
            t0 = time.perf_counter()
            call(tool)  # first call: load + warm-up
            first = time.perf_counter() - t0
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                call(tool)
                times.append(time.perf_counter() - t0)
            params = sum(p.numel() for p in tool._model.parameters())
            rows.append({"tool": name, "arch": arch, "params_m": round(params / 1e6, 1),
                         "first_call_s": round(first, 3), "median_s": round(statistics.median(times), 3),
                         "runs": runs})
            print(f"{name:<16}{rows[-1]['median_s']:>8.3f} s  ({arch}, {rows[-1]['params_m']} M params)", flush=True)
            del tool
        if args.lama:
            image, a, _ = _inputs()
            tool = build_tool("inpaint", "lama", checkpoint=args.lama, device="cpu")
            tool(image, a)
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                tool(image, a)
                times.append(time.perf_counter() - t0)
            rows.append({"tool": "lama", "arch": f"TorchScript {args.lama}", "median_s": statistics.median(times),
                         "runs": runs})
    meta = {"note": NOTE, "input": "512x384 uint8", "device": "cpu", "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "platform": platform.platform(), "processor": platform.processor()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "models.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = ["# Model tools: CPU latency (random weights)", "", f"**{NOTE}.**", "",
             f"Input {meta['input']}; torch {meta['torch']}, {meta['torch_threads']} threads; {meta['platform']}.", "",
             "| tool | architecture / network input | params (M) | first call s (load + warm-up) | median s | runs |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['tool']} | {r['arch']} | {r.get('params_m', '-')} | {r.get('first_call_s', '-')} | "
                     f"{r['median_s']:.3f} | {r['runs']} |")
    if not args.lama:
        lines += ["", "LaMa is not timed: its architecture is not in transformers; pass `--lama weights/big-lama.pt`."]
    (args.out / "models.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'models.json'} and models.md")


if __name__ == "__main__":
    main()
