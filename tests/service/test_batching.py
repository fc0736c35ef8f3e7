"""The batch key: equal for jobs a batched step can train together, different otherwise."""

from service.batching import batch_key
from service.schemas.spec import JobSpec
from tests.specs import tiny_regression


def key(**changes) -> str:
    return batch_key(JobSpec.model_validate(tiny_regression(**changes)))


def test_seed_rates_name_tags_and_priority_keep_the_key():
    base = key()
    optimizer = {"kind": "sgd", "lr": 0.2, "momentum": 0.9, "weight_decay": 0.01}
    assert key(seed=7, name="x", tags={"a": "b"}, priority=5, optimizer=optimizer) == base


def test_architecture_optimizer_kind_batch_size_data_and_epochs_change_the_key():
    base = key()
    others = [
        key(model={"kind": "mlp", "in_features": 1, "hidden": [4], "out_features": 1}),
        key(optimizer={"kind": "adam", "lr": 0.05}),
        key(batch_size=10),
        key(data={"source": "synthetic", "generator": "linear", "n": 60, "slope": 2.0, "intercept": 1.0}),
        key(epochs=201),
        key(early_stopping={"patience": 3}),
    ]
    assert len({base, *others}) == len(others) + 1


def test_options_the_batched_step_leaves_to_one_by_one_give_no_key():
    mlp = {"kind": "mlp", "in_features": 1, "hidden": [4], "out_features": 1}
    alone = [
        key(model={**mlp, "dropout": 0.2}),
        key(model={**mlp, "batch_norm": True}),
        key(optimizer={"kind": "sgd", "lr": 0.05, "clip_grad_norm": 1.0}),
        key(optimizer={"kind": "sgd", "lr": 0.05, "schedule": {"kind": "plateau", "factor": 0.5, "patience": 2}}),
    ]
    assert alone == [None] * 4
    assert key(optimizer={"kind": "sgd", "lr": 0.05, "schedule": {"kind": "step", "step_epochs": 5, "gamma": 0.5}})
