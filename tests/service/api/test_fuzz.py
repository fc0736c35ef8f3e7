"""A property-based fuzz of the whole API from its own OpenAPI document (schemathesis).

No request may get a 5xx, a status code the document does not list, or a body that breaks its schema.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Server

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
# per back end: every operation and every phase (coverage, fuzzing, stateful) still runs in it, ~6,600 cases on the
# 2-core machine (60 s ran ~13,800: the stateful phase is what the limit cuts)
MAX_SECONDS = "30"


@pytest.fixture
def fuzz_target(tmp_path, databases):
    # no workers (fuzzed jobs are never trained) and no rate limit (the fuzzer is one fast caller)
    srv = Server(
        tmp_path / "fuzz.db",
        workers=0,
        db_url=databases.create(tmp_path / "fuzz.db"),
        FITSERVE_RATE_LIMIT_PER_SECOND="100000",
        FITSERVE_RATE_LIMIT_BURST="100000",
    ).start()
    yield srv
    srv.stop()


def test_fuzzing_the_openapi_document_finds_no_server_error_or_schema_break(fuzz_target, tmp_path):
    schemathesis = Path(sys.executable).with_name("schemathesis")
    assert schemathesis.exists() or shutil.which("schemathesis"), "schemathesis is a dev dependency"
    url = f"{fuzz_target.client.base_url}/openapi.json"
    done = subprocess.run(
        [str(schemathesis), "run", url, "--checks", CHECKS, "--max-examples", "8", "--seed", "20261127",
         "--workers", "1", "--max-time", MAX_SECONDS, "--generation-deterministic"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = done.stdout[-4000:]
    assert done.returncode == 0, summary
    assert "Tested:" in summary and "0/" not in summary.split("Tested:")[1].split("\n")[0]
    log = fuzz_target.read_log()
    assert 'HTTP/1.1" 5' not in log and "Traceback" not in log
