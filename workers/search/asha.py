"""ASHA in a sweep: at each rung, the members still training are ranked by the sweep's objective and all but the
top 1/eta stop.

A rung's decision is written to the sweep (`search_state["rungs"]`) before the members it stops are closed,
so a worker that resumes the sweep from checkpoints finds it and repeats it, whatever the members it now holds. A stopped member ends `succeeded` with its weights and curve as of the rung,
`stopped_early_at` the rung's epoch and `stop_reason` "pruned at rung i".
"""

from __future__ import annotations

import math

from service.db import session_scope
from service.models import Job
from service.repositories import search_state as search_repo
from service.schemas.objectives import sweep_objective
from service.schemas.search import asha_keep, asha_rungs, ranked


class Rungs:
    """One ASHA sweep's rungs, and the decisions taken at them."""

    def __init__(self, sweep_id: str, request: dict, members: list[Job], tpe_round: int | None = None):
        """`tpe_round`: ASHA inside a TPE sweep's round (0 first), whose decisions are kept with the round."""
        asha, base = request["asha"], request["base"]
        self.sweep_id, self.tpe_round = sweep_id, tpe_round
        self.eta = asha["reduction_factor"]
        self.epochs = asha_rungs(asha["min_epochs"], self.eta, base["epochs"])
        self.objective = sweep_objective(request)
        # ties keep the order the members were made in
        self.order = {job.id: i for i, job in enumerate(sorted(members, key=lambda j: (j.created_at, j.id)))}

    def rung_at(self, epoch: int) -> int | None:
        """The rung (1 first) whose epoch this is, or None."""
        return self.epochs.index(epoch) + 1 if epoch in self.epochs else None

    def decide(self, session, rung: int, values: dict[str, float | None]) -> set[str]:
        """The members (ids) that go on past `rung`: the decision stored, else one taken now and stored."""
        values = {job_id: (v if v is not None and math.isfinite(v) else None) for job_id, v in values.items()}
        state = search_repo.lock_search_state(session, self.sweep_id)
        holder = state if self.tpe_round is None else state["tpe"]["rounds"][self.tpe_round]
        rungs = holder.setdefault("rungs", {})
        decision = rungs.get(str(rung))
        if decision is None:
            scores = [(job_id, self.objective.score(v)) for job_id, v in values.items()]
            order = ranked(sorted(scores, key=lambda item: self.order.get(item[0], 0)))
            kept = order[: asha_keep(len(order), self.eta)]
            decision = {"epoch": self.epochs[rung - 1], "metric": self.objective.metric, "mode": self.objective.mode,
                        "kept": kept, "pruned": order[len(kept):], "values": values}
        else:
            decision = self.admit_newcomers(decision, values, self.objective.score)
        rungs[str(rung)] = decision
        search_repo.set_search_state(session, self.sweep_id, state)
        return set(decision["kept"])

    @staticmethod
    def admit_newcomers(decision: dict, values: dict, score) -> dict:
        """Members the stored decision never saw (claimed later, under a running cap) go on when they
        rank no worse than the worst member it kept; the others stop. Those seen keep their fate."""
        seen = set(decision["kept"]) | set(decision["pruned"])
        kept_scores = [score(decision["values"].get(j)) for j in decision["kept"]]
        bar = max((v for v in kept_scores if v is not None), default=None)
        decision = {**decision, "kept": list(decision["kept"]), "pruned": list(decision["pruned"]),
                    "values": dict(decision["values"])}
        for job_id, value in values.items():
            if job_id in seen:
                continue
            goes_on = value is not None and (bar is None or score(value) <= bar)
            decision["kept" if goes_on else "pruned"].append(job_id)
            decision["values"][job_id] = value
        return decision


def rungs_for(sweep, members: list[Job]) -> Asha | None:
    """ASHA for these members of a sweep: an asha search's rungs, or those of the TPE round they belong to."""
    if sweep.request.get("asha") is None:
        return None
    if sweep.request["search"] != "tpe":
        return Asha(Rungs(sweep.id, sweep.request, members))
    rounds = (sweep.search_state or {}).get("tpe", {}).get("rounds", [])
    ids = {job.id for job in members}
    tpe_round = next(i for i, r in enumerate(rounds) if ids & set(r["members"]))
    return Asha(Rungs(sweep.id, sweep.request, members, tpe_round))


class Asha:
    """ASHA acting on a run (workers/run.py): at a rung's epoch, close the losers; the run trains on the rest."""

    copies_state = False  # members never take each other's state: stacked or in turn, as is faster
    in_turn = "asha rung by rung"  # the members' execution when trained in turn

    def __init__(self, rungs: Rungs):
        self.rungs = rungs

    def records(self, epoch: int) -> bool:
        return self.rungs.rung_at(epoch) is not None

    def on_start(self, run) -> None:
        """Nothing to restore: members a rung stopped were closed with it."""

    def after_epoch(self, run, epoch: int) -> None:
        """`run` has just trained `epoch` and reported it."""
        rung = self.rungs.rung_at(epoch)
        if rung is None or not run.active:
            return
        values = {run.members[k].job_id: run.metric(k, self.rungs.objective.metric) for k in sorted(run.active)}
        with session_scope() as s:
            kept = self.rungs.decide(s, rung, values)
        stopped = [k for k in sorted(run.active) if run.members[k].job_id not in kept]
        run.succeed(stopped, stopped_early_at=epoch, stop_reason=f"pruned at rung {rung}")
        run.keep(sorted(run.active))  # none left: the rung kept only members trained elsewhere
