"""One call on one GPU: what only a GPU can show, for both models, as BENCHMARKS.md rows.

    python scripts/gpu_check.py                          # one NVIDIA GPU: ends within --budget (540 s)
    python scripts/gpu_check.py --parts "smoke,fast path"   # a second call, for the parts the first had no time for
    python scripts/gpu_check.py --device cpu             # the same steps on tiny presets (CI runs it)

Three parts, each run as its own process (an out-of-memory error or a crash in one does not hide the others), each
with a time limit, each printing the command that reproduces it alone:
  speed      scripts/benchmark.py, one run per model: training ms/step, seconds of the first (compiling) step, peak
             memory, MFU and inference frames/s, eager fp32 against bf16 + torch.compile, paper presets at
             384x1248 crops and 375x1242 frames.
  smoke      train.py with the tiny preset on a KITTI-STEP-sized synthetic tree (375x1242 PNGs in the official
             layout, written to a temp dir) for a few steps with bf16 + compile, an evaluation and a checkpoint:
             exit status, ms/step, and the number of recompiles (TORCH_LOGS=recompiles), which should be 0.
  fast path  scripts/check_fast_path.py: compiled bf16 against eager fp32 on the same weights and batch (loss,
             network outputs, predictions, a short training curve) with fullgraph=True (a graph break fails);
             tiny presets on CUDA, for time (add `--presets paper` when run alone).
Compiling is the slow part on a GPU: on an H200 with torch 2.11 (BENCHMARKS.md) a cold compile of the paper-preset
training step took 127 s (Pix2Seq-D) and 85 s (Video K-Net), and each compile row then compiles the inference graphs
too. So the speed rows come first, one run per model, and --budget ends the call in time: a run cut by its limit still
prints the rows it finished, and a part with under a minute of the budget left is skipped and named.
Exit status 1 if a part fails, runs out of time or is skipped; the parts after a failure still run.
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import data  # noqa: E402

MODELS = ("pix2seq_d", "video_knet")

# Per device: the runs of each part, (arguments, time limit in seconds), in the order they run; smoke: per model.
SPEED = ["--iters", "10", "--warmup", "3", "--infer_frames", "8", "--markdown"]
PLANS = {
    "cuda": {
        "speed": [(["--device", "cuda", "--models", m, "--presets", "paper", "--modes", "eager,compile"] + SPEED, t)
                  for m, t in (("pix2seq_d", 300), ("video_knet", 240))],
        "smoke": (["--device", "cuda", "--preset", "tiny", "--max_iters", "6", "--eval_interval", "6",
                   "--batch_size", "2", "--eval_frames", "3"], 150),
        "fast path": [(["--device", "cuda", "--presets", "tiny", "--steps", "20", "--frames", "4"], 300)],
    },
    "cpu": {
        "speed": [(["--device", "cpu", "--presets", "tiny", "--modes", "eager", "--iters", "1", "--warmup", "0",
                    "--batch_size", "1", "--crop", "64x96", "--infer_size", "64x96", "--infer_frames", "1",
                    "--markdown"], 300)],
        "smoke": (["--device", "cpu", "--preset", "tiny", "--max_iters", "2", "--eval_interval", "2",
                   "--batch_size", "2", "--eval_frames", "2", "--crop", "64x96"], 300),
        "fast path": [(["--device", "cpu", "--backend", "eager", "--steps", "5", "--frames", "1", "--batch_size",
                        "1", "--crop", "32x64", "--fall", "1.0"], 300)],  # a run of the path, not of its tolerances
    },  # CPU limits: generous, so that a busy CI machine does not fail a check of the code path
}
BUDGET = {"cuda": 540, "cpu": 0}  # default --budget in seconds (0: none); 540 fits a 10-minute slot on a GPU machine
TREE_SIZE = {"cuda": (375, 1242), "cpu": (64, 96)}  # frame size of the smoke run's KITTI-STEP tree


def run(command, limit, env=None):
    """Command list -> (exit status or 'timeout', stdout + stderr, seconds); a command that runs out of time is
    killed and what it printed so far is kept."""
    t0 = time.time()
    try:
        p = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=limit,
                           env={**os.environ, **(env or {})})
        status, output = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        status = "timeout"
        output = "".join(x.decode() if isinstance(x, bytes) else x or "" for x in (e.stdout, e.stderr))
    return status, output, time.time() - t0


def table_lines(output):
    """A part's output -> its command line, device line and markdown table (the rows BENCHMARKS.md takes); a run cut
    short before its table keeps the rows it finished (benchmark.py prints each as `done: a | b | ...`)."""
    keep = [line for line in output.splitlines() if line.startswith(("|", "command:", "device:", "checks:"))]
    if not any(line.startswith("|") for line in keep):
        keep += ["| " + line[6:] + " |" for line in output.splitlines() if line.startswith("done: ")]
    return "\n".join(keep) or "(no table printed)"


def write_tree(root, size):
    """A KITTI-STEP tree of synthetic videos at size (official layout): train sequences 0000 and 0001, val 0002 (the
    official split's numbers), 4 frames each."""
    h, w = size
    videos = data.synthetic_sequences(3, num_frames=4, height=h, width=w)
    data.write_kitti_step(videos[:2], root, "train")
    data.write_kitti_step([data.Sequence("0002", videos[2].images, videos[2].labels)], root, "val")


def smoke(name, args, limit, tree, out_dir):
    """train.py on the tree -> (passed, one markdown row): exit status, ms/step of the last steps, recompiles."""
    command = [sys.executable, "train.py", "--model", name, "--dataset", "kitti_step", "--root", str(tree),
               "--out_dir", str(out_dir), "--log_interval", "1"] + args
    status, output, seconds = run(command, limit, {"TORCH_LOGS": "recompiles"})
    recompiles = len(re.findall(r"Recompiling function", output))
    log = out_dir / "log.jsonl"
    lines = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    ms = [x["ms_per_step"] for x in lines if "ms_per_step" in x]
    evals = [x["eval"] for x in lines if "eval" in x]
    passed = status == 0 and recompiles == 0 and (out_dir / "ckpt.pt").exists()
    if not passed:
        print(f"smoke {name}: exit status {status}, {recompiles} recompiles; last output:\n{output[-3000:]}")
    row = [name, str(status), f"{ms[-1]:.0f}" if ms else "-", str(recompiles),
           f"{evals[-1]['STQ']:.3f}" if evals else "-", f"{seconds:.0f}", "pass" if passed else "FAIL"]
    return passed, "| " + " | ".join(row) + " |", " ".join(shlex.quote(c) for c in ["python"] + command[1:])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                   help="cuda: one GPU, paper presets for speed; cpu: tiny presets, the CI check that the script works")
    p.add_argument("--parts", default="speed,smoke,fast path", help="comma-separated parts, run in this order")
    p.add_argument("--budget", type=float, help="seconds for the whole call (default: 540 on cuda, none on cpu)")
    args = p.parse_args(argv)
    args.parts = [x.strip() for x in args.parts.split(",")]
    unknown = set(args.parts) - set(PLANS["cpu"])
    if unknown:
        p.error(f"--parts: unknown {sorted(unknown)}; choose from {list(PLANS['cpu'])}")
    if args.budget is None:
        args.budget = BUDGET[args.device]
    return args


