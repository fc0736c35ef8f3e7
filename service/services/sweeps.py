"""Sweeps: many members of one architecture, each a job of its own, read back as one leaderboard."""

import json
from collections import Counter, defaultdict
from datetime import datetime, timedelta

from pydantic import ValidationError
from sqlalchemy.orm import Session

from modelzoo.memory import together
from service.errors import Conflict, InvalidField, NotFound, TooManyRequests
from service.models import Job, JobStatus, Sweep, utcnow
from service.repositories import job_params as params_repo
from service.repositories import job_search as search_repo
from service.repositories import jobs as job_repo
from service.repositories import search_state as search_state_repo
from service.repositories import sweeps as sweep_repo
from service.schemas.data import DataShape
from service.schemas.objectives import Objective, curve_metrics, evaluation_metrics, evaluation_value, sweep_objective
from service.schemas.spec import JobSpec, SpecError, check_spec, unrecorded, validation_rows
from service.schemas.sweeps import LeaderboardEntry, SweepCreate, SweepPage, SweepProgress, SweepPublic, SweepSummary
from service.services import starts, tpe
from service.services.gpu_budgets import GpuShare, gpu_share
from service.services.search import check_search
from service.services.jobs import check_memory, check_tags, data_shape, decode_cursor, encode_cursor, estimate_memory
from service import wakeup
from service.services.usage import check_storage
from service.services.webhook_targets import check_notify
from service.settings import Settings


def create_sweep(session: Session, request: SweepCreate, owner_id: str | None, settings: Settings) -> Sweep:
    check_search(request)
    specs = checked_specs(request, tpe.first_round(request) if request.search == "tpe" else None)
    if request.search == "tpe":  # later rounds sample the same ranges: their ends must make valid members too
        checked_specs(request, tpe.range_ends(request))
    total = len(specs) * (request.tpe.rounds if request.tpe else 1)  # every round's members will queue
    if total > settings.MAX_QUEUED_PER_OWNER:  # never fits, however long the client waits: not a 429
        field = ("space",) if request.count is None else (("tpe", "rounds") if request.tpe else ("count",))
        raise InvalidField(field, f"{total} members can never queue at once: FITSERVE_MAX_QUEUED_PER_OWNER is "
                                  f"{settings.MAX_QUEUED_PER_OWNER}; split the sweep")
    check_notify(request.notify, ("notify",), settings)  # before the first statement: it may wait for a resolver
    shape = data_shape(session, request.base, owner_id)
    check_objective(request, specs, shape)
    share = gpu_share(session, request.base.device, settings)  # a CUDA sweep's members: each, and together, fit a GPU
    for spec in specs:
        try:
            check_spec(spec, shape)
            check_memory(estimate := estimate_memory(spec, shape), settings.MAX_JOB_BYTES, "training one member")
            if share is not None:
                check_memory(estimate, share.bytes, "training one member", share)
        except SpecError as exc:
            # a member breaks only where the space changed the base: name the space's field then
            loc = ("space", exc.loc[-1]) if exc.loc[-1] in request.space.axes() else ("base", *exc.loc)
            raise InvalidField(loc, exc.msg) from None
    if request.base.init is not None:  # each distinct architecture's layers against the weights it starts from
        models = {json.dumps(spec.model.model_dump(mode="json"), sort_keys=True): spec for spec in specs}
        for spec in models.values():
            starts.check_init(session, spec, owner_id, ("base", *starts.INIT))
    # ASHA and PBT hold their members together even one by one: they take turns (workers/engines/in_turn.py)
    held_together = request.asha is not None or request.search == "pbt"
    if request.execution != "one_by_one" or held_together:
        advice = "" if held_together else "; or set execution one_by_one"
        check_batched_memory(specs, shape, settings.MAX_JOB_BYTES, advice, share)
    check_tags(request.base.tags | request.tags, settings)  # what each member carries
    check_storage(session, owner_id, settings.MAX_STORED_BYTES_PER_OWNER)
    queued = job_repo.count_queued(session, owner_id)
    if queued + total > settings.MAX_QUEUED_PER_OWNER:
        raise TooManyRequests(f"{queued} queued jobs and {total} members exceed the limit", 5)
    members = new_members(request, specs, owner_id, settings, 0, shape, deadline(request, utcnow()))
    request_body = request.model_dump(mode="json")
    sweep = Sweep(owner_id=owner_id, name=request.name, request=request_body, size=len(specs), tags=request.tags,
                  notified_status=JobStatus.QUEUED if request.notify else None)
    if request.tpe:
        sweep.search_rounds_left = request.tpe.rounds - 1
    sweep = sweep_repo.add_sweep(session, sweep, members)
    if request.tpe:
        search_state_repo.set_search_state(session, sweep.id, {"tpe": {"rounds": [{"members": [j.id for j in members]}]}})
    search_repo.write_tags(session, members)
    params_repo.write_params(session, members)
    wakeup.work_queued(session)
    return sweep


