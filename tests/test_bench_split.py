"""bench.split's reading of `perf report`: every sample lands in one class, by its shared object."""

from __future__ import annotations

import pytest
from bench.split import (
    ORDER,
    ThreadTimes,
    classify,
    parse_report,
    parse_strace_summary,
    parse_task,
    per_request,
)

REPORT = """\
# To display the perf.data header info, please use --header/--header-only options.
#
# Samples: 5K of event 'cpu-clock'
#
# Overhead  Shared Object
# ........  ...............................
#
    64.41%  _rust.abi3.so
    23.32%  libpython3.11.so.1.0
     5.50%  [kernel.kallsyms]
     3.09%  libc.so.6
     1.15%  libsqlite3.so.0.8.6
     0.79%  loop.cpython-311-x86_64-linux-gnu.so
     0.72%  _pydantic_core.cpython-311-x86_64-linux-gnu.so
     0.35%  _sqlite3.cpython-311-x86_64-linux-gnu.so
     0.30%  libcrypto.so.3
     0.07%  [vdso]
     0.05%  ld-linux-x86-64.so.2
     0.02%  python3.11
"""


def test_report_lines_are_read_and_headers_skipped() -> None:
    rows = parse_report(REPORT)
    assert rows[0] == ("_rust.abi3.so", 64.41)
    assert ("[kernel.kallsyms]", 5.5) in rows and len(rows) == 12


def test_each_shared_object_lands_in_its_class() -> None:
    split = classify(parse_report(REPORT))
    assert list(split) == list(ORDER)
    assert split["crypto"] == pytest.approx(64.41 + 0.30)
    assert split["python"] == pytest.approx(23.32 + 0.02)
    assert split["kernel"] == pytest.approx(5.50 + 0.07)
    assert split["sqlite"] == pytest.approx(1.15 + 0.35)
    assert split["libc"] == pytest.approx(3.09 + 0.05)
    assert split["other"] == pytest.approx(0.79 + 0.72)
    assert sum(split.values()) == pytest.approx(sum(p for _, p in parse_report(REPORT)))


def test_a_path_is_classified_by_its_base_name() -> None:
    split = classify([("/usr/lib/x86_64-linux-gnu/libsqlite3.so.0", 10.0), ("/opt/x/libcrypto.so.3", 5.0)])
    assert split["sqlite"] == 10.0 and split["crypto"] == 5.0 and split["other"] == 0.0


# --held: a thread's CPU and context switches from /proc, and strace's summary.

STAT = "4242 (python (x) 1) S 1 4242 4242 0 -1 4194560 9 0 0 0 250 40 0 0 20 0 4 0 7 1 2 3"
STATUS = "Name:\tpython\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t17\nnonvoluntary_ctxt_switches:\t5\n"


def test_a_threads_stat_and_status_give_its_cpu_and_switches() -> None:
    # utime and stime are the 14th and 15th fields; a name with spaces and parentheses does not shift them
    times = parse_task(STAT, STATUS, 100)
    assert times == ThreadTimes(user=2.5, system=0.4, voluntary=17, involuntary=5)


def test_the_event_loop_is_each_workers_main_thread_and_the_rest_are_others() -> None:
    before = {(10, 10): ThreadTimes(1.0, 0.1, 5, 1), (10, 11): ThreadTimes(0.2, 0.1, 0, 0)}
    after = {
        (10, 10): ThreadTimes(2.0, 0.3, 25, 3),
        (10, 11): ThreadTimes(0.3, 0.2, 9, 9),
        (20, 20): ThreadTimes(1.0, 0.0, 10, 0),  # a second worker, first seen here: from zero
        (20, 23): ThreadTimes(0.1, 0.1, 1, 1),  # a thread started meanwhile
    }
    row = per_request(before, after, 100)
    assert row["loop_user"] == pytest.approx(20.0)  # (1.0 + 1.0) s = 2,000 ms over 100 requests
    assert row["loop_sys"] == pytest.approx(2.0)
    assert row["others_user"] == pytest.approx(2.0)
    assert row["others_sys"] == pytest.approx(2.0)
    assert row["loop_vcs"] == pytest.approx(0.3) and row["loop_ivcs"] == pytest.approx(0.02)


STRACE = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 58.57    0.910559         554      1642       463 futex
 31.42    0.488525       34894        14           clock_nanosleep
  2.40    0.037253           1     21432           pwrite64
  0.00    0.000002           0        32           getpeername
------ ----------- ----------- --------- --------- ----------------
100.00    1.554634          44     23120       463 total
"""


def test_strace_summary_gives_calls_per_system_call() -> None:
    calls = parse_strace_summary(STRACE)
    assert calls == {"futex": 1642, "clock_nanosleep": 14, "pwrite64": 21432, "getpeername": 32}
