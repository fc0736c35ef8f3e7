"""Checks on an adaptive sweep's request (ASHA, PBT): each refusal a 422 naming the field."""

from service.errors import InvalidField
from service.schemas.search import HYPERPARAMETERS
from service.schemas.sweeps import SweepCreate


def check_search(request: SweepCreate) -> None:
    for name in ("asha", "pbt"):
        if getattr(request, name) is not None and request.search != name:
            raise InvalidField((name,), f"{name} settings are for search {name!r}; this sweep's search is {request.search!r}")
    if request.search not in ("asha", "pbt"):
        return
    settings = getattr(request, request.search)
    if settings is None:
        raise InvalidField((request.search,), f"search {request.search!r} needs its {request.search} settings")
    if request.base.early_stopping is not None:
        raise InvalidField(("base", "early_stopping"), f"search {request.search!r} decides itself which members stop")
    if request.space.batch_size is not None:
        raise InvalidField(("space", "batch_size"), "an adaptive search trains its members as one batch: one batch size")
    epochs = request.base.epochs
    if request.search == "asha":
        if settings.min_epochs >= epochs:
            raise InvalidField(("asha", "min_epochs"), f"must be below base.epochs ({epochs}), or no rung stops anyone")
        return
    if request.execution == "one_by_one":
        raise InvalidField(("execution",), "pbt members copy each other's state: they train batched")
    if request.count < 2:
        raise InvalidField(("count",), "pbt needs at least 2 members")
    if request.space.seed is not None:
        raise InvalidField(("space", "seed"), "pbt members copy each other's weights: they share the base's seed and data")
    if not any(getattr(request.space, name) is not None for name in HYPERPARAMETERS):
        raise InvalidField(("space",), f"pbt explores {', '.join(HYPERPARAMETERS)}: vary at least one")
    if settings.interval_epochs >= epochs:
        raise InvalidField(("pbt", "interval_epochs"), f"must be below base.epochs ({epochs}), or no member is ever copied")
