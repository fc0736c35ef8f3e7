"""The in-process trainer of this source tree against another's (an earlier commit), on the tutorial jobs.

    git worktree add /tmp/before <commit>
    python -m bench.trainer_ab --other /tmp/before [--rounds 5] [--epochs-scale 0.3] [--threads 1]

Each round runs every tutorial job once through `bench.loops.trainer_loop` (the worker's set-up and
the run with no database, no HTTP) in a fresh process of each tree, the two trees alternating and
swapping who goes first, so a slow moment of a shared machine falls on both. Prints, per job, each tree's
best time of the rounds, their ratio, and whether the final losses are equal. The end-to-end table of
bench/training.py carries the service's own variance (claims, polls, a second process); this one measures
only what a change to the trainer can change.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from bench.common import EXAMPLES, ROOT, header, load_average, print_table

# the measured code (service, workers, modelzoo) from `tree`; the harness (bench) always from this tree
PRELUDE = """
import importlib.util, sys
sys.path.insert(0, {tree!r})
spec = importlib.util.spec_from_file_location("bench", {bench!r} + "/__init__.py", submodule_search_locations=[{bench!r}])
sys.modules["bench"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sys.modules["bench"])
"""
ONE_ROUND = """
import json, torch
torch.set_num_threads({threads})
from bench.common import EXAMPLES, load_example
from bench.loops import trainer_loop
trainer_loop(load_example(EXAMPLES[0], 0.001))  # the first call's one-off costs, unmeasured
out = {{}}
for path in [p for p in EXAMPLES if p.stem in {jobs!r}]:
    seconds, loss = trainer_loop(load_example(path, {scale}))
    out[path.stem] = [seconds, loss]
print(json.dumps(out))
"""


def one_round(tree: Path, scale: float, threads: int, jobs: list[str]) -> dict[str, list[float]]:
    """{job: [seconds, final loss]} from a fresh process whose imports come from `tree`."""
    code = PRELUDE.format(tree=str(tree), bench=str(ROOT / "bench")) + ONE_ROUND.format(scale=scale, threads=threads, jobs=jobs)
    run = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--other", required=True, help="the other source tree (e.g. a git worktree of an earlier commit)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs-scale", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the trainer")
    parser.add_argument("--jobs", default="", help="comma-separated example prefixes, e.g. 1,4 (default: all)")
    args = parser.parse_args()
    other = Path(args.other).resolve()
    header(f"Trainer: this tree against {other}, {args.rounds} rounds, epochs x{args.epochs_scale}, "
           f"{args.threads} thread(s)")
    print(f"load average before: {load_average()}\n")
    prefixes = [p for p in args.jobs.split(",") if p]
    examples = [p for p in EXAMPLES if not prefixes or p.stem.split("_")[0] in prefixes]
    jobs = [p.stem for p in examples]
    runs: dict[str, list[dict]] = {"this": [], "other": []}
    for r in range(args.rounds):
        order = [("this", ROOT), ("other", other)][:: 1 if r % 2 == 0 else -1]
        for name, tree in order:
            runs[name].append(one_round(tree, args.epochs_scale, args.threads, jobs))
    rows = []
    for job in jobs:
        best = {name: min(r[job][0] for r in rounds) for name, rounds in runs.items()}
        losses = {name: rounds[0][job][1] for name, rounds in runs.items()}
        rows.append([job, best["other"], best["this"], best["this"] / best["other"],
                     "yes" if losses["this"] == losses["other"] else f"{losses['other']} / {losses['this']}"])
    print_table(["job", "other tree s (best)", "this tree s (best)", "this / other", "same final loss"], rows)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
