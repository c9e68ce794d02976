"""The pytest plugin from a user's project, as their suite runs it: separate pytest sessions (pytester)
with only the entry point's fixtures, checked for what the session leaves behind and for how it says
what is wrong with its options."""

from __future__ import annotations

import datetime as dt
import gc
import os
import textwrap
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from conftest import BACKENDS
from pg import create_database, drop_database
from wxpartner.testing import WxPartnerServer

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _modules_loaded(wxpartner_server: WxPartnerServer) -> None:
    """A server of this process has run (and reset) before any inline session: pytester forgets the
    modules a session imported, and a table module imported again would define its tables twice on
    the one MetaData."""


USER_TESTS = textwrap.dedent(
    """
    def test_in_process(wxpartner_client):
        wxpartner_client.webizpay.ranges.create({"sp_mchid": wxpartner_client.mchid, "identifier_type": "TRANSACTION_ID"})

    def test_over_the_port(wxpartner_live_server):
        with wxpartner_live_server.client(live=True) as client:
            assert client.webizpay.ranges.list(sp_mchid=client.mchid).range_list == []
    """
)


def _open_files_under(root: Path) -> list[str]:
    """This process's descriptors open on a file below root."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, gone by now
            continue
        if target.startswith(str(root)):
            found.append(target)
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc/self/fd")
def test_the_session_leaves_no_file_of_its_data_dir_open(pytester: pytest.Pytester) -> None:
    """Found in the plugin audit: after the session every database file was closed but the SQLite write
    queue's lock file (<data dir>/wxpartner.sqlite3.writelock), one descriptor per session server, left
    open on a file pytest deletes a few runs later."""
    pytester.makepyfile(USER_TESTS)
    basetemp = pytester.path / "basetemp"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--basetemp={basetemp}")
    result.assert_outcomes(passed=2)
    assert _open_files_under(basetemp) == []


ONE_TEST = "def test_one(wxpartner_client):\n    pass\n"


def _failed_start(pytester: pytest.Pytester, *args: str) -> str:
    """Run a user's two tests whose server cannot start; the output of the run."""
    pytester.makepyfile(ONE_TEST + ONE_TEST.replace("test_one", "test_two"))
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    result.assert_outcomes(errors=2)
    return result.stdout.str()


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        (None, "wxpartner_scenario = nope.yaml (in tox.ini): no such file: "),
        ("webizpay: [\n", "wxpartner_scenario = nope.yaml (in tox.ini): not valid YAML/JSON"),
        (
            "webizpay:\n  employees:\n    - {sp_mchid: '1900000001'}\n",
            "wxpartner_scenario = nope.yaml (in tox.ini): webizpay.employees[0].sub_mchid: Field required",
        ),
    ],
    ids=["missing", "not-yaml", "bad-entry"],
)
def test_a_wrong_scenario_option_is_one_line_naming_it(
    pytester: pytest.Pytester, scenario: str | None, expected: str
) -> None:
    """Found in the plugin audit: a wxpartner_scenario that names no file was a FileNotFoundError
    traceback through pathlib, and a wrong one a ScenarioError traceback through the plugin, neither
    naming the option; a scenario refused after the database was opened left its files open."""
    pytester.makefile(".ini", tox="[pytest]\nwxpartner_scenario = nope.yaml\n")
    if scenario is not None:
        pytester.makefile(".yaml", nope=scenario)
    basetemp = pytester.path / "basetemp"
    out = _failed_start(pytester, f"--basetemp={basetemp}")
    assert expected in out
    assert "Traceback" not in out and "wxpartner/testing" not in out and "During handling" not in out
    assert _open_files_under(basetemp) == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://me:s3cret@db.example/x", "mysql://me:***@db.example/x (in tox.ini): the wxpartner test"),
        ("postgresql://me:s3cret@127.0.0.1:1/x", "postgresql://me:***@127.0.0.1:1/x (in tox.ini): the"),
        ("nonsense", "wxpartner_database_url = (not a database URL) (in tox.ini)"),
    ],
    ids=["no-driver", "refused", "no-url"],
)
def test_a_wrong_database_option_is_one_line_without_its_password(
    pytester: pytest.Pytester, url: str, expected: str
) -> None:
    """Found in the plugin audit: a wxpartner_database_url the server cannot use was the driver's
    traceback (ModuleNotFoundError: MySQLdb, psycopg's OperationalError) naming no option."""
    pytester.makefile(".ini", tox=f"[pytest]\nwxpartner_database_url = {url}\n")
    out = _failed_start(pytester)
    assert expected in out
    assert "s3cret" not in out and "Traceback" not in out and "wxpartner/testing" not in out


