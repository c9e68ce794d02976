"""``from_connection_info`` as each of the file's demo merchants: the channel merchant that apply4subject
answers (it could only be reached by copying the file's fields into the constructor by hand), and a
file without demo merchants (``serve --no-demo``), which raised a bare ``KeyError``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from a1_support import a1_body
from live import Served
from wxpartner.client import AsyncClient, Client, ConfigurationError, ParamError
from wxpartner.store import registry
from wxpartner.testing import WxPartnerServer


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[WxPartnerServer]:
    served = WxPartnerServer(tmp_path / "data", database_url=database_url)
    yield served
    served.close()


def applyment(business_code: str) -> dict[str, Any]:
    return a1_body(business_code, mobile="13900000000", confirm=None)


def test_the_channel_merchant_of_the_file_submits_an_applyment(
    server: WxPartnerServer, tmp_path: Path
) -> None:
    """Sync from the file, async from the dict: both act as the channel merchant, sign with its key, and
    the server answers them as the channel (the service provider is refused with PARAM_ERROR)."""
    path = tmp_path / "connection.json"
    path.write_text(json.dumps(server.info))
    with Client.from_connection_info(path, merchant="channel", http_client=server.http) as channel:
        assert channel.mchid == server.info["channel_mchid"] != server.info["mchid"]
        with server.db.read() as conn:  # its own APIv3 key (older files: none, the SP's was the only one)
            own = registry.get_merchant(conn, channel.mchid)
        assert own is not None and channel.config.apiv3_key == own.apiv3_key != server.info["apiv3_key"]
        submitted = channel.apply4subject.submit(applyment("conn_channel_0001"))
        got = channel.apply4subject.get(business_code="conn_channel_0001")
        assert got.applyment_state == "APPLYMENT_STATE_WAITTING_FOR_AUDIT"
    with Client.from_connection_info(path, http_client=server.http) as sp, pytest.raises(ParamError):
        sp.apply4subject.submit(applyment("conn_sp_0001"))
    assert sp.mchid == server.info["mchid"] and sp.config.apiv3_key == server.info["apiv3_key"]

    async def main() -> None:
        transport = httpx.ASGITransport(app=server.app)
        async with AsyncClient.from_connection_info(
            server.info, merchant="channel", transport=transport
        ) as ac:
            await ac.apply4subject.cancel(applyment_id=submitted.applyment_id)
            assert (await ac.apply4subject.get(applyment_id=submitted.applyment_id)).applyment_state == (
                "APPLYMENT_STATE_CANCELED"
            )

    anyio.run(main)


def test_a_file_without_the_merchant_asked_for_says_so(server: WxPartnerServer) -> None:
    """``serve --no-demo`` writes only the URL and the token: a KeyError: 'mchid' before."""
    control_only = {"base_url": server.info["base_url"], "sandbox_token": server.info["sandbox_token"]}
    for merchant in ("service_provider", "channel"):
        with pytest.raises(ConfigurationError, match="--no-demo"):
            Client.from_connection_info(control_only, merchant=merchant)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="'service_provider' or 'channel', got 'platform'"):
        Client.from_connection_info(server.info, merchant="platform")  # type: ignore[arg-type]


def test_a_misspelt_option_is_refused_with_the_closest_name(server: WxPartnerServer) -> None:
    """The options were read with ``.get()``: ``retyr=NO_RETRIES`` or ``timout=2`` was dropped without a
    word, so the client kept its retries and its 30 s read timeout (only mypy could tell)."""
    info = server.info
    own = (info["mchid"], info["serial_no"], info["private_key_path"])
    keys = {
        "wechatpay_public_key": info["wechatpay_public_key_path"],
        "wechatpay_public_key_id": info["wechatpay_public_key_id"],
    }
    with pytest.raises(
        TypeError, match=r"^Client\(\) got an unexpected keyword argument 'timout'; did you mean 'timeout'\?$"
    ):
        Client(*own, **keys, timout=2, retyr=None)  # type: ignore[call-arg]
    with pytest.raises(
        TypeError,
        match=r"^AsyncClient\(\) got an unexpected keyword argument 'retyr'; did you mean 'retry'\?$",
    ):
        AsyncClient(*own, **keys, retyr=None)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"'merchant'; the options are apiv3_key, backup_url, "):
        Client(*own, **keys, merchant="channel")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'http_clinet'; did you mean 'http_client'"):
        Client.from_connection_info(info, http_clinet=server.http)  # type: ignore[call-arg]
    with Client(*own, **keys, timeout=2, http_client=server.http) as fine:  # the real names still work
        assert (
            fine.config.timeout.read == 2 and fine.webizpay.ranges.list(sp_mchid=fine.mchid).range_list == []
        )


def test_a_key_file_that_cannot_be_read_is_a_configuration_error(
    server: WxPartnerServer, tmp_path: Path
) -> None:
    """README: a key or certificate that cannot be read is a ``ConfigurationError``; a path that does not
    exist was a bare ``FileNotFoundError`` (``except ConfigurationError`` / ``WxPayError`` missed it),
    as was a connection.json whose data dir moved."""
    info = server.info
    missing = tmp_path / "gone" / "apiclient_key.pem"
    with pytest.raises(
        ConfigurationError, match=r"^private_key: cannot read '.*gone/apiclient_key\.pem': No such file"
    ):
        Client(info["mchid"], info["serial_no"], missing, apiv3_key=info["apiv3_key"])
    with pytest.raises(
        ConfigurationError, match=r"^wechatpay_public_key / platform_certificates: cannot read '.*gone"
    ):
        Client(
            info["mchid"],
            info["serial_no"],
            info["private_key_path"],
            wechatpay_public_key=missing,
            wechatpay_public_key_id="PUB_KEY_ID_1",
        )
    entry = {**info["merchants"]["service_provider"], "private_key_path": str(missing)}
    moved = {**info, "private_key_path": str(missing), "merchants": {"service_provider": entry}}
    older = {k: v for k, v in info.items() if k != "merchants"} | {"private_key_path": str(missing)}
    for file in (moved, older):
        with pytest.raises(ConfigurationError, match="private_key: cannot read"):
            AsyncClient.from_connection_info(file)


def verified_by_as_sp(client: Client) -> str | None:
    return client.request(
        "GET", "/v3/webizpay/avail-mch-ranges", query={"sp_mchid": client.mchid}
    ).verified_by


@pytest.mark.slow
def test_each_merchant_of_the_file_verifies_with_its_own_key_after_a_real_rotation(
    tmp_path: Path, database_url: str
) -> None:
    """``wxpartner serve`` writes connection.json; the service provider's own WeChat Pay public key is
    rotated through the control API; a restart writes the file anew. The file carried one public key
    (the SP's, after the rotation), so the channel client verified answers signed with the shared key
    against it: ``unknown_serial``. Then a shared key is rotated: the file named the newest of the SP's
    own and the shared keys, the shared one, while the SP's answers stay signed with its own."""
    data = tmp_path / "data"
    path = data / "connection.json"

    def restarted(rotation: dict[str, Any]) -> tuple[Served, str]:
        served = Served(data, "--database-url", database_url)
        try:
            headers = {"Authorization": f"Bearer {served.info['sandbox_token']}"}
            answer = httpx.post(served.url + "/sandbox/platform-keys/rotate", json=rotation, headers=headers)
            assert answer.status_code == 200, answer.text
        finally:
            served.stop()
        return Served(data, "--database-url", database_url), str(answer.json()["key_id"])

    served, sp_key = restarted({"kind": "public_key", "mchid": "1900000001"})
    try:
        info = json.loads(path.read_text())
        shared = info["merchants"]["channel"]["wechatpay_public_key_id"]
        assert shared != sp_key == info["merchants"]["service_provider"]["wechatpay_public_key_id"]
        with Client.from_connection_info(path) as sp:
            assert verified_by_as_sp(sp) == sp_key
        with Client.from_connection_info(path, merchant="channel") as channel:
            submitted = channel.apply4subject.submit(applyment("rotated_0001"))
            query = {"applyment_id": submitted.applyment_id}
            assert channel.request("GET", "/v3/apply4subject/applyment", query=query).verified_by == shared

        async def as_channel() -> None:
            async with AsyncClient.from_connection_info(path, merchant="channel") as ac:
                got = await ac.apply4subject.get(business_code="rotated_0001")
                assert got.applyment_state == "APPLYMENT_STATE_WAITTING_FOR_AUDIT"

        anyio.run(as_channel)
    finally:
        served.stop()

    served, new_shared = restarted({"kind": "public_key"})
    try:
        info = json.loads(path.read_text())
        assert info["wechatpay_public_key_id"] == sp_key  # the top level is the SP's, for older readers
        assert info["merchants"]["channel"]["wechatpay_public_key_id"] == new_shared
        with Client.from_connection_info(path) as sp:
            assert verified_by_as_sp(sp) == sp_key
        with Client.from_connection_info(path, merchant="channel") as channel:
            got = channel.apply4subject.get(applyment_id=submitted.applyment_id)
            assert got.applyment_state == "APPLYMENT_STATE_WAITTING_FOR_AUDIT"
    finally:
        served.stop()


def test_a_certificate_mode_channel_gets_the_platform_certificate_and_no_public_key(
    tmp_path: Path, database_url: str
) -> None:
    """A channel merchant in platform-certificate mode: its answers are signed with the platform
    certificate, and a public key named in ``Wechatpay-Serial`` (or used to encrypt A1's fields) is
    refused. The file gave every merchant the service provider's public key, so its first A1 was 400
    PARAM_ERROR; its entry now carries the certificate (and its own APIv3 key) and no public key."""
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(
        "merchants:\n"
        '  - {mchid: "1900000301", name: Channel, role: channel, key_mode: certificate,\n'
        '     apiv3_key: "0123456789abcdefCHANNEL456789abc"}\n'
    )
    served = WxPartnerServer(tmp_path / "data", database_url=database_url, scenario=scenario)
    try:
        entry = served.info["merchants"]["channel"]
        assert entry["key_mode"] == "certificate" and entry["wechatpay_public_key_id"] is None
        assert (
            entry["platform_certificate_serial"] and entry["apiv3_key"] == "0123456789abcdefCHANNEL456789abc"
        )
        with Client.from_connection_info(served.info, merchant="channel", http_client=served.http) as channel:
            submitted = channel.apply4subject.submit(applyment("cert_channel_0001"))
            query = {"applyment_id": submitted.applyment_id}
            answer = channel.request("GET", "/v3/apply4subject/applyment", query=query)
            assert answer.verified_by == entry["platform_certificate_serial"]
    finally:
        served.close()


def test_the_file_may_be_named_by_its_data_dir_and_a_bad_one_is_a_configuration_error(
    server: WxPartnerServer, tmp_path: Path
) -> None:
    """``from_connection_info(".wxpartner")`` (the data dir) was an IsADirectoryError, a missing file a bare
    FileNotFoundError and a file that is no JSON a JSONDecodeError: ``except ConfigurationError`` /
    ``WxPayError`` caught none of them."""
    data_dir = tmp_path / "dir"
    data_dir.mkdir()
    (data_dir / "connection.json").write_text(json.dumps(server.info))
    with Client.from_connection_info(data_dir, http_client=server.http) as client:
        assert client.mchid == server.info["mchid"] and client.webizpay.ranges.list(sp_mchid=client.mchid)
    with pytest.raises(
        ConfigurationError, match=r"cannot read '.*nowhere/connection\.json'.*wxpartner serve"
    ):
        Client.from_connection_info(tmp_path / "nowhere" / "connection.json")
    (tmp_path / "text.json").write_text("base_url = 1")
    with pytest.raises(ConfigurationError, match=r"text\.json' is not JSON"):
        AsyncClient.from_connection_info(str(tmp_path / "text.json"))
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ConfigurationError, match=r"list\.json' holds no JSON object"):
        Client.from_connection_info(tmp_path / "list.json")


