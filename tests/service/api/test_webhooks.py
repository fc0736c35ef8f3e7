"""Webhooks over HTTP: signed POSTs to a real receiver on loopback, retried with back-off and then failed, hosts
refused against SSRF at submit and again at delivery, deliveries readable by their owner alone."""

import hashlib
import hmac
import json
from datetime import datetime, timedelta
from itertools import pairwise

import pytest

from tests.conftest import as_, free_port, wait_until
from tests.specs import long_job, tiny_regression

BACKOFF, RETRY = 0.2, 4.0  # 4 s leaves room for three attempts when a busy machine starts the first late
# quick polls and retries; the receivers listen on 127.0.0.1, which only this setting lets webhooks reach
HOOKS = {"FITSERVE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1", "FITSERVE_WEBHOOK_POLL_SECONDS": "0.05",
         "FITSERVE_WEBHOOK_TIMEOUT_SECONDS": "1", "FITSERVE_WEBHOOK_BACKOFF_SECONDS": str(BACKOFF),
         "FITSERVE_WEBHOOK_RETRY_SECONDS": str(RETRY)}


def signed_by(secret: str, headers: dict, body: bytes) -> bool:
    """The README's check: HMAC-SHA256 of `<X-Fitserve-Timestamp>.<body>` under the secret, hex, after `sha256=`."""
    expected = hmac.new(secret.encode(), f"{headers['x-fitserve-timestamp']}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(headers["x-fitserve-signature"], f"sha256={expected.hexdigest()}")


def deliveries(srv, path: str, headers=None) -> list[dict]:
    response = srv.client.get(f"{path}/deliveries", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def ended(srv, path: str, count: int, headers=None) -> list[dict]:
    """The subject's deliveries once `count` of them are delivered or failed."""
    def done():
        items = deliveries(srv, path, headers)
        return items if len([d for d in items if d["status"] != "pending"]) >= count else None

    return wait_until(done, 60, f"{count} deliveries of {path} ended", srv.read_log)


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def test_a_finished_job_is_posted_signed_with_its_owners_secret_and_rotation_changes_the_key(keyed_app, receiver):
    srv, hook = keyed_app(workers=1, **HOOKS), receiver()
    alice, bob = as_(srv, "alice"), as_(srv, "bob")
    secret = srv.client.get("/v1/webhooks/secret", headers=alice).json()["secret"]
    assert srv.client.get("/v1/webhooks/secret", headers=alice).json()["secret"] == secret  # made once
    assert srv.client.get("/v1/webhooks/secret", headers=bob).json()["secret"] != secret

    notify = {"url": hook.url, "events": ["started", "succeeded"]}
    job = srv.client.post("/v1/jobs", json={**tiny_regression(epochs=20), "notify": notify}, headers=alice).json()
    assert job["notify"] == notify and "notify" not in job["spec"]  # beside the spec: weights files never hold it
    wait_until(lambda: len(hook.posts) == 2, 60, "a POST per event", srv.read_log)
    assert sorted(event for event, _ in hook.events()) == ["started", "succeeded"]
    for headers, body in hook.posts:
        assert signed_by(secret, headers, body) and headers["content-type"] == "application/json"
    told = dict(hook.events())["succeeded"]
    assert told["event"] == "succeeded" and told["job"]["id"] == job["id"] and told["job"]["status"] == "succeeded"
    assert told["job"]["metrics"]["loss"] == srv.client.get(f"/v1/jobs/{job['id']}", headers=alice).json()["metrics"]["loss"]

    items = ended(srv, f"/v1/jobs/{job['id']}", 2, alice)
    assert {d["id"] for d in items} == {headers["x-fitserve-delivery"] for headers, _ in hook.posts}
    assert all(d["status"] == "delivered" and [a["status_code"] for a in d["attempts"]] == [200] for d in items)
    assert srv.client.get(f"/v1/jobs/{job['id']}/deliveries", headers=bob).status_code == 404

    rotated = srv.client.post("/v1/webhooks/secret/rotate", headers=alice).json()["secret"]
    assert rotated != secret and srv.client.get("/v1/webhooks/secret", headers=alice).json()["secret"] == rotated
    second = srv.client.post("/v1/jobs", json={**tiny_regression(epochs=20), "notify": {"url": hook.url}}, headers=alice)
    wait_until(lambda: len(hook.posts) == 3, 60, "the second job's POST", srv.read_log)
    headers, body = hook.posts[-1]
    assert json.loads(body)["job"]["id"] == second.json()["id"]
    assert signed_by(rotated, headers, body) and not signed_by(secret, headers, body)


def test_a_sweep_tells_its_own_end_and_with_members_each_members(make_app, receiver):
    srv, hook = make_app(workers=1, **HOOKS).start(), receiver()  # keys off: the anonymous owner's secret signs
    body = {"name": "told", "base": tiny_regression(epochs=10), "space": {"lr": [0.01, 0.02]},
            "notify": {"url": hook.url, "events": ["started", "succeeded"], "members": True}}
    sweep = srv.client.post("/v1/sweeps", json=body)
    assert sweep.status_code == 201, sweep.text
    sweep = sweep.json()
    assert sweep["request"]["notify"]["members"] is True
    wait_until(lambda: len(hook.posts) == 6, 60, "the sweep's 2 POSTs and 2 of each member's", srv.read_log)
    secret = srv.client.get("/v1/webhooks/secret").json()["secret"]
    assert all(signed_by(secret, headers, raw) for headers, raw in hook.posts)
    told = [(event, "sweep" if "sweep" in data else "job") for event, data in hook.events()]
    assert sorted(told) == sorted([("started", "sweep"), ("succeeded", "sweep")] + [("started", "job"),
                                                                                    ("succeeded", "job")] * 2)
    end = next(data["sweep"] for event, data in hook.events() if "sweep" in data and event == "succeeded")
    assert end["id"] == sweep["id"] and end["status"] == "succeeded" and end["progress"]["succeeded"] == 2
    assert {d["event"] for d in ended(srv, f"/v1/sweeps/{sweep['id']}", 2)} == {"started", "succeeded"}
    member = sweep["leaderboard"][0]["job_id"]
    assert {d["event"] for d in ended(srv, f"/v1/jobs/{member}", 2)} == {"started", "succeeded"}


def test_an_owner_reads_no_other_owners_sweep_deliveries(keyed_app):
    srv = keyed_app(workers=0, FITSERVE_WEBHOOK_ALLOW_HOSTS="127.0.0.1")
    body = {"base": tiny_regression(), "space": {"lr": [0.01]}, "notify": {"url": "http://127.0.0.1:9/hook"}}
    sweep = srv.client.post("/v1/sweeps", json=body, headers=as_(srv, "alice")).json()
    assert deliveries(srv, f"/v1/sweeps/{sweep['id']}", as_(srv, "alice")) == []
    assert srv.client.get(f"/v1/sweeps/{sweep['id']}/deliveries", headers=as_(srv, "bob")).status_code == 404


def attempts_back_off(delivery: dict) -> list[dict]:
    """Its attempts, having checked that each retry waited its doubled back-off and that the one after the last
    would have started past the time to retry."""
    attempts = delivery["attempts"]
    for i, (earlier, later) in enumerate(pairwise(attempts)):
        assert when(later["started_at"]) - when(earlier["started_at"]) >= timedelta(seconds=BACKOFF * 2**i), attempts
    last = attempts[-1]
    next_try = when(last["started_at"]) + timedelta(seconds=last["seconds"] + BACKOFF * 2 ** (len(attempts) - 1))
    assert next_try > when(delivery["created_at"]) + timedelta(seconds=RETRY)
    assert delivery["status"] == "failed" and delivery["next_attempt_at"] is None and delivery["ended_at"]
    return attempts


def test_a_dead_receiver_is_retried_with_back_off_then_the_delivery_fails(make_app):
    srv = make_app(workers=1, **HOOKS).start()
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    job = srv.train({**tiny_regression(epochs=20), "notify": {"url": dead}})
    assert job["status"] == "succeeded"
    [delivery] = ended(srv, f"/v1/jobs/{job['id']}", 1)
    attempts = attempts_back_off(delivery)
    assert len(attempts) >= 3 and all(a["status_code"] is None and "ConnectError" in a["error"] for a in attempts)


def test_a_slow_receiver_is_cut_off_at_the_timeout_retried_then_failed(make_app, receiver):
    srv, slow = make_app(workers=1, **HOOKS).start(), receiver(delay=30)  # answers long after the 1 s timeout
    job = srv.train({**tiny_regression(epochs=20), "notify": {"url": slow.url}})
    [delivery] = ended(srv, f"/v1/jobs/{job['id']}", 1)
    attempts = attempts_back_off(delivery)
    assert len(attempts) >= 2 and len(slow.posts) == len(attempts)  # each attempt reached it, and was cut off
    assert all(a["status_code"] is None and "no answer within 1 s" in a["error"] and a["seconds"] < 1.5
               for a in attempts), attempts
    assert when(job["finished_at"]) < when(attempts[0]["started_at"]) + timedelta(seconds=1)


def test_a_receiver_that_holds_its_post_delays_no_training(make_app, receiver):
    """The job's `started` POST is held by its receiver, unanswered, while the job trains on and ends."""
    srv = make_app(workers=1, **{**HOOKS, "FITSERVE_WEBHOOK_TIMEOUT_SECONDS": "60"}).start()
    held = receiver(delay=120)
    job = srv.submit({**long_job(epochs=20_000), "notify": {"url": held.url, "events": ["started", "succeeded"]}})
    wait_until(lambda: held.posts, 60, "the started POST", srv.read_log)
    assert srv.client.get(f"/v1/jobs/{job['id']}").json()["status"] == "running"  # it came while the job trained
    done = srv.wait_for(job["id"])
    assert done["status"] == "succeeded" and held.answered == 0  # ended with its first POST still unanswered
    [started] = deliveries(srv, f"/v1/jobs/{job['id']}")[:1]
    assert started["event"] == "started" and started["attempts"] == []  # its first attempt is still under way
    held.release.set()
    items = {d["event"]: d for d in ended(srv, f"/v1/jobs/{job['id']}", 2)}
    assert [a["status_code"] for a in items["started"]["attempts"]] == [200]
    assert items["succeeded"]["status"] == "delivered"


@pytest.mark.parametrize("url, refused", [
    ("http://127.0.0.1:8080/hook", "127.0.0.1, a loopback address"),
    ("http://10.1.2.3/hook", "10.1.2.3, a private address"),
    ("http://169.254.169.254/latest/meta-data", "169.254.169.254, a link-local address"),
    ("http://[::ffff:127.0.0.1]/hook", "127.0.0.1, a loopback address"),
    ("http://224.0.0.1/hook", "224.0.0.1, a multicast address"),
    ("http://no-such-host.invalid/hook", "no-such-host.invalid"),
    ("ftp://example.com/hook", "http:// or https://"),
    ("http://user:secret@example.com/hook", "must not carry a user or password"),
])
def test_a_url_to_a_private_or_odd_host_is_a_422_naming_notify_url(make_app, url, refused):
    srv = make_app(workers=0).start()
    for path, body in (("/v1/jobs", {**tiny_regression(), "notify": {"url": url}}),
                       ("/v1/sweeps", {"base": tiny_regression(), "space": {"lr": [0.1]}, "notify": {"url": url}})):
        response = srv.client.post(path, json=body)
        assert response.status_code == 422, response.text
        [error] = response.json()["detail"]
        assert error["loc"] == ["body", "notify", "url"] and refused in error["msg"], error
    assert srv.query("SELECT count(*) FROM jobs") == [(0,)]


def test_the_allow_setting_opens_only_what_it_names_and_bad_events_are_422(make_app):
    srv = make_app(workers=0, FITSERVE_WEBHOOK_ALLOW_HOSTS="127.0.0.1, 192.168.7.0/24").start()
    for url in ("http://127.0.0.1:8080/hook", "http://192.168.7.9/hook", "https://93.184.215.14/hook"):
        assert srv.client.post("/v1/jobs", json={**tiny_regression(), "notify": {"url": url}}).status_code == 201
    for url in ("http://127.0.0.2/hook", "http://192.168.8.1/hook", "http://[::1]/hook"):
        response = srv.client.post("/v1/jobs", json={**tiny_regression(), "notify": {"url": url}})
        assert response.status_code == 422 and "FITSERVE_WEBHOOK_ALLOW_HOSTS" in response.text, response.text
    for events in (["finished"], [], ["succeeded", "succeeded"]):
        response = srv.client.post("/v1/jobs", json={**tiny_regression(), "notify": {"url": "http://127.0.0.1/", "events": events}})
        assert response.status_code == 422 and response.json()["detail"][0]["loc"][:3] == ["body", "notify", "events"]


def test_a_host_allowed_at_submit_is_checked_again_at_delivery(make_app, receiver):
    hook = receiver()
    submitter = make_app(workers=0, **HOOKS).start()
    job = submitter.submit({**tiny_regression(epochs=5), "notify": {"url": hook.url}})
    submitter.stop()
    strict = {**HOOKS, "FITSERVE_WEBHOOK_ALLOW_HOSTS": ""}  # the setting changed since: loopback is refused now
    srv = make_app(workers=1, **strict).start()
    assert srv.wait_for(job["id"])["status"] == "succeeded"
    [delivery] = ended(srv, f"/v1/jobs/{job['id']}", 1)
    assert delivery["status"] == "failed" and hook.posts == []
    assert all("a loopback address" in a["error"] for a in delivery["attempts"])
