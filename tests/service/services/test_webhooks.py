"""Collecting webhook events from several processes at once (API processes scaled out) tells each event once."""

import threading
from concurrent.futures import ThreadPoolExecutor

from service.services.webhooks import collect_events
from tests.specs import tiny_regression


def test_collections_racing_each_other_record_each_event_once(make_app):
    srv = make_app(workers=0, FITSERVE_WEBHOOK_ALLOW_HOSTS="127.0.0.1", FITSERVE_WEBHOOK_POLL_SECONDS="60").start()
    notify = {"url": "http://127.0.0.1:9/hook", "events": ["started", "succeeded", "failed"]}
    ids = [srv.submit({**tiny_regression(), "notify": notify})["id"] for _ in range(40)]
    # they end as a worker would end them, all at once
    srv.query("UPDATE jobs SET status = 'succeeded', started_at = created_at, finished_at = created_at")

    def collect() -> None:
        while collect_events():
            pass

    with ThreadPoolExecutor(4) as pool:  # as four API processes' webhook threads; any error fails the test here
        for running in [pool.submit(collect) for _ in range(4)]:
            running.result(60)
    told = srv.query("SELECT job_id, event FROM webhook_deliveries ORDER BY job_id, event")
    assert told == [(job_id, event) for job_id in sorted(ids) for event in ("started", "succeeded")]
    assert srv.query("SELECT DISTINCT notified_status FROM jobs") == [("succeeded",)]


def test_the_deliverers_database_calls_run_on_threads_named_as_fitserves(make_app):
    """Its polls run on `fitserve-…` threads, never asyncio's `asyncio_N`: tests that count their own statements
    (`statements_run`) leave fitserve's threads out by that name, and a thread dump names who holds a connection."""
    from sqlalchemy import event

    from service.db import get_engine
    from tests.harness.calls import wait_until

    make_app(workers=0, FITSERVE_WEBHOOK_POLL_SECONDS="0.05").start()
    polled_on: set[str] = set()

    def listen(conn, cursor, statement, params, context, many):
        if "notified_status" in statement:
            polled_on.add(threading.current_thread().name)

    event.listen(get_engine(), "before_cursor_execute", listen)
    try:
        wait_until(lambda: len(polled_on) > 0, 30, "a webhook poll")
    finally:
        event.remove(get_engine(), "before_cursor_execute", listen)
    assert all(name.startswith("fitserve-") for name in polled_on), polled_on
