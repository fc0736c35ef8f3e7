"""Checks on an adaptive sweep's request (ASHA, PBT, TPE): each refusal a 422 naming the field."""

from service.errors import InvalidField
from service.schemas.search import HYPERPARAMETERS
from service.schemas.sweeps import ARCHITECTURE, MAX_MEMBERS, SweepCreate

ALLOWED = {"asha": ("asha", "tpe"), "pbt": ("pbt",), "tpe": ("tpe",)}  # settings -> the searches that take them


def check_search(request: SweepCreate) -> None:
    for name, searches in ALLOWED.items():
        if getattr(request, name) is not None and request.search not in searches:
            raise InvalidField((name,), f"{name} settings are for search {' or '.join(map(repr, searches))}; "
                                        f"this sweep's search is {request.search!r}")
    if request.search in ALLOWED and getattr(request, request.search) is None:
        raise InvalidField((request.search,), f"search {request.search!r} needs its {request.search} settings")
    if request.tpe is not None and request.tpe.rounds * request.count > MAX_MEMBERS:
        raise InvalidField(("tpe", "rounds"), f"{request.tpe.rounds} rounds of {request.count} members: "
                                              f"at most {MAX_MEMBERS} members a sweep")
    if request.asha is not None:
        check_stopping(request)
        if request.asha.min_epochs >= request.base.epochs:
            raise InvalidField(("asha", "min_epochs"),
                               f"must be below base.epochs ({request.base.epochs}), or no rung stops anyone")
    if request.pbt is not None:
        check_stopping(request)
        check_pbt(request)


def check_stopping(request: SweepCreate) -> None:
    """ASHA and PBT decide which members stop or change, in one batch: nothing else may."""
    if request.base.early_stopping is not None:
        raise InvalidField(("base", "early_stopping"), f"search {request.search!r} decides itself which members stop")
    if request.space.batch_size is not None:
        raise InvalidField(("space", "batch_size"), "an adaptive search trains its members as one batch: one batch size")


def check_pbt(request: SweepCreate) -> None:
    if request.execution == "one_by_one":
        raise InvalidField(("execution",), "pbt members copy each other's state: they train batched")
    if request.count < 2:
        raise InvalidField(("count",), "pbt needs at least 2 members")
    if request.space.seed is not None:
        raise InvalidField(("space", "seed"), "pbt members copy each other's weights: they share the base's seed and data")
    for name in ARCHITECTURE:
        if getattr(request.space, name) is not None:
            raise InvalidField(("space", name), "pbt members copy each other's weights: they share one architecture")
    if not any(getattr(request.space, name) is not None for name in HYPERPARAMETERS):
        raise InvalidField(("space",), f"pbt explores {', '.join(HYPERPARAMETERS)}: vary at least one")
    if request.pbt.interval_epochs >= request.base.epochs:
        raise InvalidField(("pbt", "interval_epochs"),
                           f"must be below base.epochs ({request.base.epochs}), or no member is ever copied")
