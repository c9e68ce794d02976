"""Sandbox controls of apply4subject: drive the audit, set the auto policy, grant/revoke merchant
authorization, plus the ``apply4subject`` scenario section and the reset hook.

    GET    /sandbox/apply4subject/applyments[?mchid=&state=]
    GET    /sandbox/apply4subject/applyments/{applyment_id}
    POST   /sandbox/apply4subject/applyments/{applyment_id}/{action}
           action: approve | confirm_contact | confirm_legalperson | pass | reject | freeze | edit | authorize
           body: {"reject_param": "...", "reject_reason": "...", "authorize": true, "sub_mchids": ["..."]}
    GET|PUT|DELETE /sandbox/apply4subject/auto-policy   (an empty PUT is refused: DELETE removes it)
    GET|POST|DELETE /sandbox/apply4subject/authorizations   {"mchid": "...", "sub_mchid": "..."}
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from typing import Annotated, Any

import anyio
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from sqlalchemy.engine import Connection
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..domain import apply4subject as d
from ..domain.merchants import Merchant, RelationKind
from ..models.apply4subject import ApplymentState
from ..protocol.detail import first_problem
from ..protocol.times import format_rfc3339
from ..sandbox import scenario
from ..store import registry
from ..store.apply4subject_repo import Apply4SubjectRepo, Applyment
from ..store.schema import BIGINT_MAX
from . import apply4subject_flow as flow
from . import cursors
from .control import ControlError, control_route, json_body
from .params import bad, choice_param, int_param, invalid, known_fields


def _view(app: Applyment, base_url: str) -> dict[str, Any]:
    """An applyment as the control API shows it: ``state`` (the name of the ``?state=`` filter and of a
    scenario entry) and ``applyment_state`` (A2's name, the same value: kept for the clients that read
    it); times (``state_since``, ``created_at``) in Unix seconds, as the control API's journal rows and
    callbacks give theirs, which a scenario entry's ``state_since`` also takes."""
    view = app.view()
    out = {"state": view["applyment_state"], **view}
    if app.state in d.QR_STATES:
        out["confirm_url"] = flow.confirm_url(base_url, app.confirm_token)
    return out


def _applyment_id(request: Request) -> int:
    applyment_id = flow.as_id(request.path_params["applyment_id"])
    if applyment_id is None:
        raise bad(
            "applyment_id must be digits (a 64-bit number)",
            field="applyment_id",
            location="path",
            issue="not an integer",
            value=request.path_params["applyment_id"],
        )
    return applyment_id


async def _settled(st: Any) -> None:
    """What the business clock owes (every settle hook, one batch each: ``settle.settle_for_read``, as
    the dashboard's pages), made before a control read, so the list says what the applyment's next A2
    query would: after a clock move that settled nothing (``clock_settle_max: 0``, or a clock running
    on) it showed an applyment in audit that A2 then moved."""
    from .routes import apply4subject  # noqa: F401  (registers the applyment hook)
    from .settle import settle_for_read

    await settle_for_read(st)


LIST_LIMIT = 200  # applyments a GET answers by default (at most 500; more: ?offset=)


@control_route("/apply4subject/applyments", ["GET"])
async def list_applyments(request: Request) -> Response:
    """Newest first, a page at a time (``?limit=`` 1-500, default 200, ``&offset=``; ``next_offset``
    while more follow): the newest 200 were all a GET showed, with nothing to say more existed.
    ``?mchid=`` and ``?state=`` filter; another parameter is refused."""
    st = request.app.state.wx
    q = request.query_params
    # a misspelt or unsupported filter was ignored, and the answer listed every applyment
    known_fields(dict(q), "mchid", "state", "limit", "offset", "after", location="query")
    mchid = q.get("mchid")
    state = choice_param(q, "state", d.STATES, issue="not an applyment state")
    limit = int_param(q, "limit", LIST_LIMIT, 1, 500)
    after = cursors.decode(q, int)
    offset = int_param(q, "offset", 0, 0, BIGINT_MAX)

    await _settled(st)

    def read() -> list[dict[str, Any]]:
        with st.db.read() as conn:
            found = Apply4SubjectRepo(conn).list_all(
                mchid, limit=limit + 1, offset=offset, before_id=after[0] if after else None, state=state
            )
            return [_view(a, st.settings.base_url()) for a in found]

    found = await anyio.to_thread.run_sync(read)
    more = len(found) > limit
    page = found[:limit]
    return JSONResponse(
        {
            "data": page,
            "next_offset": offset + limit if more and after is None else None,
            "next_after": cursors.encode([int(page[-1]["applyment_id"])]) if more else None,
        }
    )


