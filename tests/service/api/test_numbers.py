"""Every number a request carries is checked: NaN and Infinity (which Python's json reads) and integers too
large for the database are 422s naming the field, never 500s; the stored spec is the one accepted."""

import io
import json
import math

import numpy as np
import pytest

from tests.conftest import shared_app
from tests.specs import tiny_regression

server = shared_app()  # the tests keep apart by their own jobs

NAN, INF = float("nan"), float("inf")


def post_raw(server, path: str, body: dict):
    """POST the body with NaN / Infinity literals, as Python's json.dumps writes them."""
    return server.client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


def strict_json(response) -> dict:
    """The body, refusing NaN / Infinity literals: an error answer must be JSON any client can read."""
    return json.loads(response.text, parse_constant=lambda name: pytest.fail(f"{name} in {response.text[:200]}"))


def assert_names(response, *path: str | int) -> None:
    """A 422 whose error locations name `path` (in order, tags such as `inline` may sit between)."""
    assert response.status_code == 422, response.text
    locs = [error["loc"] for error in strict_json(response)["detail"]]

    def names(loc) -> bool:
        rest = iter(loc)
        return all(any(part == wanted for part in rest) for wanted in path)

    assert any(names(loc) for loc in locs), locs


def inline(x, y) -> dict:
    return {"source": "inline", "x": x, "y": y}


SPEC_CASES = [
    ({"optimizer": {"kind": "sgd", "lr": NAN}}, ("optimizer", "lr")),
    ({"optimizer": {"kind": "sgd", "lr": INF}}, ("optimizer", "lr")),
    ({"optimizer": {"kind": "sgd", "lr": 0.1, "weight_decay": INF}}, ("optimizer", "weight_decay")),
    ({"optimizer": {"kind": "sgd", "lr": 0.1, "momentum": -INF}}, ("optimizer", "momentum")),
    (
        {"model": {"kind": "linear", "in_features": 1, "out_features": 1, "init": {"kind": "uniform", "low": NAN}}},
        ("model", "init", "low"),
    ),
    ({"early_stopping": {"patience": 3, "min_delta": INF}}, ("early_stopping", "min_delta")),
    ({"data": inline([[1.0], [NAN], [3]], [1.0, 2.0, 3.0])}, ("data", "x", 1, 0)),
    ({"data": inline([1.0, 2.0], [1.0, -INF])}, ("data", "y", 1)),
    ({"data": inline([[[1.0, 2.0]], [[3.0, INF]]], [1.0, 2.0])}, ("data", "x", 1, 0, 1)),
    ({"data": {"source": "synthetic", "generator": "linear", "n": 50, "low": NAN}}, ("data", "low")),
    (
        {"data": {"source": "synthetic", "generator": "linear", "n": 50, "validation_fraction": NAN}},
        ("data", "validation_fraction"),
    ),
    (
        {"data": {"source": "synthetic", "generator": "polynomial", "n": 50, "coefficients": [1.0, INF]}},
        ("data", "coefficients", 1),
    ),
    (
        {"data": {"source": "synthetic", "generator": "blobs", "clusters": [{"mean": [NAN], "std": 1.0, "n": 5}]}},
        ("data", "clusters", 0, "mean", 0),
    ),
]


@pytest.mark.parametrize("override, field", SPEC_CASES, ids=[".".join(map(str, f)) for _, f in SPEC_CASES])
def test_a_non_finite_number_in_a_spec_is_a_422_naming_it(server, override, field):
    assert_names(post_raw(server, "/v1/jobs", tiny_regression(**override)), "body", *field)


def test_x_as_a_bool_or_a_string_is_a_422(server):
    assert_names(post_raw(server, "/v1/jobs", tiny_regression(data=inline([1.0, True], [1.0, 2.0]))), "x", 1)
    assert_names(post_raw(server, "/v1/jobs", tiny_regression(data=inline([1.0, "2"], [1.0, 2.0]))), "x", 1)


@pytest.mark.parametrize(
    "space, search",
    [
        ({"lr": [0.1, NAN]}, {}),
        ({"weight_decay": [INF]}, {}),
        ({"lr": {"distribution": "uniform", "low": 0.01, "high": INF}}, {"search": "random", "count": 2}),
        ({"momentum": {"distribution": "uniform", "low": NAN, "high": 0.5}}, {"search": "random", "count": 2}),
    ],
)
def test_a_non_finite_number_in_a_sweep_is_a_422_naming_it(server, space, search):
    response = post_raw(server, "/v1/sweeps", {"base": tiny_regression(), "space": space, **search})
    assert_names(response, "body", "space", next(iter(space)))


