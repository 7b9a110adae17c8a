"""Command-line entry points of the decomposition model: ``train``, ``eval-model``, ``decompose``.

Plain click commands; attach them to the main group with ``main.add_command(train_cmd)`` etc.
(or use :data:`COMMANDS`).  Heavy imports (torch) happen inside the commands, so ``liwi --help``
stays fast.  The work itself lives in functions (:func:`eval_model`, :func:`decompose_files`)
that tests and notebooks call directly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click


@click.command("train")
@click.option("--data", "data", multiple=True, required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Shard folder with layered ground truth (repeat the option for several).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Run folder.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TrainConfig as YAML or JSON (default: the built-in defaults; with --init, the "
                   "fields it sets replace those of the source's config).")
@click.option("--resume", is_flag=True, help="Continue from RUN/ckpt.pt (with the config saved in RUN).")
@click.option("--init", "init", default=None, metavar="SOURCE",
              help="Fine-tune: start from these weights (a run folder, checkpoint or 'bundled') "
                   "and from the config they were trained with.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Train this many steps (replaces the config's steps; e.g. a short fine-tune).")
def train_cmd(data: tuple[Path, ...], out: Path, config_path: Path | None, resume: bool, init: str | None,
              steps: int | None) -> None:
    """Train the layer decomposer on layered shards (from random weights, or from --init's)."""
    from add_pipeline.model.config import TrainConfig, load_config, read_config_file
    from add_pipeline.model.infer import load_model
    from add_pipeline.model.train import train

    try:
        if resume and config_path is None and (out / "config.json").is_file():
            cfg = load_config(out / "config.json")  # resume continues the run as it was configured
        elif init is not None:
            try:  # the recipe (and inference settings) the weights came with, then the file's changes
                base = load_model(init).train_config
            except (FileNotFoundError, ValueError) as e:
                raise click.ClickException(f"--init: {e}") from e
            cfg = base.with_overrides(**{**(read_config_file(config_path) if config_path else {}), "init": init})
        else:
            cfg = load_config(config_path) if config_path is not None else TrainConfig()
        if steps is not None:
            cfg = cfg.with_overrides(steps=steps)
    except ValueError as e:
        raise click.ClickException(f"{config_path or out / 'config.json'}: {e}") from e
    try:
        summary = train(list(data), out, cfg, resume=resume, log=click.echo)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))


@click.command("eval-model")
@click.option("--model", "model_src", default="bundled", show_default=True,
              help="Run folder, checkpoint file, or 'bundled'.")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Benchmark: a shard folder of layered ground truth.")
@click.option("--out", "report", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Report path; writes REPORT.json and REPORT.md (the suffix is replaced).")
@click.option("--source-kind", type=click.Choice(["composed", "decomposed", "any"]), default="composed",
              show_default=True, help="Which rows of the benchmark to score (by their source_kind).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Score at most N samples.")
@click.option("--size", type=click.IntRange(min=32), default=None,
              help="Network working size (default: training size).")
@click.option("--name", default="model", show_default=True, help="Method name in the Markdown table.")
def eval_model_cmd(model_src: str, data: Path, report: Path, source_kind: str, limit: int | None,
                   size: int | None, name: str) -> None:
    """Run the model on every sample of a benchmark and score it (LayerD protocol + per-kind figures)."""
    from add_pipeline.eval.report import to_markdown

    try:
        result = eval_model(model_src, data, source_kind=source_kind, limit=limit, size=size)
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    report.parent.mkdir(parents=True, exist_ok=True)
    report.with_suffix(".json").write_text(json.dumps(result, indent=2, default=float))
    md = to_markdown({name: result})
    report.with_suffix(".md").write_text(md)
    click.echo(md)
    if result["failed"]:
        click.echo(f"warning: {len(result['failed'])} samples failed (see the JSON)", err=True)


@click.command("decompose")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: layers/<id>/NN_<name>.png and a shard part per call.")
@click.option("--model", "model_src", default="bundled", show_default=True,
              help="Run folder, checkpoint file, or 'bundled'.")
@click.option("--working-size", type=click.IntRange(min=32), default=512, show_default=True,
              help="Photos are downscaled so their long side is at most this; layers come out at that size.")
@click.option("--size", type=click.IntRange(min=32), default=None,
              help="Network working size (default: training size).")
def decompose_cmd(images: tuple[Path, ...], out: Path, model_src: str, working_size: int, size: int | None) -> None:
    """Decompose photos into layers with the model (no agents, one network pass per photo)."""
    try:
        res = decompose_files(list(images), out, model_src, working_size=working_size, size=size)
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"{res['accepted']} decomposed, {res['rejected']} rejected, {res['skipped']} already done -> {out}")


COMMANDS = (train_cmd, eval_model_cmd, decompose_cmd)


# ---------------------------------------------------------------- the work


