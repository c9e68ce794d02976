"""``wxpartner bills``: apply for and download enterprise-payment trade bills (W12), one CSV per day,
every answer's signature checked."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import click

from ._apiv3 import (
    PublicKeys,
    Signer,
    acting_as,
    check_signature,
    merchant_key_options,
    platform_keys,
)
from ._files import write_bytes
from ._http import Target, target_options
from ._output import emit, progress, progress_option, table


def _days(start: str, end: str) -> list[dt.date]:
    try:
        lo, hi = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    except ValueError as exc:
        raise click.BadParameter(f"dates are YYYY-MM-DD: {exc}") from None
    if hi < lo:
        raise click.BadParameter("--to is before --from")
    if (hi - lo).days >= 366:
        raise click.BadParameter("at most 366 days at a time")
    return [lo + dt.timedelta(days=i) for i in range((hi - lo).days + 1)]


def _one_bill(signer: Signer, keys: PublicKeys, body: dict[str, str], out: Path) -> dict[str, Any]:
    """Apply for one day's trade bill (W12), download it, verify both signatures, write the CSV."""
    row: dict[str, Any] = {"date": body["date"]}
    _target_url, applied = signer.send("POST", "/v3/webizpay/bill/trade-bill", json.dumps(body).encode())
    ok, why = check_signature(applied.headers, applied.content, keys)
    if applied.status_code != 200 or not ok:
        detail = applied.json() if applied.content.startswith(b"{") else {}
        row["error"] = f"{applied.status_code} {detail.get('code', '')}: {detail.get('message', why)}"
        # WeChat's message is generic ("only the last three months" for a day not over yet too); the
        # answer's detail says which field and why
        about = detail.get("detail")
        if isinstance(about, dict) and about.get("issue"):
            row["error"] += f"; {about.get('field', '')} {about['issue']}"
        return row
    _target_url, file = signer.send("GET", applied.json()["download_url"])
    ok, why = check_signature(file.headers, file.content, keys)
    if file.status_code != 200 or not ok:
        row["error"] = f"download {file.status_code}: {why}"
        return row
    path = out / f"{body['type']}_{body['sub_mchid']}_{body['date']}.csv"
    try:
        write_bytes(path, file.content)
    except OSError as exc:  # a directory of that name, a full disk: was a traceback
        row["error"] = f"cannot write {path}: {exc.strerror or exc}"
        return row
    lines = file.content.decode("utf-8", errors="replace").strip().splitlines()
    row.update(path=str(path), bytes=len(file.content), lines=len(lines), signature=why)
    return row


@click.command()
@click.option("--sub-mchid", required=True, help="the enterprise (sub-merchant) whose bills to fetch")
@click.option("--from", "start", required=True, help="first day, YYYY-MM-DD (China time)")
@click.option("--to", "end", default=None, help="last day (default: --from)")
@click.option(
    "--out",
    "out_dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="directory for the CSV files (created)",
)
@click.option("--mchid", default=None, help="service provider (default: connection.json)")
@merchant_key_options
@progress_option
@target_options
def bills(
    t: Target,
    sub_mchid: str,
    start: str,
    end: str | None,
    out_dir: str,
    mchid: str | None,
    merchant: str | None,
    serial_no: str | None,
    key_path: str | None,
    show_progress: bool | None,
    as_json: bool,
) -> None:
    """Generate and download enterprise-payment trade bills (W12 + download), one CSV per day.

    Every answer's signature is verified. Exit status 0 when every day's bill was written, else 1."""
    settings = acting_as(t, merchant, mchid)
    signer = Signer.of(t, mchid, serial_no, key_path, settings)
    days = _days(start, end or start)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"--out {out_dir}: cannot create it: {exc.strerror or exc}") from None
    keys = platform_keys(t, settings)
    rows = []
    with progress(show_progress, f"trade bills of {sub_mchid}", len(days)) as advance:
        for day in days:
            body = {
                "sp_mchid": signer.mchid,
                "sub_mchid": sub_mchid,
                "date": day.isoformat(),
                "type": "QYZFALL",
            }
            rows.append(_one_bill(signer, keys, body, out))
            advance(1)
    failed = sum(1 for r in rows if "error" in r)
    result = {"written": len(rows) - failed, "failed": failed, "bills": rows}

    def pretty(_result: dict[str, Any]) -> None:
        table_rows = [
            [r["date"], r.get("path") or "", r.get("lines", ""), r.get("error", "ok")] for r in rows
        ]
        table(f"trade bills of {sub_mchid}", ["date", "file", "lines", "result"], table_rows)

    emit(result, as_json, pretty)
    sys.exit(1 if failed else 0)
