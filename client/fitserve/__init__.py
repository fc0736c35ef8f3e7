"""fitserve's Python client and the `fitserve` command: the `fitserve-client` distribution (client/pyproject.toml),
which installs without the server."""
