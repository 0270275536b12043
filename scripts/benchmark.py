"""Benchmark training and inference speed of Pix2Seq-D and Video K-Net: one table for BENCHMARKS.md (issue #7).

    python scripts/benchmark.py                                 # CPU: tiny presets, crop 64x192, batch 8, eager fp32
    python scripts/benchmark.py --device cuda --markdown        # GPU: tiny + paper presets, eager fp32 vs bf16 + compile
    python scripts/benchmark.py --data --markdown               # data loading: clips/s of one DataLoader worker
    python scripts/benchmark.py --ops --markdown                # PyTorch ops per training step, inside / outside the net
    OMP_NUM_THREADS=1 python scripts/benchmark.py --iters 3 --warmup 1 --infer_frames 3   # a quick smoke run

Per model, preset and mode:
  training   forward (compute_loss) + backward + AdamW step on one fixed synthetic batch already on the device: B clips
             of T frames (T = 1 + num_cond_frames for Pix2Seq-D, 2 for Video K-Net) cut from data.synthetic_video
             at the crop size. ms/step is the mean over --iters steps after --warmup untimed ones (CUDA synchronised
             at both ends). frames/s counts all B * T frames of the clips (Pix2Seq-D's network sees only the last
             frame of each clip; the earlier ones enter as ground-truth masks and the frame difference); clips/s
             = B per step. Not timed: data loading, grad clipping, EMA and the finite-loss check of train.py.
  first step wall seconds of the first warm-up step: in compile mode mostly compiling (dynamo, AOTAutograd,
             inductor) the training forward and backward; in eager mode CUDA / cuDNN start-up. '-' with --warmup 0.
  memory     CUDA: torch.cuda.max_memory_allocated over the training steps. CPU: peak resident set size of the
             process (VmHWM, reset per row via /proc/self/clear_refs; else resource.getrusage's ru_maxrss, which
             is the process peak so far), marked "RSS".
  FLOPs      torch.utils.flop_counter on one eager fp32 training step (forward + backward): matmuls, convolutions,
             attention (the CPU attention kernel is added below); elementwise ops are not counted. MFU = FLOPs /
             step time / --peak_tflops (default 989, H100 SXM bf16 dense, on CUDA; '-' on CPU unless given).
  inference  frames/s of predict_video over a stream of --infer_frames synthetic frames at the KITTI-STEP size
             (tiny: 96x288, paper: 375x1242) after one untimed pass (if --warmup > 0), each output copied to the
             host (as infer.py). Pix2Seq-D at 20 and 5 DDIM steps; Video K-Net with its tracker. Weights: the initial
             (untrained) ones, so Video K-Net's merge and tracker see a random model's number of segments.
  data       (--data, instead of the above) clips/s of one DataLoader worker: data.ClipDataset with the paper
             recipe's crop and scale (train.py RECIPES) over a KITTI-STEP tree of synthetic 375x1242 PNGs written to a
             temp dir, one thread (as in a worker); PNG decoding per frame timed apart. The GPU's training clips/s
             divided by it is the number of workers a GPU needs (train.py --num_workers).
  ops        (--ops, instead of the above) aten ops dispatched in one eager training step of --batch_size clips
             (default 1: Video K-Net's paper recipe per GPU, 8 clips / 8 GPUs; Pix2Seq-D's counts do not depend on
             the batch) at the crop size: in the network's forward (what torch.compile fuses), outside it
             (targets, matching, losses: eager, one launch each on a GPU) and in backward, plus the ops that make
             the host wait for the device (item / int / bool, nonzero, unique); Video K-Net's matching also copies
             its cost matrices to the host once per step (not seen by the counter on CPU). Device-independent.
Modes: eager = fp32 (TF32 off); bf16 = bf16 autocast, eager; compile = bf16 autocast + torch.compile of the network
(TF32 on, as train.py's system block); compile_fp32 = torch.compile without autocast (on CPU: whether compiling alone
would speed up the CPU runs, which train.py keeps eager). Losses, matching and the sampler loop stay eager. On CPU,
bf16 / compile run too (CPU autocast, inductor's C++ backend): a check that the path works, not the speed a GPU gets
from it."""
import argparse
import copy
import gc
import re
import resource
import shlex
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.utils.flop_counter as fc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from the repository root
import data  # noqa: E402
from infer import MODELS, build_model, compile_for_inference  # noqa: E402

