"""The `fitserve` command: the client's commands (commands.py) and, where the server is installed, the server's
(serve, worker, db, keys, ...), which it adds through the `fitserve.commands` entry points.

The client installs without the server; the server's commands are then named all the same, and each says in one
line what to install.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from fitserve.commands import EXIT_USAGE, add_client_commands

# only to name them when the server is missing (tests/server/test_cli.py checks it against the server's own)
SERVER_COMMANDS = ("serve", "worker", "dispatcher", "db", "usage", "keys")
SERVER_MISSING = (
    "fitserve {command}: a server command, and only the client (fitserve-client) is installed here; install the "
    "server beside it: `pip install path/to/fitserve` (a checkout), or `make install` in the checkout"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fitserve", description="Train small PyTorch models over HTTP.")
    parser.add_argument("--url", default=None, help="server URL for client commands (default: $FITSERVE_URL)")
    parser.add_argument("--api-key", default=None, help="API key for client commands (default: $FITSERVE_API_KEY)")
    sub = parser.add_subparsers(dest="command", required=True)
    extensions = entry_points(group="fitserve.commands")
    for extension in extensions:
        extension.load()(sub)
    if not extensions:
        for name in SERVER_COMMANDS:
            missing = sub.add_parser(name, add_help=False, help="(needs the server, which is not installed)")
            missing.set_defaults(func=server_missing, any_arguments=True)
    add_client_commands(sub)
    return parser


def server_missing(args: argparse.Namespace) -> int:
    print(SERVER_MISSING.format(command=args.command), file=sys.stderr)
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")  # what parse_args would say
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
