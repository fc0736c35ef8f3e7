"""Adaptive sweeps end to end: ASHA's rungs and PBT's exploits, through real HTTP, workers and databases."""

import math
import os
import signal
import time
from types import SimpleNamespace

import pytest

from tests.conftest import processes_only, worker_pids
from tests.service.api.test_objectives import CLASSIFIER
from tests.service.api.test_sweeps import CUBIC, submit_sweep, sweep_body, wait_sweep
from workers.search.pbt import Population

VALIDATED = {**CUBIC, "epochs": 45, "data": {**CUBIC["data"], "validation_fraction": 0.2}}
# up to lr 0.03: at 0.035 with momentum 0.5 the cubic's loss spikes near epoch 45 (2 to 16), and a spike magnifies
# float differences of the batched and solo paths (0.5% here) past any tolerance that still tests equality
SPACE = {"lr": {"distribution": "log_uniform", "low": 0.001, "high": 0.03}, "momentum": [0.0, 0.5, 0.9]}


def asha_body(base=VALIDATED, count=9, min_epochs=5, eta=3, **extra) -> dict:
    return sweep_body(SPACE, base=base, search="asha", count=count, search_seed=3,
                      asha={"min_epochs": min_epochs, "reduction_factor": eta}, **extra)


def kill_workers_after(srv, sweep_id: str, decided) -> None:
    """SIGKILL the server's workers once `decided(search_state)` holds: a decision taken, more to come."""
    deadline = time.monotonic() + 120
    while not decided(srv.client.get(f"/v1/sweeps/{sweep_id}").json()["search_state"] or {}):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for pid in worker_pids(srv.proc.pid):
        os.kill(pid, signal.SIGKILL)


def expected_decisions(srv, done: dict, rungs: list[int], eta: int) -> list[set]:
    """The members the rule keeps at each rung, worked out from the members' own curves."""
    curves = {e["job_id"]: {p["epoch"]: p["val_loss"] for p in srv.curve(e["job_id"])} for e in done["leaderboard"]}
    alive, kept = set(curves), []
    for epoch in rungs:
        ranked = sorted(alive, key=lambda j: curves[j][epoch])
        alive = set(ranked[: max(1, len(ranked) // eta)])
        kept.append(alive)
    return kept


def hyperparameters_of(done: dict, ids) -> set:
    by_id = {e["job_id"]: e["hyperparameters"] for e in done["leaderboard"]}
    return {tuple(sorted(by_id[j].items())) for j in ids}


@pytest.mark.parametrize("execution", ["batched", "one_by_one"])
def test_asha_stops_exactly_the_members_the_rule_says(server, execution):
    done = wait_sweep(server, submit_sweep(server, asha_body(execution=execution))["id"])
    assert done["status"] == "succeeded" and done["progress"]["succeeded"] == 9, done
    expect = expected_decisions(server, done, [5, 15], 3)
    assert [len(k) for k in expect] == [3, 1]
    rungs = done["search_state"]["rungs"]
    assert [set(rungs[r]["kept"]) for r in ("1", "2")] == expect
    assert rungs["1"]["metric"] == "val_loss" and rungs["2"]["epoch"] == 15
    for entry in done["leaderboard"]:
        job = server.client.get(f"/v1/jobs/{entry['job_id']}").json()
        assert job["status"] == "succeeded"
        points = server.curve(job["id"])
        if job["id"] in expect[1]:
            assert job["stopped_early_at"] is None and job["stop_reason"] is None and len(points) == 45
            continue
        rung = 2 if job["id"] in expect[0] else 1
        epoch = (5, 15)[rung - 1]
        assert (job["stopped_early_at"], job["stop_reason"]) == (epoch, f"pruned at rung {rung}")
        assert entry["stop_reason"] == job["stop_reason"]
        # the curve ends at its rung, and the weights it keeps are the rung's
        assert [p["epoch"] for p in points] == list(range(1, epoch + 1))
        assert job["metrics"]["epoch"] == epoch
        assert server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[0.5]]}).status_code == 200
    # the finished member first, then those stopped at rung 2, then rung 1
    reached = [e["stopped_early_at"] or 45 for e in done["leaderboard"]]
    assert reached == sorted(reached, reverse=True) and reached[:2] == [45, 15]
    assert done["leaderboard"][0]["job_id"] in expect[1]
    # the survivor equals the same spec trained alone
    winner = done["leaderboard"][0]
    hp = winner["hyperparameters"]
    alone = server.train({**VALIDATED, "optimizer": {**VALIDATED["optimizer"], **hp}})
    assert winner["val_loss"] == pytest.approx(alone["metrics"]["val_loss"], rel=1e-3)