MODES = {"eager": ("eager fp32", False, False), "bf16": ("eager bf16", True, False),  # name -> (label, bf16, compile)
         "compile": ("bf16+compile", True, True), "compile_fp32": ("fp32+compile", False, True)}
DEFAULTS = {  # per preset: training crop, clips per step, inference frame size (the train.py recipes, KITTI-STEP)
    "tiny": dict(crop=(64, 192), batch={"pix2seq_d": 8, "video_knet": 8}, infer=(96, 288)),
    "paper": dict(crop=(384, 1248), batch={"pix2seq_d": 8, "video_knet": 2}, infer=(375, 1242)),
}
H100_BF16_TFLOPS = 989.0  # H100 SXM dense bf16 peak
START = time.perf_counter()  # progress lines count seconds from here
aten = torch.ops.aten
CPU_SDPA_FLOPS = {  # flop_counter knows the CUDA attention kernels, not the one SDPA uses on CPU
    aten._scaled_dot_product_flash_attention_for_cpu:
        lambda q, k, v, *a, out_shape=None, **kw: fc.sdpa_flop_count(q, k, v),
    aten._scaled_dot_product_flash_attention_for_cpu_backward:
        lambda g, q, k, v, *a, out_shape=None, **kw: fc.sdpa_backward_flop_count(g, q, k, v),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", default="pix2seq_d,video_knet", help="comma-separated")
    p.add_argument("--presets", help="comma-separated tiny / paper (default: tiny on CPU, tiny,paper on CUDA)")
    p.add_argument("--crop", help="training crop HxW for every row (default: tiny 64x192, paper 384x1248)")
    p.add_argument("--infer_size", help="inference frame HxW for every row (default: tiny 96x288, paper 375x1242)")
    p.add_argument("--batch_size", type=int, help="clips per step for every row (default: tiny 8, paper 8 / 2)")
    p.add_argument("--iters", type=int, default=10, help="timed training steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed training steps first (and one inference pass)")
    p.add_argument("--infer_frames", type=int, default=8, help="frames in the timed inference stream (0 = skip)")
    p.add_argument("--modes", help="comma-separated eager, bf16, compile, compile_fp32 (default: eager on CPU, "
                   "eager,compile on CUDA)")
    p.add_argument("--peak_tflops", type=float, help="peak for MFU (default: 989 on CUDA, none on CPU)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", action="store_true", help="time data loading instead of the models")
    p.add_argument("--data_clips", type=int, default=20, help="--data: clips timed per model")
    p.add_argument("--ops", action="store_true", help="count the ops of a training step instead of timing models")
    p.add_argument("--markdown", action="store_true", help="print a markdown table (default: aligned text)")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    args.models = args.models.split(",")
    args.presets = (args.presets or ("tiny,paper" if cuda else "tiny")).split(",")
    args.modes = (args.modes or ("eager,compile" if cuda else "eager")).split(",")
    for flag, given, known in (("models", args.models, MODELS), ("presets", args.presets, DEFAULTS),
                               ("modes", args.modes, MODES)):
        if set(given) - set(known):
            p.error(f"--{flag}: unknown {sorted(set(given) - set(known))}; choose from {sorted(known)}")
    if any(MODES[m][2] for m in args.modes) and args.warmup < 1:
        p.error("--modes compile / compile_fp32 need --warmup >= 1 (the first step compiles)")
    if args.iters < 1 or (args.batch_size is not None and args.batch_size < 1) or args.infer_frames < 0:
        p.error("--iters and --batch_size must be >= 1, --infer_frames >= 0")
    for k in ("crop", "infer_size"):
        v = getattr(args, k)
        if v is not None:
            m = re.fullmatch(r"(\d+)x(\d+)", v.lower())
            if not m:
                p.error(f"--{k} must be HxW, e.g. 384x1248, got {v!r}")
            setattr(args, k, (int(m[1]), int(m[2])))
    args.peak_tflops = args.peak_tflops or (H100_BF16_TFLOPS if cuda else None)
    return args


# -----------------------------------------------------------------------------
# Inputs, memory, system facts

def make_clips(B, T, H, W, device, seed=0):
    """-> images (B, T, 3, H, W) float in [0, 1], semantic (0..18, 255 void) and instance (B, T, H, W) int64."""
    vids = [data.synthetic_video(seed + b, num_frames=T, height=H, width=W, num_objects=8) for b in range(B)]
    images = torch.stack([torch.from_numpy(v[0]) for v in vids]).permute(0, 1, 4, 2, 3).float() / 255
    semantic, instance = (torch.stack([torch.from_numpy(v[k]) for v in vids]) for k in (1, 2))
    return images.to(device), semantic.to(device), instance.to(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM, the peak RSS
        except OSError:
            pass


def peak_memory(device):
    """-> e.g. '12.3 GiB' (CUDA allocated) or '0.81 GiB RSS' (CPU process peak)."""
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
    try:
        kib = int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())[1])
    except (OSError, TypeError):
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; the process peak so far
    return f"{kib / 2**20:.2f} GiB RSS"


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    info = Path("/proc/cpuinfo")
    cpu = re.search(r"model name\s*:\s*(.+)", info.read_text()) if info.exists() else None
    return f"{cpu[1] if cpu else 'CPU'}, {torch.get_num_threads()} threads"


