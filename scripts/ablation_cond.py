"""Does the frame difference help? Pix2Seq-D trained with --cond none / mask / mask+diff, several seeds, same budget.

    python scripts/ablation_cond.py --ids                  # 3 conditions x 3 seeds, 1200 steps, 2 runs at a time
    python scripts/ablation_cond.py --ids --conds mask mask+diff --max_iters 2400 --out_dir out/ablation_cond_2400
    python scripts/ablation_cond.py --report --ids         # only the tables of the runs finished so far
    python scripts/ablation_cond.py --datasets synthetic_hard   # faster motion, more objects (data.SYNTHETIC_HARD)

Every run is `python train.py --dataset D --cond C --seed S --max_iters N --eval_interval N --out_dir OUT/D/C/seedS`
(the tiny recipe otherwise), scored once at the end on the held-out val videos with the EMA weights. The seed sets
the initial weights, the data order, the augmentations, the diffusion noise and the sampling noise. Runs go --jobs
at a time with OMP_NUM_THREADS = cores / jobs (or --threads); a run whose log.jsonl already holds its final score
is skipped, so a killed ablation continues where it stopped (an unfinished run starts over). Not collected by
pytest.

The tables give mean +- sample std over seeds, next to the ground-truth baselines of scripts/synthetic_baselines.py
(a model segments instances only when its AQ beats "things merged", and tracks them only when it beats "no ids"),
then differences of means +- their standard error. --ids adds a diagnostic: distinct thing ids predicted per frame
on the first val video (about 15 s per run on one core), against the ground truth's.
"""
import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))
import data  # noqa: E402
import infer  # noqa: E402
import synthetic_baselines  # noqa: E402

KEYS = ("STQ", "AQ", "SQ", "VPQ")


def final_score(run_dir, max_iters):
    """OUT/D/C/seedS -> {STQ, AQ, SQ, VPQ} of the eval at step max_iters, or None while the run is unfinished."""
    log = Path(run_dir) / "log.jsonl"
    if not log.is_file():
        return None
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("step") == max_iters and "eval" in rec:
            return {k: float("nan") if v is None else v for k, v in rec["eval"].items()}  # null: NaN
    return None


def finished(runs, dataset, cond, max_iters):
    """[(dataset, cond, seed, run_dir)] -> [(seed, run_dir, final score)] of one dataset and condition, finished."""
    return [(s, r, score) for d, c, s, r in runs if d == dataset and c == cond
            for score in [final_score(r, max_iters)] if score is not None]


def thing_ids_per_frame(run_dir, dataset, seed, videos=1, max_frames=0):
    """Checkpoint of a run -> (predicted, ground-truth) distinct thing ids per frame, mean over the first `videos`
    val videos. A diagnostic: a model that gives every object the same id scores the things-merged AQ at best."""
    model, _ = infer.load_checkpoint(Path(run_dir) / "ckpt.pt")
    pred, gt = [], []
    for seq in data.load_sequences(dataset, split="val")[:videos]:
        for t, _, ins in infer.predict_sequence(model, "pix2seq_d", seq, torch.device("cpu"), max_frames=max_frames,
                                                generator=torch.Generator().manual_seed(seed)):
            pred.append(len(set(np.unique(ins).tolist()) - {0}))
            gt.append(len(set(np.unique(seq.label(t)[1]).tolist()) - {0}))
    return float(np.mean(pred)), float(np.mean(gt))


def command(dataset, cond, seed, args, run_dir):
    return [sys.executable, str(ROOT / "train.py"), "--model", "pix2seq_d", "--dataset", dataset, "--cond", cond,
            "--seed", str(seed), "--max_iters", str(args.max_iters), "--eval_interval", str(args.max_iters),
            "--device", "cpu", "--out_dir", str(run_dir)] + args.train_args