def eval_model(model_src: str | Path, bench: str | Path, source_kind: str = "composed", limit: int | None = None,
               size: int | None = None, max_merges: int = 5,
               inference: dict[str, float | bool] | None = None) -> dict[str, Any]:
    """Decompose every (selected) sample photo of a benchmark shard folder and score it against its layers.

    ``inference`` overrides the checkpoint's inference settings (those of
    :data:`~add_pipeline.model.config.INFERENCE_FIELDS`), e.g. to calibrate them on a validation split.

    Returns the :func:`~add_pipeline.eval.report.evaluate_stacks` report, with the model, benchmark
    and recomposition error (mean / max grey levels over samples) added under ``protocol``.

    Raises:
        ValueError: no sample of the benchmark matches ``source_kind``.
    """
    import numpy as np
    import pyarrow.parquet as pq

    from add_pipeline.core.composite import recomposition_error
    from add_pipeline.eval.kinds import EvalLayer
    from add_pipeline.eval.readers import read_shard_stacks
    from add_pipeline.eval.report import evaluate_stacks
    from add_pipeline.io.images import decode_png
    from add_pipeline.io.shards import ShardStore
    from add_pipeline.model.infer import decompose_image, load_model

    model = load_model(model_src)
    if inference:
        model.train_config = model.train_config.with_inference(**inference)  # type: ignore[attr-defined]
    gt_all = read_shard_stacks(bench)
    photos: dict[str, bytes] = {}
    for part in ShardStore(bench).committed_files("shards"):
        for r in pq.read_table(part, columns=["sample_id", "source_kind", "image"]).to_pylist():
            if source_kind == "any" or r["source_kind"] == source_kind:
                photos[r["sample_id"]] = r["image"]["bytes"]
    if not photos:
        raise ValueError(f"{bench}: no committed samples with source_kind={source_kind!r} "
                         "(--source-kind any scores every row)")
    ids = sorted(photos)[:limit] if limit else sorted(photos)
    pred: dict[str, list[EvalLayer]] = {}
    errors = []
    for sid in ids:
        rgb = decode_png(photos[sid])[..., :3]
        layers = decompose_image(model, rgb, size=size)
        errors.append(recomposition_error(rgb, [lay.rgba for lay in layers]))
        pred[sid] = [EvalLayer(rgba=lay.rgba, kind=lay.kind, name=lay.name, parent=lay.parent)  # type: ignore[arg-type]
                     for lay in layers]
    gt = {sid: gt_all[sid] for sid in ids}
    report = evaluate_stacks(pred, gt, max_merges=max_merges)
    report["protocol"].update({
        "model": str(model_src), "bench": str(bench), "source_kind": source_kind, "size": size or model.config.size,
        "recompose_mean": float(np.mean([e[0] for e in errors])), "recompose_max": float(max(e[1] for e in errors)),
    })
    return report


def decompose_files(images: Sequence[Path], out: Path, model_src: str | Path = "bundled",
                    working_size: int = 512, size: int | None = None) -> dict[str, int]:
    """Decompose photos into ``out``: PNGs under ``out/layers/<id>/`` and one committed shard part.

    Sample ids are the file stems (``_2``, ``_3``... appended on collisions); ids already committed
    in ``out`` are skipped, so rerunning the same command is a no-op.  Unreadable photos become
    reject rows (stage ``load``) with the reason.
    """
    from add_pipeline.core.composite import recomposition_error
    from add_pipeline.io.images import InputError, encode_png, load_image
    from add_pipeline.io.names import child, safe_name
    from add_pipeline.io.shards import ShardStore
    from add_pipeline.model.infer import decompose_image, load_model
    from add_pipeline.tools.encoder import LayeredRowEncoder

    model = load_model(model_src)
    workflow = f"model:{model_src}"
    store = ShardStore(out)
    store.prepare()
    done = store.done_ids()
    accepted: list[dict] = []
    rejected: list[dict] = []
    used: set[str] = set()
    skipped = 0
    for path in images:
        sid = path.stem
        n = 2
        while sid in used:
            sid, n = f"{path.stem}_{n}", n + 1
        used.add(sid)
        if sid in done:
            skipped += 1
            continue
        trace_id = hashlib.sha1(f"{workflow}|{sid}".encode()).hexdigest()[:16]
        try:
            loaded = load_image(path, working_size=working_size)
        except InputError as e:
            rejected.append({"sample_id": sid, "source": str(path), "stage": "load", "reason": e.reason,
                             "trace_id": trace_id, "workflow": workflow, "rejected_at": datetime.now(UTC)})
            continue
        layers = decompose_image(model, loaded.rgb, size=size)
        folder = child(out / "layers", sid)
        folder.mkdir(parents=True, exist_ok=True)
        for z, lay in enumerate(layers):
            (folder / f"{z:02d}_{safe_name(lay.name)}.png").write_bytes(encode_png(lay.rgba))
        mean, worst = recomposition_error(loaded.rgb, [lay.rgba for lay in layers])
        meta = {"load_notes": loaded.notes, "original_size": loaded.original_size, "model": str(model_src),
                "recompose_mean": mean, "recompose_max": worst}
        row = LayeredRowEncoder()(sid, str(path), loaded.rgb, layers, {"sample": {"recompose_max": worst}}, meta)
        accepted.append({**row, "trace_id": trace_id, "workflow": workflow})
    store.commit(accepted, rejected, [])
    return {"accepted": len(accepted), "rejected": len(rejected), "skipped": skipped}