def test_the_scenario_path_is_relative_to_the_ini_file(pytester: pytest.Pytester) -> None:
    """pytest reads an ini option's relative path from the file that sets it; the plugin read it from
    the rootdir, so a config kept in a subdirectory (-c cfg/pytest.ini --rootdir=.) lost its scenario."""
    (pytester.path / "cfg").mkdir()
    (pytester.path / "cfg" / "pytest.ini").write_text("[pytest]\nwxpartner_scenario = scenario.yaml\n")
    (pytester.path / "cfg" / "scenario.yaml").write_text("faults:\n  - {kind: SYSTEM_ERROR, count: 3}\n")
    pytester.makepyfile(
        "def test_it(wxpartner_server):\n"
        "    assert wxpartner_server.control.get('/sandbox/faults').json()['data'][0]['remaining'] == 3\n"
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "-c", "cfg/pytest.ini", f"--rootdir={pytester.path}", "."
    )
    result.assert_outcomes(passed=1)


# Each xdist worker (--dist each: both run it at once) makes a range, waits until the other worker has
# made its own, then expects to see its range only.
TWO_WORKERS = textwrap.dedent(
    """
    import os, time
    from pathlib import Path

    def test_my_data_is_mine(wxpartner_client):
        c = wxpartner_client
        mine = c.webizpay.ranges.create({"sp_mchid": c.mchid, "identifier_type": "TRANSACTION_ID"}).range_id
        here = Path(os.environ["HANDSHAKE_DIR"])
        (here / os.environ["PYTEST_XDIST_WORKER"]).touch()
        deadline = time.monotonic() + 60
        while len(list(here.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [r.range_id for r in c.webizpay.ranges.list(sp_mchid=c.mchid).range_list] == [mine]
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["default", *BACKENDS])
def test_xdist_workers_each_have_their_own_data(
    pytester: pytest.Pytester, request: pytest.FixtureRequest, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in the plugin audit: with a wxpartner_database_url, every pytest-xdist worker's server
    used that one database and reset it before each test, so one worker's test saw the other's data or
    lost its own mid-test. Each worker now has its own: <name>_gw0 (PostgreSQL: created if missing).
    Without the option ("default") each worker has its SQLite file in its own temporary directory."""
    pytest.importorskip("xdist")
    if backend == "default":
        url = ""
    elif backend == "sqlite":
        url = f"sqlite:///{pytester.path / 'shared.sqlite3'}"
    else:
        pg = request.getfixturevalue("pg_server")
        if pg is None:
            pytest.skip("no PostgreSQL installed")
        url = create_database(pg, "plugin_xdist")
    pytester.makefile(".ini", pytest=f"[pytest]\nwxpartner_database_url = {url}\n" if url else "[pytest]\n")
    pytester.makepyfile(TWO_WORKERS)
    (pytester.path / "handshake").mkdir()
    monkeypatch.setenv("HANDSHAKE_DIR", str(pytester.path / "handshake"))
    # (the dev extras' schemathesis and hypothesis plugins only slow every worker's start here)
    quick = ["-p", "no:schemathesis", "-p", "no:hypothesispytest"]
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *quick, "-n", "2", "--dist", "each")
    result.assert_outcomes(passed=2)
    if backend == "default":
        assert not list(pytester.path.glob("*.sqlite3"))
    elif backend == "sqlite":
        assert (pytester.path / "shared_gw0.sqlite3").is_file() and (
            pytester.path / "shared_gw1.sqlite3"
        ).is_file()
    else:
        admin = pg.admin()
        with admin.connect() as conn:
            names = conn.execute(
                sa.text("SELECT datname FROM pg_database WHERE datname LIKE 'plugin_xdist%'")
            )
            assert sorted(n for (n,) in names) == ["plugin_xdist", "plugin_xdist_gw0", "plugin_xdist_gw1"]
        admin.dispose()
        for name in ("plugin_xdist_gw0", "plugin_xdist_gw1", "plugin_xdist"):
            drop_database(pg, name)