@pytest.mark.parametrize("execution", ["batched", "one_by_one"])
def test_asha_maximizing_val_accuracy_keeps_the_most_accurate_members(server, execution):
    base = {**CLASSIFIER, "epochs": 30, "optimizer": {"kind": "sgd", "lr": 0.1}}
    body = sweep_body({"lr": {"distribution": "log_uniform", "low": 0.001, "high": 1.0}}, base=base, search="asha",
                      count=9, search_seed=1, asha={"min_epochs": 3, "reduction_factor": 3},
                      objective={"metric": "val_accuracy", "mode": "max"}, execution=execution)
    done = wait_sweep(server, submit_sweep(server, body)["id"])
    assert done["status"] == "succeeded" and done["progress"]["succeeded"] == 9, done
    curves = {e["job_id"]: {p["epoch"]: p["val_accuracy"] for p in server.curve(e["job_id"])}
              for e in done["leaderboard"]}
    rungs = done["search_state"]["rungs"]
    for r, survivors in (("1", 3), ("2", 1)):
        decision = rungs[r]
        assert (decision["metric"], decision["mode"], len(decision["kept"])) == ("val_accuracy", "max", survivors)
        at = {j: curves[j][decision["epoch"]] for j in decision["kept"] + decision["pruned"]}
        assert decision["values"] == at  # what the rung read is each member's recorded accuracy
        assert min(at[j] for j in decision["kept"]) >= max(at[j] for j in decision["pruned"])
    assert len(set(rungs["1"]["values"].values())) > 1  # the members differed: the order mattered
    assert done["best_job_id"] == done["leaderboard"][0]["job_id"] == rungs["2"]["kept"][0]


@pytest.mark.parametrize("execution", ["batched", "one_by_one"])
def test_every_asha_member_is_evaluated_on_its_held_out_splits(server, execution):
    """Members stopped at a rung and the one that finished alike, whichever way they were trained."""
    base = {**VALIDATED, "epochs": 20, "data": {**VALIDATED["data"], "test_fraction": 0.2}}
    done = wait_sweep(server, submit_sweep(server, asha_body(base, count=4, eta=2, execution=execution))["id"])
    assert done["status"] == "succeeded" and done["progress"]["succeeded"] == 4, done
    stopped = 0
    for entry in done["leaderboard"]:
        job = server.client.get(f"/v1/jobs/{entry['job_id']}").json()
        stopped += job["stop_reason"] is not None
        evaluation = job["evaluation"]
        assert evaluation and evaluation["test"]["mse"] >= 0 and evaluation["validation"]["mse"] >= 0, job
    assert stopped == 3  # rungs at 5 and 10 epochs: 4 members, then 2, then 1


def test_asha_decides_the_same_batched_and_one_by_one_for_one_search_seed(server):
    decided = []
    for execution in ("batched", "one_by_one"):
        done = wait_sweep(server, submit_sweep(server, asha_body(count=6, eta=2, execution=execution))["id"])
        rungs = done["search_state"]["rungs"]
        decided.append([hyperparameters_of(done, rungs[r]["kept"]) for r in sorted(rungs, key=int)])
    # rungs at 5, 10, 20 and 40 epochs: 6 members, then 3, then 1
    assert decided[0] == decided[1] and [len(k) for k in decided[0]] == [3, 1, 1, 1]


# A lease of 6 s: /readyz wants a worker heartbeat within a lease, and a loaded 2-core machine can miss 3 s.
# A killed worker's members are rescued at once anyway (the maintenance loop finds its pid gone).