def test_non_finite_prediction_inputs_are_refused_before_any_model_loads(server):
    job = server.train(tiny_regression(epochs=5))
    response = post_raw(server, f"/v1/jobs/{job['id']}/predict", {"inputs": [[1.0], [NAN]]})
    assert_names(response, "body", "inputs", 1, 0)
    ok = server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[1.0], [2]]})
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 2
    tensor = {"name": "input", "shape": [2, 1], "datatype": "FP32", "data": [1.0, INF]}
    v2 = post_raw(server, f"/v2/models/{job['id']}/infer", {"inputs": [tensor]})
    assert v2.status_code == 400 and "finite" in strict_json(v2)["error"], v2.text  # v2 answers bad input with 400


def subset(sent, stored) -> bool:
    """Every field sent is stored with the same value (a float field may store 1 as 1.0; a bool stays a bool)."""
    if isinstance(sent, dict):
        return isinstance(stored, dict) and all(k in stored and subset(v, stored[k]) for k, v in sent.items())
    if isinstance(sent, list):
        return isinstance(stored, list) and len(sent) == len(stored) and all(map(subset, sent, stored))
    return isinstance(sent, bool) == isinstance(stored, bool) and sent == stored


def test_the_stored_spec_is_the_one_accepted(server):
    spec = tiny_regression(
        model={"kind": "linear", "in_features": 2, "out_features": 1, "init": {"kind": "uniform", "low": -0.5, "high": 1}},
        data={"source": "inline", "x": [[0, 1.5], [2, -3.25], [1e-7, 4]], "y": [1, 2.5, -1e30], "validation_fraction": 0},
        optimizer={"kind": "adamw", "lr": 0.001, "weight_decay": 1e-4, "momentum": 0.0},
        early_stopping={"patience": 2, "min_delta": 0.125},
        seed=2**63 - 1,
        epochs=3,
    )
    job = server.submit(spec)
    stored = server.client.get(f"/v1/jobs/{job['id']}").json()["spec"]
    assert subset(spec, stored), stored
    as_sent = [[type(v) for v in row] for row in spec["data"]["x"]]
    assert [[type(v) for v in row] for row in stored["data"]["x"]] == as_sent  # data stays as sent: 0 is not 0.0
    again = server.submit(stored)  # the stored form is itself accepted, unchanged
    assert server.client.get(f"/v1/jobs/{again['id']}").json()["spec"] == stored


@pytest.mark.parametrize("since_step", [2**31, 2**63, 10**30])
def test_a_step_past_the_step_columns_is_a_422_not_a_database_overflow(server, since_step):
    job = server.train(tiny_regression(epochs=5))
    response = server.client.get(f"/v1/jobs/{job['id']}/metrics", params={"since_step": since_step})
    assert_names(response, "query", "since_step")
    last = server.client.get(f"/v1/jobs/{job['id']}/metrics", params={"since_step": 2**31 - 1})
    assert last.status_code == 200 and last.json()["points"] == [] and last.json()["next_since_step"] == 2**31 - 1


def test_page_sizes_and_cursors_are_bounded(server):
    assert_names(server.client.get("/v1/jobs", params={"limit": 2**63}), "query", "limit")
    assert_names(server.client.get("/v1/sweeps", params={"limit": 10**30}), "query", "limit")
    assert_names(server.client.get("/v1/jobs", params={"cursor": "9" * 400}), "query", "cursor")
    metrics = server.client.get("/v1/jobs/nope/metrics", params={"max_points": 10**30})
    assert_names(metrics, "query", "max_points")
    assert not math.isnan(strict_json(metrics)["detail"][0]["ctx"]["le"])


MARK = "lone-surrogate-here"  # replaced in the JSON text by "\\ud800": valid JSON, but no text a database takes


def with_lone_surrogate(body: dict) -> bytes:
    return json.dumps(body).replace(f'"{MARK}"', '"\\ud800"').encode()


