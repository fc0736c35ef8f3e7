"""The client's distribution (client/pyproject.toml) installed alone, as README's block does it: a fresh virtual
environment with no torch, no SQLAlchemy and no server, from which README's and docs/clients.md's client examples run
against a served port."""

import ast
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.one_backend("the client only speaks HTTP; what it reaches is tested on every back end")

VENV = "client-venv"  # the folder README's block makes


def code_block(doc: str, holding: str) -> str:
    """The one fenced code block of `doc` (a file of the checkout) that holds `holding`."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", (ROOT / doc).read_text(), re.DOTALL)
    [block] = [b for b in blocks if holding in b]
    return block


class Alone:
    """A folder with the checkout's `client/` (a copy) and `examples/`, where README's block ran."""

    def __init__(self, folder: Path, served):
        self.folder = folder
        # nothing of the test's own Python: no active venv, no PYTHONPATH
        dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
        self.env = {k: v for k, v in os.environ.items() if k not in dropped}
        self.env["FITSERVE_URL"] = str(served.client.base_url)

    def run(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def bin(self, name: str) -> str:
        return str(self.folder / VENV / "bin" / name)


@pytest.fixture(scope="module")
def alone(tmp_path_factory, served):
    folder = tmp_path_factory.mktemp("client-alone")
    # a copy: the build leaves nothing in the checkout
    shutil.copytree(ROOT / "client", folder / "client", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (folder / "examples").symlink_to(ROOT / "examples")
    env = Alone(folder, served)
    env.readme = env.run("bash", "-euo", "pipefail", "-c", code_block("README.md", "pip install ./client"), timeout=300)
    return env


def test_readmes_block_installs_the_client_alone_and_trains_through_it(alone):
    assert alone.readme.returncode == 0, alone.readme.stderr
    out = alone.readme.stdout
    assert re.search(r"^job [0-9a-f]{32} succeeded in [\d.]+ s after 10000/10000 epochs$", out, re.MULTILINE), out
    assert out.splitlines()[-1] == "succeeded"  # the python -c line: the newest job, read by the client
    assert "10000/10000 epochs" in alone.readme.stderr  # the progress bar's last frame


def test_it_holds_neither_torch_nor_sqlalchemy_nor_the_server(alone):
    for module in ("torch", "sqlalchemy", "service", "workers", "server"):
        imported = alone.run(alone.bin("python"), "-c", f"import {module}")
        assert imported.returncode == 1 and f"No module named '{module}'" in imported.stderr, module
    listed = json.loads(alone.run(alone.bin("python"), "-m", "pip", "list", "--format=json").stdout)
    names = {d["name"].lower() for d in listed}
    assert "fitserve-client" in names and not names & {"torch", "sqlalchemy", "fastapi", "fitserve"}, names
    located = alone.run(alone.bin("python"), "-c", "import fitserve.client; print(fitserve.client.__file__)")
    assert located.stdout.startswith(str(alone.folder / VENV))  # the installed copy, not the checkout's


def test_the_clients_guides_python_example_runs_from_it(alone):
    (alone.folder / "line.json").write_text(code_block("docs/clients.md", '"name": "line"'))
    done = alone.run(alone.bin("python"), "-c", code_block("docs/clients.md", "from fitserve.client import"))
    assert done.returncode == 0, done.stderr
    *points, predictions, error = done.stdout.splitlines()
    epochs = [int(line.split()[0]) for line in points]  # "epoch loss", each point once, as it was recorded
    assert epochs == sorted(set(epochs)) and epochs[-1] == 200
    assert ast.literal_eval(predictions) == pytest.approx([1.0, 3.0], abs=0.05)  # y = 2x + 1
    assert error == "404 no job 'no-such-job'"
    assert (alone.folder / "line.safetensors").stat().st_size > 0
    assert (alone.folder / "curve.png").read_bytes().startswith(b"\x89PNG")


def test_a_server_command_says_in_one_line_what_to_install(alone):
    for args in (("serve", "--port", "8123"), ("db", "upgrade"), ("keys", "create", "--owner", "ann"), ("worker", "-h")):
        done = alone.run(alone.bin("fitserve"), *args)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, (args, done.stderr)
        assert f"fitserve {args[0]}: a server command" in done.stderr and "pip install path/to/fitserve" in done.stderr
    unknown = alone.run(alone.bin("fitserve"), "jobs", "--bogus")
    assert unknown.returncode == 2 and "unrecognized arguments: --bogus" in unknown.stderr
