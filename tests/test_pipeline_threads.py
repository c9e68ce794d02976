"""In threads (``--pipeline threads``, PostgreSQL's default), a worker runs at most
``pipeline_threads`` requests at once: enough to overlap a remote database's round trips, few enough
that the threads do not fight over the GIL (anyio's default pool of 40 halved W4 on PostgreSQL)."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import anyio
import httpx
import pytest

from wxpartner.server.app import create_app
from wxpartner.server.http import RawRequest, RawResponse
from wxpartner.server.settings import Settings


def _most_at_once(settings: Settings, requests: int) -> tuple[int, list[int]]:
    app = create_app(settings)
    handle = app.pipeline.handle
    lock = threading.Lock()
    now = most = 0

    def counted(req: RawRequest) -> RawResponse:
        nonlocal now, most
        with lock:
            now += 1
            most = max(most, now)
        try:
            time.sleep(0.05)  # a database round trip, long enough for the others to arrive
            return handle(req)
        finally:
            with lock:
                now -= 1

    app.pipeline.handle = counted  # type: ignore[method-assign]

    async def burst() -> list[int]:
        statuses: list[int] = []
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:

            async def one() -> None:
                statuses.append(
                    (
                        await client.get(
                            "/v3/webizpay/employees/e1/quota-cards/c1?sp_mchid=1900000001&sub_mchid=1900000101"
                        )
                    ).status_code
                )

            async with anyio.create_task_group() as tg:
                for _ in range(requests):
                    tg.start_soon(one)
        return statuses

    try:
        statuses = anyio.run(burst)
        # A second loop in the same process gets its own limiter (and still the bound).
        statuses += anyio.run(burst)
    finally:
        app.state.db.dispose()
    return most, statuses


@pytest.mark.parametrize("threads", [2, 5])
def test_threads_pipeline_runs_at_most_the_configured_requests_at_once(
    settings: Settings, threads: int
) -> None:
    most, statuses = _most_at_once(
        dataclasses.replace(settings, pipeline_on_loop=False, pipeline_threads=threads), 12
    )
    assert most == threads
    assert statuses == [401] * 24  # unsigned: refused by the pipeline, every one answered


def test_loop_pipeline_runs_one_request_at_a_time(settings: Settings) -> None:
    most, statuses = _most_at_once(dataclasses.replace(settings, pipeline_on_loop=True), 4)
    assert most == 1 and statuses == [401] * 8


def test_serve_passes_pipeline_threads_to_the_workers(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from wxpartner.cli.serve import serve

    result = CliRunner().invoke(serve, ["--pipeline-threads", "0", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--pipeline-threads" in result.output
