"""fitserve's command line (and, for scripts, its Python client)."""