def git_commit():
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[1]).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


# -----------------------------------------------------------------------------
# Training step, FLOPs, inference

def progress(what):
    """One line to stderr with the seconds since the script started: a run cut by a time limit shows where it was."""
    print(f"[{time.perf_counter() - START:.0f} s] {what}", file=sys.stderr, flush=True)


def train_step(module, model, raw, optimizer, batch, autocast, generator):
    """One training step; `model` is raw or its compiled wrapper (compute_loss reads raw's config, calls model)."""
    with autocast:
        loss, _ = module.compute_loss(raw, *batch, generator=generator, forward=model)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def count_flops(module, raw, batch, generator):
    """One eager fp32 forward + backward of compute_loss -> FLOPs counted by torch.utils.flop_counter."""
    raw.train()
    with fc.FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FLOPS) as counter:
        loss, _ = module.compute_loss(raw, *batch, generator=generator)
        loss.backward()
    raw.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def time_training(module, model, raw, batch, device, autocast, args):
    """-> (ms per step, peak memory string, seconds of the first warm-up step or None) of --iters steps after
    --warmup, with a fresh AdamW."""
    optimizer = torch.optim.AdamW(raw.parameters(), lr=1e-4, weight_decay=0.05, fused=device.type == "cuda")
    generator = torch.Generator(device).manual_seed(args.seed)
    raw.train()
    reset_peak_memory(device)
    first = None
    for i in range(args.warmup):
        t0 = time.perf_counter()
        train_step(module, model, raw, optimizer, batch, autocast, generator)
        if i == 0:
            sync(device)
            first = time.perf_counter() - t0
    sync(device)
    t0 = time.perf_counter()
    for _ in range(args.iters):
        train_step(module, model, raw, optimizer, batch, autocast, generator)
    sync(device)
    return (time.perf_counter() - t0) * 1000 / args.iters, peak_memory(device), first


def infer_fps(name, net, frames, device, autocast, warmup, seed, **kw):
    """-> frames/s of predict_video over frames (list of (3, H, W) on device); one untimed pass first if warmup."""
    def one_pass():
        extra = dict(generator=torch.Generator(device).manual_seed(seed)) if name == "pix2seq_d" else {}
        with autocast:
            for sem, ins in MODELS[name].predict_video(net, iter(frames), **kw, **extra):
                sem.cpu(), ins.cpu()  # as infer.py: each frame's output goes to the host

    if warmup:
        one_pass()
    sync(device)
    t0 = time.perf_counter()
    one_pass()
    sync(device)
    return len(frames) / (time.perf_counter() - t0)


