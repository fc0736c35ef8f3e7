"""A TPE sweep's next round, created once every member so far has ended.

Every long-lived process runs `advance_rounds` with its maintenance loop (services/rescue.py), and a worker right
after it trains a sweep, so no single process has to live for the search to go on. A round is taken
by a guarded update of `sweeps.search_rounds_left` (one process wins), in the transaction that adds
its members and records them in `search_state`.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from service import wakeup
from service.db import session_scope
from service.errors import InvalidField
from service.models import Job, JobStatus, Sweep, utcnow
from service.repositories import job_params, job_search
from service.repositories import search_state as search_state_repo
from service.repositories import sweeps as sweep_repo
from service.schemas.objectives import Objective, sweep_objective
from service.schemas.sweeps import SweepCreate
from service.services import tpe
from service.services.jobs import data_shape
from service.services.sweeps import checked_specs, deadline, hyperparameters, new_members, objective_value
from service.settings import Settings

log = logging.getLogger("fitserve.sweeps")


def advance_rounds(settings: Settings) -> None:
    with session_scope(read_only=True) as s:
        candidates = [sweep.id for sweep in sweep_repo.with_rounds_left(s)]
    for sweep_id in candidates:
        with session_scope() as s:
            start_next_round(s, sweep_id, settings)


def start_next_round(session: Session, sweep_id: str, settings: Settings) -> list[Job]:
    """The next round's members, or none when the sweep is not ready (or another process made them)."""
    sweep = session.get(Sweep, sweep_id)
    if sweep is None or sweep.search_rounds_left <= 0:
        return []
    members = sweep_repo.list_members(session, [sweep.id])
    if any(not JobStatus(job.status).is_final for job in members):
        return []
    request = SweepCreate.model_validate(sweep.request)
    ends = deadline(request, sweep.created_at)
    if ends is not None and ends <= utcnow():  # past its max_seconds: no more rounds
        sweep_repo.end_rounds(session, sweep.id)
        return []
    if sweep.cancel_requested:  # a cancelled search makes no more rounds
        sweep_repo.take_round(session, sweep.id, sweep.search_rounds_left)
        return []
    objective = sweep_objective(sweep.request)
    told = [told_entry(sweep.request, job, objective) for job in members]
    specs = checked_specs(request, tpe.suggest(request, told))
    if not sweep_repo.take_round(session, sweep.id, sweep.search_rounds_left):
        return []
    try:
        shape = data_shape(session, request.base, sweep.owner_id)
    except InvalidField:  # its dataset deleted since: the members fail as they start
        shape = None
    jobs = new_members(request, specs, sweep.owner_id, settings, len(members), shape, ends)
    sweep_repo.add_members(session, sweep.id, jobs)
    job_search.write_tags(session, jobs)  # `?tag=` finds a later round's members as it finds the first's
    job_params.write_params(session, jobs)
    state = search_state_repo.lock_search_state(session, sweep.id)
    state.setdefault("tpe", {"rounds": []})["rounds"].append({"members": [job.id for job in jobs]})
    search_state_repo.set_search_state(session, sweep.id, state)
    wakeup.work_queued(session)
    log.info("sweep %s: round %d of TPE, %d members", sweep.id, len(state["tpe"]["rounds"]), len(jobs))
    return jobs


def told_entry(request: dict, job: Job, objective: Objective) -> dict:
    """What TPE is told of a member: its objective as a value to minimize (negated for max)."""
    value = objective.score(objective_value(job, objective)) if job.status == JobStatus.SUCCEEDED else None
    return {"params": hyperparameters(request, job), "value": value,
            "pruned_at": job.stopped_early_at if job.stop_reason else None}
