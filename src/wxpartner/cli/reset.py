"""``wxpartner reset``: delete business data, keeping merchants and keys."""

from __future__ import annotations

import click

from ._http import Target, target_options
from ._output import emit, say


@click.command()
@click.option("--mchid", default=None, help="only this merchant's data")
@click.option(
    "--yes", is_flag=True, help="do not ask for confirmation (--json never asks: it is for scripts)"
)
@target_options
def reset(t: Target, mchid: str | None, yes: bool, as_json: bool) -> None:
    """Delete business data (every family's), keeping merchants and keys."""
    if mchid is not None and not mchid.strip():  # `--mchid "$M"` with an empty $M reset every merchant
        raise click.BadParameter(
            "an empty merchant number; leave --mchid out to reset every merchant", param_hint="'--mchid'"
        )
    if not yes and not as_json:
        click.confirm(f"Delete the business data of {mchid or 'every merchant'}?", abort=True)
    data = t.control("POST", "/reset", json={"mchid": mchid} if mchid else {})
    emit(data, as_json, lambda d: say(f"reset: {d['reset']}"))