def checked_specs(request: SweepCreate, overrides: list[dict] | None) -> list[JobSpec]:
    try:
        return request.member_specs(overrides)
    except ValidationError as exc:  # a sampled or listed value the job spec refuses, e.g. lr > 100
        error = exc.errors()[0]
        name = next((str(n) for n in reversed(error["loc"]) if str(n) in request.space.axes()), error["loc"][-1])
        raise InvalidField(("space", name), error["msg"]) from None
    except ValueError as exc:  # channels that do not fit the base's conv layers
        raise InvalidField(("space", "channels"), str(exc)) from None


def deadline(request: SweepCreate, created_at: datetime) -> datetime | None:
    """When a sweep with max_seconds ends: that long after it was created (its members carry it)."""
    return None if request.max_seconds is None else created_at + timedelta(seconds=request.max_seconds)


def new_members(
    request: SweepCreate, specs: list[JobSpec], owner_id: str | None, settings: Settings, first: int,
    shape: DataShape | None, deadline_at: datetime | None,
) -> list[Job]:
    """Member jobs of these specs, numbered from `first` in their names, with their memory estimates on `shape`
    (None: its dataset is gone, the members will fail), ending by the sweep's `deadline_at`. Under a sweep that
    notifies, each carries a notified status, so its changes have the sweep looked at (services/webhooks.py), and
    with `members` a notify."""
    notify = request.notify
    return [
        Job(
            owner_id=owner_id,
            name=f"{request.name or 'sweep'} #{first + i}",
            spec=spec.model_dump(mode="json"),
            epochs=spec.epochs,
            max_attempts=settings.MAX_ATTEMPTS,
            priority=spec.priority,
            tags=spec.tags | request.tags,
            notify=notify.model_dump(mode="json", exclude={"members"}) if notify and notify.members else None,
            notified_status=JobStatus.QUEUED if notify else None,
            estimate_bytes=estimate_memory(spec, shape).total if shape is not None else None,
            deadline_at=deadline_at,
        )
        for i, spec in enumerate(specs)
    ]


def check_objective(request: SweepCreate, specs: list[JobSpec], shape: DataShape) -> None:
    """Every member must record the objective: every recorded epoch where a search decides during training (asha,
    pbt), else at least in its final evaluation."""
    if request.objective is None:
        return
    metric, per_epoch = request.objective.metric, request.asha is not None or request.search == "pbt"
    for spec in specs:
        has_validation = validation_rows(spec, shape) > 0
        if metric in curve_metrics(spec, has_validation):
            continue
        if metric in evaluation_metrics(spec, has_validation):
            if not per_epoch:
                continue
            msg = f"{metric} is measured once, when a member ends; search {request.search!r} decides while members " \
                  f"train by a metric recorded every epoch: {', '.join(sorted(curve_metrics(spec, has_validation)))}"
        else:
            msg = unrecorded(spec, metric, has_validation)
            evaluated = evaluation_metrics(spec, has_validation)
            if evaluated and not per_epoch:
                msg += f"; or, measured when it ends, {', '.join(sorted(evaluated))}"
        raise InvalidField(("objective", "metric"), msg)


def check_batched_memory(
    specs: list[JobSpec], shape: DataShape, limit: int, advice: str, share: GpuShare | None = None
) -> None:
    """Members of one batch size may train as one computation (workers/groups.py): all of them must fit the
    host's limit, and a GPU `share` where they train on one."""
    groups: dict[int | None, list[JobSpec]] = defaultdict(list)
    for spec in specs:
        groups[spec.batch_size].append(spec)
    for group in groups.values():
        try:
            estimate, what = together([estimate_memory(s, shape) for s in group]), f"{len(group)} members together"
            check_memory(estimate, limit, what)
            if share is not None:
                check_memory(estimate, share.bytes, what, share)
        except SpecError as exc:
            raise InvalidField(("execution",), f"{exc.msg}{advice}") from None


def get_sweep(session: Session, sweep_id: str, owner_id: str | None) -> Sweep:
    sweep = sweep_repo.get_sweep(session, sweep_id, owner_id)
    if sweep is None:
        raise NotFound(f"no sweep {sweep_id!r}")
    return sweep


def progress_of(members: list[Job]) -> SweepProgress:
    counts = Counter(job.status for job in members)
    return SweepProgress(
        members=len(members),
        **{status.value: counts.get(status.value, 0) for status in JobStatus},
        epochs_done=sum(job.epoch for job in members),
        epochs_total=sum(job.epochs for job in members),
    )


