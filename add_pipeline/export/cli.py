"""``liwi export``: the command (attach with ``main.add_command(export_cmd)``)."""

from __future__ import annotations

from pathlib import Path

import click

FORMATS = ("webdataset", "psd", "ora", "layerd")  # checked against the registry when the command runs


def _read_ids_file(path: Path) -> tuple[str, ...]:
    """One sample id per line (blank lines skipped; surrounding whitespace is part of no id)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{path}: cannot read the ids file ({exc})") from exc
    ids = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not ids:
        raise click.ClickException(f"{path}: lists no sample ids (one id per line)")
    return ids


@click.command("export")
@click.argument("out", type=click.Path(path_type=Path))  # checked by the reader: one-line errors
@click.option("--format", "format_", required=True, metavar="FORMAT",
              help=f"One of: {', '.join(FORMATS)}.")
@click.option("--out", "dest", required=True, type=click.Path(path_type=Path),
              help="Export folder DIR (empty, new, or an earlier export to resume).")
@click.option("--ids", multiple=True, metavar="ID", help="Export this sample id (repeat the option for more).")
@click.option("--ids-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Export the sample ids listed in this file, one per line.")
@click.option("--where", default=None,
              help="SQL filter over sample_id, source, source_kind, width, height, workflow, meta, n_layers, "
                   "n_objects, n_shadows, layers; e.g. \"n_objects >= 2\".")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Export at most N of the selected samples.")
@click.option("--samples-per-tar", type=click.IntRange(min=1), default=None,
              help="webdataset: samples per tar [default: 1000].")
@click.option("--overwrite", is_flag=True, help="Replace an earlier export in DIR (only its own files are deleted).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def export_cmd(out: Path, format_: str, dest: Path, ids: tuple[str, ...], ids_file: Path | None, where: str | None,
               limit: int | None, samples_per_tar: int | None, overwrite: bool, no_progress: bool) -> None:
    """Export the committed samples of OUT as FORMAT files into DIR; rerun the same command to resume."""
    from add_pipeline.export.job import ExportOptions, export
    from add_pipeline.io.lock import OutputLockedError

    if ids and ids_file is not None:
        raise click.ClickException("give --ids or --ids-file, not both")
    if samples_per_tar is not None and format_ != "webdataset":
        raise click.ClickException(f"--samples-per-tar applies to --format webdataset only, not {format_!r}")
    chosen = _read_ids_file(ids_file) if ids_file is not None else (ids or None)
    opts = ExportOptions(out=out, dest=dest, format=format_, ids=chosen, where=where, limit=limit,
                         samples_per_tar=samples_per_tar, overwrite=overwrite, progress=not no_progress)
    try:
        record = export(opts)
    except (ValueError, OutputLockedError) as exc:  # ExportError, ReaderError, a sample that does not decode
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # a full disk, a folder we may not write: finished files are kept
        raise click.ClickException(f"{exc.filename or dest}: {exc.strerror or exc}; fix that and rerun the same "
                                   "command (finished files are kept)") from exc
    last = record["last_run"]
    rate = f", {last['s_per_sample']:.3f} s/sample" if last["s_per_sample"] else ""
    click.echo(f"done: {last['exported']} exported this run in {last['wall_s']:.1f}s{rate}; {record['count']} "
               f"samples as {record['format']} in {dest}")