@control_route("/apply4subject/applyments/{applyment_id}", ["GET"])
async def get_applyment(request: Request) -> Response:
    st = request.app.state.wx
    applyment_id = _applyment_id(request)
    await _settled(st)

    def read() -> dict[str, Any] | None:
        with st.db.read() as conn:
            app = Apply4SubjectRepo(conn).by_id(applyment_id)
            return _view(app, st.settings.base_url()) if app else None

    found = await anyio.to_thread.run_sync(read)
    if found is None:
        raise ControlError(404, "RESOURCE_NOT_EXISTS", f"no applyment {applyment_id}")
    return JSONResponse(found)


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reject_param: str | None = Field(default=None, max_length=256)
    reject_reason: str | None = Field(default=None, max_length=1024)
    authorize: StrictBool = False  # a JSON boolean: "yes", "false" or 1 were taken (as true, but "false")
    sub_mchids: list[Annotated[str, Field(max_length=32, pattern=r"^[0-9]+$")]] = []


@control_route("/apply4subject/applyments/{applyment_id}/{action}", ["POST"])
async def act(request: Request) -> Response:
    st = request.app.state.wx
    applyment_id = _applyment_id(request)
    name = request.path_params["action"]
    raw = await json_body(request)
    known_fields(raw, *ActionBody.model_fields, location="body")  # names the field, and what is known
    try:
        body = ActionBody.model_validate(raw)
    except ValidationError as exc:
        raise invalid(exc, "body", named=False) from exc

    def apply() -> dict[str, Any]:
        with st.db.write() as conn:
            repo = Apply4SubjectRepo(conn)
            app = repo.by_id(applyment_id)
            if app is None:
                raise ControlError(404, "RESOURCE_NOT_EXISTS", f"no applyment {applyment_id}")
            try:
                app = flow.apply_action(
                    repo,
                    app,
                    name,
                    flow.business_now(conn),
                    reject_param=body.reject_param,
                    reject_reason=body.reject_reason,
                    authorize=body.authorize,
                    sub_mchids=body.sub_mchids,
                )
            except flow.BadActionInput as exc:
                raise bad(str(exc), location="body", issue="invalid") from exc
            except d.StepRefused as exc:  # the step does not fit the current state
                raise ControlError(409, "INVALID_REQUEST", str(exc), exc.detail) from exc
            except ValueError as exc:  # an unknown step, named by the path
                detail = {"field": "action", "location": "path", "value": name, "issue": str(exc)}
                raise ControlError(400, "INVALID_REQUEST", str(exc), detail) from exc
            return _view(app, st.settings.base_url())

    return JSONResponse(await anyio.to_thread.run_sync(apply))


@control_route("/apply4subject/auto-policy", ["GET", "PUT", "POST", "DELETE"])
async def auto_policy(request: Request) -> Response:
    st = request.app.state.wx
    body = await json_body(request) if request.method in ("PUT", "POST") else {}
    policy: d.AutoPolicy | None = None
    if request.method in ("PUT", "POST") and not body:  # it removed the policy, answering null
        raise bad(
            "give after_seconds and/or after_queries (DELETE /sandbox/apply4subject/auto-policy removes the policy)",
            location="body",
            issue="empty",
        )
    if body:
        try:
            policy = d.AutoPolicy.parse(body)
        except ValueError as exc:
            raise bad(str(exc), location="body", issue="invalid") from exc
        if (unused := policy.authorize_unused()) is not None:  # echoed, it looked as if it would act
            raise bad(unused, field="authorize", location="body", issue="invalid", value=True)

    def apply() -> d.AutoPolicy | None:
        if request.method == "GET":  # a read, not the single writer's turn
            with st.db.read() as conn:
                return Apply4SubjectRepo(conn).policy()
        with st.db.write() as conn:
            Apply4SubjectRepo(conn).set_policy(policy)
            return policy

    result = await anyio.to_thread.run_sync(apply)
    return JSONResponse({"auto_policy": result.as_dict() if result else None})


