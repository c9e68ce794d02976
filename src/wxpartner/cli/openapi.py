"""``wxpartner openapi``: the OpenAPI 3.1 document of every APIv3 operation the server serves (the same
one as ``GET /openapi.json``), for Postman, Swagger UI or a code generator; no server needed."""

from __future__ import annotations

import json

import click

from ._files import write_text


@click.command()
@click.option(
    "--server-url", default="http://127.0.0.1:8080", show_default=True, help="the document's server"
)
@click.option("--output", "-o", default=None, help="write to this file instead of standard output")
def openapi(server_url: str, output: str | None) -> None:
    """Print the OpenAPI document of the APIv3 operations (request signing is a header scheme)."""
    from ..server import families  # noqa: F401  (registers every operation)
    from ..server.openapi import build
    from ..server.operations import REGISTRY

    text = json.dumps(build(list(REGISTRY), server_url=server_url), ensure_ascii=False, indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        write_text(output, text, "--output")
