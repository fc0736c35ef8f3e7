"""Engines: what trains a run's members (workers/run.py), pure torch, no database, no HTTP.

Every engine has the same small interface, which the run alone calls:
- `specs`, `datas`: the members' specs and data, in the run's order; `device`: where they train; `progress`: the epoch and step they are at;
  `early`: K members' early stopping (workers/engines/early_stopping.py) or None.
- `running()`: a context around the run's epochs; `train_next(recorded, epochs)`: the next epoch (or graph
  replay), keeping the figures of the epochs `recorded(epoch)` asks for, asking `interrupted()` between
  mini-batches; False when stopped inside an epoch. `pending`: recorded epochs not yet read;
  `read_points()`: them, as each member's curve points.
- `member_state(k)`: member k's checkpoint, in one format for every engine (`eager.Trainer.state`), so it resumes
  on any (an engine is built resumed); `member_net(k, best)`: member k as a plain network. With `rewinds` set (a
  run with time limits), an epoch that `interrupted` may stop keeps the weights it started from, and `member_net`
  asked inside it answers those: a member stopped there keeps its last whole epoch's weights.
- `compiled`: the engine's compiled step (engines/compiled.py; `failed` says why it was given up) or None;
  `use_compiled(on)`: train the next steps compiled or plain (the run's choice, engines/compile_choice.py).
- For searches: `keep_members(ks)`, `copy_member(source, target)`, `set_hyperparameters(k, values)`.

The engines: `eager.Trainer` (one network; CUDA graphs are its option), `stacked.StackedTrainer`
(K networks as one computation: vmap, or the dense kernel of `dense.py`), `in_turn.InTurn` (K eager engines, an
epoch each in turn). The first two may compile their step (engines/compiled.py), an option of each.
"""
