"""The shared-memory replay window of a SQLite deployment (store/replay_window.py): what it remembers,
for how long, across instances and processes, and what it does with damaged files."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from wxpartner.store import replay_window as rw
from wxpartner.store.replay_window import ReplayWindow, ReplayWindowFull

KEEP = 600
T0 = 1_800_000_000.0


def _window(tmp_path: Path) -> ReplayWindow:
    return ReplayWindow(tmp_path / "wx.sqlite3")


def _record(window: ReplayWindow, nonce: str, now: float = T0, mchid: str = "1900000001") -> bool:
    return window.record(mchid, nonce, now, now - KEEP)


def _generation_files(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.glob("wx.sqlite3.replay-*"))


@pytest.fixture
def small_generations(monkeypatch: pytest.MonkeyPatch) -> None:
    """16 slots per generation (full at 8), growing to at most 64."""
    monkeypatch.setattr(rw, "MIN_LOG2", 4)
    monkeypatch.setattr(rw, "MAX_LOG2", 6)


def test_a_nonce_is_fresh_once_per_merchant(tmp_path: Path) -> None:
    window = _window(tmp_path)
    assert _record(window, "n1") is True
    assert _record(window, "n1") is False
    assert _record(window, "n1", mchid="1900000002") is True, "another merchant's nonce is its own"
    assert _record(window, "n2") is True
    assert window.seen("1900000001", "n1", T0 - KEEP) is True
    assert window.seen("1900000001", "n3", T0 - KEEP) is False
    assert window.remembered() == 3


def test_the_window_outlives_the_instance(tmp_path: Path) -> None:
    first = _window(tmp_path)
    assert _record(first, "kept")
    first.close()
    again = _window(tmp_path)  # a restarted server
    assert _record(again, "kept") is False


def test_a_nonce_is_forgotten_only_after_the_retention(tmp_path: Path) -> None:
    window = _window(tmp_path)
    assert _record(window, "n")
    assert _record(window, "n", now=T0 + KEEP) is False, "still inside the retention"
    assert _record(window, "n", now=T0 + KEEP + 1) is True
    assert _record(window, "n", now=T0 + KEEP + 2) is False, "recorded anew"


@pytest.mark.usefixtures("small_generations")
def test_full_generations_roll_over_and_every_nonce_stays_remembered(tmp_path: Path) -> None:
    window = _window(tmp_path)
    nonces = [f"n{i}" for i in range(200)]
    assert all(_record(window, n, now=T0 + i) for i, n in enumerate(nonces))
    assert len(_generation_files(tmp_path)) > 3
    other = _window(tmp_path)  # another process's view
    assert not any(_record(other, n, now=T0 + 200) for n in nonces)
    assert not any(_record(window, n, now=T0 + 200) for n in nonces)


@pytest.mark.usefixtures("small_generations")
def test_a_generation_filled_quickly_is_followed_by_a_larger_one(tmp_path: Path) -> None:
    window = _window(tmp_path)
    for i in range(60):
        _record(window, f"n{i}")  # all in the same second: much faster than half the retention
    sizes = [(tmp_path / name).stat().st_size for name in _generation_files(tmp_path)]
    assert sizes == sorted(sizes) and sizes[0] == 16 * 16 and sizes[-1] == 16 * 64, sizes


@pytest.mark.usefixtures("small_generations")
def test_expired_generations_are_deleted_whole(tmp_path: Path) -> None:
    window = _window(tmp_path)
    for i in range(40):
        _record(window, f"old{i}")
    assert len(_generation_files(tmp_path)) >= 3
    later = T0 + KEEP + 5
    for i in range(20):
        _record(window, f"new{i}", now=later)
    kept = _generation_files(tmp_path)
    # what is left holds the new nonces (the last old generation may still be filling up with them)
    assert window.remembered() <= 20 + 16, (kept, window.remembered())
    assert not any(_record(window, f"new{i}", now=later) for i in range(20))
    assert _record(window, "old0", now=later) is True


def test_forgetting_everything_or_one_merchant(tmp_path: Path) -> None:
    window, other = _window(tmp_path), _window(tmp_path)
    for mchid in ("1900000001", "1900000002"):
        assert _record(window, "n", mchid=mchid)
    other.forget("1900000001")  # from another process: the memory is shared
    assert _record(window, "n", mchid="1900000001") is True
    assert _record(window, "n", mchid="1900000002") is False
    window.forget()
    assert _generation_files(tmp_path) == []
    assert _record(other, "n", mchid="1900000002") is True
    assert _record(window, "n", mchid="1900000002") is False


def _record_all(window: ReplayWindow, nonces: list[str], start: Any, out: Any) -> None:
    start.wait()
    out.put([n for n in nonces if window.record("1900000001", n, T0, T0 - KEEP)])
    window.close()


@pytest.mark.parametrize("small", [False, True], ids=["one-generation", "many-generations"])
def test_processes_racing_on_the_same_nonces_accept_each_once(
    tmp_path: Path, small: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if small:  # generations start and fill while the processes race (about 60 of them)
        monkeypatch.setattr(rw, "MIN_LOG2", 4)
        monkeypatch.setattr(rw, "MAX_LOG2", 6)
    window = _window(tmp_path)
    assert _record(window, "before-the-fork")  # the children inherit this open window: they must reopen
    nonces = [f"n{i}" for i in range(2000 if small else 6000)]
    context = multiprocessing.get_context("fork")
    start, out = context.Barrier(4), context.Queue()
    racers = [context.Process(target=_record_all, args=(window, nonces, start, out)) for _ in range(4)]
    for racer in racers:
        racer.start()
    accepted = [n for _ in racers for n in out.get(timeout=60)]
    for racer in racers:
        racer.join(10)
    assert sorted(accepted) == sorted(nonces), "each nonce accepted by exactly one process"
    assert _record(window, "before-the-fork") is False


def test_a_damaged_index_starts_an_empty_window(tmp_path: Path) -> None:
    window = _window(tmp_path)
    assert _record(window, "n")
    window.close()
    (tmp_path / "wx.sqlite3.replay").write_bytes(b"not an index")
    again = _window(tmp_path)
    assert _record(again, "n") is True


def test_a_generation_file_cut_short_is_extended_not_a_crash(tmp_path: Path) -> None:
    window = _window(tmp_path)
    assert _record(window, "n")
    window.close()
    [name] = _generation_files(tmp_path)
    os.truncate(tmp_path / name, 100)  # a page past the end would be SIGBUS
    again = _window(tmp_path)
    for i in range(50):
        assert _record(again, f"m{i}")


@pytest.mark.usefixtures("small_generations")
def test_an_index_with_no_room_left_refuses_instead_of_forgetting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rw, "MAX_GENERATIONS", 2)
    window = _window(tmp_path)
    recorded = 0
    with pytest.raises(ReplayWindowFull):
        for i in range(1000):
            _record(window, f"n{i}")
            recorded += 1
    assert recorded == 8 + 16  # two generations, 16 and 32 slots, each half full
    assert not any(_record(window, f"n{i}") for i in range(recorded)), "nothing was dropped"


def test_another_process_sees_what_was_added_to_a_generation_it_already_knew(tmp_path: Path) -> None:
    a, b = _window(tmp_path), _window(tmp_path)
    assert _record(a, "x") and _record(b, "y")  # both now know the one generation
    assert _record(a, "z", now=T0 + KEEP)  # its newest entry moves on in a's process only
    assert _record(b, "z", now=T0 + KEEP + 1) is False


def test_generation_files_have_their_disk_blocks_up_front(tmp_path: Path) -> None:
    # A sparse file written through a mapping on a full disk kills the process with SIGBUS; reserved
    # blocks turn that into an OSError when the generation is created.
    window = _window(tmp_path)
    assert _record(window, "n")
    [name] = _generation_files(tmp_path)
    stat = (tmp_path / name).stat()
    assert stat.st_blocks * 512 >= stat.st_size > 0


@pytest.mark.usefixtures("small_generations")
def test_generations_are_dropped_by_the_longest_retention_any_process_asked_for(tmp_path: Path) -> None:
    narrow, wide = _window(tmp_path), _window(tmp_path)
    assert narrow.widen(KEEP, T0) == 0, "the first retention asked for: the history is complete"
    for i in range(20):
        assert _record(narrow, f"early{i}")
    assert wide.widen(4 * KEEP, T0 + 10) == int(T0) + 10 - KEEP // 2
    later = T0 + KEEP + 5
    for i in range(20):
        assert _record(narrow, f"later{i}", now=later)  # past the narrow retention: it drops what it may
    assert wide.seen("1900000001", "early0", later - 4 * KEEP), "kept for the wide process"
    much_later = T0 + 4 * KEEP + 5
    for i in range(20):
        assert _record(narrow, f"last{i}", now=much_later)
    assert not wide.seen("1900000001", "early0", much_later - 4 * KEEP), "dropped after the longest retention"


def test_the_history_is_complete_from_the_latest_widening(tmp_path: Path) -> None:
    first, second, third = _window(tmp_path), _window(tmp_path), _window(tmp_path)
    assert first.widen(KEEP, T0) == 0
    assert second.widen(2 * KEEP, T0 + 100) == int(T0) + 100 - KEEP // 2
    # A narrower process asking later changes nothing and learns the same instant.
    assert third.widen(KEEP, T0 + 200) == int(T0) + 100 - KEEP // 2
    assert first.widen(KEEP, T0 + 200) == int(T0) + 100 - KEEP // 2
    # Widening again from 2 x KEEP: complete from KEEP before then (never earlier than it was).
    assert third.widen(8 * KEEP, T0 + 5000) == int(T0) + 5000 - KEEP
    assert _window(tmp_path).widen(8 * KEEP, T0 + 6000) == int(T0) + 5000 - KEEP, "a restart"
