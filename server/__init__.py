"""The server's half of the `fitserve` command (serve, worker, db, keys, ...) and what keeps its processes alive."""
