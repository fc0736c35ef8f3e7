"""`fitserve db check`, and `serve` on a database it cannot use: one line, what is wrong and what to do."""

import pytest

from tests.conftest import corrupt_sqlite_file, free_port, run_fitserve


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_db_check_says_ok_and_where_the_schema_stands(make_app, backend):
    srv = make_app(workers=0)  # its database, at the schema's head; never started
    done = run_fitserve(srv, "db", "check")
    assert done.returncode == 0, done.stderr
    line = one_line(done.stdout)
    assert line.startswith("database OK: ") and "is at the schema head" in line, line
    assert ("passes SQLite's quick_check" if backend == "sqlite" else "answers") in line, line

    assert run_fitserve(srv, "db", "downgrade", "-1").returncode == 0
    behind = run_fitserve(srv, "db", "check")
    assert behind.returncode == 0 and "behind the head" in one_line(behind.stdout), behind.stdout


def test_db_check_names_a_database_it_cannot_reach(make_app):
    srv = make_app(workers=0, FITSERVE_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none")
    done = run_fitserve(srv, "db", "check")
    assert done.returncode == 1 and done.stdout == ""
    line = one_line(done.stderr)
    assert line.startswith("cannot read postgresql+psycopg://postgres@127.0.0.1:") and "Traceback" not in line, line


@pytest.mark.parametrize("part", ["pages", "header"])
def test_db_check_and_serve_name_a_corrupt_file_and_how_to_restore_it_in_one_line(make_server, backend, part):
    if backend != "sqlite":
        pytest.skip("a corrupt file is SQLite's; PostgreSQL's XX001/XX002 are classified as in test_db_faults.py")
    srv = make_server(workers=0)  # its database; `serve` below is run by hand, to read how it ends
    path = srv.db_url.removeprefix("sqlite:///")
    corrupt_sqlite_file(path, part)

    checked = run_fitserve(srv, "db", "check")
    assert checked.returncode == 1 and checked.stdout == "", checked.stdout
    line = one_line(checked.stderr)
    assert f"the database {path} is corrupt" in line, line
    assert f"copy the backup over {path}" in line and "fitserve db backup PATH" in line, line
    assert ("file is not a database" if part == "header" else "malformed") in line, line

    served = run_fitserve(srv, "serve", "--port", free_port(), "--workers", "0")
    assert served.returncode == 1, served.stdout + served.stderr
    line = one_line(served.stderr)
    assert line.startswith(f"fitserve: the database {path} is corrupt") and "copy the backup" in line, line