def status_of(sweep: Sweep, progress: SweepProgress) -> str:
    if progress.queued + progress.running or (sweep.search_rounds_left and not sweep.cancel_requested):
        return "queued" if progress.queued == progress.members else "running"
    if sweep.cancel_requested and progress.cancelled:
        return "cancelled"
    return "failed" if progress.failed == progress.members else "succeeded"


def hyperparameters(request: dict, job: Job) -> dict:
    axes = [name for name, value in request["space"].items() if value is not None]
    return {name: axis_value(job.spec, name) for name in axes}


def axis_value(spec: dict, name: str):
    """A member's value of a search-space axis: a CNN's channels, an optimizer's or model's field, or the spec's own."""
    if name == "channels":
        return [layer["out_channels"] for layer in spec["model"]["conv"]]
    if name == "optimizer":
        return spec["optimizer"]["kind"]
    for part in (spec["optimizer"], spec["model"]):
        if name in part:
            return part[name]
    return spec[name]


def kept_metrics(job: Job) -> dict:
    """The curve point of the weights the job kept: its best epoch's with early stopping, else its latest."""
    return job.best_metrics or job.latest_metrics or {}


def objective_value(job: Job, objective: Objective) -> float | None:
    """A member's value of the objective: its kept curve point's, else (an evaluation metric) its evaluation's."""
    value = kept_metrics(job).get(objective.metric)
    return value if value is not None else evaluation_value(job.evaluation, objective.metric)


def leaderboard(sweep: Sweep, members: list[Job], objective: Objective) -> list[LeaderboardEntry]:
    def key(job: Job):
        score = objective.score(objective_value(job, objective))
        # members an adaptive search or a time limit stopped rank below those that went further (0: never trained)
        reached = (job.stopped_early_at or 0) if job.stop_reason else job.epochs
        return (job.status != JobStatus.SUCCEEDED, -reached, score is None, score if score is not None else 0.0)

    entries = []
    for rank, job in enumerate(sorted(members, key=key), start=1):
        metrics = kept_metrics(job)
        entries.append(
            LeaderboardEntry(
                rank=rank,
                job_id=job.id,
                status=job.status,
                hyperparameters=hyperparameters(sweep.request, job),
                **{k: metrics.get(k) for k in ("loss", "val_loss", "accuracy", "val_accuracy")},
                objective=objective_value(job, objective),
                best_epoch=job.best_epoch,
                stopped_early_at=job.stopped_early_at,
                stop_reason=job.stop_reason,
            )
        )
    return entries


def describe(session: Session, sweep: Sweep) -> SweepPublic:
    members = sweep_repo.list_members(session, [sweep.id])
    progress = progress_of(members)
    objective = sweep_objective(sweep.request)
    board = leaderboard(sweep, members, objective)
    return SweepPublic(
        id=sweep.id,
        name=sweep.name,
        status=status_of(sweep, progress),
        execution=sweep.execution,
        progress=progress,
        ranked_by=objective.metric,
        objective=objective,
        best_job_id=board[0].job_id if board and board[0].status == JobStatus.SUCCEEDED else None,
        leaderboard=board,
        search_state=sweep.search_state,
        request=sweep.request,
        tags=sweep.tags or {},
        created_at=sweep.created_at,
    )


def list_sweeps(session: Session, owner_id: str | None, cursor: str | None, limit: int) -> SweepPage:
    after = decode_cursor(cursor) if cursor else None
    sweeps = sweep_repo.list_sweeps(session, owner_id, after, limit + 1)
    page = sweeps[:limit]
    members: dict[str, list[Job]] = {s.id: [] for s in page}
    for job in sweep_repo.list_members(session, list(members)):
        members[job.sweep_id].append(job)
    items = []
    for sweep in page:
        progress = progress_of(members[sweep.id])
        items.append(SweepSummary(id=sweep.id, name=sweep.name, status=status_of(sweep, progress), progress=progress,
                                  tags=sweep.tags or {}, created_at=sweep.created_at))
    return SweepPage(items=items, next_cursor=encode_cursor(page[-1]) if len(sweeps) > limit else None)


def cancel_sweep(session: Session, sweep_id: str, owner_id: str | None) -> Sweep:
    sweep = get_sweep(session, sweep_id, owner_id)
    if not sweep_repo.has_live_members(session, sweep.id) and not sweep.search_rounds_left:
        raise Conflict(f"every member of sweep {sweep_id} has already ended")
    sweep_repo.mark_cancel_requested(session, sweep.id)
    job_repo.cancel_where(session, Job.sweep_id == sweep.id)  # a few statements for 1,000 members, not 3,000
    session.expire_all()  # the members' rows changed under the session
    session.refresh(sweep)
    return sweep
