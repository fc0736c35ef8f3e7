"""Uploads within budgets: NPZ headers are read before anything is inflated, CSV is parsed as a capped stream,
and one owner's uploads in flight are capped."""

import io
import socket
import threading
import time
import zipfile

import numpy as np
import pytest

from tests.conftest import Server, module_server, wait_until
from tests.service.api.test_intake import LATENCY_BOUND, Watcher, from_address, proc_status_bytes, reset_peak_rss

MAX_ROWS, MAX_COLUMNS = 100_000, 50
RSS_GROWTH_BOUND = 60 * 2**20


@pytest.fixture(scope="module")
def uploads(tmp_path_factory, databases):
    srv = module_server(
        tmp_path_factory, databases, "uploads",
        FITSERVE_MAX_DATASET_ROWS=str(MAX_ROWS),
        FITSERVE_MAX_DATASET_COLUMNS=str(MAX_COLUMNS),
        FITSERVE_MAX_UPLOADS_PER_OWNER="1",
    )
    srv.keys = {"alice": srv.create_key("alice"), "bob": srv.create_key("bob")}
    yield srv.start()
    srv.stop()


def npz_bomb(header_shape: tuple[int, ...], zeros: int) -> bytes:
    """An NPZ whose x declares `header_shape` (float32) and holds `zeros` zero bytes, deflated; y is small."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": header_shape})
            chunk = bytes(2**20)
            for start in range(0, zeros, len(chunk)):
                member.write(chunk[: min(len(chunk), zeros - start)])
        with archive.open("y.npy", "w") as member:
            np.lib.format.write_array(member, np.zeros(10, np.float32))
    return buf.getvalue()


def upload_as(srv: Server, address: str, who: str, content: bytes, filename: str, **form):
    with from_address(srv, address, who) as client:
        return client.post("/v1/datasets", files={"file": (filename, content)}, data=form)


def attack_and_watch(srv: Server, attack) -> tuple[object, int, float]:
    """(what `attack()` returned, the API's peak memory growth, bob's slowest GET or /healthz meanwhile)."""
    baseline = reset_peak_rss(srv.proc.pid)
    with from_address(srv, "127.0.0.9", "bob") as bob, Watcher(bob) as watcher:
        result = attack()
    assert watcher.codes == {200}
    return result, proc_status_bytes(srv.proc.pid, "VmHWM") - baseline, max(watcher.latencies)


def test_an_npz_zip_bomb_is_refused_from_its_header(uploads):
    bomb = npz_bomb((50_000_000, 1), 200_000_000)  # 200 MB of float32 zeros, ~200 KB deflated
    assert len(bomb) < 400_000
    started = time.monotonic()
    response, growth, slowest = attack_and_watch(uploads, lambda: upload_as(uploads, "127.0.0.2", "alice", bomb, "b.npz"))
    assert response.status_code == 413, response.text
    assert "FITSERVE_MAX_DATASET_ROWS" in response.json()["detail"]
    assert time.monotonic() - started < 5
    assert growth < RSS_GROWTH_BOUND, growth / 2**20
    assert slowest < LATENCY_BOUND, slowest


def test_an_npz_whose_archive_inflates_past_its_header_is_refused(uploads):
    liar = npz_bomb((10, 1), 100_000_000)  # a 10-row header, then 100 MB more
    response = upload_as(uploads, "127.0.0.2", "alice", liar, "liar.npz")
    assert response.status_code == 422, response.text
    assert "inflates to" in response.json()["detail"][0]["msg"]


def test_a_csv_with_too_many_rows_is_413_as_it_streams(uploads):
    big = b"a,b,y\n" + b"0.5,1.5,2.5\n" * 1_500_000  # 18 MB, 15x the row budget
    response, growth, slowest = attack_and_watch(
        uploads, lambda: upload_as(uploads, "127.0.0.2", "alice", big, "big.csv", target="y")
    )
    assert response.status_code == 413, response.text
    assert "FITSERVE_MAX_DATASET_ROWS" in response.json()["detail"]
    assert growth < RSS_GROWTH_BOUND, growth / 2**20
    assert slowest < LATENCY_BOUND, slowest


@pytest.mark.parametrize(
    "content,needle",
    [
        (",".join(f"c{i}" for i in range(MAX_COLUMNS + 1)).encode() + b"\n", "FITSERVE_MAX_DATASET_COLUMNS"),
        (b"a," + b"1" * 10_000_000 + b"\n", "longer than"),
    ],
    ids=["too-many-columns", "one-endless-line"],
)
def test_a_csv_too_wide_is_413_naming_the_limit(uploads, content, needle):
    response = upload_as(uploads, "127.0.0.2", "alice", content, "wide.csv", target="c0")
    assert response.status_code == 413, response.text
    assert needle in response.json()["detail"]


def test_an_owner_has_one_upload_in_flight_and_others_are_not_held_up(uploads):
    small = b"a,y\n1,2\n2,4\n"
    # the module's earlier tests may still be ending an upload of alice's on the server: one of hers accepted now
    # (one slot) shows none is left in flight before the slow one takes the slot
    wait_until(lambda: upload_as(uploads, "127.0.0.3", "alice", small, "s.csv", target="y").status_code == 201, 10,
               "alice's earlier uploads ended")
    head = (
        b"POST /v1/datasets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 50000000\r\n\r\n--xyz\r\n"
    ) % uploads.keys["alice"].encode()
    slow = socket.create_connection((uploads.client.base_url.host, uploads.client.base_url.port), timeout=10)
    slow.sendall(head)  # an upload that never finishes sending holds alice's one slot
    try:
        deadline = time.monotonic() + 10
        while (second := upload_as(uploads, "127.0.0.3", "alice", small, "s.csv", target="y")).status_code != 429:
            assert second.status_code == 201 and time.monotonic() < deadline, second.text
        assert "FITSERVE_MAX_UPLOADS_PER_OWNER" in second.json()["detail"] and int(second.headers["retry-after"]) >= 1
        assert upload_as(uploads, "127.0.0.4", "bob", small, "s.csv", target="y").status_code == 201
    finally:
        slow.close()
    deadline = time.monotonic() + 10
    while (after := upload_as(uploads, "127.0.0.3", "alice", small, "s.csv", target="y")).status_code == 429:
        assert time.monotonic() < deadline, "the slot was not given back when the client left"
        time.sleep(0.1)
    assert after.status_code == 201, after.text


def test_uploads_at_once_never_answer_500(uploads):
    rows = b"a,b,y\n" + b"0.5,1.5,2.5\n" * 90_000
    codes: list[int] = []

    def one(address: str, who: str) -> None:
        codes.append(upload_as(uploads, address, who, rows, "r.csv", target="y").status_code)

    threads = [threading.Thread(target=one, args=(f"127.0.1.{i}", who)) for i, who in enumerate(["alice", "bob"] * 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(codes) <= {201, 429} and 201 in codes, codes