@control_route("/apply4subject/authorizations", ["GET", "POST", "DELETE"])
async def authorizations(request: Request) -> Response:
    st = request.app.state.wx
    body = await json_body(request) if request.method != "GET" else {}
    known_fields(body, "mchid", "sub_mchid", location="body")
    mchid, sub = body.get("mchid"), body.get("sub_mchid")
    if request.method != "GET" and not (
        isinstance(mchid, str)
        and isinstance(sub, str)
        and 0 < len(mchid) <= 32
        and flow.is_id_text(sub)
        and len(sub) <= 32
    ):
        raise bad(
            "give mchid (the caller) and sub_mchid (digits)",
            field="mchid, sub_mchid",
            location="body",
            issue="missing or invalid",
        )

    if request.method == "GET":  # ?mchd= listed every caller's
        known_fields(dict(request.query_params), "mchid", location="query")

    def apply() -> Any:
        if request.method == "GET":  # a read: it took the single writer's turn for nothing
            with st.db.read() as conn:
                return Apply4SubjectRepo(conn).authorizations(request.query_params.get("mchid"))
        with st.db.write() as conn:
            repo = Apply4SubjectRepo(conn)
            if request.method == "POST":
                if (why := _unreachable_caller(conn, str(mchid))) is not None:  # was granted, for nothing
                    raise bad(
                        f"{why}: no A4 query could see this authorization (mchid is the caller)",
                        field="mchid",
                        location="body",
                        issue="not a channel merchant or institution",
                        value=mchid,
                    )
                repo.authorize(str(mchid), [str(sub)], None, flow.business_now(conn))
                return {"mchid": mchid, "sub_mchid": sub, "authorize_state": d.AUTHORIZED}
            repo.revoke(str(mchid), str(sub))  # the state may fall back (community report)
            return {"mchid": mchid, "sub_mchid": sub, "authorize_state": d.UNAUTHORIZED}

    result = await anyio.to_thread.run_sync(apply)
    return JSONResponse({"data": result} if request.method == "GET" else result)


# --- scenario section -----------------------------------------------------------------------------


class ScenarioApplyment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mchid: scenario.Mchid
    business_code: str = Field(min_length=1, max_length=128, pattern=r"^[0-9A-Za-z_]+$")
    channel_id: str | None = Field(default=None, max_length=32)
    state: ApplymentState = "APPLYMENT_STATE_WAITTING_FOR_AUDIT"
    # A2's and the control API view's name for ``state`` (an entry written from either loads); both
    # given, they must agree.
    applyment_state: ApplymentState | None = None
    reject_param: str | None = Field(default=None, max_length=256)
    reject_reason: str | None = Field(default=None, max_length=1024)
    confirm_mchid_list: list[scenario.Mchid] = []
    authorized: StrictBool = False
    # What the auto policy reads (an export keeps them, so a round trip keeps where an applyment in
    # audit stood): its A2 queries counted so far, and when it entered its state (business time, RFC
    # 3339 or Unix seconds; default: the clock's now).
    query_count: StrictInt = Field(default=0, ge=0, le=BIGINT_MAX)
    state_since: StrictStr | StrictInt | StrictFloat | None = None  # true was 1970-01-01T08:00:01

    @model_validator(mode="after")
    def _one_state(self) -> ScenarioApplyment:
        if self.applyment_state is not None:
            if "state" in self.model_fields_set and self.state != self.applyment_state:
                raise ValueError(
                    f"state {self.state} and applyment_state {self.applyment_state} differ "
                    "(the same field by its two names: give one)"
                )
            self.state = self.applyment_state
        return self