def data_rows(args):
    """--data: per model, one worker's ClipDataset throughput at the paper recipe -> table rows (lists of strings)."""
    import tempfile
    import train
    torch.set_num_threads(1)  # a DataLoader worker runs torch ops on one thread
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        seqs = data.synthetic_sequences(2, seed=args.seed, num_frames=8, height=375, width=1242, num_objects=8)
        data.write_kitti_step(seqs, tmp, "train")
        seqs = data.load_sequences("kitti_step", tmp, "train")
        frames = [(s, i) for s in seqs for i in range(len(s))]
        t0 = time.perf_counter()
        for s, i in frames:
            s.image(i)
        ms_image = (time.perf_counter() - t0) * 1000 / len(frames)
        t0 = time.perf_counter()
        for s, i in frames:
            s.label(i)
        ms_label = (time.perf_counter() - t0) * 1000 / len(frames)
        for name in args.models:  # train.py's paper recipe: crop, scale jitter, pad value, clip layout
            r = train.parse_args(["--model", name, "--dataset", "kitti_step", "--root", tmp])
            mode, T = ("consecutive", 2) if name == "pix2seq_d" else ("pair", 2)  # 1 conditioning frame / key + ref
            clips = data.ClipDataset(seqs, mode, T, r.crop, r.scale, pad_value=MODELS[name].PAD_VALUE)
            clips[(0, [args.seed, 0, 0])]  # warm-up
            t0 = time.perf_counter()
            for i in range(args.data_clips):
                clips[(i % len(clips), [args.seed, 0, i])]
            ms = (time.perf_counter() - t0) * 1000 / args.data_clips
            crop, scale = "x".join(map(str, r.crop)), ",".join(map(str, r.scale))
            rows.append([name, crop, scale, str(T)] + [f"{x:.1f}" for x in (ms_image, ms_label, ms, 1000 / ms)])
            print("done: " + " | ".join(rows[-1]), file=sys.stderr, flush=True)
    return rows


SYNC_OPS = {"_local_scalar_dense", "nonzero", "_unique2", "unique_dim", "unique_consecutive", "masked_select"}


