"""TPE rounds: each round's members are what Optuna's TPE sampler suggests, told every earlier member's result.

The study is rebuilt from the sweep's members each time (ask/tell with `optuna.trial.create_trial`), in
member order, with `TPESampler(seed=search_seed + round, n_startup_trials=1)`: the first round (nothing
told) is Optuna's seeded random sampling, later rounds TPE's over every member that ended with a value
(a diverged member is told as failed, which TPE leaves out). The same members give the same
suggestions, so a round created again after a crash is the same round.
"""

from __future__ import annotations

import json
import math
from typing import Any

from service.schemas.sweeps import LogUniform, SweepCreate, Uniform


def optuna_module():
    """Optuna, imported on first use: seconds at start-up that a service running no TPE sweep never pays."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def distributions(request: SweepCreate) -> dict[str, Any]:
    """Optuna's distribution per axis; list values (hidden, channels) as JSON strings, which Optuna can hold."""
    distribution = optuna_module().distributions
    dists = {}
    for name, axis in request.space.axes().items():
        if isinstance(axis, list):
            dists[name] = distribution.CategoricalDistribution([encode(v) for v in axis])
        else:
            dists[name] = distribution.FloatDistribution(axis.low, axis.high, log=isinstance(axis, LogUniform))
    return dists


def suggest(request: SweepCreate, told: list[dict]) -> list[dict[str, Any]]:
    """`count` members' values, given earlier members' results.

    Each told entry: params, and value (complete), or pruned_at and value (stopped by a rung), or neither (failed);
    a value is the objective's score, lower better (a maximized metric negated: services/rounds.py).
    """
    optuna, dists = optuna_module(), distributions(request)
    rounds_so_far = len(told) // request.count
    sampler = optuna.samplers.TPESampler(seed=request.search_seed + rounds_so_far, n_startup_trials=1)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    for entry in told:
        study.add_trial(trial_of(entry, dists))
    asked = [study.ask(dists).params for _ in range(request.count)]
    return [{name: decode(value) for name, value in params.items()} for params in asked]


def encode(value):
    return json.dumps(value) if isinstance(value, list) else value


def decode(value):
    return json.loads(value) if isinstance(value, str) and value.startswith("[") else value


def trial_of(entry: dict, dists: dict):
    """An Optuna FrozenTrial of a member that ended."""
    TrialState, create_trial = optuna_module().trial.TrialState, optuna_module().trial.create_trial
    params, value = {k: encode(v) for k, v in entry["params"].items() if k in dists}, entry.get("value")
    if value is None or not math.isfinite(value):
        return create_trial(params=params, distributions=dists, state=TrialState.FAIL)
    if entry.get("pruned_at"):
        return create_trial(params=params, distributions=dists, state=TrialState.PRUNED,
                            intermediate_values={entry["pruned_at"]: value})
    return create_trial(params=params, distributions=dists, value=value)


def first_round(request: SweepCreate) -> list[dict[str, Any]]:
    return suggest(request, [])


def range_ends(request: SweepCreate) -> list[dict[str, Any]]:
    """Members at each range's low and high ends (lists: their first value), to check before any is sampled."""
    axes = request.space.axes()
    first = {name: axis[0] if isinstance(axis, list) else axis.low for name, axis in axes.items()}
    ends = [first]
    for name, axis in axes.items():
        if isinstance(axis, (LogUniform, Uniform)):
            ends.append({**first, name: axis.high})
    return ends