@processes_only
def test_a_killed_asha_sweep_resumes_with_the_same_decisions(make_server):
    srv = make_server(workers=1, FITSERVE_CHECKPOINT_SECONDS="0.3", FITSERVE_LEASE_SECONDS="6",
                      FITSERVE_SWEEP_SECONDS="0.5").start()
    base = {**VALIDATED, "epochs": 3000}
    body = asha_body(base=base, min_epochs=400, eta=3, execution="batched")  # rungs at 400 and 1200
    sweep = submit_sweep(srv, body)
    kill_workers_after(srv, sweep["id"], lambda state: state.get("rungs"))
    killed = wait_sweep(srv, sweep["id"], timeout=300)
    again = wait_sweep(srv, submit_sweep(srv, body)["id"], timeout=300)  # the same search, never killed
    assert killed["status"] == again["status"] == "succeeded"
    decisions = [[hyperparameters_of(d, d["search_state"]["rungs"][r]["kept"]) for r in ("1", "2")]
                 for d in (killed, again)]
    assert decisions[0] == decisions[1]
    survivor = srv.client.get(f"/v1/jobs/{killed['leaderboard'][0]['job_id']}").json()
    assert survivor["attempt"] == 2 and survivor["progress"]["epoch"] == 3000
    steps = [p["step"] for p in srv.curve(survivor["id"])]
    assert steps == list(range(1, 3001))
    want = {e["hyperparameters"]["lr"]: e["val_loss"] for e in again["leaderboard"]}
    for entry in killed["leaderboard"]:
        assert entry["val_loss"] == pytest.approx(want[entry["hyperparameters"]["lr"]], rel=1e-4)
        assert not math.isnan(entry["val_loss"])


ASHA = {"asha": {"min_epochs": 5, "reduction_factor": 3}}


@pytest.mark.parametrize(
    "extra,loc",
    [
        ({"search": "random", "count": 4, **ASHA}, ["body", "asha"]),
        ({"search": "asha", "count": 4}, ["body", "asha"]),
        ({"search": "asha", "count": 4, "asha": {"min_epochs": 45, "reduction_factor": 3}}, ["body", "asha", "min_epochs"]),
        ({"search": "asha", "count": 4, "asha": {"min_epochs": 5, "reduction_factor": 1}},
         ["body", "asha", "reduction_factor"]),
        ({"search": "asha", **ASHA}, ["body"]),
        ({"search": "pbt", "count": 4, "pbt": {"interval_epochs": 5, "quantile": 0.6}}, ["body", "pbt", "quantile"]),
        ({"search": "pbt", "count": 4, "pbt": {"interval_epochs": 45}}, ["body", "pbt", "interval_epochs"]),
        ({"search": "pbt", "count": 1, "pbt": {"interval_epochs": 5}}, ["body", "count"]),
        ({"search": "asha", "count": 4, **ASHA, "pbt": {"interval_epochs": 5}}, ["body", "pbt"]),
    ],
    ids=["asha-with-random", "asha-without-settings", "min-epochs-past-epochs", "eta-below-2", "asha-without-count",
         "quantile-above-half", "interval-past-epochs", "pbt-of-one", "pbt-settings-with-asha"],
)
def test_bad_adaptive_sweeps_are_422(server, extra, loc):
    response = server.client.post("/v1/sweeps", json=sweep_body(SPACE, base=VALIDATED, **extra))
    assert response.status_code == 422, response.text
    assert any(d["loc"][: len(loc)] == loc for d in response.json()["detail"]), response.json()


@pytest.mark.parametrize(
    "space,base,loc",
    [
        ({**SPACE, "batch_size": [10, 20]}, VALIDATED, ["body", "space", "batch_size"]),
        (SPACE, {**VALIDATED, "early_stopping": {"patience": 3}}, ["body", "base", "early_stopping"]),
    ],
    ids=["batch-size-varies", "early-stopping"],
)
def test_adaptive_sweeps_refuse_what_would_split_or_stop_the_batch(server, space, base, loc):
    response = server.client.post("/v1/sweeps", json=sweep_body(space, base=base, search="asha", count=4, **ASHA))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc


