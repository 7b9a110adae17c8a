"""``liwi``: the command line (run, stats, show, traces, samples)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from add_pipeline.cli_tools import tools
from add_pipeline.core.config import ConfigError
from add_pipeline.export.cli import export_cmd
from add_pipeline.model.cli import COMMANDS as MODEL_COMMANDS
from add_pipeline.report.cli import report_cmd
from add_pipeline.weights.cli import weights


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="add-pipeline")
def main() -> None:
    """ADD: decompose photos into layered (background / shadow / object) Parquet shards."""


@main.command()
@click.option("--input", "input_", required=True, help="Folder (recursive), glob, or JSONL manifest.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--workflow", default="cpu-default", show_default=True, help="Workflow name or YAML path.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Process at most N inputs.")
@click.option("--shard-size", type=click.IntRange(min=1), default=64, show_default=True, help="Samples per commit.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Parallel tool workers [default: CPUs].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed passed to every seeded tool.")
@click.option("--ray-address", envvar="RAY_ADDRESS", default=None, help="Join this Ray cluster (or $RAY_ADDRESS).")
@click.option("--ray-timeout", type=click.FloatRange(min=0.1), default=15.0, show_default=True,
              help="Seconds to wait for --ray-address to answer before giving up.")
@click.option("--overwrite", is_flag=True, help="Delete previous output in OUT and start over.")
@click.option("--local", is_flag=True, help="Run tools in this process instead of Ray (debugging).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--license", "license_id", default="unknown", show_default=True,
              help="Licence of the data (a Hugging Face licence id) for the dataset card OUT/README.md.")
def run(input_: str, out: Path, workflow: str, limit: int | None, shard_size: int, workers: int | None,
        seed: int, ray_address: str | None, ray_timeout: float, overwrite: bool, local: bool,
        no_progress: bool, license_id: str) -> None:
    """Decompose every photo of INPUT into layers; rerun the same command to resume."""
    from add_pipeline.exec.run import RunError, RunOptions
    from add_pipeline.exec.run import run as run_job

    opts = RunOptions(input=input_, out=out, workflow=workflow, limit=limit, shard_size=shard_size, workers=workers,
                      seed=seed, ray_address=ray_address, overwrite=overwrite, local=local,
                      progress=not no_progress, ray_timeout_s=ray_timeout, license=license_id)
    try:
        stats = run_job(opts)
    except (RunError, ConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # a full disk, a folder we may not write: committed work is safe
        raise click.ClickException(f"{exc.filename or out}: {exc.strerror or exc}; fix that and rerun the same "
                                   "command (what was committed is kept)") from exc
    last = stats["last_run"]
    if stats.get("fallback"):
        fb = stats["fallback"]
        click.echo(f"warning: ran {fb['to']} instead of {fb['from']}: {fb['reason']}", err=True)
    click.echo(f"done: {last['processed']} processed this run ({last['accepted']} accepted, {last['rejected']} "
               f"rejected) in {last['wall_s']:.1f}s, {last['images_per_s']:.2f} img/s; "
               f"{stats['accepted']}/{stats['inputs_done']} accepted overall -> {out}")


@main.command()
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def stats(out: Path, as_json: bool) -> None:
    """Counts, acceptance, reject reasons and time per tool of the run in OUT."""
    from add_pipeline.exec.stats import compute_stats

    try:
        s = compute_stats(out)
    except (OSError, ValueError) as exc:  # a missing or damaged part: one line, naming it
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(s, indent=2, sort_keys=True))
        return
    if s.get("workflow"):
        click.echo(f"workflow     {s['workflow']}")
    if s.get("fallback"):
        fb = s["fallback"]
        click.echo(f"fallback     {fb['from']} -> {fb['to']}: {fb['reason']}")
    click.echo(f"inputs done  {s['inputs_done']}")
    click.echo(f"accepted     {s['accepted']}  ({100 * s['acceptance_rate']:.1f}%)")
    click.echo(f"rejected     {s['rejected']}")
    if s.get("duplicate_ids"):
        click.echo(f"DUPLICATES   {s['duplicate_ids']} ids committed more than once, e.g. "
                   f"{', '.join(s['duplicate_examples'][:3])}")
    click.echo(f"layers       {s['layers_total']} ({s['layers_per_sample']:.2f} per sample)")
    if s["reject_reasons"]:
        click.echo("\nreject reasons")
        for reason, n in s["reject_reasons"].items():
            click.echo(f"  {n:6d}  {reason}")
    click.echo(f"\n{'tool':<18}{'calls':>7}{'median s':>10}{'p90 s':>9}{'total s':>10}{'errors':>8}{'retries':>8}")
    for tool, t in s["tools"].items():
        def f(v: float | None, w: int) -> str:
            return f"{v:>{w}.3f}" if v is not None else f"{'-':>{w}}"
        click.echo(f"{tool:<18}{t['calls']:>7}{f(t['median_s'], 10)}{f(t['p90_s'], 9)}{f(t['total_s'], 10)}"
                   f"{t['errors']:>8}{t['retries']:>8}")


@main.command()
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("sample_id")
@click.option("--save", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write layer PNGs, the composite and the trace here.")
@click.option("--state", is_flag=True, help="Also print the graph's last checkpointed state (JSON).")
def show(out: Path, sample_id: str, save: Path | None, state: bool) -> None:
    """Show one sample: its layers (or why it was rejected) and its agent trace."""
    from add_pipeline.browse import find_sample, graph_state, render_trace, save_sample
    from add_pipeline.io.layered import scores_dict

    found = find_sample(out, sample_id)
    if found is None:
        raise click.ClickException(f"{sample_id!r} is neither in {out}/shards nor in {out}/rejects")
    kind, record = found
    if kind == "rejected":
        click.echo(f"{sample_id}: REJECTED at {record['stage']}: {record['reason']}  (source {record['source']})")
    else:
        click.echo(f"{sample_id}: accepted, {record['width']}x{record['height']}, source {record['source']}")
        for lay in record["layers"]:
            scores = ", ".join(f"{k}={v:.3g}" for k, v in sorted(scores_dict(lay["scores"]).items()))
            parent = f" parent={lay['parent']}" if lay["parent"] else ""
            click.echo(f"  z={lay['z']:<2} {lay['kind']:<10} {lay['name']:<14} bbox={lay['bbox']}{parent}  {scores}")
    trace = render_trace(out, record["trace_id"])
    if save is not None:
        written = save_sample(out, kind, record, trace, save)
        click.echo(f"wrote {len(written)} files to {written[0].parent if written else save}")
    click.echo("\n" + trace)
    if state:
        values = graph_state(out, record["trace_id"])
        click.echo("\n(no checkpoint kept for this sample)" if values is None else
                   "\ngraph state:\n" + json.dumps(values, indent=2, sort_keys=True, default=str))


@main.command()
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--sample", "sample_id", default=None, help="Show this sample's trace as a tree.")
@click.option("--sql", default=None, help="Run SQL over the views traces, shards, rejects (DuckDB).")
def traces(out: Path, sample_id: str | None, sql: str | None) -> None:
    """Read agent traces: one sample as a tree, or any SQL over all of them."""
    from add_pipeline.browse import find_sample, render_trace
    from add_pipeline.exec.stats import connect

    if (sample_id is None) == (sql is None):
        raise click.UsageError("give exactly one of --sample or --sql")
    if sql is not None:
        import duckdb

        try:
            con = connect(out, sandboxed=True)
        except (OSError, ValueError) as exc:
            raise click.ClickException(str(exc)) from exc
        try:
            rel = con.sql(sql)  # read-only: no files, no extensions, no settings
            if rel is not None:
                click.echo(_table(rel))
        except duckdb.PermissionException as exc:
            raise click.ClickException(f"SQL refused: queries may only read the views shards, traces and rejects "
                                       f"({str(exc).splitlines()[0]})") from exc
        except duckdb.Error as exc:
            raise click.ClickException(f"SQL error: {str(exc).splitlines()[0]}") from exc
        return
    found = find_sample(out, sample_id)  # type: ignore[arg-type]
    if found is None:
        raise click.ClickException(f"no sample {sample_id!r} in {out}")
    click.echo(render_trace(out, found[1]["trace_id"]))


def _table(rel: object) -> str:
    cols = rel.columns  # type: ignore[attr-defined]
    rows = rel.fetchall()  # type: ignore[attr-defined]
    cells = [[str(c) for c in cols]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [min(max(len(row[i]) for row in cells), 80) for i in range(len(cols))]
    lines = ["  ".join(v[:80].ljust(w) for v, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + f"\n({len(rows)} rows)"


@main.command()
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--assets", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Asset folder to write.")
def curate(out: Path, assets: Path) -> None:
    """Extract, score and filter reusable objects and background plates from the shards in OUT."""
    from add_pipeline.compose.curate import curate as run_curate

    try:
        summary = run_curate(out, assets)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(summary, indent=2, sort_keys=True, default=str))


def _exec_options(fn: click.decorators.FC) -> click.decorators.FC:
    """Flags shared by the stages that run on Ray (compose, synth)."""
    for opt in reversed([
        click.option("--workers", type=click.IntRange(min=1), default=None, help="Parallel workers [default: CPUs]."),
        click.option("--local", is_flag=True, help="Run tools in this process instead of Ray."),
        click.option("--overwrite", is_flag=True, help="Delete previous output and start over."),
        click.option("--no-progress", is_flag=True, help="Hide the progress bar."),
    ]):
        fn = opt(fn)
    return fn


@main.command("compose")
@click.option("--assets", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "n", required=True, type=click.IntRange(min=1), help="Number of compositions.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workflow", default="compose-default", show_default=True, help="Compose workflow name or YAML path.")
@click.option("--shard-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--ray-address", envvar="RAY_ADDRESS", default=None, help="Join this Ray cluster (or $RAY_ADDRESS).")
@click.option("--license", "license_id", default="unknown", show_default=True,
              help="Licence of the data (a Hugging Face licence id) for the dataset card OUT/README.md.")
@_exec_options
def compose_cmd(assets: Path, out: Path, n: int, seed: int, workflow: str, shard_size: int, ray_address: str | None,
                license_id: str, workers: int | None, local: bool, overwrite: bool, no_progress: bool) -> None:
    """Compose N layered samples with exact ground truth from curated ASSETS (resumable)."""
    from add_pipeline.compose.job import compose
    from add_pipeline.exec.run import RunError

    try:
        stats = compose(assets, out, n=n, seed=seed, workflow=workflow, workers=workers, shard_size=shard_size,
                        ray_address=ray_address, overwrite=overwrite, local=local, progress=not no_progress,
                        license_id=license_id)
    except (RunError, ConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    last = stats["last_run"]
    if stats.get("fallback"):
        fb = stats["fallback"]
        click.echo(f"warning: ran {fb['to']} instead of {fb['from']}: {fb['reason']}", err=True)
    click.echo(f"done: {last['processed']} composed this run ({last['accepted']} accepted, {last['rejected']} "
               f"rejected); {stats['accepted']} in {out}")


@main.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "n", type=click.IntRange(min=1), default=48, show_default=True)
@click.option("--seed", type=int, default=2605, show_default=True)
@_exec_options
def synth(out: Path, n: int, seed: int, workers: int | None, local: bool, overwrite: bool, no_progress: bool) -> None:
    """Build the deterministic benchmark split: compose N samples from the bundled photos."""
    from add_pipeline.exec.run import RunError
    from add_pipeline.synth import synth as build

    try:
        split = build(out, n=n, seed=seed, workers=workers, local=local, overwrite=overwrite,
                      progress=not no_progress)
    except (RunError, ConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(split, indent=2, sort_keys=True))


@main.command("eval")
@click.option("--pred", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Predicted layers: a shard folder (OUT of liwi run) or LayerD-style folders.")
@click.option("--gt", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Ground-truth layers, same forms.")
@click.option("--out", "report", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Report path; writes REPORT.json and REPORT.md (the suffix is replaced).")
@click.option("--max-merges", type=click.IntRange(0, 10), default=5, show_default=True)
@click.option("--name", default="pred", show_default=True, help="Method name in the Markdown table.")
@click.option("--resize-pred", is_flag=True,
              help="Resize predicted layers of another size to the ground truth's (recorded in the report); "
                   "without it such a sample fails with the reason.")
def eval_cmd(pred: Path, gt: Path, report: Path, max_merges: int, name: str, resize_pred: bool) -> None:
    """Score predicted layers against ground truth with the LayerD protocol (+ per-kind figures)."""
    from add_pipeline.eval.report import evaluate, to_markdown

    try:
        result = evaluate(pred, gt, max_merges=max_merges, resize_pred=resize_pred)
    except (OSError, ValueError) as exc:  # e.g. a truncated or missing part file: one line naming it
        raise click.ClickException(f"cannot read the stacks: {exc}") from exc
    report.parent.mkdir(parents=True, exist_ok=True)
    report.with_suffix(".json").write_text(json.dumps(result, indent=2, default=float))
    md = to_markdown({name: result})
    report.with_suffix(".md").write_text(md)
    click.echo(md)
    unmatched = result["unmatched"]
    if unmatched["pred_only"] or unmatched["gt_only"] or result["failed"]:
        click.echo(f"warning: {len(unmatched['gt_only'])} ground-truth samples without prediction, "
                   f"{len(unmatched['pred_only'])} predictions without ground truth, "
                   f"{len(result['failed'])} failed (see the JSON)", err=True)
        for f in result["failed"][:5]:
            click.echo(f"  failed {f['sample_id']}: {f['error']}", err=True)


@main.command()
@click.argument("dir_", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
def samples(dir_: Path) -> None:
    """Write the natural photos that ship inside installed packages to DIR."""
    from add_pipeline.samples import write_samples

    for p in write_samples(dir_):
        click.echo(str(p))


main.add_command(tools)
main.add_command(export_cmd)  # liwi export
main.add_command(report_cmd)  # liwi report
main.add_command(weights)
for _command in MODEL_COMMANDS:  # liwi train / eval-model / decompose
    main.add_command(_command)

if __name__ == "__main__":
    main()
