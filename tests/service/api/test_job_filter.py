"""`GET /v1/jobs?filter=`: params, metrics, tags and status terms over HTTP, with the other filters, sorts and
cursors; other owners' jobs never matched; parse errors and injection attempts answered with a 422 or nothing."""

import pytest

from tests.conftest import as_
from tests.service.api.test_search import listed, submit, wait_done
from tests.service.api.test_sweeps import submit_sweep, sweep_body, wait_sweep
from tests.specs import tiny_regression

# alice's four jobs (name: optimizer, lr, epochs, tags); bob's one would match most filters, and must not
JOBS = {
    "a": ("sgd", 0.05, 5, {"team": "vision"}),
    "b": ("adam", 0.01, 5, {"team": "nlp"}),
    "c": ("adam", 0.001, 3, {"team": "vision", "my.key": "x"}),
    "d": ("sgd", 0.2, 4, {}),
}


def spec(name: str, kind: str, lr: float, epochs: int, tags: dict) -> dict:
    return tiny_regression(name=name, epochs=epochs, optimizer={"kind": kind, "lr": lr}, tags=tags)


@pytest.fixture
def trained(keyed_app):
    """An app with alice's four jobs and bob's one, all trained; returns (app, alice's jobs by name)."""
    srv = keyed_app()
    ids = {name: submit(srv, "alice", spec(name, *job))["id"] for name, job in JOBS.items()}
    bob = submit(srv, "bob", spec("bob's", "adam", 0.01, 3, {"team": "vision", "my.key": "x"}))["id"]
    wait_done(srv, "bob", [bob])
    done = wait_done(srv, "alice", list(ids.values()))
    return srv, {job["name"]: job for job in done}


def names(srv, jobs: dict, who: str = "alice", **params) -> set[str]:
    by_id = {job["id"]: name for name, job in jobs.items()}
    found = listed(srv, who, **params)
    assert set(found) <= set(by_id), "a job not alice's was matched"
    return {by_id[job_id] for job_id in found}


def test_params_terms_compare_the_spec_by_dotted_path(trained):
    srv, jobs = trained
    for text, expected in (
        ("params.optimizer.kind = 'adam'", {"b", "c"}),
        ("params.optimizer.lr > 0.01", {"a", "d"}),
        ("params.optimizer.lr >= 0.01 and params.optimizer.kind = 'adam'", {"b"}),
        ("params.optimizer.lr <= 0.01", {"b", "c"}),
        ("params.optimizer.lr < 1e-2", {"c"}),
        ("params.optimizer.lr = 0.05", {"a"}),
        ("params.optimizer.lr != 0.05", {"b", "c", "d"}),
        ("params.epochs in (3, 4)", {"c", "d"}),
        ('params.optimizer.kind in ("sgd", "rmsprop")', {"a", "d"}),
        ("params.model.in_features = 1 AND params.data.generator = 'linear'", {"a", "b", "c", "d"}),
        ("params.optimizer.kind = 1", set()),  # a number never equals the spec's text
        ("params.optimizer.lr = '0.05'", set()),  # nor a string its number
        ("params.optimizer.lr.deeper = 1", set()),
        ("params.no.such.key > 0", set()),
    ):
        assert names(srv, jobs, filter=text) == expected, text


def test_metrics_and_status_terms(trained):
    srv, jobs = trained
    losses = sorted(job["metrics"]["loss"] for job in jobs.values())
    middle = (losses[1] + losses[2]) / 2
    low = {name for name, job in jobs.items() if job["metrics"]["loss"] < middle}
    assert len(low) == 2
    assert names(srv, jobs, filter=f"metrics.loss < {middle!r}") == low
    assert names(srv, jobs, filter=f"metrics.loss >= {middle!r}") == set(jobs) - low
    assert names(srv, jobs, filter="metrics.loss > -1 and metrics.accuracy > -1") == set()  # no accuracy, regression
    assert names(srv, jobs, filter="metrics.val_loss < 1e9") == set()  # no validation split
    assert names(srv, jobs, filter="status = 'succeeded'") == set(jobs)
    assert names(srv, jobs, filter="status in ('queued', 'running')") == set()
    assert names(srv, jobs, filter="status != 'succeeded'") == set()


def test_tags_terms(trained):
    srv, jobs = trained
    assert names(srv, jobs, filter="tags.team = 'vision'") == {"a", "c"}
    assert names(srv, jobs, filter="tags.team != 'vision'") == {"b"}  # only jobs with the tag, as MLflow's
    assert names(srv, jobs, filter="tags.team in ('nlp', 'none')") == {"b"}
    assert names(srv, jobs, filter="tags.`my.key` = 'x' and tags.team = 'vision'") == {"c"}
    assert names(srv, jobs, filter="tags.team = 'vision' and params.optimizer.kind = 'sgd'") == {"a"}