# ---------------------------------------------------------------- PBT

# momentum stays the base's: a member explored from momentum 0 to more would keep its last gradient as
# buffer batched, where torch.optim starts a new one, and the replay below would drift
PBT_BASE = {**VALIDATED, "epochs": 60, "optimizer": {"kind": "sgd", "lr": 0.01, "momentum": 0.9}}
PBT_SPACE = {"lr": {"distribution": "log_uniform", "low": 0.0005, "high": 0.02}, "weight_decay": [0.0, 0.001, 0.01]}


def pbt_body(base=PBT_BASE, interval=10, **extra) -> dict:
    return sweep_body(PBT_SPACE, base=base, search="pbt", count=6, search_seed=5,
                      pbt={"interval_epochs": interval, "quantile": 0.25}, **extra)


def lineage(history: dict[str, list[dict]], member: str, end: int) -> list[tuple[int, int, dict]]:
    """The (first epoch, last epoch, values) stretches that made `member`'s weights at `end`, earliest first.

    Before a copy, a member's weights are its source's: the walk follows sources back to epoch 0.
    """
    stretches, epoch = [], end
    while epoch > 0:
        event = [e for e in history[member] if e["epoch"] < epoch][-1]
        stretches.append((event["epoch"] + 1, epoch, event["values"]))
        epoch, member = event["epoch"], event["source"] or member
    return stretches[::-1]


def replay_alone(spec: dict, stretches) -> dict:
    """Train one network alone through a member's lineage of values; its last curve point."""
    import torch

    from service.schemas.spec import JobSpec
    from tests.workers.engines.test_stacked import prepare
    from workers.engines.eager import Trainer
    from workers.run import train_here

    spec = JobSpec.model_validate(spec)
    net, data = prepare(spec)
    trainer = Trainer(spec, net, data, torch.device("cpu"))
    for _, last, values in stretches:
        for group in trainer.optimizer.param_groups:
            group.update(values)
        trainer.spec = trainer.specs[0] = spec.model_copy(update={"epochs": last})
        ledger = train_here(trainer)
        assert ledger.succeeded()
    return ledger.points["0"][-1].as_dict()


@pytest.mark.parametrize("execution", ["auto", "one_by_one"])
def test_pbt_exploits_the_top_members_and_its_best_replays_alone(server, execution):
    """Stacked (what auto chooses for pbt) or in turn, one member after another: the same rule, and the best
    member's lineage replayed alone gives its figures."""

    done = wait_sweep(server, submit_sweep(server, pbt_body(execution=execution))["id"])
    path = "batched" if execution == "auto" else "one by one"
    assert done["status"] == "succeeded" and done["execution"].startswith(path), done
    pbt = done["search_state"]["pbt"]
    assert sorted(pbt["intervals"], key=int) == ["10", "20", "30", "40", "50"]
    curves = {e["job_id"]: {p["epoch"]: p["val_loss"] for p in server.curve(e["job_id"])} for e in done["leaderboard"]}
    for epoch, decision in pbt["intervals"].items():
        # the ranking is the members' own val_loss at the interval; the bottom 2 copy one of the top 2
        want = sorted(curves, key=lambda j: curves[j][int(epoch)])
        assert decision["ranked"] == want
        assert {c["target"] for c in decision["copies"]} == set(want[-2:])
        for c in decision["copies"]:
            assert c["source"] in want[:2]
            assert 0.0005 <= c["values"]["lr"] <= 0.02 and c["values"]["weight_decay"] in (0.0, 0.001, 0.01)
            assert pbt["history"][c["target"]][-1]["epoch"] <= 50
    assert any(len(h) > 1 for h in pbt["history"].values())
    best = done["leaderboard"][0]
    stretches = lineage(pbt["history"], best["job_id"], 60)
    assert stretches[0][0] == 1 and stretches[-1][1] == 60
    replayed = replay_alone(PBT_BASE, stretches)
    assert replayed["val_loss"] == pytest.approx(best["val_loss"], rel=1e-3)
    assert replayed["loss"] == pytest.approx(best["loss"], rel=1e-3)