def main(args):
    """-> {part (and model): passed}; prints each part's table as it finishes."""
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda but torch sees no GPU (pass --device cpu for the CI check)")
    plan, results, t0 = PLANS[args.device], {}, time.time()
    deadline = t0 + args.budget if args.budget else float("inf")

    def limit_left(limit, name, part):
        """-> the run's limit, cut to the budget left; None (and a note) when under a minute is left."""
        left = deadline - time.time() - 5
        if left >= 60:
            return min(limit, left)
        print(f"\n## {name}: SKIPPED, {max(left, 0):.0f} s left of --budget {args.budget:g}; run it in another "
              f"call: python scripts/gpu_check.py --device {args.device} --parts {shlex.quote(part)}\n")
        results[name] = False
        return None

    scripts = {"speed": "scripts/benchmark.py", "fast path": "scripts/check_fast_path.py"}
    for part in args.parts:
        if part == "smoke":
            smoke_part(plan["smoke"], args.device, results, limit_left)
            continue
        for extra, limit in plan[part]:
            name = f"{part} {extra[extra.index('--models') + 1]}" if "--models" in extra else part
            limit = limit_left(limit, name, part)
            if limit is None:
                continue
            status, output, seconds = run([sys.executable, scripts[part]] + extra, limit)
            results[name] = status == 0
            print(f"\n## {name}: {'pass' if status == 0 else f'FAIL (exit status {status})'}, {seconds:.0f} s\n")
            print(table_lines(output))
            if status != 0:
                print(f"last output:\n{output[-3000:]}")
            sys.stdout.flush()
    print(f"\ngpu_check: {sum(results.values())} of {len(results)} passed in {time.time() - t0:.0f} s: "
          + ", ".join(f"{k} {'pass' if v else 'FAIL'}" for k, v in results.items()))
    return results


def smoke_part(plan, device, results, limit_left):
    """The smoke part: a KITTI-STEP tree in a temp dir, then train.py on it per model; prints the part's table."""
    extra, limit = plan
    h, w = TREE_SIZE[device]
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "kitti_step"
        write_tree(tree, (h, w))
        rows, commands = [], []
        for name in MODELS:
            cut = limit_left(limit, f"smoke {name}", "smoke")
            if cut is None:
                continue
            passed, row, command = smoke(name, extra, cut, tree, Path(tmp) / name)
            results[f"smoke {name}"] = passed
            rows.append(row)
            commands.append(command)
    if rows:
        print(f"\n## smoke: train.py on a {h}x{w} KITTI-STEP tree (2 train, 1 val sequences of 4 frames)\n")
        print("\n".join(f"command: `{c}`" for c in commands))
        print("| model | exit | ms/step (last) | recompiles | STQ (meaningless: a few steps) | s | result |")
        print("|---|---|---|---|---|---|---|")
        print("\n".join(rows))
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(0 if all(main(parse_args()).values()) else 1)
