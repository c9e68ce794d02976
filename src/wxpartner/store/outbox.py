"""The callback outbox (SQL side): enqueue inside a business transaction, claim due notifications
atomically across processes and hosts, record each attempt. Sending itself: server/callbacks.py.

Claiming is ``SELECT … FOR UPDATE SKIP LOCKED`` then a conditional ``UPDATE`` that takes a lease
(PostgreSQL); on SQLite the same statements run inside a ``BEGIN IMMEDIATE`` write, which serialises
claimers (SQLAlchemy renders no FOR UPDATE there). A lease that expires (a killed process) makes the
notification claimable again: delivery is at-least-once, receivers de-duplicate on ``id``.

Leases are real time on one clock for all claimers: the database server's on PostgreSQL (hosts' clocks
differ), this host's on SQLite (one host). See ``_lease_now``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..protocol.constants import WEBIZPAY_RETRY_DELAYS_SECONDS
from .db import LeanStatement
from .keyset import Order
from .outbox_tables import callback_attempts, callback_notifications
from .schema import merchants

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
STATES = (PENDING, DELIVERED, FAILED)

# webizpay retry policy (protocol §9.4): RETRY_SCHEDULE[n] is the delay before send n+1, counted on the
# business clock from send n (send 1 is due at once).
RETRY_SCHEDULE: tuple[float, ...] = tuple(float(s) for s in WEBIZPAY_RETRY_DELAYS_SECONDS)
MAX_SENDS = len(RETRY_SCHEDULE)
# A retry waiting longer than the delay that scheduled it (by more than this margin, which absorbs
# hosts' clocks differing a little) was scheduled before the business clock was moved back: it is due
# at once rather than waiting for the clock to come back (possibly years).
CLOCK_SLACK_SECONDS = 60.0

_n = callback_notifications
# The listing's order, newest first (the dashboard's callbacks page reads it too)
LISTING = Order(((_n.c.create_time, True), (_n.c.id, False)))
_a = callback_attempts


def enqueue(
    conn: Connection,
    *,
    mchid: str,
    event_type: str,
    summary: str,
    resource: dict[str, Any],
    now: float,
) -> str:
    """Queue a notification for ``mchid`` (the merchant whose notify_url receives it), due at ``now``
    (business time, also its ``create_time``). Call inside the business change's write transaction:
    the event exists iff the change commits. Returns the notification ``id`` (a UUID)."""
    values = notification(mchid=mchid, event_type=event_type, summary=summary, resource=resource, now=now)
    _ENQUEUE.rows(conn, values)
    return str(values["id"])


def enqueue_all(conn: Connection, notifications: list[dict[str, Any]]) -> None:
    """``enqueue`` of several ``notification(...)`` values at once (one driver ``executemany``)."""
    if notifications:
        _ENQUEUE.run_many(conn, notifications)


def notification(
    *, mchid: str, event_type: str, summary: str, resource: dict[str, Any], now: float
) -> dict[str, Any]:
    """The values of a new notification's row that ``enqueue`` binds (a new ``id``), also for a
    statement that inserts it with the change it reports (``insert_per_row``)."""
    return {
        "id": str(uuid.uuid4()),
        "mchid": mchid,
        "event_type": event_type,
        "summary": summary,
        "resource_json": json.dumps(resource, ensure_ascii=False, separators=(",", ":")),
        "create_time": now,
        "next_attempt_at": now + RETRY_SCHEDULE[0],
        "updated_at": time.time(),
    }


_BOUND = (
    "id",
    "mchid",
    "event_type",
    "summary",
    "resource_json",
    "create_time",
    "next_attempt_at",
    "updated_at",
)
_FIXED = {"original_type": "webizpay", "state": PENDING, "sends": 0, "send_limit": MAX_SENDS}


def insert_per_row(source: sa.CTE, prefix: str) -> sa.Insert:
    """An INSERT of the notification whose ``notification`` values are bound as ``<prefix><name>``,
    once per row of ``source`` (none when it has none): a CTE beside the change that ``source``
    returns, so the event exists iff the change does, in the change's one statement (PostgreSQL)."""
    columns = [*_BOUND, *_FIXED]
    values = [sa.bindparam(prefix + name, type_=_n.c[name].type) for name in _BOUND]
    values += [sa.literal(value, _n.c[name].type) for name, value in _FIXED.items()]
    return _n.insert().from_select(columns, sa.select(*values).select_from(source))


