"""A receiver whose name lookup hangs: the system resolver (glibc's getaddrinfo, as in production) asks
a DNS server on loopback that never answers. It runs in a namespace of its own (``unshare``: user,
mount and network) whose /etc/resolv.conf names that server (or whose /etc/hosts gives a name two
addresses), so the machine's resolver is untouched; skipped where unshare is not allowed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support import SP_A, SP_B, clone_sqlite

# Runs inside the namespace: argv = database URL, data dir, mchid.
DELIVER_TO_A_HANGING_RESOLVER = r"""
import json, os, socket, sys, threading

dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dns.bind(("127.0.0.1", 53))
queries = []

def hold():
    while True:  # read every query, answer none
        queries.append(dns.recvfrom(4096)[0])

threading.Thread(target=hold, daemon=True).start()

from wxpartner.server.app import create_app
from wxpartner.server.callbacks import Deliverer
from wxpartner.server.settings import Settings
from wxpartner.store import outbox, registry, sandbox

url, data_dir, mchid = sys.argv[1:4]
app = create_app(Settings(data_dir=data_dir, database_url=url, sandbox_token="t" * 20, deliver_callbacks=False))
with app.state.db.write() as conn:
    registry.set_notify_url(conn, mchid, "http://receiver.wxpartner.test/wxpay/notify")
    now = sandbox.read_clock(conn).now_ts()
    nid = outbox.enqueue(conn, mchid=mchid, event_type="WEBIZPAY.REVOKED", summary="s", resource={}, now=now)
deliverer = Deliverer(app.state.db, app.state.keyring, timeout=1.0)
first = deliverer.run_pass()
again = deliverer.redeliver(nid)  # the same host while its lookup still hangs
lookups = [t.name for t in threading.enumerate() if t.name.startswith("wxpartner lookup")]
out = {
    "sends": [[r.status, r.state, r.error] for r in first + (again or [])],
    "queries": len(queries),
    "lookups": lookups,
}
print(json.dumps(out), flush=True)
os._exit(0)  # the lookup is still running: the resolver gives up only after minutes
"""


def _namespaces_allowed() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip") or not shutil.which("mount"):
        return False
    probe = subprocess.run(["unshare", "-rmn", "true"], capture_output=True, check=False)
    return probe.returncode == 0


def in_a_namespace(tmp_path: Path, script: str, args: list[str], etc: dict[str, str]) -> dict[str, Any]:
    """Run ``script`` with ``args`` in a user, mount and network namespace whose loopback is up and
    whose /etc files named in ``etc`` (name: content) are replaced; its last line of output, as JSON."""
    mounts = []
    for name, content in etc.items():
        replaced = tmp_path / f"etc-{name}"
        replaced.write_text(content)
        mounts.append(f"mount --bind {replaced} /etc/{name}")
    path = tmp_path / "script.py"
    path.write_text(script)
    inner = " && ".join(["ip link set lo up", *mounts, 'exec "$@"'])
    done = subprocess.run(
        ["unshare", "-rmn", "sh", "-c", inner, "sh", sys.executable, str(path), *args],
        capture_output=True,
        text=True,
        # each query waits 30 s, 5 times over, before the resolver gives up: 150 s at least
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "RES_OPTIONS": "timeout:30 attempts:5"},
        timeout=60,  # not a speed assertion: a pass that waits for the resolver never gets here
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _database(tmp_path: Path, template_db: Path) -> list[str]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return [clone_sqlite(template_db, tmp_path / "wxpartner.sqlite3"), str(data_dir), SP_A]


@pytest.mark.skipif(not _namespaces_allowed(), reason="unshare -rmn is not allowed here")
def test_a_pass_does_not_wait_for_a_resolver_that_hangs(tmp_path: Path, template_db: Path) -> None:
    """Both sends were recorded as timeouts of the name lookup and the pass returned while the resolver
    was still waiting for its server (it answers nothing, and gives up only after 150 s); the second
    send to the host waited for the first's lookup instead of starting another thread."""
    args = _database(tmp_path, template_db)
    result = in_a_namespace(
        tmp_path, DELIVER_TO_A_HANGING_RESOLVER, args, {"resolv.conf": "nameserver 127.0.0.1\n"}
    )
    error = "timeout: the name lookup of receiver.wxpartner.test did not finish within 1 s"
    assert result["sends"] == [[None, "pending", error], [None, "pending", error]]
    assert result["queries"] >= 1  # the resolver really asked the server that never answers
    assert result["lookups"] == ["wxpartner lookup receiver.wxpartner.test"]


