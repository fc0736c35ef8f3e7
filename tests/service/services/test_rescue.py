"""service/services/rescue.py: what a lost or handed-back attempt costs a job, and what a failed job says."""

from __future__ import annotations

from datetime import timedelta

from service.db import session_scope
from service.models import Job, utcnow
from service.services.rescue import rescue
from service.settings import get_settings
from tests.specs import tiny_regression
from workers.claims import claim
from workers.ledger import YIELDED, Ledger, Member


def claimed(srv, worker_id: str) -> Job:
    [job] = claim(worker_id, get_settings())
    return job


def expire_lease(srv, job_id: str) -> None:
    with session_scope() as s:
        s.query(Job).filter(Job.id == job_id).update({"lease_expires_at": utcnow() - timedelta(seconds=1)})


def job_row(srv, job_id: str) -> dict:
    return srv.client.get(f"/v1/jobs/{job_id}").json()


def test_hand_backs_and_expired_leases_do_not_spend_attempts_a_dying_worker_does(make_app):
    """max_attempts 2: two hand-backs at shutdown and an expired lease cost nothing; the worker process dying under
    the job twice fails it, and the error names every attempt's cause in order."""
    srv = make_app(workers=0, FITSERVE_MAX_ATTEMPTS="2").start()
    job_id = srv.submit(tiny_regression(epochs=5))["id"]
    for attempt in (1, 2):
        job = claimed(srv, f"worker-{attempt}")
        assert job.id == job_id and job.attempt == attempt
        Ledger(f"worker-{attempt}").hand_back([Member.of(job)])  # SIGTERM: stopped at a step, handed back
    claimed(srv, "worker-3")
    expire_lease(srv, job_id)
    assert rescue("lease expired", counted=False) == [job_id]
    row = job_row(srv, job_id)
    assert (row["status"], row["attempt"], row["interruptions"]) == ("queued", 3, 3)

    claimed(srv, "worker-4")
    rescue("worker process died (exit code -9)", "worker-4")
    assert job_row(srv, job_id)["status"] == "queued"  # one counted attempt of 2
    claimed(srv, "worker-5")
    rescue("worker process died (exit code -9)", "worker-5")
    row = job_row(srv, job_id)
    assert (row["status"], row["attempt"], row["interruptions"]) == ("failed", 5, 3)
    assert row["error"] == (
        "worker process died (exit code -9): out of attempts after its last counted attempt (attempts "
        "1: handed back at shutdown (not counted); 2: handed back at shutdown (not counted); "
        "3: lease expired (not counted); 4: worker process died (exit code -9); 5: worker process died (exit code -9))"
    )


def test_a_job_whose_worker_keeps_dying_says_so_as_before(make_app):
    """The same cause each time reads as before; a death found by the maintenance loop (no exit code) before the
    pool reaped it reads alike, with each attempt's cause."""
    srv = make_app(workers=0, FITSERVE_MAX_ATTEMPTS="2").start()
    job_id = srv.submit(tiny_regression(epochs=5))["id"]
    for attempt in (1, 2):
        claimed(srv, f"worker-{attempt}")
        rescue("worker process died (exit code -9)", f"worker-{attempt}")
    row = job_row(srv, job_id)
    assert row["status"] == "failed" and row["error"] == "worker process died (exit code -9) on each of its attempts"

    job_id = srv.submit(tiny_regression(epochs=5))["id"]
    for attempt, reason in ((1, "worker process died"), (2, "worker process died (exit code -9)")):
        claimed(srv, f"worker-{attempt + 2}")
        rescue(reason, f"worker-{attempt + 2}")
    assert job_row(srv, job_id)["error"] == ("worker process died (exit code -9) on each of its attempts "
                                             "(1: worker process died; 2: worker process died (exit code -9))")


def test_a_job_interrupted_past_the_budget_fails_naming_the_causes(make_app):
    """Expired leases are not the job's fault, but a job that takes its host down every time must end: after
    FITSERVE_MAX_INTERRUPTIONS it fails."""
    srv = make_app(workers=0, FITSERVE_MAX_INTERRUPTIONS="3").start()
    job_id = srv.submit(tiny_regression(epochs=5))["id"]
    for attempt in (1, 2, 3):
        claimed(srv, f"worker-{attempt}")
        expire_lease(srv, job_id)
        rescue("lease expired", counted=False)
    row = job_row(srv, job_id)
    assert (row["status"], row["attempt"]) == ("failed", 3)
    assert row["error"] == ("lease expired: out of attempts after its 3 interruptions (attempts 1: lease expired "
                            "(not counted); 2: lease expired (not counted); 3: lease expired (not counted))")


def test_turns_given_up_do_not_count_as_interruptions(make_app):
    """A long job that gave its worker to other owners many times (workers/run.py: FITSERVE_YIELD_SECONDS) is not
    failed by the next expired lease: FITSERVE_MAX_INTERRUPTIONS counts only interruptions that were not turns."""
    srv = make_app(workers=0, FITSERVE_MAX_INTERRUPTIONS="2").start()
    job_id = srv.submit(tiny_regression(epochs=5))["id"]
    for attempt in (1, 2, 3):
        job = claimed(srv, f"worker-{attempt}")
        Ledger(f"worker-{attempt}").hand_back([Member.of(job)], YIELDED, yielded=True)
    claimed(srv, "worker-4")
    expire_lease(srv, job_id)
    rescue("lease expired", counted=False)
    row = job_row(srv, job_id)
    assert (row["status"], row["attempt"], row["interruptions"], row["yields"]) == ("queued", 4, 4, 3)
    claimed(srv, "worker-5")
    expire_lease(srv, job_id)
    rescue("lease expired", counted=False)  # the second that was not a turn: the budget of 2 is spent
    row = job_row(srv, job_id)
    assert row["status"] == "failed" and "(not counted); 4: lease expired" in row["error"], row["error"]