# Business writes that emit an event run it: compiled once per dialect, executed on the driver cursor
# (db.LeanStatement). The fixed values are literals of the statement.
_ENQUEUE = LeanStatement(_n.insert().values({**{name: sa.bindparam(name) for name in _BOUND}, **_FIXED}))


@dataclass(frozen=True, slots=True)
class Claim:
    """A notification this process holds the lease on, with what is needed to send it."""

    id: str
    mchid: str
    event_type: str
    summary: str
    resource: dict[str, Any]
    original_type: str
    create_time: float
    sends: int  # sends before this one
    send_limit: int
    owner: str
    redeliveries: int = 0  # redeliveries asked for before the claim (complete: one asked since wins)
    due_at: float | None = None  # business time the send was due (the schedule goes on from there)


def _scheduled_delay() -> sa.ColumnElement[float]:
    """The delay that set ``next_attempt_at`` after ``sends`` sends."""
    return sa.case(
        *((_n.c.sends == i, sa.literal(d)) for i, d in enumerate(RETRY_SCHEDULE) if i),
        else_=sa.literal(RETRY_SCHEDULE[-1]),
    )


# PostgreSQL: the database server's clock, which every host shares (the time its statement began).
_DATABASE_NOW = sa.cast(sa.extract("epoch", sa.func.statement_timestamp()), sa.Float)


def _lease_now(conn: Connection) -> float | sa.ColumnElement[float]:
    """The real time leases are taken and judged by. PostgreSQL: the database's clock. Each host's own
    clock made a host whose clock ran ahead by more than a lease take over another host's live send
    (the notification went out twice at once), and one whose clock ran behind wait for a dead host's
    lease that much longer. SQLite: this host's clock (one host), as before.
    Durations stay on the host on purpose: a lease's length and a send's HTTP timeout are intervals,
    which a host measures as well as the database does whatever its clock's offset. So do records
    never compared across processes (``updated_at``, an attempt's ``sent_at``)."""
    return time.time() if conn.dialect.name == "sqlite" else _DATABASE_NOW


def _unleased(lease_now: float | sa.ColumnElement[float]) -> sa.ColumnElement[bool]:
    """No process holds a live lease: never leased, or the lease ran out (a killed process)."""
    return sa.or_(_n.c.lease_until.is_(None), _n.c.lease_until < lease_now)


def _due(business_now: float, lease_now: float | sa.ColumnElement[float]) -> sa.ColumnElement[bool]:
    """An index range on (mchid, state, next_attempt_at): a poll reads only what is due, however many
    retries wait for their time (a clock moved back is dealt with when it moves: clock_set)."""
    return sa.and_(
        _n.c.state == PENDING,
        _n.c.next_attempt_at <= business_now,
        _n.c.sends < _n.c.send_limit,
        _unleased(lease_now),
    )


def _clock_set() -> sa.Update:
    now = sa.bindparam("now", type_=sa.Float)
    moved_back = sa.or_(
        sa.and_(_n.c.sends == 0, _n.c.next_attempt_at > now),
        _n.c.next_attempt_at > now + CLOCK_SLACK_SECONDS + _scheduled_delay(),
    )
    # both cases wait past the clock: a range of the (state, next_attempt_at) index
    later = _n.c.next_attempt_at > now
    return _n.update().where(_n.c.state == PENDING, later, moved_back).values(next_attempt_at=now)


# Every clock change runs it (control calls, a test's reset): compiled once (db.LeanStatement).
_CLOCK_SET = LeanStatement(_clock_set())


