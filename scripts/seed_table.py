"""Mean +- sample std over seeds of finished train.py runs: one markdown row from their last evaluation.

    for s in 0 1 2; do python train.py --model video_knet --seed $s --out_dir out/vk/seed$s; done
    python scripts/seed_table.py out/vk/seed0 out/vk/seed1 out/vk/seed2 --name "Video K-Net tiny"

Reads each OUT_DIR/log.jsonl (the last line with an "eval" entry, i.e. the final score of a finished run) and prints
| name | STQ | AQ | SQ | VPQ | seeds | STQ per seed | AQ per seed |. Not collected by pytest.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

KEYS = ("STQ", "AQ", "SQ", "VPQ")
RUN = ("model", "preset", "dataset")  # what an evaluation line names (logs older than this field: not checked)


def last_eval(run_dir):
    """OUT_DIR -> (step, {STQ, AQ, SQ, VPQ}, (model, preset, dataset)) of its last evaluation; SystemExit naming the
    file if there is none."""
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        sys.exit(f"error: {path}: no such file (each RUN_DIR must be a train.py --out_dir)")
    evals = [json.loads(line) for line in path.read_text().splitlines() if '"eval"' in line]
    if not evals:
        sys.exit(f"error: {path} has no evaluation yet (is the run finished?)")
    return evals[-1]["step"], evals[-1]["eval"], tuple(evals[-1].get(k) for k in RUN)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dirs", nargs="+", help="train.py --out_dir of each seed")
    p.add_argument("--name", default="model", help="first column of the row")
    args = p.parse_args(argv)
    runs = [last_eval(d) for d in args.run_dirs]
    steps = {s for s, _, _ in runs}
    if len(steps) > 1:
        sys.exit(f"error: the runs ended at different steps {sorted(steps)}: not the same budget")
    kinds = {what for _, _, what in runs if what != (None,) * len(RUN)}
    if len(kinds) > 1:
        sys.exit(f"error: the runs are of different {' / '.join(RUN)}: {sorted(kinds)}")
    scores = {k: np.array([np.nan if r[k] is None else r[k] for _, r, _ in runs], float) for k in KEYS}  # null: NaN
    spread = lambda v: f"{v.mean():.3f} +- {v.std(ddof=1) if len(v) > 1 else 0:.3f}"  # noqa: E731
    row = [args.name] + [spread(scores[k]) for k in KEYS] + [str(len(runs))]
    row += [" ".join(f"{x:.3f}" for x in scores[k]) for k in ("STQ", "AQ")]
    print("| what | STQ | AQ | SQ | VPQ | seeds | STQ per seed | AQ per seed |\n|---|---|---|---|---|---|---|---|")
    print("| " + " | ".join(row) + " |")
    return scores


if __name__ == "__main__":
    main()
