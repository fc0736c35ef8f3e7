"""PBT in a sweep: every `interval_epochs`, the bottom quantile copy a top member and explore.

At an interval's epoch the members still training are ranked by the sweep's objective; each of
the bottom `pbt_split(n, quantile)` takes a top member's weights, optimizer state and data order
(exploit, `copy_member`) and then that member's hyperparameters perturbed within the space (explore).
Choices come from a generator seeded by `search_seed` and the epoch. Each interval's decision and every
member's history (epoch, source, values) are written to the sweep (`search_state["pbt"]`) before they
are applied, so a worker resumed from checkpoints sets each member's values as of its checkpoint and
repeats the stored copies when it reaches them again.
"""

from __future__ import annotations

import math
import random

from service.db import session_scope
from service.models import Job
from service.repositories import search_state as search_repo
from service.schemas.objectives import sweep_objective
from service.schemas.search import HYPERPARAMETERS, PERTURB_FACTORS, pbt_intervals, pbt_split, ranked


def explore(value: float, axis, rng: random.Random) -> float:
    """A copied value moved within the space: a neighbouring listed value, or times 0.8 / 1.2 clipped to the range."""
    if isinstance(axis, list):
        values = sorted(set(axis))
        here = min(range(len(values)), key=lambda i: abs(values[i] - value))
        return values[min(len(values) - 1, max(0, here + rng.choice((-1, 1))))]
    return min(axis["high"], max(axis["low"], value * rng.choice(PERTURB_FACTORS)))


def values_at(history: list[dict], epoch: int) -> dict:
    """A member's hyperparameters in force after `epoch`: its latest event at or before it."""
    return [event for event in history if event["epoch"] <= epoch][-1]["values"]


class Population:
    """One PBT sweep's intervals and the decisions taken at them, acted on by a run (workers/run.py)."""

    copies_state = True  # stacked, a copy is a slice of the stack
    in_turn = "pbt interval by interval"  # the members' execution when trained in turn

    def __init__(self, sweep, members: list[Job]):
        request = sweep.request
        self.sweep_id, self.seed = sweep.id, request["search_seed"]
        self.quantile = request["pbt"]["quantile"]
        self.intervals = pbt_intervals(request["pbt"]["interval_epochs"], request["base"]["epochs"])
        self.objective = sweep_objective(request)
        self.axes = {name: axis for name, axis in request["space"].items() if name in HYPERPARAMETERS and axis}
        self.order = {job.id: i for i, job in enumerate(sorted(members, key=lambda j: (j.created_at, j.id)))}

    def records(self, epoch: int) -> bool:
        return epoch in self.intervals

    def on_start(self, run) -> None:
        """Resumed from checkpoints: each member's values as of the epoch it resumes at."""
        with session_scope(read_only=True) as s:
            history = search_repo.get_search_state(s, self.sweep_id).get("pbt", {}).get("history", {})
        for k, member in enumerate(run.members):
            if member.job_id in history:
                run.engine.set_hyperparameters(k, values_at(history[member.job_id], run.engine.progress.epoch))

    def after_epoch(self, run, epoch: int) -> None:
        if epoch not in self.intervals or not run.active:
            return
        index = {m.job_id: k for k, m in enumerate(run.members)}
        with session_scope() as s:
            state = search_repo.lock_search_state(s, self.sweep_id)
            pbt = state.setdefault("pbt", {"metric": self.objective.metric, "mode": self.objective.mode,
                                           "history": {}, "intervals": {}})
            for k, spec in enumerate(run.specs):  # epoch 0: the values each member was sampled with
                pbt["history"].setdefault(run.members[k].job_id, [
                    {"epoch": 0, "source": None, "values": {n: getattr(spec.optimizer, n) for n in self.axes}}])
            decision = pbt["intervals"].get(str(epoch))
            if decision is None:
                values = [(run.members[k].job_id, run.metric(k, self.objective.metric)) for k in sorted(run.active)]
                decision = self.decide(epoch, values, pbt["history"])
                pbt["intervals"][str(epoch)] = decision
                for copy in decision["copies"]:
                    pbt["history"][copy["target"]].append(
                        {"epoch": epoch, "source": copy["source"], "values": copy["values"]})
                search_repo.set_search_state(s, self.sweep_id, state)
        for copy in decision["copies"]:
            if copy["target"] in index and copy["source"] in index:
                run.engine.copy_member(index[copy["source"]], index[copy["target"]])
                run.engine.set_hyperparameters(index[copy["target"]], copy["values"])

    def decide(self, epoch: int, values: list[tuple[str, float | None]], history: dict) -> dict:
        scores = [(job_id, self.objective.score(value)) for job_id, value in values]
        order = ranked(sorted(scores, key=lambda item: self.order.get(item[0], 0)))
        n = pbt_split(len(order), self.quantile)
        rng = random.Random(f"{self.seed}:{epoch}")
        copies = []
        for target in order[len(order) - n:]:
            source = rng.choice(order[:n])
            current = values_at(history[source], epoch)
            copies.append({"target": target, "source": source,
                           "values": {name: explore(current[name], axis, rng) for name, axis in self.axes.items()}})
        finite = {j: (v if v is not None and math.isfinite(v) else None) for j, v in values}
        return {"ranked": order, "values": finite, "copies": copies}


def population_for(sweep, members: list[Job]) -> Population | None:
    return Population(sweep, members) if sweep.request.get("search") == "pbt" else None
