"""`make run` installs only what the server needs, the client (client/) in one pip call with the server that depends
on it; `make test` (and `make install`, which CI runs) the test extras too, also after a runtime-only install and
after either pyproject.toml changes. Read from `make -n`."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def planned(target: str, venv: Path, *options: str) -> str:
    """The commands `make target` would run against the venv `venv` (nothing is run)."""
    return subprocess.run(
        ["make", "-n", target, f"VENV={venv}", *options], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


# the client (on no index) and the server in one pip call; the extras in another
SERVER = "pip install -q --no-compile -e ./client -e .\n"
DEV = "pip install -q --no-compile -e '.[dev]'"
COMPILE = "compileall -q -j 0 -x 'site-packages/.+/tests/' "  # the venv's packages
COMPILE_SOURCES = "compileall -q -j 0 service workers"  # fitserve's own modules, before each run


def test_run_installs_the_server_alone_and_test_adds_the_extras(tmp_path):
    venv = tmp_path / "venv"
    run = planned("run", venv)
    assert SERVER in run and "[dev]" not in run and "fitserve serve" in run
    # the bytecode pip leaves out is compiled after each install, before the stamp says it is done
    assert run.index(SERVER) < run.index(COMPILE) < run.index("touch") < run.index(COMPILE_SOURCES) < run.index("fitserve serve")
    for target in ("test", "install"):
        plan = planned(target, venv)
        assert DEV in plan and plan.rindex(COMPILE) > plan.index(DEV)
    test = planned("test", venv)
    assert test.rindex(COMPILE) < test.index(COMPILE_SOURCES) < test.index("-m pytest")
    venv.mkdir()
    (venv / ".installed").touch()  # `make run` has installed the server
    assert "[dev]" not in planned("run", venv)
    after_run = planned("test", venv)
    assert DEV in after_run and SERVER not in after_run
    (venv / ".installed-dev").touch()
    assert "pip install" not in planned("test", venv)
    client_changed = planned("test", venv, "--what-if=client/pyproject.toml")
    assert SERVER in client_changed and DEV in client_changed
    older = (ROOT / "pyproject.toml").stat().st_mtime - 10
    for stamp in (".installed", ".installed-dev"):
        os.utime(venv / stamp, (older, older))  # pyproject.toml changed since either install
    changed = planned("test", venv)
    assert SERVER in changed and DEV in changed
