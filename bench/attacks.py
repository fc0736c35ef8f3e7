"""Issue 29's attacks on the HTTP layer, replayed on a real `fitserve serve --workers 1`, before and after.

Each attack runs while a baseline client polls `/healthz` on a kept-alive connection; for each the table gives
what the attacker got, how long it took, the API's resident memory after it and its peak during it, and the
baseline client's worst latency. The attacks:

- header: one `GET /v1/jobs` without a key whose header value is 128 MB (sent until the server closes).
- slow: SLOW connections each sending a header line every 2 s, for up to 40 s: how many the server closed.
- flood: FLOOD idle connections opened at once: how many were refused (503) at once.
- outputs: v2 `infer` of 10,000 rows with `"outputs": [{"name": "probabilities"}] * 400`.
- shared address: 20 wrong keys from one address, then a right key from it; and 60 wrong keys each "forwarded
  for" another address from loopback.
- slow bodies: SLOW connections with a right key, each sending 10 bytes of a 1,000-byte body and then nothing,
  for up to 40 s: how many the server closed (FITSERVE_BODY_TIMEOUT_SECONDS, 30 by default).
- gzip bomb: `POST /v1/jobs` with a 1 MiB gzip body that inflates to 1 GiB (`Content-Encoding: gzip`).
- one address: FLOOD connections opened at once from one address (127.0.0.6), while the baseline's is another:
  how many were refused (429 past FITSERVE_MAX_CONNECTIONS_PER_ADDRESS, 503 past FITSERVE_MAX_CONNECTIONS).
- storage budget: an owner uploads 1 MiB data sets until refused (the run's FITSERVE_MAX_STORED_BYTES_PER_OWNER
  is BUDGET_MIB), then another owner submits a job.
- full disk: owners upload 1 MiB data sets until a write is refused (the run's FITSERVE_DB_MAX_BYTES caps the
  SQLite file at DB_CAP_MIB, as a full disk would); then a read, a delete of one upload, and the write again.

`--before REV` serves that commit from a temporary git worktree first, in the same run (the baseline).

    .venv/bin/python -m bench.attacks [--before REV] [--slow 1000] [--flood 1500]
"""

from __future__ import annotations

import argparse
import gzip
import socket
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.common import ROOT, Service, header, load_average, print_table

HEADER_BYTES = 128 * 1024 * 1024
BUDGET_MIB, DB_CAP_MIB = 8, 40  # the storage limits the run serves with: an owner's budget, the file's cap
ROWS = "".join(f"{i % 97}.25,{i % 89}.5,{i % 83}.75\n" for i in range(60_000)).encode()
ROWS = ROWS[: ROWS.rindex(b"\n", 0, 2**20) + 1]  # whole rows, about 1 MiB
CHUNK = b"a" * (1024 * 1024)
CLASSIFIER = {
    "model": {"kind": "mlp", "in_features": 2, "hidden": [8], "out_features": 3},
    "task": "classification",
    "data": {"source": "synthetic", "generator": "blobs", "clusters": [
        {"mean": [4, 4], "std": 1, "n": 50}, {"mean": [-4, -4], "std": 1, "n": 50}, {"mean": [4, -4], "std": 1, "n": 50},
    ]},
    "loss": "cross_entropy",
    "optimizer": {"kind": "sgd", "lr": 0.05},
    "epochs": 20,
}


