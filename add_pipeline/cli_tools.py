"""``liwi tools``: inspect the tools of a workflow (attach with ``main.add_command(tools)``)."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from add_pipeline.core.config import ConfigError


@click.group()
def tools() -> None:
    """Inspect the tools a workflow uses."""


@tools.command("check")
@click.option("--workflow", default="cpu-default", show_default=True, help="Workflow name or YAML path.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def check(workflow: str, as_json: bool) -> None:
    """Say what each tool of WORKFLOW still needs (packages, weights, GPU); loads no weights.

    Exits with status 1 when a tool is not ready.
    """
    from add_pipeline.core.config import load_workflow
    from add_pipeline.tools.models.check import check_workflow

    try:
        statuses = check_workflow(load_workflow(workflow))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps([asdict(s) for s in statuses], indent=2))
    else:
        for s in statuses:
            click.echo(f"{'ok' if s.ok else 'MISSING':<8}{s.step:<10}{s.card:<18}{s.backend}")
            for p in s.problems:
                click.echo(f"{'':<8}- {p}")
            for n in s.notes:
                click.echo(f"{'':<8}note: {n}")
    if not all(s.ok for s in statuses):
        raise SystemExit(1)