def test_filter_combines_with_tag_name_status_sort_and_cursor(trained):
    srv, jobs = trained
    adam = "params.optimizer.kind = 'adam'"
    assert names(srv, jobs, filter=adam, tag="team:vision") == {"c"}
    assert names(srv, jobs, filter="params.optimizer.lr < 1", name="B") == {"b"}
    assert names(srv, jobs, filter=adam, status="queued") == set()
    newest_first = [name for name, _ in sorted(jobs.items(), key=lambda item: item[1]["created_at"], reverse=True)]
    one_by_one = listed(srv, filter="params.epochs > 0", limit=1)  # a cursor page after page
    assert [jobs[name]["id"] for name in newest_first] == one_by_one
    by_loss = listed(srv, filter="params.epochs >= 4", sort="loss", limit=1)
    expected = sorted((job["metrics"]["loss"], job["id"]) for name, job in jobs.items() if name != "c")
    assert by_loss == [job_id for _, job_id in expected]


def test_other_owners_jobs_are_never_matched(trained):
    srv, jobs = trained
    bobs = listed(srv, "bob", filter="tags.`my.key` = 'x' and params.optimizer.kind = 'adam'")
    assert len(bobs) == 1 and bobs[0] not in {job["id"] for job in jobs.values()}
    assert names(srv, jobs, filter="params.epochs = 3") == {"c"}  # bob's has 3 epochs too


def problem(srv, text: str) -> str:
    """The 422's message for `?filter=text`, which names the filter."""
    response = srv.client.get("/v1/jobs", params={"filter": text}, headers=as_(srv, "alice"))
    assert response.status_code == 422, (text, response.text)
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["query", "filter"], detail
    return detail["msg"]


def test_parse_errors_are_422_naming_the_token_and_its_position(keyed_app):
    srv = keyed_app(workers=0)
    assert "at 24, 'or'" in problem(srv, "params.optimizer.lr > 0 or status = 'queued'")
    assert "at 0, 'lr'" in problem(srv, "lr > 0.01")
    assert "at 22, 'end of filter'" in problem(srv, "params.optimizer.lr > ")
    assert "at 15, '~'" in problem(srv, "metrics.loss < ~1")
    assert "at 21, ')'" in problem(srv, "status in ('queued', )")
    assert "at 0, 'tags'" in problem(srv, "tags.team > 'a'")  # strings compare with = != in only
    assert "at 0, 'status'" in problem(srv, "status = 'done'")
    assert "at 0, 'metrics'" in problem(srv, "metrics.loss = 'low'")
    assert "terms" in problem(srv, " and ".join(["params.epochs > 0"] * 21))
    assert "2000" in problem(srv, "params.epochs > " + "1" * 2000)  # FastAPI's own length check, naming filter


def test_injection_attempts_are_refused_or_match_nothing(trained):
    srv, jobs = trained
    for text in (
        "tags.team = 'x'' OR ''1''=''1'",
        "tags.team = 'vision''; DROP TABLE jobs; --'",
        "params.optimizer.kind = 'adam'' OR 1=1 --'",
        "params.select.from.where = 1",
        "params.drop.table.jobs = 'x'",
        "metrics.select = 1",
        "tags.`select` in ('1', '2')",
    ):
        assert names(srv, jobs, filter=text) == set(), text
    for text, token in (
        ("params.optimizer.kind = 'adam'; DROP TABLE jobs", "';'"),
        ("params.`kind') OR 1=1 --` = 1", "'params'"),  # params names are plain names or indexes
        ("tags.`team' OR '1'='1` = 'x'", "'tags'"),  # a tag key's characters only
        ("status = 'queued' --", "'-'"),
        ("params.optimizer.kind = \"adam\" /* */", "'/'"),
    ):
        assert token in problem(srv, text), text
    assert len(listed(srv)) == 4  # the table is whole



def test_sweep_members_and_a_tpe_sweeps_later_round_are_found_by_their_params(make_app):
    """Each way a job is made writes its job_params rows: a sweep's members, and TPE's later rounds."""
    srv = make_app(workers=1).start()  # keys off: the anonymous owner's jobs
    space = {"lr": {"distribution": "log_uniform", "low": 0.001, "high": 0.1}}
    body = sweep_body(space, base=tiny_regression(epochs=3), search="tpe", count=2, tpe={"rounds": 2})
    done = wait_sweep(srv, submit_sweep(srv, body)["id"])
    assert done["status"] == "succeeded" and len(done["leaderboard"]) == 4, done["progress"]
    for entry in done["leaderboard"]:
        lr = entry["hyperparameters"]["lr"]
        found = srv.client.get("/v1/jobs", params={"filter": f"params.optimizer.lr = {lr!r}"}).json()["items"]
        assert [job["id"] for job in found] == [entry["job_id"]], lr