def clock_set(conn: Connection, business_now: float) -> int:
    """The business clock was just set to ``business_now``, in this write transaction. A notification
    never waits for the clock to come back: one never sent, or a retry scheduled before the clock went
    back (by more than CLOCK_SLACK_SECONDS past the delay that scheduled it), is made due now; then,
    if it fails, its schedule goes on from the clock it was sent on. Returns how many."""
    return _CLOCK_SET.count(conn, {"now": business_now})


def _deliverable_merchants() -> sa.Select[str]:
    """Merchants a notification can go to: a callback URL and an APIv3 key to encrypt with.
    Notifications of other merchants wait (unclaimed, no send used) until both are configured."""
    return sa.select(merchants.c.mchid).where(
        merchants.c.notify_url.is_not(None), merchants.c.notify_url != "", merchants.c.apiv3_key.is_not(None)
    )


# Up to this many merchants that can receive are named in the poll's statement (each an index range
# on (mchid, state, next_attempt_at); SQLite's planner does not drive a subquery through that index);
# more are read by a subquery (a list is a bound parameter per merchant: PostgreSQL takes 65,535).
LISTED_MERCHANTS = 500


def _deliverable_filter(conn: Connection) -> sa.ColumnElement[bool] | None:
    """Which notifications can go out: None when no merchant can receive (a load test's merchants have
    no notify_url), so no notification is looked at, where every poll of every process used to walk
    all waiting notifications (≈25 ms at 100,000)."""
    found = list(conn.execute(_deliverable_merchants().limit(LISTED_MERCHANTS + 1)).scalars())
    if not found:
        return None
    if len(found) <= LISTED_MERCHANTS:
        return _n.c.mchid.in_(found)
    return _n.c.mchid.in_(_deliverable_merchants().scalar_subquery())


def any_due(conn: Connection, *, business_now: float) -> bool:
    """A cheap read so idle pollers never take the write lock."""
    deliverable = _deliverable_filter(conn)
    if deliverable is None:
        return False
    stmt = sa.select(_n.c.id).where(_due(business_now, _lease_now(conn)), deliverable).limit(1)
    return conn.execute(stmt).first() is not None


def leased(conn: Connection) -> int:
    """How many notifications some process is sending right now (a live lease)."""
    stmt = sa.select(sa.func.count()).select_from(_n).where(_n.c.lease_until >= _lease_now(conn))
    return int(conn.execute(stmt).scalar_one())


# The columns a claim reads back (claim_due, redeliver).
_CLAIMED = (
    _n.c.id,
    _n.c.mchid,
    _n.c.event_type,
    _n.c.summary,
    _n.c.resource_json,
    _n.c.original_type,
    _n.c.create_time,
    _n.c.sends,
    _n.c.send_limit,
    _n.c.redeliveries,
    _n.c.next_attempt_at,
)


def _claim(r: sa.Row[Any], owner: str) -> Claim:
    return Claim(
        id=r.id,
        mchid=r.mchid,
        event_type=r.event_type,
        summary=r.summary,
        resource=json.loads(r.resource_json),
        original_type=r.original_type,
        create_time=float(r.create_time),
        sends=int(r.sends),
        send_limit=int(r.send_limit),
        owner=owner,
        redeliveries=int(r.redeliveries),
        due_at=None if r.next_attempt_at is None else float(r.next_attempt_at),
    )