@processes_only
def test_a_killed_pbt_sweep_resumes_with_the_same_decisions(make_server):
    srv = make_server(workers=1, FITSERVE_CHECKPOINT_SECONDS="0.3", FITSERVE_LEASE_SECONDS="6",
                      FITSERVE_SWEEP_SECONDS="0.5").start()
    body = pbt_body(base={**PBT_BASE, "epochs": 3000}, interval=400)
    sweep = submit_sweep(srv, body)
    kill_workers_after(srv, sweep["id"], lambda state: state.get("pbt"))
    killed = wait_sweep(srv, sweep["id"], timeout=300)
    again = wait_sweep(srv, submit_sweep(srv, body)["id"], timeout=300)

    def decisions(done):
        names = {e["job_id"]: srv.client.get(f"/v1/jobs/{e['job_id']}").json()["name"] for e in done["leaderboard"]}
        return {epoch: [(names[c["target"]], names[c["source"]], c["values"]) for c in d["copies"]]
                for epoch, d in done["search_state"]["pbt"]["intervals"].items()}, names

    (got, names), (want, _) = decisions(killed), decisions(again)
    assert got == want and len(got) == 7
    assert {srv.client.get(f"/v1/jobs/{j}").json()["attempt"] for j in names} == {2}
    final = {names[e["job_id"]]: e["val_loss"] for e in killed["leaderboard"]}
    again_names = decisions(again)[1]
    assert final == pytest.approx({again_names[e["job_id"]]: e["val_loss"] for e in again["leaderboard"]}, rel=1e-4)


# ---------------------------------------------------------------- TPE

TPE_BASE = {**VALIDATED, "epochs": 30}
TPE_SPACE = {"lr": {"distribution": "log_uniform", "low": 0.0003, "high": 0.3}, "momentum": [0.0, 0.9]}


def tpe_body(base=TPE_BASE, rounds=2, count=8, **extra) -> dict:
    return sweep_body(TPE_SPACE, base=base, search="tpe", count=count, search_seed=11, tpe={"rounds": rounds}, **extra)


def rounds_of(done: dict) -> list[list[dict]]:
    by_id = {e["job_id"]: e for e in done["leaderboard"]}
    return [[by_id[j] for j in r["members"]] for r in done["search_state"]["tpe"]["rounds"]]