CALLBACK_PROJECT = textwrap.dedent(
    '''
    import datetime as dt
    import http.server
    import threading

    import pytest
    from wxpartner.client import VerificationError

    SUB = "1900000101"


    @pytest.fixture
    def receiver(wxpartner_client):
        """The user's own notify endpoint: verifies and decrypts with the SDK, answers 204."""
        events = []

        class Notify(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    events.append(wxpartner_client.parse_notification(self.headers, body))
                except VerificationError:
                    self.send_response(401)
                else:
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Notify)
        # polling for shutdown() every 50 ms: the default 0.5 s would be each test's wait at teardown
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        server.url = f"http://127.0.0.1:{server.server_address[1]}/wxpay/notify"
        server.events = events
        yield server
        server.shutdown()
        server.server_close()
        thread.join()


    def expire_a_card(server, client, out_card_no):
        end = dt.datetime.now().astimezone() + dt.timedelta(days=1)
        card = client.webizpay.quota_cards.issue("WeBizPay_cb", {
            "sp_mchid": client.mchid, "sub_mchid": SUB, "card_template_id": "template_123", "amount": 100,
            "card_name": "card", "out_card_no": out_card_no, "effective_end_time": end.isoformat(timespec="seconds")})
        server.advance_clock(3 * 86400)  # past its end: nothing read it since, deliver_callbacks settles it
        return card.card_no


    def test_1_my_endpoint_gets_the_expiry(wxpartner_server, wxpartner_client, receiver):
        wxpartner_server.set_notify_url(receiver.url)
        card_no = expire_a_card(wxpartner_server, wxpartner_client, "cb_card_1")
        attempts = wxpartner_server.deliver_callbacks()
        assert [(a["event_type"], a["status"], a["ok"]) for a in attempts] == [("WEBIZPAY.QUOTACARDEXPIRED", 204, True)]
        assert [(e.event_type, e.resource.card_no) for e in receiver.events] == [("WEBIZPAY.QUOTACARDEXPIRED", card_no)]


    def test_2_the_next_test_has_no_receiver(wxpartner_server, wxpartner_client):
        merchants = wxpartner_server.control.get("/sandbox/merchants").json()["data"]
        assert {m["mchid"]: m["notify_url"] for m in merchants}[wxpartner_server.mchid] is None
        expire_a_card(wxpartner_server, wxpartner_client, "cb_card_2")
        assert wxpartner_server.deliver_callbacks() == []  # it waits for a notify URL
    '''
)


