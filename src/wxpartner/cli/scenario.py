"""``wxpartner scenario load|export``: scenario files in and out of a running server; big files load in
batches with a progress bar."""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import Any, BinaryIO

import click
import yaml

from ._files import read_text, write_bytes, write_text
from ._http import Target, target_options
from ._output import emit, kv, progress, progress_option, say


@click.group()
def scenario() -> None:
    """Load or export scenario files (merchants, keys, family data)."""


def scenario_batches(data: dict[str, Any], size: int) -> list[tuple[int, dict[str, Any]]]:
    """Split a scenario into loadable pieces of at most ``size`` entries, in the file's order (platform
    keys and merchants first, as the server loads them): each list is cut into chunks; a section that
    is a mapping of lists (``webizpay: {employees: [...], cards: [...]}``) is cut list by list.
    Returns (entries in the piece, piece)."""
    scalars = {key: v for key, v in data.items() if not isinstance(v, list | dict)}
    first = [key for key in ("platform_keys", "merchants") if key in data]
    order = first + [key for key in data if key not in scalars and key not in first]
    out: list[tuple[int, dict[str, Any]]] = []

    def chunks(items: list[Any]) -> list[list[Any]]:
        return [items[i : i + size] for i in range(0, len(items), size)] or [[]]

    for key in order:
        value = data[key]
        if isinstance(value, list):
            out += [(len(c), {**scalars, key: c}) for c in chunks(value)]
        elif isinstance(value, dict):
            plain = {k2: v for k2, v in value.items() if not isinstance(v, list)}
            if plain:
                out.append((1, {**scalars, key: plain}))
            for inner, items in value.items():
                if isinstance(items, list):
                    out += [(len(c), {**scalars, key: {inner: c}}) for c in chunks(items)]
    return out


