"""Request-IDs in WeChat Pay's shape: a protobuf message in hex whose field 1 is the Unix time."""

from __future__ import annotations

import os
import re
import threading
import time

from support import ApiClient
from wxpartner.protocol.request_ids import new_request_id

# protocol.md §5: the example Request-ID of a WeChat Pay answer.
SPEC_EXAMPLE = "08D0C3A5B906100418A0C8E3A90320B0F1A4FA05-0"
SHAPE = re.compile(r"08[0-9A-F]{10}100418[0-9A-F]{10}20[0-9A-F]{10}-0")


def decode(request_id: str) -> dict[int, int]:
    """The fields of the hex protobuf before the dash, each a varint (wire type 0)."""
    data = bytes.fromhex(request_id.partition("-")[0])
    fields: dict[int, int] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        value = shift = 0
        while True:
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    while i < len(data):
        key = varint()
        assert key & 7 == 0, f"field {key >> 3} of {request_id} is not a varint"
        fields[key >> 3] = varint()
    return fields


def test_the_spec_example_is_a_protobuf_led_by_the_unix_time() -> None:
    fields = decode(SPEC_EXAMPLE)
    assert sorted(fields) == [1, 2, 3, 4]
    assert fields[1] == 1730765264  # 2024-11-05 00:07:44 UTC
    assert fields[2] == 4
    assert SHAPE.fullmatch(SPEC_EXAMPLE)


def test_ours_have_the_same_fields_and_length() -> None:
    before = int(time.time())
    rid = new_request_id()
    after = int(time.time())
    assert SHAPE.fullmatch(rid), rid
    assert len(rid) == len(SPEC_EXAMPLE)
    fields = decode(rid)
    assert sorted(fields) == [1, 2, 3, 4]
    assert before <= fields[1] <= after
    assert fields[2] == 4


def test_one_process_counts_and_keeps_its_tag() -> None:
    ids = [new_request_id() for _ in range(300)]
    fields = [decode(rid) for rid in ids]
    counts = [f[3] for f in fields]
    assert counts == list(range(counts[0], counts[0] + 300))
    assert len({f[4] for f in fields}) == 1


def test_ids_of_one_second_share_their_head() -> None:
    """What keeps a chunk of journal rows on a few pages of the request_id index: the id's first
    characters are the second it was made in."""
    by_second: dict[int, set[str]] = {}
    for _ in range(2000):
        rid = new_request_id()
        by_second.setdefault(decode(rid)[1], set()).add(rid[:16])
    assert all(len(heads) == 1 for heads in by_second.values())
    assert len({h for heads in by_second.values() for h in heads}) == len(by_second)


def test_unique_across_threads() -> None:
    made: list[list[str]] = [[] for _ in range(8)]

    def make(out: list[str]) -> None:
        out.extend(new_request_id() for _ in range(5000))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [rid for out in made for rid in out]
    assert len(set(everything)) == len(everything) == 40_000


def test_a_forked_child_draws_its_own_tag() -> None:
    parent = decode(new_request_id())
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send one id back and leave without running the parent's cleanup
        try:
            os.write(write, new_request_id().encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child_id = pipe.read().decode()
    os.waitpid(pid, 0)
    child = decode(child_id)
    assert child[4] != parent[4]
    assert SHAPE.fullmatch(child_id)


def test_served_answers_carry_them(client_a: ApiClient) -> None:
    ok = client_a.get("/v3/certificates")
    refused = client_a.get("/v3/webizpay/employee-quota-cards/nope?employee_id=x")
    for resp in (ok, refused):
        rid = resp.headers["Request-ID"]
        assert SHAPE.fullmatch(rid), rid
        assert abs(decode(rid)[1] - time.time()) <= 5
    assert ok.headers["Request-ID"] != refused.headers["Request-ID"]