def claim_due(
    conn: Connection,
    *,
    business_now: float,
    owner: str,
    lease_seconds: float,
    limit: int,
    ids: Sequence[str] | None = None,
    sent_before: float | None = None,
) -> list[Claim]:
    """Lease up to ``limit`` due notifications to ``owner`` for ``lease_seconds`` (real time, on the
    lease clock: _lease_now). ``sent_before`` (real time): none sent since then, so a drain sends each
    notification at most once even when the next send of one is already due (the schedule catching up
    with a clock moved forward: complete). Call in a write transaction."""
    lease_now = _lease_now(conn)
    due = _due(business_now, lease_now)
    deliverable = _deliverable_filter(conn)
    if deliverable is None:
        return []
    pick = (
        sa.select(_n.c.id)
        .where(due, deliverable)
        .order_by(_n.c.next_attempt_at, _n.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=_n)
    )
    if ids is not None:
        pick = pick.where(_n.c.id.in_(list(ids)))
    if sent_before is not None:
        pick = pick.where(sa.or_(_n.c.sends == 0, _n.c.updated_at < sent_before))
    chosen = [r[0] for r in conn.execute(pick)]
    if not chosen:
        return []
    # Conditional: a row another claimer leased in the meantime no longer matches ``due``.
    rows = conn.execute(
        _n.update()
        .where(_n.c.id.in_(chosen), due)
        .values(lease_owner=owner, lease_until=lease_now + lease_seconds, updated_at=time.time())
        .returning(*_CLAIMED)
    ).all()
    claims = [_claim(r, owner) for r in rows]
    return sorted(claims, key=lambda c: chosen.index(c.id))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one send came to."""

    at: float  # business time of the send
    sent_at: float  # real time of the send
    url: str
    status: int | None
    latency_ms: float
    ok: bool
    error: str | None
    signer_key_id: str = ""
    request_id: str = ""


def next_state(sends_after: int, send_limit: int, ok: bool, at: float) -> tuple[str, float | None]:
    """State and next due time after a send (business time): the schedule, at most ``send_limit``."""
    if ok:
        return DELIVERED, None
    if sends_after >= send_limit:
        return FAILED, None
    delay = RETRY_SCHEDULE[min(sends_after, MAX_SENDS - 1)]
    return PENDING, at + delay


def complete(conn: Connection, claim: Claim, outcome: Outcome) -> tuple[str, bool]:
    """Record the attempt and move the schedule on, if this process still holds the lease.
    Returns (state, lease_held); a lost lease (expired and re-claimed) still records the attempt.

    The next send falls due its delay after the time this one was **due**, not after it went out: a
    business clock moved forward past several scheduled sends (a receiver "down for a day") has them
    go out one a poll until the schedule has caught up with the clock, and the notification fails
    after its 10th as it would have that day; it was given a fresh 15 s, 15 s, 30 s … from the jump,
    and delivered once the receiver was back, hours after WeChat Pay would have given up.

    A redeliver asked for while this send was in flight (``redeliveries`` moved on since the claim) is
    not overwritten by its result: the send counts (``sends`` + 1, its attempt recorded), and the
    notification stays pending, due when the redeliver made it due, with a send left for it."""
    attempt_no = claim.sends + 1
    due = outcome.at if claim.due_at is None else min(claim.due_at, outcome.at)
    state, next_at = next_state(attempt_no, claim.send_limit, outcome.ok, due)
    unchanged = _n.c.redeliveries == claim.redeliveries
    values: dict[str, Any] = {
        "sends": _n.c.sends + 1,
        "state": sa.case((unchanged, sa.literal(state)), else_=sa.literal(PENDING)),
        "next_attempt_at": sa.case((unchanged, sa.literal(next_at, sa.Float)), else_=_n.c.next_attempt_at),
        # _n.c.sends is the value before this statement: this send is sends + 1, the redeliver's + 2
        "send_limit": sa.case(
            (sa.and_(sa.not_(unchanged), _n.c.send_limit < _n.c.sends + 2), _n.c.sends + 2),
            else_=_n.c.send_limit,
        ),
        "lease_owner": None,
        "lease_until": None,
        "updated_at": time.time(),
    }
    if outcome.ok:
        values["delivered_at"] = outcome.at
    row = conn.execute(
        _n.update()
        .where(_n.c.id == claim.id, _n.c.lease_owner == claim.owner)
        .values(**values)
        .returning(_n.c.state)
    ).first()
    updated = row is not None
    if row is not None:
        state = str(row.state)
    error = outcome.error
    if not updated:
        # FOR SHARE: the row stays locked until this attempt commits, as the UPDATE above locks it, so
        # a reset waits for the attempt and deletes it too (reset); without the lock a reset could
        # delete the notification between this look and the INSERT below, leaving the attempt behind.
        still = sa.select(_n.c.id).where(_n.c.id == claim.id).with_for_update(read=True)
        if conn.execute(still).first() is None:  # forgotten meanwhile (a sandbox reset): an attempt
            return state, False  # row would outlive it forever
        error = (error + "; " if error else "") + "lease lost before the result was recorded"
    conn.execute(
        _a.insert().values(
            notification_id=claim.id,
            attempt_no=attempt_no,
            at=outcome.at,
            sent_at=outcome.sent_at,
            url=outcome.url[:512],
            status=outcome.status,
            latency_ms=outcome.latency_ms,
            ok=outcome.ok,
            error=error,
            signer_key_id=outcome.signer_key_id,
            request_id=outcome.request_id,
        )
    )
    return state, bool(updated)


def release(conn: Connection, claim: Claim) -> None:
    """Give a claim back unsent (e.g. the merchant lost its key meanwhile): no send is used."""
    conn.execute(
        _n.update()
        .where(_n.c.id == claim.id, _n.c.lease_owner == claim.owner)
        .values(lease_owner=None, lease_until=None, updated_at=time.time())
    )


def _reopened(business_now: float) -> dict[str, Any]:
    """Due now, one more send if all were used, and a redelivery counted (see complete)."""
    return {
        "state": PENDING,
        "next_attempt_at": business_now,
        "send_limit": sa.case((_n.c.sends >= _n.c.send_limit, _n.c.sends + 1), else_=_n.c.send_limit),
        "redeliveries": _n.c.redeliveries + 1,
        "updated_at": time.time(),
    }


def reopen(conn: Connection, notification_id: str, business_now: float) -> bool:
    """Make a notification due now (sandbox "redeliver"), granting one more send if all were used.
    A live lease is left alone: the process holding it finishes its send first, and that send's
    result does not undo this (``redeliveries`` moves on; see complete)."""
    stmt = _n.update().where(_n.c.id == notification_id).values(**_reopened(business_now))
    return conn.execute(stmt).rowcount > 0


# What a redeliver came to: "claimed" (the caller sends), "in_flight" (another process holds a live
# lease: nothing written, try again once it is over), "waiting" (reopened, but its merchant has no
# notify_url or APIv3 key: it goes out once both are configured), "missing" (no such notification).
Redelivery = Literal["claimed", "in_flight", "waiting", "missing"]


def redeliver(
    conn: Connection, notification_id: str, *, business_now: float, owner: str, lease_seconds: float
) -> tuple[Redelivery, Claim | None]:
    """Sandbox "redeliver" in one statement: reopen the notification (as ``reopen``) and lease it to
    ``owner``, so the send the caller makes is the redeliver's and no other process's pass can take it
    between the two (a poll of any host did, and the redeliver answered with no attempt). Not while
    another process holds a live lease: its send goes on, and the caller tries again when it is over
    (or ``reopen``s without a claim if it stops waiting). Call in a write transaction."""
    lease_now = _lease_now(conn)
    deliverable = _n.c.mchid.in_(_deliverable_merchants().scalar_subquery())
    row = conn.execute(
        _n.update()
        .where(_n.c.id == notification_id, _unleased(lease_now), deliverable)
        .values(**_reopened(business_now), lease_owner=owner, lease_until=lease_now + lease_seconds)
        .returning(*_CLAIMED)
    ).first()
    if row is not None:
        return "claimed", _claim(row, owner)
    found = conn.execute(sa.select(deliverable).where(_n.c.id == notification_id)).first()
    if found is None:
        return "missing", None
    if not found[0]:
        reopen(conn, notification_id, business_now)
        return "waiting", None
    return "in_flight", None


def in_flight(conn: Connection, notification_id: str) -> bool:
    """Whether some process holds a live lease on the notification (is sending it right now)."""
    stmt = sa.select(_n.c.id).where(_n.c.id == notification_id, _n.c.lease_until >= _lease_now(conn))
    return conn.execute(stmt).first() is not None


def _view(row: sa.RowMapping) -> dict[str, Any]:
    return {
        "id": row["id"],
        "mchid": row["mchid"],
        "event_type": row["event_type"],
        "summary": row["summary"],
        "original_type": row["original_type"],
        "create_time": row["create_time"],
        "state": row["state"],
        "sends": row["sends"],
        "send_limit": row["send_limit"],
        "next_attempt_at": row["next_attempt_at"],
        "leased": row["lease_owner"] is not None,
        "lease_until": row["lease_until"],
        "delivered_at": row["delivered_at"],
    }


def _attempts(conn: Connection, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids:
        return out
    rows = conn.execute(sa.select(_a).where(_a.c.notification_id.in_(list(ids))).order_by(_a.c.seq))
    for r in rows.mappings():
        out[r["notification_id"]].append(
            {
                "attempt_no": r["attempt_no"],
                "at": r["at"],
                "sent_at": r["sent_at"],
                "url": r["url"],
                "status": r["status"],
                "latency_ms": r["latency_ms"],
                "ok": bool(r["ok"]),
                "error": r["error"],
                "signer_key_id": r["signer_key_id"],
                "request_id": r["request_id"],
            }
        )
    return out


def list_notifications(
    conn: Connection,
    *,
    mchid: str | None = None,
    event_type: str | None = None,
    state: str | None = None,
    limit: int = 50,
    offset: int = 0,
    after: tuple[float, str] | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """Newest first, each with its attempts; also the total matching count. ``after`` (create_time,
    id) of a row: the page after it (keyset: an index range however deep; not counted in the total)."""
    conds: list[sa.ColumnElement[bool]] = []
    if mchid:
        conds.append(_n.c.mchid == mchid)
    if event_type:
        conds.append(_n.c.event_type == event_type)
    if state:
        conds.append(_n.c.state == state)
    total = conn.execute(sa.select(sa.func.count()).select_from(_n).where(*conds)).scalar_one()
    if after is not None:  # the index range, the tie on create_time by id
        conds.append(LISTING.beyond(list(after), forward=True))
    rows = conn.execute(
        sa.select(_n).where(*conds).order_by(*LISTING.clauses()).limit(limit).offset(offset)
    ).mappings()
    views = [_view(r) for r in rows]
    attempts = _attempts(conn, [v["id"] for v in views])
    for v in views:
        v["attempts"] = attempts[v["id"]]
    _say_what_it_waits_for(conn, views)
    return int(total), views


def _say_what_it_waits_for(conn: Connection, views: list[dict[str, Any]]) -> None:
    """``waiting_for``: what a pending notification's merchant lacks before it can go out ("notify_url",
    "apiv3_key", both), None when nothing: such a notification was listed pending with no attempt and
    no reason (the demo merchant has no notify_url until one is set)."""
    pending = {v["mchid"] for v in views if v["state"] == PENDING}
    lacks: dict[str, str | None] = {}
    if pending:
        rows = conn.execute(
            sa.select(merchants.c.mchid, merchants.c.notify_url, merchants.c.apiv3_key.is_not(None)).where(
                merchants.c.mchid.in_(sorted(pending))
            )
        )
        for mchid, url, has_key in rows:
            missing = [name for name, ok in (("notify_url", bool(url)), ("apiv3_key", has_key)) if not ok]
            lacks[mchid] = " and ".join(missing) or None
    for v in views:
        v["waiting_for"] = (
            lacks.get(v["mchid"], "notify_url and apiv3_key") if v["state"] == PENDING else None
        )


def get_notification(conn: Connection, notification_id: str) -> dict[str, Any] | None:
    """One notification with its attempts and its plaintext resource (the sandbox user's view)."""
    row = conn.execute(sa.select(_n).where(_n.c.id == notification_id)).mappings().first()
    if row is None:
        return None
    view = _view(row)
    _say_what_it_waits_for(conn, [view])
    view["resource"] = json.loads(row["resource_json"])
    view["attempts"] = _attempts(conn, [notification_id])[notification_id]
    return view


# Retention: notifications done with (delivered, or failed after their last send) are deleted with their
# attempts once done with for longer than settings.callback_retention_days; pending ones never.
FINISHED = (DELIVERED, FAILED)


def _oldest_finished(state: str, cutoff: float, limit: int) -> sa.Select[tuple[str]]:
    """Notifications in ``state`` done with before ``cutoff`` (real time), oldest first: a range of
    the (state, updated_at) index (migration 0018), in its order, so PostgreSQL's planner walks the
    index and stops at ``limit`` whatever its statistics say (with ``state IN (...)`` and no order it
    scanned the table: ≈ 20 ms for an idle look at 100,000 rows after a big prune). A finished
    notification's updated_at is when it finished: nothing writes it after that but a redeliver,
    which makes it pending again."""
    return (
        sa.select(_n.c.id)
        .where(_n.c.state == state, _n.c.updated_at < cutoff)
        .order_by(_n.c.updated_at)
        .limit(limit)
    )


def any_finished_before(conn: Connection, cutoff: float) -> bool:
    """A cheap read so a pruner with nothing to do never takes the write lock."""
    return any(conn.execute(_oldest_finished(s, cutoff, 1)).first() is not None for s in FINISHED)


def prune_finished(conn: Connection, cutoff: float, limit: int) -> int:
    """Delete up to ``limit`` notifications finished before ``cutoff``, oldest first, and their
    attempts; returns how many. Call in a write transaction. Several pruners at once (workers, hosts):
    PostgreSQL locks the batch it picks and skips rows another pruner holds (and a row a redeliver
    reopened first is not picked: the lock rereads the row's newest version); SQLite's writes take
    turns."""
    ids: list[str] = []
    for state in FINISHED:
        if len(ids) < limit:
            pick = _oldest_finished(state, cutoff, limit - len(ids)).with_for_update(skip_locked=True, of=_n)
            ids += (str(i) for i in conn.execute(pick).scalars())
    if not ids:
        return 0
    conn.execute(_a.delete().where(_a.c.notification_id.in_(ids)))
    stmt = _n.delete().where(_n.c.id.in_(ids), _n.c.state.in_(FINISHED), _n.c.updated_at < cutoff)
    return int(conn.execute(stmt).rowcount)


def reset(conn: Connection, mchid: str | None) -> None:
    """Sandbox reset: forget notifications (all, or one merchant's) and their attempts.

    An attempt is only ever written while its notification's row is locked by the writing transaction
    (complete). The rows are locked here first, so a send recording its attempt right now is waited for
    and its attempt, committed by then, is deleted below; a send recorded later finds its notification
    gone and writes none. Deleting the attempts first (as before) missed one being committed meanwhile,
    on PostgreSQL: it outlived its notification. SQLite's writers take turns, which did the same."""
    params = {} if mchid is None else {"mchid": mchid}
    for stmt in _RESET_ALL if mchid is None else _RESET_MERCHANT:
        stmt.rows(conn, params)


def _reset_statements(one_merchant: bool) -> tuple[LeanStatement, ...]:
    """reset's statements in order: the rows locked, the attempts, the notifications."""
    which = sa.select(_n.c.id)
    if one_merchant:
        which = which.where(_n.c.mchid == sa.bindparam("mchid"))
    locked = which.with_for_update().subquery()  # counted on the server: no row is sent back
    stmts: list[sa.Executable] = [sa.select(sa.func.count()).select_from(locked)]
    if one_merchant:
        ids = sa.select(_n.c.id).where(_n.c.mchid == sa.bindparam("mchid"))
        stmts += [
            _a.delete().where(_a.c.notification_id.in_(ids)),
            _n.delete().where(_n.c.mchid == sa.bindparam("mchid")),
        ]
    else:
        stmts += [_a.delete(), _n.delete()]
    return tuple(LeanStatement(stmt) for stmt in stmts)


# Every test's reset runs them: compiled once per dialect (db.LeanStatement).
_RESET_ALL = _reset_statements(False)
_RESET_MERCHANT = _reset_statements(True)
