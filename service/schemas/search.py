"""Adaptive searches of a sweep: ASHA's rungs and PBT's intervals, and the rules both sides apply."""

import math

from pydantic import Field

from service.schemas.spec import Strict

ADAPTIVE = ("asha", "pbt", "tpe")
MAX_ROUNDS = 100
PERTURB_FACTORS = (0.8, 1.2)  # PBT's explore: a copied value times one of these, clipped to the space
HYPERPARAMETERS = ("lr", "momentum", "weight_decay")  # what PBT may change while a member trains


class AshaSettings(Strict):
    """Successive halving: at epochs r, r*eta, r*eta^2, ... below `epochs`, the top 1/eta go on."""

    min_epochs: int = Field(ge=1, le=1_000_000, description="r: the first rung's epoch")
    reduction_factor: int = Field(3, ge=2, le=1000, description="eta: 1/eta of the members go on at each rung")


class PbtSettings(Strict):
    """Population based training: every `interval_epochs`, the bottom `quantile` copy a top-`quantile` member."""

    interval_epochs: int = Field(ge=1, le=1_000_000)
    quantile: float = Field(0.25, gt=0, le=0.5)


class TpeSettings(Strict):
    """Rounds of `count` members each; a round's members come from Optuna's TPE sampler told every earlier result."""

    rounds: int = Field(ge=1, le=MAX_ROUNDS)


def asha_rungs(min_epochs: int, reduction_factor: int, epochs: int) -> list[int]:
    """The rungs' epochs, strictly below `epochs` (at `epochs` every member ends anyway)."""
    rungs, epoch = [], min_epochs
    while epoch < epochs:
        rungs.append(epoch)
        epoch *= reduction_factor
    return rungs


def asha_keep(candidates: int, reduction_factor: int) -> int:
    """Members that go on past a rung: floor(n / eta), never fewer than one."""
    return max(1, candidates // reduction_factor)


def pbt_intervals(interval_epochs: int, epochs: int) -> list[int]:
    """The epochs where PBT exploits and explores, strictly below `epochs`."""
    return list(range(interval_epochs, epochs, interval_epochs))


def pbt_split(members: int, quantile: float) -> int:
    """How many members are the bottom (and the top) quantile: ceil(n * q), at most n // 2."""
    return min(members // 2, math.ceil(members * quantile))


def ranked(metrics: list[tuple[str, float | None]]) -> list[str]:
    """Member ids, best first: lower metric first, missing or non-finite last; ties keep the given order."""
    def key(item):
        bad = item[1] is None or not math.isfinite(item[1])
        return (bad, 0.0 if bad else item[1])

    return [member for member, _ in sorted(metrics, key=key)]