def ops_rows(args):
    """--ops: per model and preset, aten ops of one eager training step (forward split at the network) -> rows."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.where, self.ops, self.syncs = "loss", {}, 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops[self.where] = self.ops.get(self.where, 0) + 1
            self.syncs += func.overloadpacket.__name__ in SYNC_OPS
            return func(*args, **(kwargs or {}))

    rows = []
    for name in args.models:
        for preset in args.presets:
            module, (H, W) = MODELS[name], args.crop or DEFAULTS[preset]["crop"]
            raw, cfg = build_model(name, dict(module.PRESETS[preset]))
            raw.train()
            T = 1 + cfg.num_cond_frames if name == "pix2seq_d" else 2
            B = args.batch_size or 1
            batch = make_clips(B, T, H, W, torch.device("cpu"), args.seed)
            count = Count()

            def network(*a, **kw):  # compute_loss calls this in place of the model; the counter notes where it is
                count.where = "network"
                try:
                    return raw(*a, **kw)
                finally:
                    count.where = "loss"

            with count:
                loss, _ = module.compute_loss(raw, *batch, generator=torch.Generator().manual_seed(args.seed),
                                              forward=network)
                count.where = "backward"
                loss.backward()
            o = count.ops
            rows.append([name, preset, f"{H}x{W}", f"{B}x{T}", str(o["network"]), str(o["loss"]), str(o["backward"]),
                         str(count.syncs)])
            print("done: " + " | ".join(rows[-1]), file=sys.stderr, flush=True)
    return rows


# -----------------------------------------------------------------------------

OPS_COLUMNS = ["model", "preset", "crop", "batch", "forward ops: network", "forward ops: outside", "backward ops",
               "syncing ops"]
DATA_COLUMNS = ["model", "crop", "scale", "frames/clip", "image PNG ms/frame", "label PNG ms/frame", "ms/clip",
                "clips/s per worker"]
COLUMNS = ["model", "preset", "mode", "crop", "batch", "train ms/step", "first step s", "train clips/s",
           "train frames/s", "peak mem", "GFLOP/step", "MFU", "infer frames/s (20 steps)",
           "infer frames/s (5 steps / tracking)"]


def benchmark_rows(name, preset, args, device):
    """One model and preset -> a table row (list of strings, COLUMNS) per mode; each row also goes to stderr."""
    module, d = MODELS[name], DEFAULTS[preset]
    (H, W), B, (Hi, Wi) = args.crop or d["crop"], args.batch_size or d["batch"][name], args.infer_size or d["infer"]
    raw, cfg = build_model(name, dict(module.PRESETS[preset]))
    raw.to(device)
    T = 1 + cfg.num_cond_frames if name == "pix2seq_d" else 2
    batch = make_clips(B, T, H, W, device, args.seed)
    video = data.synthetic_video(args.seed + 1000, num_frames=max(args.infer_frames, 1), height=Hi, width=Wi)[0]
    frames = [torch.from_numpy(f).to(device).permute(2, 0, 1).float() / 255 for f in video[:args.infer_frames]]
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    flops = count_flops(module, raw, batch, torch.Generator(device).manual_seed(args.seed))
    init = copy.deepcopy(raw.state_dict())  # every mode trains and infers from the same weights
    rows = []
    for mode in args.modes:
        label, bf16, compiled = MODES[mode]
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bf16
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
        raw.load_state_dict(init)
        torch.compiler.reset()  # no graphs or automatic-dynamic shapes carried over from other rows
        model = torch.compile(raw, dynamic=False) if compiled else raw
        progress(f"{name} | {preset} | {label}: training (the first step compiles in compile mode)")
        ms, mem, first_s = time_training(module, model, raw, batch, device, autocast, args)
        progress(f"{name} | {preset} | {label}: inference (first pass untimed)")
        raw.load_state_dict(init)
        raw.eval()
        torch.compiler.reset()
        net = compile_for_inference(raw, name) if compiled else raw
        fps = ["-", "-"]
        if frames and name == "pix2seq_d":
            fps = [f"{infer_fps(name, net, frames, device, autocast, args.warmup, args.seed, steps=s):.2f}"
                   for s in (20, 5)]
        elif frames:
            fps[1] = f"{infer_fps(name, net, frames, device, autocast, args.warmup, args.seed):.2f}"
        mfu = f"{100 * flops / (ms / 1e3) / (args.peak_tflops * 1e12):.1f}%" if args.peak_tflops else "-"
        first = "-" if first_s is None else f"{first_s:.1f}"
        rows.append([name, preset, label, f"{H}x{W}", f"{B}x{T}", f"{ms:.1f}", first, f"{B / ms * 1e3:.2f}",
                     f"{B * T / ms * 1e3:.2f}", mem, f"{flops / 1e9:.1f}", mfu, *fps])
        print("done: " + " | ".join(rows[-1]), file=sys.stderr, flush=True)
    del raw, model, net, batch, frames
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def format_table(rows, markdown, columns=COLUMNS, text=5):
    """Rows of strings -> a markdown table or aligned text, columns padded to their widest cell; the first `text`
    columns left-aligned, the numbers after them right-aligned."""
    width = [max(len(r[i]) for r in [columns] + rows) for i in range(len(columns))]
    line = lambda r: [c.ljust(w) if i < text else c.rjust(w) for i, (c, w) in enumerate(zip(r, width))]  # noqa: E731
    if not markdown:
        return "\n".join("  ".join(line(r)) for r in [columns] + rows)
    rule = [("-" * (w - 1) + ":") if i >= text else "-" * w for i, w in enumerate(width)]
    return "\n".join("| " + " | ".join(r) + " |" for r in [line(columns), rule] + [line(r) for r in rows])


def print_command(args):
    """The command line that made the table, in backticks for markdown."""
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    print(f"command: {'`' + command + '`' if args.markdown else command}")


def main(args):
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.ops:
        rows = ops_rows(args)
        print_command(args)
        print(f"torch {torch.__version__} | git {git_commit()} | one eager fp32 training step, aten ops dispatched\n")
        print(format_table(rows, args.markdown, OPS_COLUMNS, 4))
        return rows
    if args.data:
        rows = data_rows(args)
        print_command(args)
        print(f"device: {device_name(torch.device('cpu'))} | torch {torch.__version__} | git {git_commit()}")
        print(f"{args.data_clips} clips per model after one warm-up, 2 sequences x 8 frames of 375x1242 PNGs\n")
        print(format_table(rows, args.markdown, DATA_COLUMNS, 4))
        return rows
    rows = []
    for name in args.models:
        for preset in args.presets:
            rows += benchmark_rows(name, preset, args, device)
    print_command(args)
    print(f"device: {device_name(device)} | torch {torch.__version__} | git {git_commit()}")
    print(f"training: {args.iters} steps after {args.warmup} warmup, fixed synthetic batch on the device; batch = "
          f"clips x frames; peak mem: {'max_memory_allocated' if device.type == 'cuda' else 'process peak RSS'}")
    print(f"MFU: eager fp32 FLOPs of one step / step time / "
          f"{f'{args.peak_tflops:g} TFLOP/s' if args.peak_tflops else '(no --peak_tflops: not computed)'}; "
          f"inference: {args.infer_frames} frames, predict_video, outputs to host\n")
    print(format_table(rows, args.markdown))
    return rows


if __name__ == "__main__":
    main(parse_args())