def test_callbacks_reach_the_users_endpoint_and_its_url_goes_with_the_test(pytester: pytest.Pytester) -> None:
    """Found in the plugin audit: the README did not say how a test receives callbacks (the plugin's
    server sends none by itself), and a notify URL one test set stayed for the next ones (merchants
    survive reset), whose callbacks then went to a receiver that was gone instead of waiting. Now
    set_notify_url / deliver_callbacks, and reset() puts the session's notify URLs back."""
    pytester.makefile(".ini", pytest="[pytest]\nwxpartner_scenario = scenario.yaml\n")
    pytester.makefile(
        ".yaml",
        scenario='webizpay:\n  employees:\n    - {sp_mchid: "1900000001", sub_mchid: "1900000101", '
        'user_id: "user_cb_1", employee_id: "WeBizPay_cb"}\n',
    )
    pytester.makepyfile(CALLBACK_PROJECT)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_scopes_overrides_async_and_turning_it_off(pytester: pytest.Pytester) -> None:
    """What the README's Scopes and Async paragraphs promise a user's project: a module fixture on
    wxpartner_session sets up a merchant that outlives the resets, a conftest fixture of a plugin
    fixture's name extends it, an anyio test awaits the async client, a failed test's clock and
    faults do not reach the next one, and -p no:wxpartner leaves no fixture."""
    pytester.makeconftest(
        textwrap.dedent(
            """
            import pytest
            from wxpartner.client import NO_RETRIES

            @pytest.fixture
            def wxpartner_client(wxpartner_server):  # the user's own: no retries
                with wxpartner_server.client(retry=NO_RETRIES) as client:
                    yield client
            """
        )
    )
    pytester.makepyfile(
        textwrap.dedent(
            """
            import pytest
            from wxpartner.client import ServerError

            @pytest.fixture(scope="module")
            def partner(wxpartner_session):
                wxpartner_session.load_scenario({"merchants": [{"mchid": "1666000001", "name": "module partner"}]})
                return "1666000001"

            def test_1_fails_midway(wxpartner_server, wxpartner_client, partner):
                wxpartner_server.set_clock("2031-01-01T00:00:00+08:00", freeze=True)
                wxpartner_server.inject_fault("SYSTEM_ERROR", count=5)
                wxpartner_client.webizpay.ranges.list(sp_mchid=wxpartner_client.mchid)

            def test_2_starts_clean(wxpartner_server, wxpartner_client, partner):
                clock = wxpartner_server.control.get("/sandbox/clock").json()
                assert abs(clock["offset_seconds"]) < 5 and not clock["frozen"]
                assert wxpartner_server.control.get("/sandbox/faults").json()["data"] == []
                listed = [m["mchid"] for m in wxpartner_server.control.get("/sandbox/merchants").json()["data"]]
                assert partner in listed  # merchants survive the resets
                wxpartner_server.inject_fault("SYSTEM_ERROR", count=1)
                with pytest.raises(ServerError):  # the conftest's client: not retried
                    wxpartner_client.webizpay.ranges.list(sp_mchid=wxpartner_client.mchid)

            @pytest.mark.anyio
            async def test_3_async(wxpartner_async_client):
                listed = await wxpartner_async_client.webizpay.ranges.list(sp_mchid=wxpartner_async_client.mchid)
                assert listed.range_list == []
            """
        )
    )
    # The inner run is in this process: what earlier tests left to the collector (a connection of
    # theirs) must be collected now, not during it, where -W error makes its ResourceWarning an error.
    gc.collect()
    result = pytester.runpytest("-p", "no:cacheprovider", "--strict-markers", "-W", "error")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["E *.ServerError: 500 SYSTEM_ERROR*"])
    off = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:wxpartner")
    off.assert_outcomes(errors=3)
    off.stdout.fnmatch_lines(["*fixture 'wxpartner_*' not found*"])


def test_every_fixture_explains_itself_in_pytest_fixtures(pytester: pytest.Pytester) -> None:
    """`pytest --fixtures` is where a user looks first; wxpartner_client said "no docstring available"."""
    result = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    out = result.stdout.str()
    names = ["wxpartner_session", "wxpartner_server", "wxpartner_client", "wxpartner_async_client"]
    for name in [*names, "wxpartner_live_server"]:
        block = out.split(f"\n{name}", 1)[1].split("\n\n", 1)[0]
        assert "no docstring available" not in block, (name, block)


def test_a_latency_fault_times_out_only_over_the_socket(wxpartner_live_server: WxPartnerServer) -> None:
    """What the README's fixture table says: the in-process client has no timeouts (a LATENCY fault
    only delays its answer); the loopback client reads with its timeout."""
    from wxpartner.client import NO_RETRIES, TransportError

    server = wxpartner_live_server
    server.inject_fault("LATENCY", latency_ms=700, count=1)
    with server.client(retry=NO_RETRIES, timeout=0.2) as client:
        assert client.webizpay.ranges.list(sp_mchid=client.mchid).range_list == []  # late, not lost
    server.inject_fault("LATENCY", latency_ms=700, count=1)
    with server.client(live=True, retry=NO_RETRIES, timeout=0.2) as client, pytest.raises(TransportError):
        client.webizpay.ranges.list(sp_mchid=client.mchid)


