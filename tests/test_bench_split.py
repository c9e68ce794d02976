"""bench.split's reading of `perf report`: every sample lands in one class, by its shared object."""

from __future__ import annotations

import pytest
from bench.split import ORDER, classify, parse_report

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
