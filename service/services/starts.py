"""Jobs that start from another job: continued from its final state, or warm-started from its weights.

`POST /v1/jobs/{id}/continue` queues a job that trains `epochs` more from the parent's final weights and optimizer
state (kept in checkpoints while the parent is retained): its curve and step count go on from the parent's. A spec's
`init.from_job` starts a job from another's weights only, where every layer's shape matches. Both see only the
owner's jobs (404 for others'), as GET does. Workers take the state through the resume path (workers/attempt.py).
"""

import json

from pydantic import ValidationError
from sqlalchemy.orm import Session

from service.errors import Conflict, InvalidField, NotFound
from service.models import Job, JobStatus
from service.repositories import jobs as job_repo
from service.repositories import metrics as metric_repo
from service.schemas.jobs import ContinueRequest
from service.schemas.spec import JobSpec

INIT = ("init", "from_job")


def source_job(session: Session, job_id: str, owner_id: str | None, what: str) -> Job:
    """The owner's succeeded job `job_id`: 404 where it is not the owner's, 409 where it has not succeeded."""
    job = job_repo.get_job(session, job_id, owner_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    if job.status != JobStatus.SUCCEEDED:
        raise Conflict(f"job {job_id} is {job.status}; {what} once it has succeeded")
    return job


def continued_spec(session: Session, job_id: str, owner_id: str | None, request: ContinueRequest) -> JobSpec:
    """The spec of a job that trains `request.epochs` more from job_id's final state, with the optimizer changes:
    its epochs count from the parent's start."""
    parent = source_job(session, job_id, owner_id, "a job continues another")
    epoch = job_repo.final_state_epoch(session, parent.id)
    if epoch is None:
        why = (f"it stopped early at epoch {parent.stopped_early_at}" if parent.stopped_early_at is not None
               else "it ended before fitserve kept one")
        raise Conflict(f"job {job_id} kept no final state ({why}); start a job from its weights with init.from_job")
    kind = parent.spec["optimizer"]["kind"]
    changes = (request.optimizer or {}) | ({} if request.lr is None else {"lr": request.lr})
    if changes.get("kind", kind) != kind:
        raise InvalidField(("optimizer", "kind"), f"a continued job keeps its parent's optimizer ({kind}), whose "
                           "state it takes; start a new optimizer from the weights with init.from_job")
    spec = parent.spec | {"epochs": epoch + request.epochs, "optimizer": parent.spec["optimizer"] | changes,
                          "init": None, "name": request.name or parent.spec.get("name")}
    try:
        return JobSpec.model_validate(spec)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc, msg = tuple(error["loc"]), error["msg"]
        if loc[:1] == ("epochs",):
            msg = f"{msg}: the parent trained {epoch} epochs, and this job counts from its start"
        raise InvalidField(loc, msg) from None


def check_init(session: Session, spec: JobSpec, owner_id: str | None, loc: tuple = INIT) -> None:
    """A spec's init.from_job: the owner's succeeded job with weights whose every layer has this spec's shape."""
    if spec.init is None:
        return
    parent_id = spec.init.from_job
    source_job(session, parent_id, owner_id, "a job starts from its weights")
    blob = metric_repo.get_weights(session, parent_id)
    if blob is None:
        raise Conflict(f"job {parent_id} has no stored weights to start from")
    theirs, ours = stored_shapes(blob), spec_shapes(spec)
    for name, shape in ours.items():
        if name not in theirs:
            raise InvalidField(loc, f"layer {name} (shape {list(shape)}) is not in job {parent_id}'s weights")
        if theirs[name] != shape:
            raise InvalidField(loc, f"layer {name}: shape {list(shape)} in this spec, {list(theirs[name])} in job "
                               f"{parent_id}'s weights")
    for name in theirs.keys() - ours.keys():
        raise InvalidField(loc, f"job {parent_id}'s layer {name} (shape {list(theirs[name])}) is not in this model")


def stored_shapes(blob: bytes) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape in safetensors bytes, from the header alone."""
    header = json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")])
    return {name: tuple(entry["shape"]) for name, entry in header.items() if name != "__metadata__"}


def spec_shapes(spec: JobSpec) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape in the weights a job of `spec` stores, from a network built without memory."""
    # torch imported here, not with the module: the pool's own process imports the services and stays torch-free
    import torch

    from modelzoo import build_network

    with torch.device("meta"):
        net = build_network(spec.model, spec.data.standardize_target)
    return {name: tuple(tensor.shape) for name, tensor in net.state_dict().items()}