class ScenarioAuthorization(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mchid: scenario.Mchid
    sub_mchid: scenario.Mchid


class ScenarioSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    auto_policy: dict[str, Any] | None = None
    applyments: list[ScenarioApplyment] = []
    authorizations: list[ScenarioAuthorization] = []


def _load(conn: Connection, data: Any, lctx: scenario.LoadContext) -> None:
    try:
        section = ScenarioSection.model_validate(data)
        policy = d.AutoPolicy.parse(section.auto_policy) if section.auto_policy else None
    except ValidationError as exc:
        raise scenario.ScenarioError(first_problem(exc, "apply4subject.")) from exc
    except ValueError as exc:
        raise scenario.ScenarioError(f"apply4subject.auto_policy: {exc}") from exc
    repo = Apply4SubjectRepo(conn)
    warnings: list[str] = []
    if policy is not None and (unused := policy.authorize_unused()) is not None:
        # Refused by the PUT; an older export may hold one, and must load.
        warnings.append(f"auto_policy.authorize: {unused}: loaded as false")
        policy = dataclasses.replace(policy, authorize=False)
    if policy is not None and policy != repo.policy():
        # Setting a policy starts the query counts of applyments in audit again at 0: the same policy
        # loaded again (an export loaded back) changes nothing, and keeps them.
        repo.set_policy(policy)
    now = flow.business_now(conn)
    made: list[int] = []
    for i, spec in enumerate(section.applyments):
        since = scenario.entry_time(spec.state_since, f"apply4subject.applyments[{i}].state_since", now)
        if (warning := _owner_warning(conn, i, spec.mchid, spec.channel_id)) is not None:
            warnings.append(warning)
        app = repo.by_code(spec.mchid, spec.business_code)
        if app is not None and app.state != spec.state:
            warnings.append(
                f"applyments[{i}].business_code: {spec.business_code} exists in {app.state} and was left "
                "as it is (POST /sandbox/reset first to load it anew)"
            )
        if app is None:
            app = repo.insert(
                mchid=spec.mchid,
                business_code=spec.business_code,
                channel_id=spec.channel_id,
                state=spec.state,
                fingerprint="scenario",  # no materials: a resubmit of this code counts as different
                materials={},
                confirm_mchids=spec.confirm_mchid_list,
                confirm_token=secrets.token_urlsafe(24),
                now=now,
            )
            if app is None:
                raise scenario.ScenarioError(f"apply4subject: {spec.business_code} could not be created")
            if d.dropped_reasons(spec.state, spec.reject_param, spec.reject_reason):
                warnings.append(
                    f"applyments[{i}]: reject_param and reject_reason are kept in {d.REJECTED} "
                    f"(reject_reason also in {d.FREEZED}): dropped for {spec.state}"
                )
            reject_param, reject_reason = d.kept_reasons(spec.state, spec.reject_param, spec.reject_reason)
            if reject_param or reject_reason:  # a freeze or rejection shows its reason, however it came
                repo.transition(
                    app.applyment_id,
                    [spec.state],
                    spec.state,
                    now,
                    reject_param=reject_param,
                    reject_reason=reject_reason,
                )
            if spec.query_count or since != now:
                repo.set_progress(app.applyment_id, query_count=spec.query_count, state_since=since)
        if spec.authorized:
            _check_authorized(i, app)
            repo.authorize(spec.mchid, app.confirm_mchids, app.applyment_id, now)
        made.append(app.applyment_id)
    for i, auth in enumerate(section.authorizations):
        if (why := _unreachable_caller(conn, auth.mchid)) is not None:  # the POST refuses it; exports hold it
            warnings.append(f"authorizations[{i}].mchid: {why}: no A4 query can see it")
        repo.authorize(auth.mchid, [auth.sub_mchid], None, now)
    lctx.report["apply4subject"] = {"applyment_ids": made, **({"warnings": warnings} if warnings else {})}


def _check_authorized(i: int, app: Applyment) -> None:
    """``authorized: true`` is the authorize step (``d.ACTIONS["authorize"]``): from PASSED or FREEZED
    only, for the applyment's confirm_mchid_list. It authorized any state's numbers (A4 said AUTHORIZED
    for an applyment still in audit), and none, silently, without a list."""
    where = f"apply4subject.applyments[{i}].authorized"
    try:
        d.action_for("authorize", app.state)
    except d.StepRefused as exc:
        raise scenario.ScenarioError(
            f"{where}: {exc.detail['issue']} (this applyment is in {app.state})"
        ) from exc
    if not app.confirm_mchids:
        raise scenario.ScenarioError(
            f"{where}: no confirm_mchid_list to authorize (a merchant number alone: authorizations)"
        )


def _unreachable_caller(conn: Connection, mchid: str) -> str | None:
    """Why ``mchid`` can call no apply4subject endpoint (unregistered, or not a channel merchant or
    institution), or None when it can."""
    return _caller_problem(registry.get_merchant(conn, mchid), mchid)


def _caller_problem(merchant: Merchant | None, mchid: str) -> str | None:
    """``_unreachable_caller`` for ``mchid`` registered as ``merchant`` (None: not registered)."""
    if merchant is None:
        return f"{mchid} is not a registered merchant"
    if merchant.role not in d.ALLOWED_CALLERS:
        return f"{mchid} is a {merchant.role.value}"
    return None


def _channel_warning(problem: str, caller: str, channel_id: str | None) -> str:
    """A scenario's words for what A1 would refuse (``d.channel_problem``)."""
    if problem == d.CHANNEL_MISSING:
        return "an institution's applyment names its channel merchant (A1 refuses none: 400 PARAM_ERROR)"
    if problem == d.CHANNEL_NOT_OWN:
        return f"{channel_id} is not a channel merchant of the institution {caller} (A1: 403 NO_AUTH)"
    return f"a channel merchant names no channel_id or its own, not {channel_id} (A1: 400 PARAM_ERROR)"


def _owner_warning(conn: Connection, i: int, mchid: str, channel_id: str | None) -> str | None:
    """An applyment is a channel's or an institution's: A2 answers no one else, so one stored under
    another merchant can never be queried. Its ``channel_id`` follows A1's rule for its caller
    (``d.channel_problem``): an institution's names one of its channel merchants, a channel merchant's
    none or its own; a scenario's was stored unchecked, so the sandbox held applyments A1 could never
    have made. Said, not refused: exports of older sandboxes hold such
    rows (scenarios put them under the service provider, and channel_id was never checked), and must
    load again."""
    merchant = registry.get_merchant(conn, mchid)
    if (why := _caller_problem(merchant, mchid)) is not None:
        extra = "" if merchant is None else " (applyments are a channel's or an institution's)"
        return f"applyments[{i}].mchid: {why}: no A2 query can reach it{extra}"
    assert merchant is not None  # _caller_problem said why otherwise
    problem = d.channel_problem(
        merchant.role,
        mchid,
        channel_id,
        lambda: registry.is_related(conn, mchid, str(channel_id), RelationKind.CHANNEL),
    )
    if problem is not None:
        return f"applyments[{i}].channel_id: {_channel_warning(problem, mchid, channel_id)}; loaded as given"
    return None


def _export(conn: Connection) -> Any:
    repo = Apply4SubjectRepo(conn)
    policy = repo.policy()
    out: dict[str, Any] = {}
    if policy:
        out["auto_policy"] = policy.as_dict()
    if repo.any_applyment():  # every applyment, oldest first, streamed as read
        out["applyments"] = scenario.Rows(_applyment_entry(a) for a in repo.export_all(scenario.EXPORT_BATCH))
    if repo.any_authorization():
        out["authorizations"] = scenario.Rows(repo.export_authorizations(scenario.EXPORT_BATCH))
    return out or None


def _applyment_entry(a: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in {
            "mchid": a["mchid"],
            "business_code": a["business_code"],
            "channel_id": a["channel_id"],
            "state": a["state"],
            "reject_param": a["reject_param"],
            "reject_reason": a["reject_reason"],
            "confirm_mchid_list": a["confirm_mchids"] or None,
            "query_count": a["query_count"] or None,
            "state_since": format_rfc3339(dt.datetime.fromtimestamp(a["state_since"], dt.UTC), millis=True),
        }.items()
        if v is not None
    }


def _reset(conn: Connection, mchid: str | None) -> None:
    Apply4SubjectRepo(conn).delete(mchid)


scenario.register_section(scenario.Section("apply4subject", _load, _export))
if _reset not in scenario.RESETTERS:
    scenario.RESETTERS.append(_reset)