def _merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report for a batched load: counts add up, lists (ids, warnings) join in batch order, a
    section's report merges key by key; anything else keeps the last batch's value (a section's ids
    were the last batch's alone)."""
    merged: dict[str, Any] = {}
    for report in reports:
        for key, v in report.items():
            before = merged.get(key)
            counts = isinstance(v, int) and not isinstance(v, bool) and isinstance(before, int)
            if counts or (isinstance(v, list) and isinstance(before, list)):
                merged[key] = before + v
            elif isinstance(v, dict) and isinstance(before, dict):
                merged[key] = _merge_reports([before, v])
            else:
                merged[key] = v
    return merged


# the fields that may name a PEM file (PEM text, else a path relative to the scenario file)
PEM_FIELDS = {"platform_keys": ("private_key", "certificate"), "certificates": ("certificate", "public_key")}
NAMES_A_FILE = re.compile(r"""\b(certificate|public_key|private_key)["']?\s*:""")


def _read_pem_file(value: str, base: Path) -> str | None:
    """The text of the PEM file ``value`` names (relative to ``base``), None when it is PEM text or no
    file here (the server then reads it, inside its data dir, or says it cannot)."""
    from ..sandbox.scenario import MAX_PEM_FILE  # the server's bound; not at start-up: it brings the store

    if "-----BEGIN" in value or not value or "\0" in value:
        return None
    path = base / value
    try:
        if not path.is_file() or path.stat().st_size > MAX_PEM_FILE:
            return None
    except OSError:
        return None
    return read_text(path, "scenario file")


def inline_pem_files(parsed: dict[str, Any], base: Path) -> int:
    """Put the text of each PEM file the scenario names relative to its own directory in place of the
    path, as `serve --scenario` reads them: the server reads paths inside its data dir only, so a
    scenario that loaded at start failed through `scenario load` (cannot read certs/sp.pem). Returns
    how many were put in."""
    holders: list[tuple[dict[str, Any], tuple[str, ...]]] = []

    def entries(
        section: str,
    ) -> list[Any]:  # a section that is no list ('merchants: 5') is the server's to refuse
        found = parsed.get(section)
        return found if isinstance(found, list) else []

    for entry in entries("platform_keys"):
        if isinstance(entry, dict):
            holders.append((entry, PEM_FIELDS["platform_keys"]))
    for merchant in entries("merchants"):
        certificates = merchant.get("certificates") if isinstance(merchant, dict) else None
        for cert in certificates if isinstance(certificates, list) else []:
            if isinstance(cert, dict):
                holders.append((cert, PEM_FIELDS["certificates"]))
    count = 0
    for holder, fields in holders:
        for name in fields:
            value = holder.get(name)
            text = _read_pem_file(value, base) if isinstance(value, str) else None
            if text is not None:
                holder[name] = text
                count += 1
    return count


def _scenario_body(file: str, text: str) -> bytes:
    """The file's text, or with the PEM files it names put in (``inline_pem_files``)."""
    if not NAMES_A_FILE.search(text):  # a family-only file (maybe 100,000 entries) is not parsed here
        return text.encode()
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        return text.encode()  # the server says what is wrong with it
    if not isinstance(parsed, dict) or not inline_pem_files(parsed, Path(file).resolve().parent):
        return text.encode()
    return yaml.safe_dump(parsed, allow_unicode=True, sort_keys=False).encode()


def _as_json(value: Any) -> str:
    """What YAML reads that JSON has no word for: an unquoted date or time (`2025-05-20T13:29:35+08:00`)
    is refused as the server refuses it in a whole file (times are text there), saying to quote it; it
    was a TypeError traceback."""
    if isinstance(value, dt.date | dt.datetime):
        raise click.ClickException(
            f"{value.isoformat()} is an unquoted date or time, which YAML reads as no text: quote it "
            f'("{value.isoformat()}")'
        )
    raise click.ClickException(f"a value of type {type(value).__name__} has no JSON form: write it as text")


def _load_in_batches(t: Target, file: str, text: str, batch: int, show: bool | None) -> dict[str, Any]:
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise click.ClickException(f"{file}: not valid YAML/JSON: {exc}") from exc
    if parsed is None:  # an empty file: nothing to load, as without --batch
        parsed = {}
    if not isinstance(parsed, dict):
        raise click.ClickException(f"{file}: a scenario is a mapping with sections such as 'merchants'")
    inline_pem_files(parsed, Path(file).resolve().parent)
    # a file with no list or mapping section makes no piece: it is sent whole, so the server refuses
    # what the plain load refuses ('merchants: 5' loaded nothing and exited 0)
    pieces = scenario_batches(parsed, batch) or ([(0, parsed)] if parsed else [])
    reports = []
    with progress(show, f"loading {Path(file).name}", sum(n for n, _ in pieces)) as advance:
        for i, (n, piece) in enumerate(pieces, 1):
            try:
                body = json.dumps(piece, ensure_ascii=False, default=_as_json).encode()
                reports.append(t.control("POST", "/scenario", content=body))
            except click.ClickException as exc:
                raise click.ClickException(
                    f"batch {i} of {len(pieces)} failed ({exc.message}); "
                    + (
                        "nothing is loaded"
                        if i == 1
                        else "batch 1 is loaded"
                        if i == 2
                        else f"batches 1-{i - 1} are loaded"
                    )
                ) from exc
            advance(n)
    return {**_merge_reports(reports), "batches": len(pieces)}


@scenario.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=None,
    help="load N entries per request, with a progress bar (for big files; each batch is its own "
    "transaction). Default: the whole file in one request, all or nothing.",
)
@progress_option
@target_options
def scenario_load(t: Target, file: str, batch: int | None, show_progress: bool | None, as_json: bool) -> None:
    """Load a YAML/JSON scenario into the running server (all or nothing, unless --batch).

    PEM files it names (certificate, public_key, private_key) are read relative to the file, as
    `serve --scenario` reads them, and sent as their text."""
    text = read_text(file, "scenario")
    if batch is None:
        with progress(show_progress, f"loading {Path(file).name}", 1) as advance:
            data = t.control("POST", "/scenario", content=_scenario_body(file, text))
            advance(1)
    else:
        data = _load_in_batches(t, file, text, batch, show_progress)
    emit(data, as_json, lambda d: _print_load_report(t, file, d))


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            out[prefix + key] = ", ".join(map(str, value))
        else:
            out[prefix + key] = value
    return out


