"""The pytest plugin from a user's project, as their suite runs it: separate pytest sessions (pytester)
with only the entry point's fixtures, checked for what the session leaves behind and for how it says
what is wrong with its options."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

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
            "wxpartner_scenario = nope.yaml (in tox.ini): webizpay.employees.0.sub_mchid: Field required",
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
    assert "Traceback" not in out and "testing.py" not in out and "During handling" not in out
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
    assert "s3cret" not in out and "Traceback" not in out and "testing.py" not in out


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