def run_all(runs, args):
    """Run the unfinished (dataset, cond, seed) runs, args.jobs at a time; stdout+stderr go to RUN_DIR/train.out."""
    todo = [r for r in runs if final_score(r[3], args.max_iters) is None]
    print(f"{len(runs) - len(todo)} of {len(runs)} runs already finished; {len(todo)} to go, {args.jobs} at a time")
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    active, failed = [], []
    try:
        while todo or active:
            while todo and len(active) < args.jobs:
                dataset, cond, seed, run_dir = todo.pop(0)
                run_dir.mkdir(parents=True, exist_ok=True)
                (run_dir / "log.jsonl").unlink(missing_ok=True)  # an unfinished run starts over
                out = open(run_dir / "train.out", "w")
                cmd = command(dataset, cond, seed, args, run_dir)
                print(f"start {dataset} {cond} seed {seed}: {' '.join(cmd[1:])}", flush=True)
                active.append((subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT),
                               out, run_dir, time.time()))
            time.sleep(5)
            for job in list(active):
                proc, out, run_dir, t0 = job
                if proc.poll() is None:
                    continue
                out.close()
                active.remove(job)
                score = final_score(run_dir, args.max_iters)
                if proc.returncode != 0 or score is None:  # the other runs go on; the failure is raised at the end
                    print(f"FAILED {run_dir}: train.py exited with {proc.returncode}; see {run_dir / 'train.out'}")
                    failed.append(run_dir)
                    continue
                print(f"done  {run_dir} in {(time.time() - t0) / 60:.1f} min: "
                      + " ".join(f"{k} {score[k]:.3f}" for k in KEYS), flush=True)
    finally:  # Ctrl-C or an error here: stop the runs still going (they start over next time)
        for proc, out, _, _ in active:
            proc.terminate()
            proc.wait()
            out.close()
    if failed:
        raise infer.UserError(f"{len(failed)} runs failed (each run's train.out says why): "
                              + ", ".join(str(r) for r in failed))


def report(runs, args):
    """Markdown tables, one per dataset: baselines, then each condition's mean +- std and its per-seed STQ / AQ
    (with --ids also the predicted thing ids per frame on the first val video, mean over seeds)."""
    for dataset in args.datasets:
        with contextlib.redirect_stdout(io.StringIO()):  # main prints its rows as JSON; we only want them returned
            base = synthetic_baselines.main(["--dataset", dataset, "--json"])
        print(f"\n**{dataset}** (val, {args.max_iters} steps per run)\n")
        cols = ["", *KEYS, "seeds", "STQ per seed", "AQ per seed"] + ["thing ids / frame"] * args.ids
        print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
        for name in ("semantics, things merged", "semantics, instances, no ids"):
            print(f"| baseline: {name} | " + " | ".join(f"{base[name][k]:.3f}" for k in KEYS) + " |" * (len(cols) - 4))
        for cond in args.conds:
            done = finished(runs, dataset, cond, args.max_iters)
            if not done:
                print(f"| --cond {cond} | not run |" + " |" * (len(cols) - 2))
                continue
            cells = []
            for k in KEYS:
                v = np.array([score[k] for _, _, score in done], dtype=float)
                cells.append(f"{v.mean():.3f} +- {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}")
            per_seed = [" ".join(f"{score[k]:.3f}" for _, _, score in done) for k in ("STQ", "AQ")]
            if args.ids:
                ids = [thing_ids_per_frame(r, dataset, seed) for seed, r, _ in done]
                per_seed.append(f"{np.mean([p for p, _ in ids]):.2f} (GT {ids[0][1]:.2f})")
            print(f"| --cond {cond} | " + " | ".join(cells) + f" | {len(done)} | " + " | ".join(per_seed) + " |")
        for a, b in (("mask+diff", "mask"), ("mask", "none")):  # difference of means +- its standard error
            sa, sb = ([score for _, _, score in finished(runs, dataset, x, args.max_iters)] for x in (a, b))
            if len(sa) > 1 and len(sb) > 1:
                diffs = []
                for k in KEYS:
                    va, vb = (np.array([score[k] for score in ss], dtype=float) for ss in (sa, sb))
                    se = np.sqrt(va.var(ddof=1) / len(va) + vb.var(ddof=1) / len(vb))
                    diffs.append(f"{k} {va.mean() - vb.mean():+.3f} +- {se:.3f}")
                print(f"\n{a} minus {b} (difference of means +- standard error): " + ", ".join(diffs))

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["synthetic"], help="synthetic and/or synthetic_hard")
    p.add_argument("--conds", nargs="+", default=["none", "mask", "mask+diff"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--max_iters", type=int, default=1200, help="training steps of every run (the budget)")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time")
    p.add_argument("--threads", type=int, help="OMP_NUM_THREADS of each run (default: cores / jobs)")
    p.add_argument("--out_dir", default="out/ablation_cond")
    p.add_argument("--report", action="store_true", help="print the tables, train nothing")
    p.add_argument("--ids", action="store_true", help="add the thing ids predicted per frame (see above)")
    p.add_argument("train_args", nargs="*", help="more train.py flags for every run, after --")
    args = p.parse_args(argv)
    runs = [(d, c, s, Path(args.out_dir).resolve() / d / c.replace("+", "_") / f"seed{s}")
            for d in args.datasets for s in args.seeds for c in args.conds]
    if not args.report:
        run_all(runs, args)
    report(runs, args)


if __name__ == "__main__":
    infer.run_cli(main)  # a mistake in the command or its files: one line `error: ...`
