"""Adaptive searches acting on a run (workers/run.py): they decide at the epochs they ask for, the run acts.

Each has `records(epoch)`, `on_start(run)` and `after_epoch(run, epoch)`, reads members' reported points through
`run.metric`, ends or reshapes them through `run.succeed`, `run.keep` and the engine's `copy_member` and
`set_hyperparameters`, and never knows whether members are stacked or take turns. Proposing members (grid,
random, TPE) is the service's, at submit and between rounds (service/services/search.py, rounds.py).
"""
