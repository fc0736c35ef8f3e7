"""Every repository file the README names exists: paths in backticks and code blocks under the repository's own
folders, relative link targets, and files that commands in its code blocks send (`-d @file`, `file=@file`)."""

import re

from tests.conftest import ROOT

# the folders a path must start with to be read as one of ours (`var/`, `.venv/` are made by running, not shipped)
REPO_FOLDERS = ("service", "workers", "tests", "alembic", "docs", "examples", "bench", "client", "server", "modelzoo", ".ci")
IN_BACKTICKS = re.compile(r"`([^`\n]+)`")
LINK_TARGET = re.compile(r"\]\(([^)\s]+)\)")
SENT_FILE = re.compile(r"(?:-d |--data-binary |=)@([\w./-]+)")  # curl's `-d @file` and `-F file=@file`
PATH = re.compile(rf"(?:{'|'.join(map(re.escape, REPO_FOLDERS))})(?:/[\w.*-]+)*/?")


def named_paths(text: str) -> set[str]:
    paths = {m.group(0) for span in IN_BACKTICKS.findall(text) for m in PATH.finditer(span) if is_start(span, m)}
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.DOTALL)
    paths |= {m.group(0) for block in blocks for m in PATH.finditer(block) if is_start(block, m)}
    paths |= {m for block in blocks for m in SENT_FILE.findall(block) if "$" not in m}
    paths |= {t.split("#")[0] for t in LINK_TARGET.findall(text) if not re.match(r"[a-z]+:|#|/", t)}
    return paths


def is_start(text: str, match: re.Match) -> bool:
    """A path that starts where a word does (not `fitserve/cli.py` inside `src/fitserve/...`, nor a URL's path)."""
    before = text[match.start() - 1] if match.start() else " "
    return not (before.isalnum() or before in "/._-:") and not text[match.end():].startswith(("(", "."))


def exists(path: str) -> bool:
    return any(ROOT.glob(path.rstrip("/"))) if "*" in path else (ROOT / path).exists()


def test_every_repository_path_the_readme_names_exists():
    paths = named_paths((ROOT / "README.md").read_text())
    assert {"examples/houses.csv", "docs/clients.md", "service/settings.py"} <= paths  # it reads what it should
    missing = sorted(p for p in paths if not exists(p))
    assert not missing, missing


def test_the_datasets_example_trains_on_the_shipped_csv_as_the_readme_says(make_app):
    app = make_app(workers=1).start()
    with (ROOT / "examples" / "houses.csv").open("rb") as csv:
        upload = app.client.post("/v1/datasets", files={"file": ("houses.csv", csv)}, data={"target": "price"})
    assert upload.status_code == 201, upload.text
    assert upload.json()["n_rows"] == 300 and upload.json()["n_classes"] is None  # a regression target
    job = app.train({
        "model": {"kind": "linear", "in_features": 4, "out_features": 1}, "task": "regression", "loss": "mse",
        "data": {"source": "dataset", "dataset_id": upload.json()["id"], "standardize": True},
        "optimizer": {"kind": "sgd", "lr": 0.1}, "epochs": 300,
    })
    assert job["status"] == "succeeded" and job["metrics"]["loss"] < 300, job  # the noise's variance is 225
    [price] = app.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[100, 4, 10, 5]]}).json()["predictions"]
    assert abs(price - 329) < 10  # examples/make_houses_csv.py's formula
