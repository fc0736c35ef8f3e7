"""The dashboard's hyperparameter helpers and parallel-coordinates axes, called in headless Chromium."""

import pytest

from tests.service.dashboard.pages import url

SPEC = {
    "name": "a run", "tags": {"team": "x"}, "priority": 3, "metrics_every": 10,
    "model": {"kind": "mlp", "hidden": [32, 16], "activation": "relu"},
    "optimizer": {"kind": "adam", "lr": 0.01}, "epochs": 100, "batch_size": None, "early_stopping": None,
}


def test_a_spec_flattens_to_its_hyperparameters_by_dotted_path_and_the_differing_are_found(served, page):
    page.goto(url(served))
    found = page.evaluate("""async (spec) => {
        const { differing, flatten, formatValue, varying } = await import("/dashboard/params.js");
        const rows = [{ lr: 0.1, seed: 7, batch_size: null }, { lr: 0.01, seed: 7 }];
        return {
            flat: flatten(spec),
            differing: differing(rows),
            varying: varying(rows),
            allWhenNoneDiffer: varying([{ seed: 7 }, { seed: 7 }]),
            shown: [[32, 16], null, "relu", 1e-5, [{ out_channels: 8 }]].map(formatValue),
        };
    }""", SPEC)
    # the run's name, tags, priority and how often it records are bookkeeping, not how it trained
    assert found["flat"] == {
        "model.kind": "mlp", "model.hidden": [32, 16], "model.activation": "relu",
        "optimizer.kind": "adam", "optimizer.lr": 0.01, "epochs": 100, "batch_size": None, "early_stopping": None,
    }
    assert found["differing"] == ["lr"]  # a value one row lacks is none, as the other's is
    assert found["varying"] == ["lr"]
    assert found["allWhenNoneDiffer"] == ["seed"]
    assert found["shown"] == ["[32,16]", "none", "relu", "1.000e-5", '[{"out_channels":8}]']


def test_parallel_axes_are_log_over_two_decades_linear_below_and_categorical_for_the_rest(served, page):
    page.goto(url(served))
    axes = page.evaluate("""async () => {
        const { axisScale } = await import("/dashboard/parallel.js");
        const drawn = (values, at) => {
            const scale = axisScale(values);
            return { log: scale.log, at: at.map(scale.position), ticks: scale.marks(200).map(([, label]) => label) };
        };
        return {
            decades: drawn([0.001, 0.01, 0.1], [0.001, 0.01, 0.1]),
            underTwo: drawn([0.001, 0.05], [0.001, 0.05]),
            signed: drawn([-1, 100], [-1, 100]),
            kinds: drawn(["sgd", "adamw", "adam", "sgd"], ["adam", "adamw", "sgd"]),
            mixed: drawn([null, 64, 8], [8, 64, null]),
            same: drawn([0.5, 0.5], [0.5]),
            missing: drawn([undefined, 1, 3], [1, 3]),
        };
    }""")
    assert axes["decades"]["log"] and axes["decades"]["at"] == pytest.approx([0, 0.5, 1])
    assert "0.01" in axes["decades"]["ticks"]
    assert not axes["underTwo"]["log"] and axes["underTwo"]["at"] == pytest.approx([0, 1])
    assert not axes["signed"]["log"]
    assert (axes["kinds"]["at"], axes["kinds"]["ticks"]) == ([0, 0.5, 1], ["adam", "adamw", "sgd"])
    # none among numbers (batch_size unset) is a value of its own: the axis is categorical, numbers in order
    assert (axes["mixed"]["at"], axes["mixed"]["ticks"]) == ([0, 0.5, 1], ["8", "64", "none"])
    assert axes["same"]["at"] == [0.5]
    assert axes["missing"]["at"] == [0, 1]  # a run without a value (a metric not yet recorded) has no place on it