@pytest.mark.parametrize(
    ("how", "args", "env"),
    [
        ("conftest", [], {}),
        ("-p", ["-p", "wxpartner.testing"], {}),
        ("autoload off, -p by entry point", ["-p", "wxpartner"], {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}),
        ("autoload off, -p by module", ["-p", "wxpartner.testing"], {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}),
    ],
)
def test_the_plugin_may_also_be_named_by_its_module(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str, args: list[str], env: dict[str, str]
) -> None:
    """Found in the plugin audit: a project naming the plugin itself, as many do (pytest_plugins in its
    conftest, -p wxpartner.testing), made pytest stop before collecting: "Plugin already registered
    under a different name" (the entry point had registered the same module as "wxpartner")."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if how == "conftest":
        pytester.makeconftest('pytest_plugins = ["wxpartner.testing"]\n')
    pytester.makepyfile(ONE_TEST)
    pytester.runpytest("-p", "no:cacheprovider", *args).assert_outcomes(passed=1)


def test_the_plugin_is_off_by_either_name(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(ONE_TEST)
    for name in ("wxpartner", "wxpartner.testing"):
        result = pytester.runpytest("-p", "no:cacheprovider", "-p", f"no:{name}")
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*fixture 'wxpartner_client' not found*"])


def test_a_clock_move_has_done_what_it_owes_when_it_returns(wxpartner_server: WxPartnerServer) -> None:
    """Found in the plugin audit: after advance_clock past a card's end, /sandbox/callbacks listed
    nothing until the server's 2 s background sweep ran or something read the card (a test listing
    callbacks right after the move failed, or passed by timing); the plugin's clock helpers now make
    what the move owes before they return."""
    sp, sub = wxpartner_server.mchid, "1900000101"
    wxpartner_server.load_scenario(
        {
            "webizpay": {
                "employees": [
                    {
                        "sp_mchid": sp,
                        "sub_mchid": sub,
                        "user_id": "user_tick1",
                        "employee_id": "WeBizPay_tick",
                    }
                ]
            }
        }
    )
    end = dt.datetime.now().astimezone() + dt.timedelta(days=1)
    with wxpartner_server.client() as client:
        client.webizpay.quota_cards.issue(
            "WeBizPay_tick",
            {
                "sp_mchid": sp, "sub_mchid": sub, "card_template_id": "template_123", "amount": 100,
                "card_name": "card", "out_card_no": "tick_card_1", "effective_end_time": end.isoformat(),
            },
        )  # fmt: skip
    wxpartner_server.advance_clock(2 * 86400)
    listed = wxpartner_server.control.get("/sandbox/callbacks").json()
    assert [n["event_type"] for n in listed["data"]] == ["WEBIZPAY.QUOTACARDEXPIRED"]


def test_code_of_its_own_reaches_the_live_server_from_live_info(
    wxpartner_live_server: WxPartnerServer, tmp_path: Path
) -> None:
    """Found in the plugin audit: .info (what a user hands their own code) names the in-process
    http://testserver, which no socket reaches, so code reading it or a connection.json made from it
    failed to connect; live_info names the port, as serve's connection.json does."""
    import json

    from wxpartner.client import Client

    server = wxpartner_live_server
    path = tmp_path / "connection.json"  # as the user's app would read it
    path.write_text(json.dumps(server.live_info))
    with Client.from_connection_info(path) as client:  # its own HTTP, over the socket
        assert client.webizpay.ranges.list(sp_mchid=client.mchid).range_list == []
    token = {"Authorization": f"Bearer {server.live_info['sandbox_token']}"}
    assert httpx.get(f"{server.live_info['sandbox_api']}/clock", headers=token).status_code == 200


def test_a_scenario_naming_the_demo_merchant_sets_its_apiv3_key(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the README says of a scenario entry for the demo merchant: without apiv3_key it has none;
    with one, that key is used, and in certificate mode the client downloads certificates with it."""
    pytester.makefile(".ini", pytest="[pytest]\nwxpartner_scenario = scenario.yaml\n")
    entry = '  - {mchid: "1900000001", key_mode: certificate, sub_merchants: ["1900000101"]%s}\n'
    pytester.makepyfile(
        textwrap.dedent(
            """
            import os

            def test_it(wxpartner_server, wxpartner_client):
                assert wxpartner_server.info["apiv3_key"] == (os.environ["WANT_KEY"] or None)
                if os.environ["WANT_KEY"]:  # answers signed by a platform certificate, downloaded
                    wxpartner_client.webizpay.ranges.list(sp_mchid=wxpartner_client.mchid)
            """
        )
    )
    for key in ("", "0123456789abcdef0123456789abcdef"):
        pytester.makefile(".yaml", scenario="merchants:\n" + entry % (f", apiv3_key: {key}" if key else ""))
        monkeypatch.setenv("WANT_KEY", key)
        pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