def _print_load_report(t: Target, file: str, report: dict[str, Any]) -> None:
    """The counts as ``name: value`` lines (a section's as ``section.name: value``, a list's items
    joined by commas); each generated key on its own line with the flags that sign with it (they were
    Python reprs: ``apply4subject: {'applyment_ids': [20000000000001]}``)."""
    warnings: dict[str, list[Any]] = {}  # said apart, one a line: they hold commas
    shown: dict[str, Any] = {}
    for key, value in report.items():
        if key in ("loaded", "generated_keys"):
            continue
        if isinstance(value, dict) and isinstance(value.get("warnings"), list):
            warnings[key] = value["warnings"]
            value = {k: v for k, v in value.items() if k != "warnings"}
        shown[key] = value
    kv({"loaded": file, **_flat(shown)})
    for section, lines in warnings.items():
        for line in lines:
            say(f"warning: {section}.{line}")
    generated = report.get("generated_keys")
    if not isinstance(generated, dict):
        return
    for mchid, pairs in generated.items():
        for pair in pairs if isinstance(pairs, list) else []:
            if not isinstance(pair, dict):
                continue
            say(f"generated key of {mchid}: serial {pair.get('serial_no')}")
            mine = t.connection_path.parent / "keys" / mchid / "apiclient_key.pem"
            flags = (
                f"--mchid {mchid}"  # the CLI finds the pair in its data dir
                if str(mine.resolve()) == pair.get("private_key")
                else f"--mchid {mchid} --serial {pair.get('serial_no')} --key {pair.get('private_key')}"
            )
            say(f"  private key  {pair.get('private_key')}")
            say(f"  certificate  {pair.get('certificate')}")
            say(f"  sign as it   wxpartner call METHOD PATH {flags}")


def _dumper() -> type[yaml.SafeDumper]:
    """libyaml's emitter when PyYAML has it (the same text, 3 times faster: 170 s for a big world),
    writing a text of several lines (a certificate, a key) as a literal block, line for line as in
    its PEM file: the default was a quoted scalar with a blank line between any two of its lines."""
    base: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        # a value the block style cannot hold (trailing spaces, control characters) is quoted by the
        # emitter all the same
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    class Dumper(base):  # type: ignore[valid-type,misc]
        pass

    Dumper.add_representer(str, text)
    return Dumper


@scenario.command("export")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="write here instead of stdout")
@target_options
def scenario_export(t: Target, out: str | None, as_json: bool) -> None:
    """Export the server's merchants, keys and family data as a scenario (YAML; JSON with --json,
    written as it arrives: use it for big worlds)."""
    if as_json:
        # The server's bytes as they arrive, never all in memory: 100,000 applyments and as many
        # recharge employees took 17.6 s and 476 MB parsed and indented again; now what the server takes.
        with t.control_stream("GET", "/scenario") as chunks:
            if out:
                try:
                    write_bytes(out, chunks, secret=True)  # it holds every merchant's APIv3 key
                except OSError as exc:
                    raise click.ClickException(
                        f"--out {out}: cannot write it: {exc.strerror or exc}"
                    ) from None
            else:
                stdout: BinaryIO = sys.stdout.buffer
                for chunk in chunks:
                    stdout.write(chunk)
                stdout.write(b"\n")
        return
    data = t.control("GET", "/scenario")
    text = yaml.dump(data, Dumper=_dumper(), allow_unicode=True, sort_keys=False)
    if out:
        write_text(out, text, "--out", secret=True)  # it holds every merchant's APIv3 key
        if not as_json:
            say(f"wrote {out}")
    else:
        click.echo(text)