# Runs inside the namespace: a receiver on 127.0.0.1 only, under a name whose first address is ::1.
DELIVER_TO_THE_SECOND_ADDRESS = r"""
import json, os, sys, threading
from http.server import BaseHTTPRequestHandler, HTTPServer

class Answer(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_):
        pass

receiver = HTTPServer(("127.0.0.1", 0), Answer)
threading.Thread(target=receiver.serve_forever, daemon=True).start()

from wxpartner.server.app import create_app
from wxpartner.server.callbacks import Deliverer
from wxpartner.server.settings import Settings
from wxpartner.store import outbox, registry, sandbox

url, data_dir, mchid = sys.argv[1:4]
app = create_app(Settings(data_dir=data_dir, database_url=url, sandbox_token="t" * 20, deliver_callbacks=False))
with app.state.db.write() as conn:
    notify_url = f"http://both.wxpartner.test:{receiver.server_address[1]}/wxpay/notify"
    registry.set_notify_url(conn, mchid, notify_url)
    now = sandbox.read_clock(conn).now_ts()
    outbox.enqueue(conn, mchid=mchid, event_type="WEBIZPAY.REVOKED", summary="s", resource={}, now=now)
sends = Deliverer(app.state.db, app.state.keyring).run_pass()
print(json.dumps({"sends": [[r.status, r.state, r.error] for r in sends]}), flush=True)
os._exit(0)
"""


@pytest.mark.skipif(not _namespaces_allowed(), reason="unshare -rmn is not allowed here")
def test_a_name_with_several_addresses_is_tried_at_each(tmp_path: Path, template_db: Path) -> None:
    """The name's first address (::1) refuses the connection; the send goes on to the next one
    (127.0.0.1), as httpx's own connect did once it looked the name up itself."""
    hosts = "::1 both.wxpartner.test\n127.0.0.1 both.wxpartner.test\n"
    result = in_a_namespace(
        tmp_path, DELIVER_TO_THE_SECOND_ADDRESS, _database(tmp_path, template_db), {"hosts": hosts}
    )
    assert result["sends"] == [[204, "delivered", None]]


# Runs inside the namespace: nothing listens on either address of the name.
DELIVER_TO_NEITHER_ADDRESS = DELIVER_TO_THE_SECOND_ADDRESS.replace("receiver.server_address[1]", "9")


@pytest.mark.skipif(not _namespaces_allowed(), reason="unshare -rmn is not allowed here")
def test_a_name_whose_addresses_all_refuse_says_so_for_each(tmp_path: Path, template_db: Path) -> None:
    hosts = "::1 both.wxpartner.test\n127.0.0.1 both.wxpartner.test\n"
    result = in_a_namespace(
        tmp_path, DELIVER_TO_NEITHER_ADDRESS, _database(tmp_path, template_db), {"hosts": hosts}
    )
    refused = "Connection refused: [Errno 111] Connect call failed"
    error = f"ConnectError: {refused} ('::1', 9, 0, 0); {refused} ('127.0.0.1', 9)"
    assert result["sends"] == [[None, "pending", error]]


# Runs inside the namespace: argv = database URL, data dir, mchid, another mchid; one lookup at most.
DELIVER_TO_TWO_HANGING_NAMES = (
    DELIVER_TO_A_HANGING_RESOLVER.replace(
        "url, data_dir, mchid = sys.argv[1:4]",
        "url, data_dir, mchid, other = sys.argv[1:5]\n"
        "from wxpartner.server import callback_network\n"
        "callback_network.LOOKUPS.limit = 1",
    )
    .replace(
        "    nid = outbox.enqueue(",
        "    registry.set_notify_url(conn, other, 'http://other.wxpartner.test/wxpay/notify')\n"
        "    outbox.enqueue(conn, mchid=other, event_type='WEBIZPAY.REVOKED', summary='s', resource={}, now=now)\n"
        "    nid = outbox.enqueue(",
    )
    .replace("first + (again or [])", "sorted(first, key=lambda r: r.error or '')")
)


@pytest.mark.skipif(not _namespaces_allowed(), reason="unshare -rmn is not allowed here")
def test_lookups_that_hang_take_at_most_the_limit_of_threads(tmp_path: Path, template_db: Path) -> None:
    """Two receivers under two names, neither answered by the resolver, and room for one lookup: the
    second send is refused at once with the reason (and tried again later), not given a thread."""
    args = [*_database(tmp_path, template_db), SP_B]
    result = in_a_namespace(
        tmp_path, DELIVER_TO_TWO_HANGING_NAMES, args, {"resolv.conf": "nameserver 127.0.0.1\n"}
    )
    sends = result["sends"]
    assert len(sends) == 2 and {state for _, state, _ in sends} == {"pending"}
    refused = [e for _, _, e in sends if "not looked up" in e]
    timed_out = [e for _, _, e in sends if e.startswith("timeout: the name lookup of")]
    assert len(refused) == 1 and len(timed_out) == 1, sends
    host = refused[0].removeprefix("ConnectError: ").split(" ")[0]
    assert host in {"other.wxpartner.test", "receiver.wxpartner.test"}
    assert refused[0] == (
        f"ConnectError: {host} was not looked up: 1 name lookups are still waiting for the resolver "
        "(the most at once); a later attempt tries again"
    )
    assert len(result["lookups"]) == 1
