"""Which separately submitted jobs can train as one batched computation: a key over their specs.

Two jobs share a key when they differ only in what a batched step keeps per job: the seed (and so the
initial weights, the data order and synthetic data drawn from it), the optimizer's rate, momentum and
weight decay, its time limit (max_seconds: a member that reaches it stops alone), and what does not touch
training (name, tags, priority, notify). Everything else (architecture,
task, data spec, loss, optimizer kind, epochs, batch size, device, metrics_every, early stopping) must be
equal, so their networks, data shapes and step schedules are the same. Workers claim queued jobs of
their first job's key (FITSERVE_AUTO_BATCH; see workers/auto_batch.py).
"""

import hashlib
import json

from service.schemas.spec import JobSpec

PER_JOB = {"seed", "name", "tags", "priority", "notify", "max_seconds"}
PER_JOB_OPTIMIZER = {"lr", "momentum", "weight_decay"}


def trains_alone(spec: JobSpec) -> bool:
    """Options the batched step leaves to one by one (workers/engines/stack_options.py): such a job gets no key."""
    schedule, model = spec.optimizer.schedule, spec.model
    modal = getattr(model, "dropout", None) is not None or getattr(model, "batch_norm", False) or any(
        layer.kind in ("dropout", "batch_norm") for layer in getattr(model, "layers", None) or []
    )
    return modal or spec.optimizer.clip_grad_norm is not None or (schedule is not None and schedule.kind == "plateau")


def batch_key(spec: JobSpec) -> str | None:
    """A digest of the spec less what may differ between jobs of one batch (64 hex digits); None for a job
    that trains alone whatever is queued beside it."""
    if trains_alone(spec):
        return None
    shared = spec.model_dump(mode="json", exclude=PER_JOB)
    shared["optimizer"] = {k: v for k, v in shared["optimizer"].items() if k not in PER_JOB_OPTIMIZER}
    canonical = json.dumps(shared, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