def memory(pid: int, field: str) -> int:
    """VmRSS or VmHWM of a process, in MiB."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) // 1024


class Baseline:
    """Another client polling /healthz on one kept-alive connection; `worst` is its slowest answer (or timeout)."""

    def __init__(self, svc: Service):
        self.client = httpx.Client(base_url=svc.client.base_url, timeout=120)
        self.stop, self.worst, self.failed = threading.Event(), 0.0, 0
        self.thread = threading.Thread(target=self.poll, daemon=True)

    def poll(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                self.client.get("/healthz").raise_for_status()
            except httpx.HTTPError:
                self.failed += 1
            self.worst = max(self.worst, time.monotonic() - started)
            self.stop.wait(0.05)

    def __enter__(self) -> Baseline:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.client.close()


@contextmanager
def measured(svc: Service, rows: list, name: str):
    """Runs an attack under the baseline poller and adds its row to `rows`; the attack puts what it got in
    `result["got"]`."""
    pid = svc.proc.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak resident memory counted from here
    result = {"got": ""}
    started = time.monotonic()
    with Baseline(svc) as baseline:
        yield result
    took = time.monotonic() - started
    worst = f"{baseline.worst:.3f}" + (f" ({baseline.failed} failed)" if baseline.failed else "")
    rows.append([name, result["got"], took, memory(pid, "VmRSS"), memory(pid, "VmHWM"), worst])


def connect(svc: Service, timeout: float = 120) -> socket.socket:
    return socket.create_connection(("127.0.0.1", svc.port), timeout=timeout)


def status_of(answer: bytes) -> str:
    return answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else "closed"


def huge_header(svc: Service, result: dict) -> None:
    sent = 0
    with connect(svc) as sock:
        sock.sendall(b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            while sent < HEADER_BYTES:
                sock.sendall(CHUNK)
                sent += len(CHUNK)
            sock.sendall(b"\r\n\r\n")
            answer = sock.recv(4096)
        except OSError:
            answer = b""
    result["got"] = f"{status_of(answer)} after {sent // 2**20} MiB sent"


def slow_connections(svc: Service, result: dict, count: int) -> None:
    socks = []
    for _ in range(count):
        sock = connect(svc, timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        socks.append(sock)
    open_ = set(range(count))
    deadline = time.monotonic() + 40
    while open_ and time.monotonic() < deadline:
        for i in list(open_):
            try:
                socks[i].sendall(b"X-Slow: 1\r\n")
            except OSError:
                open_.discard(i)
        time.sleep(2)  # the attacker's pace, not a wait for the server
    for sock in socks:
        sock.close()
    result["got"] = f"{count - len(open_)} of {count} closed by the server"


def flood(svc: Service, result: dict, count: int) -> None:
    socks, refused = [], 0
    try:
        for _ in range(count):
            socks.append(connect(svc, timeout=5))
        time.sleep(0.5)  # the refusals are written as each connection is accepted: let the last ones arrive
        for sock in socks:
            sock.setblocking(False)
            try:
                refused += sock.recv(64).startswith(b"HTTP/1.1 503")
            except OSError:  # nothing to read: the connection was accepted and waits for its request
                pass
    finally:
        for sock in socks:
            sock.close()
    result["got"] = f"{refused} of {count} refused (503)"


def repeated_outputs(svc: Service, result: dict, job_id: str) -> None:
    rows = [[(i % 9) - 4.0, (i % 7) - 3.0] for i in range(10_000)]
    body = {
        "inputs": [{"name": "input", "shape": [10_000, 2], "datatype": "FP32", "data": sum(rows, [])}],
        "outputs": [{"name": "probabilities"}] * 400,
    }
    answer = svc.client.post(f"/v2/models/{job_id}/infer", json=body, headers=svc.headers("alice"), timeout=300)
    result["got"] = f"{answer.status_code}, {len(answer.content) / 2**20:.1f} MiB answer"


def shared_address(svc: Service, result: dict) -> None:
    key_id = svc.keys["alice"].split("_")[1]
    wrong = {"Authorization": f"Bearer fs_{key_id}_{'x' * 43}"}
    transport = httpx.HTTPTransport(local_address="127.0.0.5")
    with httpx.Client(base_url=svc.client.base_url, transport=transport, timeout=30) as guesser:
        for _ in range(21):
            guesser.get("/v1/jobs", headers=wrong)
        right = guesser.get("/v1/jobs", headers=svc.headers("bob")).status_code  # bob, behind the same address
    forwarded = [
        svc.client.get("/v1/jobs", headers={**wrong, "X-Forwarded-For": f"198.51.100.{i}"}).status_code
        for i in range(60)
    ]
    result["got"] = f"right key after 21 wrong: {right}; 60 forwarded wrong keys: {forwarded.count(429)} limited"


def slow_bodies(svc: Service, result: dict, count: int) -> None:
    key = svc.headers("alice")["Authorization"]
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: {key}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n").encode()
    socks = []
    for _ in range(count):
        sock = connect(svc, timeout=5)
        sock.sendall(head + b'{"model": ')
        sock.setblocking(False)
        socks.append(sock)
    closed, deadline = set(), time.monotonic() + 40
    while len(closed) < count and time.monotonic() < deadline:
        for i, sock in enumerate(socks):
            if i in closed:
                continue
            try:
                if sock.recv(65536) == b"":
                    closed.add(i)
            except BlockingIOError:  # nothing yet: the server still waits for the body
                pass
            except OSError:
                closed.add(i)
        time.sleep(0.5)  # the attacker looks twice a second
    for sock in socks:
        sock.close()
    result["got"] = f"{len(closed)} of {count} closed by the server"


def gzip_bomb(svc: Service, result: dict) -> None:
    bomb = gzip.compress(b"0" * 2**30, compresslevel=9)
    headers = {**svc.headers("alice"), "Content-Type": "application/json", "Content-Encoding": "gzip"}
    answer = svc.client.post("/v1/jobs", content=bomb, headers=headers, timeout=300)
    result["got"] = f"{answer.status_code} for {len(bomb) / 2**20:.1f} MiB inflating to 1 GiB"


def one_address(svc: Service, result: dict, count: int) -> None:
    socks, answers = [], {"429": 0, "503": 0}
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.settimeout(5)
            sock.bind(("127.0.0.6", 0))
            sock.connect(("127.0.0.1", svc.port))
            socks.append(sock)
        time.sleep(0.5)  # the refusals are written as each connection is accepted: let the last ones arrive
        for sock in socks:
            sock.setblocking(False)
            try:
                status = status_of(sock.recv(64))
                answers[status] = answers.get(status, 0) + 1
            except OSError:  # nothing to read: accepted, waiting for its request
                pass
    finally:
        for sock in socks:
            sock.close()
    result["got"] = f"{answers['429']} of {count} refused 429, {answers['503']} 503"


def upload_until_refused(svc: Service, owners: list[str], most: int) -> tuple[int, int, float]:
    """1 MiB uploads in turn by `owners` until one is refused: (uploads accepted, the refusal's status, its ms)."""
    for n in range(most):
        owner = owners[n % len(owners)]
        started = time.monotonic()
        upload = f"x0,x1,y\n{n},0,0\n".encode() + ROWS  # each unique: an upload is never a replay of another
        answer = svc.client.post("/v1/datasets", files={"file": (f"u{n}.csv", upload, "text/csv")},
                                 data={"target": "y"}, headers=svc.headers(owner), timeout=120)
        if answer.status_code != 201:
            return n, answer.status_code, (time.monotonic() - started) * 1e3
    return most, 201, 0.0


def storage_budget(svc: Service, result: dict) -> None:
    accepted, status, ms = upload_until_refused(svc, ["carol"], 2 * BUDGET_MIB)
    other = svc.client.post("/v1/jobs", json=CLASSIFIER, headers=svc.headers("bob")).status_code
    result["got"] = f"{accepted} uploads, then {status} in {ms:.0f} ms; another owner's submit: {other}"


def full_disk(svc: Service, result: dict) -> None:
    owners = ["dave", "erin", "frank", "grace", "heidi", "ivan"]
    accepted, status, ms = upload_until_refused(svc, owners, 2 * DB_CAP_MIB)
    listed = svc.client.get("/v1/datasets", headers=svc.headers(owners[0]))
    deleted = svc.client.delete(f"/v1/datasets/{listed.json()['items'][0]['id']}", headers=svc.headers(owners[0]))
    again = upload_until_refused(svc, owners[:1], 1)[1]
    result["got"] = (f"{accepted} uploads, then {status} in {ms:.0f} ms; read {listed.status_code}, "
                     f"delete {deleted.status_code}, upload again {again}")


def run(root: Path, label: str, args) -> list[list]:
    rows: list[list] = []
    owners = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan")
    limits = {"FITSERVE_MAX_STORED_BYTES_PER_OWNER": str(BUDGET_MIB * 2**20), "FITSERVE_DB_MAX_BYTES": str(DB_CAP_MIB * 2**20)}
    with Service(workers=1, owners=owners, root=root, **limits) as svc:
        job_id = svc.submit(CLASSIFIER, "alice")
        svc.wait(job_id, poll=0.1, timeout=300, owner="alice")
        print(f"{label}: API RSS {memory(svc.proc.pid, 'VmRSS')} MiB at the start", flush=True)
        attacks = [
            ("128 MB header", lambda r: huge_header(svc, r)),
            (f"{args.slow} slow connections", lambda r: slow_connections(svc, r, args.slow)),
            (f"{args.flood} connections at once", lambda r: flood(svc, r, args.flood)),
            ("v2 outputs x 400", lambda r: repeated_outputs(svc, r, job_id)),
            ("shared address", lambda r: shared_address(svc, r)),
            (f"{args.slow} slow bodies", lambda r: slow_bodies(svc, r, args.slow)),
            ("gzip bomb", lambda r: gzip_bomb(svc, r)),
            (f"{args.flood} connections from one address", lambda r: one_address(svc, r, args.flood)),
            (f"storage budget ({BUDGET_MIB} MiB an owner)", lambda r: storage_budget(svc, r)),
            (f"full disk (a {DB_CAP_MIB} MiB file)", lambda r: full_disk(svc, r)),
        ]
        for name, attack in attacks:
            with measured(svc, rows, f"{label}: {name}") as result:
                attack(result)
            print(f"  {rows[-1]}", flush=True)
        limits = [line for line in svc.read_log().splitlines() if "limit=" in line]
        print(f"{label}: {len(limits)} limit= log lines, e.g. {limits[:1]}", flush=True)
    return rows


@contextmanager
def worktree(rev: str):
    with tempfile.TemporaryDirectory(prefix="fitserve-before-") as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(path), rev], cwd=ROOT, check=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default=None, help="a commit to serve first, as the baseline")
    parser.add_argument("--slow", type=int, default=1000, help="slow connections")
    parser.add_argument("--flood", type=int, default=1500, help="connections opened at once")
    args = parser.parse_args()
    header("Issue 29's HTTP attacks, one worker")
    print(f"load before: {load_average()}\n", flush=True)
    rows = []
    if args.before:
        with worktree(args.before) as tree:
            rows += run(tree, f"before ({args.before})", args)
    rows += run(ROOT, "after", args)
    print()
    print_table(["attack", "the attacker got", "s", "API RSS after MiB", "API peak MiB", "/healthz worst s"], rows)
    print(f"\nload after: {load_average()}")


if __name__ == "__main__":
    main()
