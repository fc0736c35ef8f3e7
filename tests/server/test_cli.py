"""The server's commands of `fitserve`: added to the client's command by the `fitserve.commands` entry point."""

import argparse
from importlib.metadata import entry_points

from fitserve.cli import SERVER_COMMANDS, build_parser
from server.cli import add_server_commands


def test_the_installed_server_adds_the_commands_the_client_names_when_it_is_missing():
    [extension] = entry_points(group="fitserve.commands")
    assert extension.load() is add_server_commands  # pyproject.toml registers it, and it imports
    commands = argparse.ArgumentParser().add_subparsers()
    add_server_commands(commands)
    assert sorted(commands.choices) == sorted(SERVER_COMMANDS)
    parsed = build_parser().parse_args(["db", "upgrade", "0005"])
    assert (parsed.command, parsed.action, parsed.revision) == ("db", "upgrade", "0005")


def test_serve_says_once_at_start_where_the_dashboard_docs_and_keys_are(served):
    log, base = served.read_log(), f"http://127.0.0.1:{served.client.base_url.port}"
    for line in (f"dashboard: {base}/\n", f"API docs: {base}/docs ", "API keys: none needed on loopback"):
        assert log.count(line) == 1, line
    assert log.index("API keys:") < log.index("Uvicorn running on")  # among the first lines, not buried later
    for path in ("/", "/docs"):
        assert served.client.get(path).status_code == 200
