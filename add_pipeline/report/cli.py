"""``liwi report OUT``: the command (registered in :mod:`add_pipeline.cli`)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "html", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Page to write [default: OUT/report.html]; its thumbnails and traces go to <name>_files/ beside it.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="At most N accepted samples (and N rejects) in the gallery; the run figures cover everything.")
@click.option("--where", default=None,
              help="SQL filter of the accepted samples, as the reader takes it (e.g. \"n_objects >= 2\"); "
                   "rejects are then left out of the gallery.")
@click.option("--eval", "evals", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A liwi eval REPORT.json to show (per-sample scores, worst first) and join to the gallery; "
                   "repeatable.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes drawing thumbnails [default: CPUs].")
def report_cmd(out: Path, html: Path | None, limit: int | None, where: str | None, evals: tuple[Path, ...],
               workers: int | None) -> None:
    """Write a static HTML report of OUT: run figures, a filterable gallery of every sample's layers,
    its agent trace and checks, the rejects, and eval scores. Opens from disk; loads nothing from the network."""
    from add_pipeline.io import ReaderError
    from add_pipeline.report import ReportOptions, build_report

    try:
        res = build_report(ReportOptions(out=out, html=html, limit=limit, where=where, evals=evals, workers=workers))
    except (ReaderError, OSError, ValueError) as exc:  # ReportError and EvalReportError are ValueErrors
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {res.html} ({res.html_bytes / 1e6:.1f} MB) and {res.assets}/ ({res.asset_files} files, "
               f"{res.asset_bytes / 1e6:.1f} MB): {res.samples} samples and {res.rejects} rejects in "
               f"{res.seconds:.1f}s")
    for note in res.notes:
        click.echo(f"note: {note}")
