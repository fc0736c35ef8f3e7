"""The client's and the CLI's webhook helpers against a real served process that delivers to a receiver on loopback:
the signing secret read and rotated, and the delivery log of a job and of a sweep."""

import asyncio
import os
import time

import pytest

from fitserve.client import ApiError, AsyncClient, Client
from tests.conftest import module_server, run_fitserve, wait_until
from tests.specs import tiny_regression

# the receivers listen on 127.0.0.1, which only this setting lets webhooks reach; quick polls and retries
HOOKS = {"FITSERVE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1", "FITSERVE_WEBHOOK_POLL_SECONDS": "0.05",
         "FITSERVE_WEBHOOK_TIMEOUT_SECONDS": "1", "FITSERVE_WEBHOOK_BACKOFF_SECONDS": "0.2",
         "FITSERVE_WEBHOOK_RETRY_SECONDS": "4"}


@pytest.fixture(scope="module")
def hooked(tmp_path_factory, databases):
    srv = module_server(tmp_path_factory, databases, "client_hooks", workers=1, **HOOKS).start()
    srv.env["FITSERVE_URL"] = str(srv.client.base_url)  # for the CLI's processes
    yield srv
    srv.stop()


@pytest.fixture
def client(hooked):
    with Client(str(hooked.client.base_url)) as fs:
        yield fs


def test_the_secret_is_read_the_same_until_rotated_by_the_client_or_the_cli(client, hooked):
    first = client.webhook_secret()
    assert client.webhook_secret() == first
    rotated = client.rotate_webhook_secret()
    assert rotated.secret != first.secret and client.webhook_secret() == rotated
    shown = run_fitserve(hooked, "webhook-secret")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == rotated.secret and "in use since" in shown.stderr
    again = run_fitserve(hooked, "webhook-secret", "--rotate")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() not in (rotated.secret, "") and client.webhook_secret().secret == again.stdout.strip()


def test_a_jobs_deliveries_with_their_attempts_through_the_client_and_the_cli(client, hooked, receiver):
    ok, refusing = receiver(), receiver(status=500)
    job = client.submit({**tiny_regression(epochs=5), "notify": {"url": ok.url, "events": ["started", "succeeded"]}})
    failing = client.submit({**tiny_regression(epochs=5), "notify": {"url": refusing.url, "events": ["succeeded"]}})
    delivered = lambda: [d for d in client.deliveries(job) if d.status == "delivered"]
    done = wait_until(lambda: len(delivered()) == 2 and delivered(), 60, "both events delivered")
    assert [d.event for d in done] == ["started", "succeeded"]
    assert all(d.attempts[-1].status_code == 200 and d.attempts[-1].error is None for d in done)
    given_up = lambda: [d for d in client.deliveries(failing) if d.status == "failed"]
    refused = wait_until(given_up, 60, "the refused delivery given up")
    assert len(refused[0].attempts) >= 2 and all(a.status_code == 500 for a in refused[0].attempts)
    listed = run_fitserve(hooked, "deliveries", failing.id)
    assert listed.returncode == 0, listed.stderr
    row = listed.stdout.splitlines()[1].split()
    assert row[2:6] == ["succeeded", "failed", str(len(refused[0].attempts)), "500"] and refused[0].id in row
    with pytest.raises(ValueError, match="one of them"):
        client.deliveries()
    with pytest.raises(ApiError) as missing:
        client.deliveries("0" * 32)
    assert missing.value.status_code == 404
    assert run_fitserve(hooked, "deliveries", "0" * 32).returncode == 3


def test_a_sweeps_own_deliveries_through_the_async_client_and_the_cli(hooked, receiver):
    hook = receiver()
    request = {"base": tiny_regression(epochs=5), "space": {"lr": [0.01, 0.05]},
               "notify": {"url": hook.url, "events": ["succeeded"]}}

    async def run() -> list:
        async with AsyncClient(str(hooked.client.base_url)) as fs:
            sweep = await fs.submit_sweep(request)
            deadline = time.monotonic() + 60  # the sweep's end, then its delivery, come once the members are done
            while time.monotonic() < deadline:
                found = await fs.deliveries(sweep_id=sweep.id)
                if found and found[0].status == "delivered":
                    return sweep.id, found
                await asyncio.sleep(0.05)
            raise AssertionError("no delivered event of the sweep within 60 s")

    sweep_id, found = asyncio.run(run())
    assert [d.event for d in found] == ["succeeded"] and found[0].attempts[0].status_code == 200
    listed = run_fitserve(hooked, "deliveries", sweep_id, "--sweep")
    assert listed.returncode == 0, listed.stderr
    assert found[0].id in listed.stdout and "delivered" in listed.stdout
    assert os.environ.get("FITSERVE_URL") != hooked.env["FITSERVE_URL"]  # the CLI spoke to this module's server
