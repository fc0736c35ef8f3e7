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
    if request.search == "tpe" and request.space.schedule is not None:
        raise InvalidField(("space", "schedule"), "tpe suggests numbers and names: vary a schedule with grid or random")
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
    if request.count < 2:
        raise InvalidField(("count",), "pbt needs at least 2 members")
    if request.space.seed is not None:
        raise InvalidField(("space", "seed"), "pbt members copy each other's weights: they share the base's seed and data")
    for name in (*ARCHITECTURE, "optimizer", "loss"):
        if getattr(request.space, name) is not None:
            raise InvalidField(("space", name), "pbt members copy each other's weights and optimizer state: they "
                                                "share one architecture, optimizer and loss")
    if not any(getattr(request.space, name) is not None for name in HYPERPARAMETERS):
        raise InvalidField(("space",), f"pbt explores {', '.join(HYPERPARAMETERS)}: vary at least one")
    check_batchable(request)
    if request.pbt.interval_epochs >= request.base.epochs:
        raise InvalidField(("pbt", "interval_epochs"),
                           f"must be below base.epochs ({request.base.epochs}), or no member is ever copied")


def check_batchable(request: SweepCreate) -> None:
    """PBT trains only batched: refuse what the batched path leaves to one by one (workers/engines/stack_options.py)."""
    base, model = request.base, request.base.model
    schedule = base.optimizer.schedule
    if schedule is not None and schedule.kind == "plateau":
        raise InvalidField(("base", "optimizer", "schedule"), "pbt trains batched: the plateau schedule trains one by one")
    if schedule is not None or request.space.schedule is not None:
        where = ("base", "optimizer", "schedule") if schedule is not None else ("space", "schedule")
        raise InvalidField(where, "pbt sets each member's lr itself: no schedule")
    if base.optimizer.clip_grad_norm is not None or request.space.clip_grad_norm is not None:
        raise InvalidField(("base", "optimizer", "clip_grad_norm"), "pbt trains batched: gradient clipping trains one by one")
    layers = getattr(model, "layers", None) or []
    modal = getattr(model, "dropout", None) is not None or getattr(model, "batch_norm", False) or any(
        layer.kind in ("dropout", "batch_norm") for layer in layers
    )
    if modal or request.space.dropout is not None:
        raise InvalidField(("base", "model"), "pbt trains batched: dropout and batch norm train one by one")
