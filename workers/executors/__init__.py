"""Executors beyond the local process pool (workers/pool.py): where claimed jobs run."""