@pytest.mark.parametrize(("method", "path", "body", "loc"), [
    ("POST", "/v1/jobs", tiny_regression(name=MARK), ["body", "name"]),
    ("POST", "/v1/jobs", tiny_regression(tags={"team": MARK}), ["body", "tags", "team"]),
    ("PATCH", "/v1/jobs/{id}", {"tags": {MARK: "x"}}, ["body", "tags"]),  # a key is named by its object
    ("PUT", "/v1/jobs/{id}/alias", {"alias": MARK}, ["body", "alias"]),
    ("POST", "/v1/sweeps", {"name": MARK, "base": tiny_regression(), "space": {"seed": [0]}}, ["body", "name"]),
], ids=["job-name", "tag-value", "tag-key", "alias", "sweep-name"])
def test_a_lone_surrogate_in_any_string_is_a_422_naming_it_and_nothing_is_stored(server, method, path, body, loc):
    job = server.train(tiny_regression(epochs=2))
    stored = server.query("SELECT count(*) FROM jobs")
    response = server.client.request(method, path.format(id=job["id"]), content=with_lone_surrogate(body),
                                     headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == loc and "lone UTF-16 surrogate" in error["msg"]
    assert server.query("SELECT count(*) FROM jobs") == stored
    kept = server.client.get(f"/v1/jobs/{job['id']}").json()
    assert kept["alias"] is None and kept["tags"] == {}


def test_a_surrogate_pair_is_text_and_is_kept(server):
    body = json.dumps(tiny_regression(epochs=2, name="\U0001f600 run"))  # ensure_ascii: "\\ud83d\\ude00 run"
    assert "\\ud83d\\ude00" in body
    created = server.client.post("/v1/jobs", content=body.encode(), headers={"Content-Type": "application/json"})
    assert created.status_code == 201 and created.json()["name"] == "\U0001f600 run"


def test_inputs_whose_answers_overflow_are_a_422_not_null(server):
    job = server.train(tiny_regression(epochs=5))
    huge = [[3e38], [1.0]]  # a float32, but times the slope past float32's range
    predicted = server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": huge})
    assert_names(predicted, "inputs")
    assert "finite" in strict_json(predicted)["detail"][0]["msg"]
    tensor = {"name": "input", "shape": [2, 1], "datatype": "FP32", "data": [3e38, 1.0]}
    v2 = server.client.post(f"/v2/models/{job['id']}/infer", json={"inputs": [tensor]})
    assert v2.status_code == 400 and "finite" in strict_json(v2)["error"], v2.text
    evaluated = server.client.post(f"/v1/jobs/{job['id']}/evaluate", json={"x": huge, "y": [1.0, 3.0]})
    assert_names(evaluated, "x")


def test_targets_whose_measures_overflow_are_a_422_naming_y(server):
    job = server.train(tiny_regression(epochs=5))
    response = server.client.post(f"/v1/jobs/{job['id']}/evaluate", json={"x": [[1.0], [2.0]], "y": [1e308, -1e308]})
    assert_names(response, "y")
    fine = server.client.post(f"/v1/jobs/{job['id']}/evaluate", json={"x": [[1.0], [2.0]], "y": [3.0, 5.0]})
    assert fine.status_code == 200 and math.isfinite(fine.json()["mse"])


def test_a_label_past_any_class_count_is_a_regression_target_not_a_database_overflow(server):
    buf = io.BytesIO()
    np.savez(buf, x=np.ones((3, 2), np.float32), y=np.array([0, 1, 2**63 + 5], dtype=np.uint64))
    response = server.client.post("/v1/datasets", files={"file": ("big.npz", buf.getvalue())})
    assert response.status_code == 201, response.text
    assert response.json()["n_classes"] is None
    buf = io.BytesIO()
    np.savez(buf, x=np.ones((3, 2), np.float32), y=np.array([0, 1, 1_000_000_000], dtype=np.int64))
    assert server.client.post("/v1/datasets", files={"file": ("wide.npz", buf.getvalue())}).json()["n_classes"] is None
    csv = b"a,target\n0.5,1\n1.5,1000000000\n2.5,7\n"
    uploaded = server.client.post("/v1/datasets", files={"file": ("prices.csv", csv)}, data={"target": "target"})
    assert uploaded.status_code == 201 and uploaded.json()["n_classes"] is None, uploaded.text