def median(values: list[float]) -> float:
    values = sorted(values)
    return (values[(len(values) - 1) // 2] + values[len(values) // 2]) / 2


def test_every_tpe_round_is_found_by_its_tags(make_app):
    """A later round's members carry the sweep's and the base's tags, and `?tag=` finds them as it finds the first's."""
    app = make_app(workers=1).start()
    body = tpe_body(base={**TPE_BASE, "epochs": 3, "tags": {"model": "cubic"}}, count=2, tags={"team": "vision"})
    done = wait_sweep(app, submit_sweep(app, body)["id"])
    assert done["status"] == "succeeded" and done["progress"]["members"] == 4, done["progress"]
    later = {e["job_id"] for e in rounds_of(done)[1]}
    for tag in ("team:vision", "model:cubic"):
        found = {job["id"] for job in app.client.get("/v1/jobs", params={"tag": tag, "limit": 100}).json()["items"]}
        assert found == {e["job_id"] for e in done["leaderboard"]} and later <= found, tag


def test_tpe_moves_its_second_round_toward_the_better_results(server):
    done = wait_sweep(server, submit_sweep(server, tpe_body())["id"], timeout=300)
    assert done["status"] == "succeeded" and done["progress"]["members"] == 16, done["progress"]
    first, second = rounds_of(done)
    assert len(first) == len(second) == 8
    score = lambda e: e["val_loss"] if e["val_loss"] is not None else math.inf  # noqa: E731
    ordered = sorted(first, key=score)
    good, bad = ordered[:4], ordered[4:]
    log_lr = lambda entries: median([math.log(e["hyperparameters"]["lr"]) for e in entries])  # noqa: E731
    # round 1 tells which side of the lr range did better; round 2's lrs move to that side
    toward = 1 if log_lr(good) > log_lr(bad) else -1
    assert (log_lr(second) - log_lr(first)) * toward > 0, (log_lr(first), log_lr(second), log_lr(good))
    assert median([score(e) for e in second]) < median([score(e) for e in first])
    # round 2 differs from round 1, and a resubmitted search suggests exactly the same members
    assert {e["hyperparameters"]["lr"] for e in first}.isdisjoint({e["hyperparameters"]["lr"] for e in second})


@processes_only(prefer="postgresql")
def test_tpe_rounds_with_asha_inside_are_the_same_after_a_worker_sigkill(make_server):
    srv = make_server(workers=1, FITSERVE_CHECKPOINT_SECONDS="0.3", FITSERVE_LEASE_SECONDS="6",
                      FITSERVE_SWEEP_SECONDS="0.5").start()
    body = tpe_body(base={**TPE_BASE, "epochs": 2000}, count=6, asha={"min_epochs": 200, "reduction_factor": 2},
                    execution="batched")
    sweep = submit_sweep(srv, body)
    kill_workers_after(srv, sweep["id"], lambda state: "rungs" in state["tpe"]["rounds"][0])
    killed = wait_sweep(srv, sweep["id"], timeout=400)
    again = wait_sweep(srv, submit_sweep(srv, body)["id"], timeout=400)
    assert killed["status"] == again["status"] == "succeeded" and killed["progress"]["members"] == 12
    for got, want in zip(rounds_of(killed), rounds_of(again)):
        assert [e["hyperparameters"] for e in got] == [e["hyperparameters"] for e in want]
        assert [e["stop_reason"] for e in got] == [e["stop_reason"] for e in want]
    assert any(e["stop_reason"] for e in killed["leaderboard"])
    rungs = [r["rungs"] for r in killed["search_state"]["tpe"]["rounds"]]
    for r in rungs:  # members that diverged before a rung are not among its candidates
        assert len(r["1"]["kept"]) == max(1, len(r["1"]["values"]) // 2)


# ---------------------------------------------------------------- spaces over the architecture


def test_a_grid_over_hidden_widths_trains_each_shape_as_alone(server):
    done = wait_sweep(server, submit_sweep(server, sweep_body({"hidden": [[8], [24, 8]], "activation": ["relu", "tanh"]},
                                                             base={**CUBIC, "epochs": 40}, execution="batched"))["id"])
    assert done["status"] == "succeeded" and done["progress"]["succeeded"] == 4
    shapes = {(tuple(e["hyperparameters"]["hidden"]), e["hyperparameters"]["activation"]) for e in done["leaderboard"]}
    assert shapes == {((8,), "relu"), ((8,), "tanh"), ((24, 8), "relu"), ((24, 8), "tanh")}
    entry = next(e for e in done["leaderboard"] if e["hyperparameters"] == {"hidden": [24, 8], "activation": "tanh"})
    job = server.client.get(f"/v1/jobs/{entry['job_id']}").json()
    assert job["spec"]["model"]["hidden"] == [24, 8] and job["spec"]["model"]["activation"] == "tanh"
    alone = server.train({**CUBIC, "epochs": 40, "model": {**CUBIC["model"], "hidden": [24, 8], "activation": "tanh"}})
    assert entry["loss"] == pytest.approx(alone["metrics"]["loss"], rel=1e-3)


def test_asha_over_widths_decides_across_the_shape_groups(server):
    space = {**SPACE, "hidden": [[4], [16], [32]]}
    body = sweep_body(space, base=VALIDATED, search="asha", count=9, search_seed=2,
                      asha={"min_epochs": 5, "reduction_factor": 3})
    done = wait_sweep(server, submit_sweep(server, body)["id"])
    assert done["status"] == "succeeded" and done["progress"]["succeeded"] == 9
    assert len({tuple(e["hyperparameters"]["hidden"]) for e in done["leaderboard"]}) > 1
    rung = done["search_state"]["rungs"]["1"]
    assert set(rung["kept"]) | set(rung["pruned"]) == {e["job_id"] for e in done["leaderboard"]}
    best_kept = min(rung["values"][j] for j in rung["kept"])
    assert all(rung["values"][j] > best_kept for j in rung["pruned"])
    # a width none of whose members the rung kept: its batched run ends there, each member closed at the rung
    widths = {}
    for entry in done["leaderboard"]:
        widths.setdefault(tuple(entry["hyperparameters"]["hidden"]), []).append(entry["job_id"])
    ended = [ids for ids in widths.values() if not set(ids) & set(rung["kept"])]
    assert ended, widths  # groups train one after another: a later one meets the bar the first one set
    for job_id in (j for ids in ended for j in ids):
        job = server.client.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "succeeded" and (job["stopped_early_at"], job["stop_reason"]) == (5, "pruned at rung 1")
        assert [p["epoch"] for p in server.curve(job_id)] == [1, 2, 3, 4, 5]
        assert server.client.post(f"/v1/jobs/{job_id}/predict", json={"inputs": [[0.5]]}).status_code == 200


def test_pbt_refuses_a_space_over_the_architecture(server):
    body = pbt_body()
    body["space"] = {**body["space"], "hidden": [[8], [16]]}
    response = server.client.post("/v1/sweeps", json=body)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "space", "hidden"]


def test_asha_prunes_members_whose_shapes_train_alone(make_app):
    """Every member a shape of its own (K = 1 each): each rung's first decision sees one member and keeps it;
    a later member goes on only when it ranks no worse than the worst kept, else it stops at the rung."""
    app = make_app(workers=1).start()  # one worker: the shapes train one after another, in the members' order
    space = {"hidden": [[1], [2], [4], [8], [16], [32]]}
    body = sweep_body(space, base=VALIDATED, search="asha", count=4, search_seed=6,
                      asha={"min_epochs": 5, "reduction_factor": 3})
    done = wait_sweep(app, submit_sweep(app, body)["id"])
    assert done["status"] == "succeeded" and done["progress"]["succeeded"] == 4, done
    shapes = [tuple(e["hyperparameters"]["hidden"]) for e in done["leaderboard"]]
    assert len(set(shapes)) == 4, shapes  # no two members share a shape: every run is K = 1
    for entry in done["leaderboard"]:
        assert "asha rung by rung" in app.client.get(f"/v1/jobs/{entry['job_id']}").json()["execution"]
    curves = {e["job_id"]: {p["epoch"]: p["val_loss"] for p in app.curve(e["job_id"])} for e in done["leaderboard"]}
    pruned = 0
    for rung, epoch in (("1", 5), ("2", 15)):
        decision = done["search_state"]["rungs"][rung]
        assert decision["epoch"] == epoch and decision["kept"], decision
        for job_id, value in decision["values"].items():  # the values are the members' own curves at the rung
            assert value == pytest.approx(curves[job_id][epoch], rel=1e-6)
        bar = max(decision["values"][j] for j in decision["kept"])
        assert all(decision["values"][j] > bar for j in decision["pruned"]), decision
        for job_id in decision["pruned"]:
            pruned += 1
            job = app.client.get(f"/v1/jobs/{job_id}").json()
            assert job["status"] == "succeeded" and job["stopped_early_at"] == epoch, job
            assert job["stop_reason"] == f"pruned at rung {rung}"
            assert max(curves[job_id]) == epoch
    assert pruned >= 1  # a one-unit hidden layer ranks worse than the wider ones after it


def test_pbt_copies_the_most_accurate_members_into_the_least_accurate():
    request = {"search": "pbt", "search_seed": 0, "space": {"lr": [0.1, 0.2]}, "base": {"epochs": 20, "data": {}},
               "pbt": {"interval_epochs": 5, "quantile": 0.25},
               "objective": {"metric": "val_accuracy", "mode": "max"}}
    population = Population(SimpleNamespace(id="sweep", request=request), [])
    values = [("a", 0.5), ("b", 0.9), ("c", 0.7), ("d", 0.6)]
    history = {j: [{"epoch": 0, "source": None, "values": {"lr": 0.1}}] for j, _ in values}
    decision = population.decide(5, values, history)
    assert decision["ranked"] == ["b", "c", "d", "a"]
    assert [(c["source"], c["target"]) for c in decision["copies"]] == [("b", "a")]