def _layouts(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """connection.json as this version writes it, as a version before ``merchants`` wrote it, and a copy
    whose top level was edited to act as the channel (as older files allowed)."""
    channel = info["merchants"]["channel"]
    edited = {**info, **{name: channel[name] for name in ("mchid", "serial_no", "private_key_path")}}
    return {
        "merchants": info,
        "older": {key: value for key, value in info.items() if key != "merchants"},
        "edited": edited,
    }


@pytest.mark.parametrize("layout", ["merchants", "older", "edited"])
def test_the_cli_and_the_sdk_read_the_same_settings_from_every_layout(
    server: WxPartnerServer, tmp_path: Path, layout: str
) -> None:
    """One reading of connection.json for both: an older file gave the SDK's channel the file's WeChat Pay
    public key and the CLI's none (its answers were 'unknown WeChat Pay key' without a sandbox token),
    the SDK's service provider no platform certificate where the CLI's had it, and in an edited copy
    ``--merchant service_provider`` was the unedited entry where the SDK read the edited top level."""
    from wxpartner.cli._apiv3 import acting_as, platform_keys
    from wxpartner.cli._http import Target
    from wxpartner.protocol import keys as k

    info = {key: value for key, value in _layouts(server.info)[layout].items() if key != "sandbox_token"}
    (tmp_path / "connection.json").write_text(json.dumps(info))
    target = Target(None, str(tmp_path), "", "")  # no token: only the file's keys verify
    for merchant in ("service_provider", "channel"):
        with Client.from_connection_info(tmp_path, merchant=merchant) as sdk:  # type: ignore[arg-type]
            settings = acting_as(target, merchant, None)
            cli_keys = set(platform_keys(target, settings))
            assert (settings["mchid"], settings["serial_no"], settings.get("apiv3_key")) == (
                sdk.mchid,
                sdk.config.serial_no,
                sdk.config.apiv3_key,
            ), (layout, merchant)
            cli_key = k.load_private_key(Path(settings["private_key_path"]).read_bytes())
            assert (
                cli_key.public_key().public_numbers() == sdk.config.private_key.public_key().public_numbers()
            )
            sdk_keys = set(sdk.keys.public_key_ids) | set(sdk.keys.certificate_serials)
            assert cli_keys == sdk_keys and sdk_keys, (layout, merchant, cli_keys, sdk_keys)
            if merchant == "service_provider":  # no --merchant: the same merchant
                assert acting_as(target, None, None)["mchid"] == sdk.mchid


def test_without_a_path_the_client_reads_the_data_dir_the_cli_uses(
    server: WxPartnerServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``wxpartner call`` finds connection.json in ``$WXPARTNER_DATA_DIR``, else ``.wxpartner``;
    ``Client.from_connection_info()`` was a TypeError (a path was required), so a script beside the CLI
    had to repeat where the server's data dir is."""
    for where in (tmp_path / "env-dir", tmp_path / "cwd" / ".wxpartner"):
        where.mkdir(parents=True)
        (where / "connection.json").write_text(json.dumps(server.info))
    monkeypatch.setenv("WXPARTNER_DATA_DIR", str(tmp_path / "env-dir"))
    monkeypatch.chdir(tmp_path)  # no .wxpartner here: the environment's dir is read
    with Client.from_connection_info(http_client=server.http) as sp:
        assert sp.mchid == server.info["mchid"]
        assert sp.webizpay.ranges.list(sp_mchid=sp.mchid).range_list == []
    monkeypatch.delenv("WXPARTNER_DATA_DIR")
    monkeypatch.chdir(tmp_path / "cwd")
    with Client.from_connection_info(merchant="channel", http_client=server.http) as channel:
        assert channel.mchid == server.info["merchants"]["channel"]["mchid"]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match=r"\.wxpartner/connection\.json"):
        AsyncClient.from_connection_info()
