"""Train Pix2Seq-D or Video K-Net for video panoptic segmentation, on one device or many (torchrun).

    python train.py                                               # tiny Pix2Seq-D on the embedded synthetic videos, CPU
    python train.py --model video_knet                            # tiny Video K-Net, same videos
    python train.py --model pix2seq_d --dataset kitti_step --root DIR --device cuda      # paper preset and recipe
    torchrun --nproc_per_node 8 train.py --model video_knet --dataset kitti_step --root DIR --device cuda

Flags left unset take the recipe of the model and preset (RECIPES below: the paper's for `paper`, a CPU-sized one
for `tiny`). Every --eval_interval steps the EMA weights (the raw ones with --ema 0) are scored on held-out videos
(STQ, AQ, SQ, VPQ) and a checkpoint is written to OUT_DIR/ckpt.pt (temp file, fsync, rename); --resume continues from
it exactly (same step, optimizer, EMA, data order, augmentations and noise), or starts at step 0 when a killed run
wrote none yet. One log line per --log_interval, the same values appended to OUT_DIR/log.jsonl.
--init_from and --backbone_weights print what they loaded, skipped and left at init. A mistake in the flags or the
files they name prints `error: ...` and exits with status 2; a bug keeps its traceback.
"""
import argparse
import copy
import json
import math
import os
import subprocess
import time
from contextlib import nullcontext
from dataclasses import MISSING, asdict, fields
from datetime import timedelta
from pathlib import Path

import torch
from tqdm import tqdm

import data
from infer import (MODELS, UserError, build_model, check_checkpoint, check_device, check_out_dir, evaluate, format_scores,
                   read_checkpoint, run_cli, torch_load)

# Training recipes. paper: the reference facts (Pix2Seq-D video recipe: AdamW wd 0.05, clip 1, EMA 0.99, constant LR,
# no scale jitter; Video K-Net: AdamW 1e-4 wd 0.05, backbone LR x0.25, warmup 1000, x0.1 at 9/12 and 11/12 of the
# run, scale jitter 0.5-2). Pix2Seq-D's 1e-5..3e-5 assume an image-pretrained --init_from; from ImageNet weights
# alone we use 1e-4. tiny: sized to train on 2 CPU cores in a few minutes on the synthetic videos; Pix2Seq-D keeps the
# paper's constant LR (after a short warmup; cosine to 10% or x0.1 steps scored lower, README) and no scale jitter
# (README, at frame dropout 0.2: STQ 0.475 over 3 seeds, 0.435 over 2 with 0.75-1.25); Video K-Net decays by cosine to
# 10% in place of the paper's steps and keeps that jitter (without it, one seed: AQ 0.307 against 0.361). Video K-Net's
# tiny peak LR is 2e-3: over seeds 0-2 it beat 1e-3, and 3e-3 did not beat it (README). Pix2Seq-D's is 2e-3 too: on
# left-to-right ids it beat 1e-3 over seeds 0-3 by about one standard error (README; within noise on random ids).
# Pix2Seq-D tiny runs 2600 steps: its 6-bit preset (pix2seq_d.py) makes a step 0.69x as long as the 8-bit one, whose
# 1800 steps set the README's wall time.
RECIPES = {
    ("pix2seq_d", "paper"): dict(lr=1e-4, batch_size=32, max_iters=50_000, warmup=0, schedule="constant",
                                 crop="384x1248", scale="1.0,1.0", ema=0.99, eval_interval=5000),
    ("pix2seq_d", "tiny"): dict(lr=2e-3, batch_size=8, max_iters=2600, warmup=100, schedule="constant",
                                crop="64x192", scale="1.0,1.0", ema=0.99, eval_interval=1300),
    ("video_knet", "paper"): dict(lr=1e-4, batch_size=8, max_iters=15_000, warmup=1000, schedule="step",
                                  crop="384x1248", scale="0.5,2.0", ema=0.0, eval_interval=5000),
    ("video_knet", "tiny"): dict(lr=2e-3, batch_size=8, max_iters=1900, warmup=100, schedule="cosine",
                                 crop="64x192", scale="0.75,1.25", ema=0.99, eval_interval=950),
}
# Backbone LR multiplier with pre-trained weights (--backbone_weights / --init_from); from scratch it is 1: Video
# K-Net's x0.25 protects ImageNet features and would only slow a randomly initialised backbone.
BACKBONE_LR_MULT = {"pix2seq_d": 1.0, "video_knet": 0.25}
# Training flags a --resume may change (noted when it does): --max_iters may grow to extend a run, the rest is legal
# but makes the resumed run differ from one long run.
RESUME_NOTED = ("root", "crop", "scale", "batch_size", "lr", "weight_decay", "grad_clip", "warmup", "backbone_lr_mult",
                "schedule", "ema", "seed")
# An --init_from filling less than this share of the tensors it should is an error without --allow_partial_init.
MIN_INIT_COVERAGE = 0.95


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="pix2seq_d", choices=sorted(MODELS))
    p.add_argument("--dataset", default="synthetic", choices=data.DATASETS,
                   help="synthetic(_hard) need no files; kitti_step / cityscapes need --root (layouts: see data.py)")
    p.add_argument("--root", help="dataset root")
    p.add_argument("--preset", choices=["paper", "tiny"], help="model size (default: tiny on synthetic, else paper)")
    p.add_argument("--crop", help="training crop HxW (default: the recipe's, e.g. 384x1248)")
    p.add_argument("--scale", help="random scale range lo,hi applied to whole clips (default: the recipe's)")
    p.add_argument("--cond", choices=["none", "mask", "mask+diff"], help="Pix2Seq-D conditioning (default: config)")
    p.add_argument("--num_cond_frames", type=int, choices=[1, 2], help="Pix2Seq-D: previous masks conditioned on")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="torch.compile the network on CUDA (CPU always runs eager fp32)")
    p.add_argument("--batch_size", type=int, help="clips per step, over all processes")
    p.add_argument("--max_iters", type=int, help="optimizer steps")
    p.add_argument("--lr", type=float, help="peak learning rate (AdamW)")
    p.add_argument("--weight_decay", type=float, default=0.05)
    p.add_argument("--grad_clip", type=float, default=1.0, help="max gradient L2 norm (0 = off)")
    p.add_argument("--warmup", type=int, help="linear warmup steps")
    p.add_argument("--backbone_lr_mult", type=float,
                   help="backbone LR / LR (default: Video K-Net's 0.25 with loaded weights, else 1)")
    p.add_argument("--schedule", choices=["constant", "cosine", "step"], help="LR after warmup")
    p.add_argument("--ema", type=float, help="EMA decay of the evaluated weights (0 = evaluate the raw weights)")
    p.add_argument("--eval_interval", type=int, help="steps between evaluation + checkpoint")
    p.add_argument("--eval_videos", type=int, default=0, help="held-out videos scored (0 = all)")
    p.add_argument("--eval_frames", type=int, default=0, help="frames per held-out video scored (0 = all)")
    p.add_argument("--log_interval", type=int, default=50)
    p.add_argument("--out_dir", default="out", help="checkpoint, log.jsonl and eval predictions go here")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT_DIR/ckpt.pt (none yet: start at step 0, as a killed run's rerun should)")
    p.add_argument("--init_from", help="checkpoint to start from (e.g. Cityscapes pre-training); weights only; one "
                                       "train.py wrote (the authors' K-Net / Video K-Net weights: convert them with "
                                       "scripts/convert_knet_checkpoint.py)")
    p.add_argument("--allow_partial_init", action=argparse.BooleanOptionalAction, default=False,
                   help=f"accept an --init_from that fills under {MIN_INIT_COVERAGE:.0%}% of the tensors it should, "
                        "or with tensors of other shapes (skipped, listed)")
    p.add_argument("--backbone_weights", help="torchvision ResNet-50 state_dict file (ImageNet)")
    p.add_argument("--freeze_bn", action=argparse.BooleanOptionalAction, default=None,
                   help="freeze backbone BN statistics and the stem + layer1 (Video K-Net's mmdet recipe; default: on "
                        "for video_knet with --backbone_weights or --init_from)")
    p.add_argument("--num_workers", type=int, default=None,
                   help="DataLoader workers per process (default: 0 on CPU; on CUDA min(8, CPUs per process - 1), as "
                        "one worker makes only ~15-30 paper-size clips/s: BENCHMARKS.md)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.preset = args.preset or ("tiny" if args.dataset.startswith("synthetic") else "paper")
    for k, v in RECIPES[(args.model, args.preset)].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    try:
        args.crop = tuple(int(x) for x in str(args.crop).lower().split("x"))
        args.scale = tuple(float(x) for x in str(args.scale).split(","))
    except ValueError:
        p.error(f"--crop must be HxW and --scale lo,hi; got {args.crop!r} and {args.scale!r}")
    multiple = MODELS[args.model].SIZE_MULTIPLE  # the network's stride
    if len(args.crop) != 2 or min(args.crop) <= 0 or args.crop[0] % multiple or args.crop[1] % multiple:
        p.error(f"--crop {args.crop}: need HxW, both multiples of {multiple} for {args.model}")
    if len(args.scale) != 2 or not 0 < args.scale[0] <= args.scale[1]:
        p.error(f"--scale {args.scale}: need lo,hi with 0 < lo <= hi")
    if not args.dataset.startswith("synthetic") and not args.root:
        p.error(f"--dataset {args.dataset} needs --root")
    if args.dataset.startswith("synthetic") and args.root:
        p.error(f"--root {args.root} is given but --dataset is {args.dataset}: add --dataset kitti_step or cityscapes")
    if args.model != "pix2seq_d" and (args.cond or args.num_cond_frames):
        p.error(f"--cond and --num_cond_frames are Pix2Seq-D flags; --model is {args.model}")
    for k in ("batch_size", "max_iters", "eval_interval", "log_interval", "lr"):
        if getattr(args, k) <= 0:
            p.error(f"--{k} must be positive, got {getattr(args, k)}")
    for k in ("weight_decay", "grad_clip", "warmup", "eval_videos", "eval_frames", "num_workers", "backbone_lr_mult"):
        if getattr(args, k) is not None and getattr(args, k) < 0:
            p.error(f"--{k} must be >= 0, got {getattr(args, k)}")
    if not 0 <= args.ema < 1:
        p.error(f"--ema must be in [0, 1) (0 = evaluate the raw weights), got {args.ema}")
    pretrained = bool(args.backbone_weights or args.init_from)
    if args.freeze_bn is None:
        args.freeze_bn = args.model == "video_knet" and pretrained
    if args.backbone_lr_mult is None:
        args.backbone_lr_mult = BACKBONE_LR_MULT[args.model] if pretrained else 1.0
    return args


def lr_at(step, args):
    """Step -> learning rate: linear warmup, then constant, cosine to 10%, or x0.1 at 75% and 92% of the run."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    frac = (step - args.warmup) / max(1, args.max_iters - args.warmup)
    if args.schedule == "cosine":
        return args.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * frac)))
    if args.schedule == "step":
        return args.lr * 0.1 ** ((step >= 0.75 * args.max_iters) + (step >= 0.92 * args.max_iters))
    return args.lr


# -----------------------------------------------------------------------------
# System: device, processes (torchrun sets RANK), precision

def setup_system(args):
    """-> (ddp, rank, world, device, autocast). One process per device under torchrun (args.device becomes
    cuda:LOCAL_RANK there, as printed and saved); bf16 autocast and TF32 on CUDA, eager fp32 on CPU. The same seed
    on every rank gives the same initial weights."""
    check_device(args.device)  # before any process group: a CPU-only torch under torchrun fails on NCCL otherwise
    ddp = int(os.environ.get("RANK", -1)) != -1
    rank, world = 0, 1
    if ddp:  # a long rank-0 evaluation must not trip the collective timeout of the waiting ranks
        backend = "nccl" if args.device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend, timeout=timedelta(hours=2))
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        if args.device.startswith("cuda"):
            args.device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
            torch.cuda.set_device(args.device)
    if args.batch_size % world:
        raise UserError(f"--batch_size {args.batch_size} is not divisible by the {world} processes")
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    torch.manual_seed(args.seed)
    return ddp, rank, world, device, autocast


def mean_over_ranks(x):
    """Video K-Net's set-loss normalisers under DDP: the mean mask count over all processes."""
    x = x.clone()
    torch.distributed.all_reduce(x)
    return x / torch.distributed.get_world_size()


def will_resume(args, ckpt_path, master):
    """--resume with a checkpoint in OUT_DIR -> True; without one (a run killed before its first) the run starts at
    step 0. Rank 0 says which, and that --backbone_weights / --init_from are not loaded over a checkpoint."""
    resume = args.resume and ckpt_path.exists()
    if master and args.resume and not resume:
        print(f"--resume: no checkpoint {ckpt_path} yet, so this run starts at step 0")
    elif master and resume and (args.backbone_weights or args.init_from):
        print(f"--resume: the weights come from {ckpt_path}; --backbone_weights / --init_from not loaded")
    elif master and not args.resume and ckpt_path.exists():
        print(f"warning: {ckpt_path} exists and this run starts at step 0 without --resume: it starts a new "
              "log.jsonl now and replaces the checkpoint at its first evaluation (Ctrl-C now and add --resume to "
              "continue that run, or give another --out_dir)")
    return resume


def print_header(args, model, n_clips, device, world, init_lines):
    """Rank 0, at the start: what the initial weights loaded, then code, torch, device, model, data and every arg."""
    for line in init_lines:
        print(line)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"git {git_sha()} | torch {torch.__version__} | device {device} x{world} | {args.model} {args.preset} "
          f"{n_params / 1e6:.2f}M params | {n_clips} clips | out {args.out_dir}")
    print("args " + json.dumps(vars(args)))


def git_sha():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


# -----------------------------------------------------------------------------
# Data: the two splits and an endless, resumable stream of training batches

def load_splits(args):
    """-> (train sequences, val sequences: the first --eval_videos of them), checked to be disjoint on KITTI-STEP.
    Read before any model is built, so a wrong --root fails fast."""
    train_seqs = data.load_sequences(args.dataset, args.root, "train")
    eval_seqs = data.load_sequences(args.dataset, args.root, "val")
    eval_seqs = eval_seqs[: args.eval_videos] if args.eval_videos > 0 else eval_seqs
    both = sorted({s.name for s in train_seqs} & {s.name for s in eval_seqs})
    if args.dataset == "kitti_step" and both:
        raise UserError(f"sequences {both} are in both the train and the val split: the scores would not be held out")
    return train_seqs, eval_seqs


def training_clips(args, cfg, train_seqs, pad_value):
    """-> data.ClipDataset of the model's clips: Pix2Seq-D 1 + num_cond_frames consecutive frames, Video K-Net a
    (key, reference) pair; cropped, scale-jittered and padded with the model's pad value."""
    if args.model == "pix2seq_d":
        clips = data.ClipDataset(train_seqs, "consecutive", 1 + cfg.num_cond_frames, args.crop, args.scale, pad_value)
    else:
        clips = data.ClipDataset(train_seqs, "pair", 2, args.crop, args.scale, pad_value)
    if len(clips) < args.batch_size:
        raise UserError(f"{len(clips)} training clips are fewer than --batch_size {args.batch_size}")
    return clips


def default_workers(args, cuda):
    """--num_workers, or on CUDA the CPUs of this process's share of the node with one left for it; 0 on CPU."""
    if args.num_workers is not None:
        return args.num_workers
    if not cuda:
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_process = cpus // int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return min(8, max(1, per_process - 1))


def batch_stream(clips, args, step, rank, world, num_workers, pin_memory):
    """Endless batches of this rank from `step` on. Epoch e is a fixed permutation (seed + e) and clip i of it is
    augmented with the seed [seed, e, i], so a resumed run sees exactly the clips it would have seen."""
    steps_per_epoch = len(clips) // args.batch_size
    epoch, skip = divmod(step, steps_per_epoch)
    while True:
        order = torch.randperm(len(clips), generator=torch.Generator().manual_seed(args.seed + epoch))
        order = order[: steps_per_epoch * args.batch_size].view(steps_per_epoch, world, -1)[skip:, rank]
        sampler = [[(i, [args.seed, epoch, i]) for i in b] for b in order.tolist()]
        yield from torch.utils.data.DataLoader(clips, batch_sampler=sampler, num_workers=num_workers,
                                               pin_memory=pin_memory)
        epoch, skip = epoch + 1, 0


# -----------------------------------------------------------------------------
# Model and optimiser: config, initial weights from a file (one of our checkpoints, the authors' mmdet K-Net /
# Video K-Net, torchvision ResNet-50), frozen stem, AdamW, EMA

def model_config(args, module):
    """-> config dict of the model: its preset, the dataset's classes (data.py) and the Pix2Seq-D flags."""
    # the dataset's label space; thing_classes changes Pix2Seq-D only (ids kept on person / car at inference)
    config = dict(module.PRESETS[args.preset], num_classes=data.NUM_CLASSES, thing_classes=data.THING_CLASSES)
    if args.model == "pix2seq_d":
        config.update({k: getattr(args, k) for k in ("cond", "num_cond_frames") if getattr(args, k) is not None})
        if args.dataset == "cityscapes":
            config["frame_dropout"] = 1.0  # single images: an image model (all-void history), as the paper's stage 1
    return config


def init_summary(own, loaded, skipped, present, expected):
    """Import bookkeeping -> (summary text, coverage). own: {name: shape} of the model; loaded: names filled;
    skipped: [(name in the file, why)]; present: our names the file has (any shape); expected: the names the file
    should fill. Coverage = filled / expected."""
    few = lambda xs: ", ".join(xs[:4]) + (", ..." if len(xs) > 4 else "")  # noqa: E731
    left = [f"{k} ({'shape' if k in present else 'missing'})" for k in own if k not in loaded]
    text = f"loaded {len(loaded)} of {len(own)} tensors; skipped {len(skipped)}"
    text += f" (first few: {few([f'{k} ({why})' for k, why in skipped])})" if skipped else ""
    text += f"; left at init: {len(left)}" + (f" (first few: {few(left)})" if left else "")
    return text, len(set(loaded) & set(expected)) / max(1, len(expected))


def load_init(model, name, path, allow_partial=False, flag="--init_from"):
    """Model + --init_from file (a checkpoint train.py wrote) -> summary line; loads in place what fits (its EMA
    weights if saved).

    UserError when the file is foreign, holds the other model or is the authors' mmdet file (convert it first with
    scripts/convert_knet_checkpoint.py), and unless allow_partial when it fills under MIN_INIT_COVERAGE of the
    model's tensors or has tensors of other shapes. Errors start with `flag` and the path."""
    convert = (f"; the authors' Video K-Net checkpoint: convert it first, python scripts/convert_knet_checkpoint.py "
               f"{path} out/authors/ckpt.pt, then pass that file")
    init = torch_load(path, flag, convert if name == "video_knet" else "")
    tensors = isinstance(init, dict) and all(map(torch.is_tensor, init.values()))  # a bare state_dict
    if isinstance(init, dict) and "model" not in init and ("state_dict" in init or tensors and name == "video_knet"):
        raise UserError(f"{flag} {path}: an mmdet state_dict, not a checkpoint written by train.py{convert}")
    check_checkpoint(init, path, flag)
    if init["args"]["model"] != name:
        raise UserError(f"{flag} {path} holds a {init['args']['model']} model, not {name}: pass --model "
                        f"{init['args']['model']} or a {name} checkpoint")
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = init.get("ema") or init["model"]
    loaded = {k for k, v in state.items() if own.get(k) == tuple(v.shape)}
    skipped = [(k, f"shape {tuple(v.shape)} vs {own[k]}" if k in own else "unexpected") for k, v in state.items()
               if k not in loaded]
    model.load_state_dict({k: state[k] for k in loaded}, strict=False)
    text, coverage = init_summary(own, loaded, skipped, set(state) & set(own), list(own))
    text = f"init from {path} (train.py checkpoint): {text}"
    wrong = [f"{k} {why}" for k, why in skipped if why.startswith("shape")]
    if not allow_partial and (coverage < MIN_INIT_COVERAGE or wrong):
        why = (f"{len(wrong)} tensors differ in shape from this model's, e.g. {wrong[0]}; the model config must match "
               "(Pix2Seq-D: the same --preset, --cond and --num_cond_frames)" if wrong else
               f"it fills {coverage:.1%} of the {len(own)} tensors it should, under {MIN_INIT_COVERAGE:.0%}")
        raise UserError(f"{flag} {path}: {why}; pass --allow_partial_init to start from it anyway. {text}")
    return text


def load_backbone(model, module, path):
    """Model + --backbone_weights file (torchvision ResNet-50 state_dict) -> summary line; loads the backbone."""
    state = torch_load(path, "--backbone_weights")
    try:
        if not isinstance(state, dict):
            raise ValueError(f"a {type(state).__name__}, not a state_dict")
        module.load_backbone_weights(model, state)
    except ValueError:  # the model file's message lists every key: one line with the first few instead
        own = {k: tuple(v.shape) for k, v in model.backbone.state_dict().items()}
        ignored = ("fc.",) if "layer4.0.conv1.weight" in own else ("fc.", "layer4.")  # Pix2Seq-D: C4, no layer4
        given = {k: tuple(getattr(v, "shape", ())) for k, v in (state if isinstance(state, dict) else {}).items()
                 if not str(k).startswith(ignored)}
        loaded = {k for k, shape in given.items() if own.get(k) == shape}
        skipped = [(k, f"shape {shape} vs {own[k]}" if k in own else "unexpected") for k, shape in given.items()
                   if k not in loaded]
        text, _ = init_summary(own, loaded, skipped, set(given) & set(own), own)
        raise UserError(f"--backbone_weights {path}: not a torchvision ResNet-50 state_dict that fits this backbone "
                        f"(--preset tiny's is narrower); it would fill {text.replace('loaded ', '', 1)}") from None
    n, total = len(model.backbone.state_dict()), len(model.state_dict())
    return f"backbone weights from {path}: loaded {n} of {total} tensors (the backbone); left at init: {total - n}"


def load_initial_weights(model, module, args):
    """--backbone_weights, then --init_from, into the model -> one summary line each (loaded, skipped, left)."""
    lines = [load_backbone(model, module, args.backbone_weights)] if args.backbone_weights else []
    lines += [load_init(model, args.model, args.init_from, args.allow_partial_init)] if args.init_from else []
    return lines


def freeze_stem(model):
    """mmdet's frozen_stages=1 (--freeze_bn): the backbone's stem and layer1 are not trained."""
    for name, p in model.backbone.named_parameters():
        p.requires_grad_(not name.startswith(("conv1.", "bn1.", "layer1.")))


def make_optimizer(model, args, fused):
    """AdamW over the trainable parameters: no weight decay on norms and biases (ndim < 2), the backbone's LR
    scaled by --backbone_lr_mult (each group keeps its `lr_mult`; set_lr applies it)."""
    groups = {}  # (backbone?, decayed?) -> params
    for n, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((n.startswith("backbone."), p.ndim >= 2), []).append(p)
    return torch.optim.AdamW(
        [dict(params=ps, weight_decay=args.weight_decay if decay else 0.0,
              lr_mult=args.backbone_lr_mult if backbone else 1.0) for (backbone, decay), ps in groups.items()],
        lr=args.lr, betas=(0.9, 0.999), fused=fused)


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_mult"]


def set_train_mode(model, freeze_bn):
    """model.train(), except with --freeze_bn the backbone BatchNorms keep the loaded statistics (mmdet norm_eval)."""
    model.train()
    if freeze_bn:
        for m in model.backbone.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()


class EMA:
    """The evaluated copy of the model: ema <- ema + (1 - decay) (model - ema) after each step on floating tensors
    (weights, BatchNorm statistics), integer buffers (BatchNorm's step counter) copied. decay warms up as
    min(decay, (1 + step) / (10 + step))."""

    def __init__(self, model, decay):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        # state_dict tensors share storage with the modules (and survive load_state_dict): pair them once
        pairs = list(zip(self.model.state_dict().values(), model.state_dict().values()))
        self.ema_floats = [e for e, _ in pairs if e.is_floating_point()]
        self.model_floats = [m for e, m in pairs if e.is_floating_point()]
        self.ints = [(e, m) for e, m in pairs if not e.is_floating_point()]

    @torch.no_grad()
    def update(self, step):
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.ema_floats, self.model_floats, 1 - decay)
        for e, m in self.ints:
            e.copy_(m)


# -----------------------------------------------------------------------------
# Checkpoints and the log: a kill at any moment leaves the previous checkpoint or the new one, and a log that
# --resume cuts back to that checkpoint's step

def plain_args(args):
    """argparse namespace -> dict as a checkpoint stores it (tuples such as --crop become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items()}


def save_checkpoint(path, ckpt):
    """Plain-value checkpoint dict -> path: a temp file flushed to disk, then an atomic rename (never partial)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(ckpt, f)
        f.flush()
        os.fsync(f.fileno())  # the bytes are on disk before the name points at them
    os.replace(tmp, path)
    if hasattr(os, "O_DIRECTORY"):  # and the rename too (POSIX)
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def truncate_log(path, step):
    """log.jsonl -> only its lines of steps <= step, rewritten atomically; a line cut short by a kill is dropped."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("step", 0) <= step:
            keep.append(line + "\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(keep))
    os.replace(tmp, path)


def restore_checkpoint(ckpt_path, args, cfg, model, ema, optimizer, generator, rank, world):
    """--resume: the weights, EMA, optimiser and (same world size) this rank's noise generator from ckpt_path ->
    (step, best STQ). UserError when the checkpoint belongs to another model, dataset or config; the training flags
    changed since (RESUME_NOTED) are printed."""
    ckpt = read_checkpoint(ckpt_path, "--resume")
    if ckpt["args"]["model"] != args.model:
        raise UserError(f"--resume: {ckpt_path} holds a {ckpt['args']['model']} model, not {args.model}: pass "
                        f"--model {ckpt['args']['model']} or another --out_dir")
    if ckpt["args"].get("dataset") != args.dataset:
        raise UserError(f"--resume: {ckpt_path} was trained on {ckpt['args'].get('dataset')}, this run is on "
                        f"{args.dataset}: pass --dataset {ckpt['args'].get('dataset')} or another --out_dir")
    def plain(v):
        return list(v) if isinstance(v, tuple) else v

    # the model config must be the one the run started with, also where the weights would fit (e.g. a recipe knob
    # of the preset); a field the checkpoint lacks is one the code of then did not have: its default
    defaults = {f.name: None if f.default is MISSING else f.default for f in fields(cfg)}
    saved = {k: ckpt["config"].get(k, defaults[k]) for k in defaults}
    diff = [f"{k} {plain(saved[k])} there, {plain(v)} here" for k, v in asdict(cfg).items()
            if plain(saved[k]) != plain(v)]
    try:
        if diff:
            raise ValueError("config")
        model.load_state_dict(ckpt["model"])
        if ema is not None and ckpt.get("ema") is not None:
            ema.model.load_state_dict(ckpt["ema"])
        optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:  # another --preset, --cond, --freeze_bn, another code's preset
        why = "; ".join(diff) if diff else (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"--resume: {ckpt_path} does not fit this run ({why}); resume with the flags (and the code) "
                        "of the run that wrote it, or use another --out_dir") from None
    here = plain_args(args)
    changed = [f"--{k} {ckpt['args'].get(k)} there, {here[k]} here" for k in RESUME_NOTED
               if ckpt["args"].get(k) != here[k]]
    if changed and rank == 0:
        print(f"--resume: this run's flags differ from those that wrote {ckpt_path}, and apply from here on: "
              + "; ".join(changed))
    saved_world = ckpt["args"].get("world", 1)
    if ckpt.get("generator") is not None and world == saved_world:
        generator.set_state(ckpt["generator"][rank])
    elif rank == 0:
        print(f"--resume: {ckpt_path} was written by {saved_world} processes, this run has {world}: the data order "
              "continues, the noise streams start afresh")
    return ckpt["step"], ckpt["best"]


def generator_states(generator, ddp, world):
    """-> every rank's noise-generator state (a collective under DDP), so a resumed run continues each stream."""
    if not ddp:
        return [generator.get_state()]
    states = [torch.empty_like(generator.get_state()) for _ in range(world)]
    torch.distributed.all_gather_object(states, generator.get_state())
    return states


def evaluate_and_log(args, step, model, eval_seqs, device, autocast, log):
    """Rank 0: the model, put in eval mode, scored on the held-out videos; one printed line and one log.jsonl line
    (flushed: a checkpoint written next keeps it on --resume) -> STQ (-1 if undefined). Pix2Seq-D samples with a
    fixed seed, so two evaluations of the same weights agree."""
    kw = dict(generator=torch.Generator(device).manual_seed(args.seed)) if args.model == "pix2seq_d" else {}
    result = evaluate(model.eval(), args.model, eval_seqs, device, autocast, args.eval_frames, **kw)
    tqdm.write(f"eval step {step} | {format_scores(result)}")
    # NaN (e.g. VPQ of videos shorter than its windows) as null: json.dumps would write NaN, which is not JSON
    scores = {k: None if math.isnan(result[k]) else result[k] for k in ("STQ", "AQ", "SQ", "VPQ")}
    run = {"model": args.model, "preset": args.preset, "dataset": args.dataset}  # so seed tables do not mix runs
    log.write(json.dumps({"step": step, "eval": scores, **run}, default=float) + "\n")
    log.flush()
    return -1.0 if math.isnan(result["STQ"]) else result["STQ"]


def training_state(args, cfg, step, best, model, ema, optimizer, generator_states, world):
    """-> the checkpoint dict, plain values only: weights, EMA, optimiser, config, every rank's noise generator,
    args (+ world size), step and best STQ so far (only this latest checkpoint is kept)."""
    return {"model": model.state_dict(), "ema": ema.model.state_dict() if ema is not None else None,
            "optimizer": optimizer.state_dict(), "config": asdict(cfg), "generator": generator_states,
            "args": {**plain_args(args), "world": world},
            "step": step, "best": best}


# -----------------------------------------------------------------------------
# Loop helpers: running means for the log, skipped steps, the end-of-run DDP check

class Meter:
    """Running means of the logged scalars (tensors: no host sync until read) and the wall time per step."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.sums, self.n, self.t0 = {}, 0, time.time()

    def add(self, values):
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v.detach().float()
        self.n += 1

    def exclude(self, seconds):
        """Leave `seconds` (an evaluation) out of the time per step."""
        self.t0 += seconds

    def read(self):
        """-> ({name: mean}, ms per step) since the last reset; the host sync of the logged steps."""
        return {k: (v / self.n).item() for k, v in self.sums.items()}, (time.time() - self.t0) * 1000 / self.n


def write_log(log, step, lr, means, ms):
    """One line per --log_interval (`step 1200 | loss 0.4321 | lr 3.0e-04 | 85 ms/step`); all values to log.jsonl."""
    tqdm.write(f"step {step} | loss {means['loss']:.4f} | lr {lr:.1e} | {ms:.0f} ms/step")
    log.write(json.dumps({"step": step, "lr": lr, "ms_per_step": ms, **means}) + "\n")
    log.flush()


class BufferSnapshot:
    """The model's buffers (BatchNorm statistics) before a step, put back when the step is skipped: a NaN input
    poisons the running statistics in the forward, before the gradient check can catch it."""

    def __init__(self, model):
        self.buffers = [b for b in model.buffers() if b.numel()]
        self.saved = [b.clone() for b in self.buffers]

    def take(self):
        if self.buffers:
            torch._foreach_copy_(self.saved, self.buffers)

    def restore(self):
        if self.buffers:
            torch._foreach_copy_(self.buffers, self.saved)


def skip_step(optimizer, snapshot, loss, gnorm, step, rank, in_a_row):
    """A non-finite loss or gradient norm: drop the gradients and the step's BatchNorm updates; RuntimeError after
    10 in a row. Under DDP the gradients are averaged before the norm, so all ranks skip alike."""
    optimizer.zero_grad(set_to_none=True)
    snapshot.restore()
    tqdm.write(f"step {step}: non-finite loss or gradient (loss {loss.item()}, grad norm {gnorm.item()} on rank "
               f"{rank}), step skipped ({in_a_row} in a row)")
    if in_a_row >= 10:
        raise RuntimeError(f"{in_a_row} non-finite steps in a row at step {step}; last checkpoint is kept")


def check_replicas(model, ema, world, device, master):
    """End of a DDP run: the largest difference from rank 0 of the weights, buffers and EMA, printed by rank 0.
    Training-mode BatchNorm statistics differ by each rank's last batch (DDP broadcasts rank 0's at each forward;
    rank 0 saves)."""
    groups = {"parameters": list(model.parameters()), "buffers": list(model.buffers()),
              "EMA parameters": list(ema.model.parameters()) if ema is not None else [],
              "EMA buffers": list(ema.model.buffers()) if ema is not None else []}
    diff = torch.zeros(len(groups), device=device)
    for i, tensors in enumerate(groups.values()):
        for t in (t.detach() for t in tensors if t.numel()):
            on_rank0 = t.clone()
            torch.distributed.broadcast(on_rank0, 0)
            diff[i] = torch.maximum(diff[i], (t - on_rank0).abs().max().float())
    torch.distributed.all_reduce(diff, op=torch.distributed.ReduceOp.MAX)
    if master:
        print(f"ddp: max difference from rank 0 over {world} ranks: "
              + ", ".join(f"{k} {v:.3g}" for k, v in zip(groups, diff.tolist())))


# -----------------------------------------------------------------------------
# The run

def main(args):
    ddp, rank, world, device, autocast = setup_system(args)
    master, cuda = rank == 0, device.type == "cuda"
    out_dir = Path(args.out_dir)
    check_out_dir(out_dir, "--out_dir")
    ckpt_path = out_dir / "ckpt.pt"
    resume = will_resume(args, ckpt_path, master)
    train_seqs, eval_seqs = load_splits(args)

    # the model: raw (trained in place, saved), its EMA (evaluated), and `forward`, the compiled / DDP wrapper that
    # runs it in training
    module = MODELS[args.model]
    raw_model, cfg = build_model(args.model, model_config(args, module))
    init_lines = load_initial_weights(raw_model, module, args) if not resume else []
    if args.freeze_bn:
        freeze_stem(raw_model)
    raw_model.to(device)
    ema = EMA(raw_model, args.ema) if args.ema > 0 else None
    optimizer = make_optimizer(raw_model, args, fused=cuda)
    forward = torch.compile(raw_model) if cuda and args.compile else raw_model
    if ddp:
        forward = torch.nn.parallel.DistributedDataParallel(forward, device_ids=[device.index] if cuda else None)
    loss_kw = dict(reduce_counts=mean_over_ranks) if ddp and args.model == "video_knet" else {}
    generator = torch.Generator(device).manual_seed(args.seed * 1000 + rank)  # noise, t, dropout, permutations
    step, best = 0, -1.0
    if resume:
        step, best = restore_checkpoint(ckpt_path, args, cfg, raw_model, ema, optimizer, generator, rank, world)
    start_step = step

    clips = training_clips(args, cfg, train_seqs, module.PAD_VALUE)
    batches = batch_stream(clips, args, step, rank, world, default_workers(args, cuda), pin_memory=cuda)
    out_dir.mkdir(parents=True, exist_ok=True)
    if master:
        truncate_log(out_dir / "log.jsonl", step)  # drop lines of steps the checkpoint never saw (all: a new run)
        print_header(args, raw_model, len(clips), device, world, init_lines)
        if resume:
            print(f"resumed from {ckpt_path} at step {step} of {args.max_iters} (best STQ so far {best:.4f})")

    # the loop: one optimiser step per batch, evaluation + checkpoint every --eval_interval steps
    log = open(out_dir / "log.jsonl", "a") if master else None
    snapshot, meter, skipped = BufferSnapshot(raw_model), Meter(), 0
    set_train_mode(raw_model, args.freeze_bn)
    with tqdm(total=args.max_iters, initial=step, desc="train", unit="step", disable=not master,
              dynamic_ncols=True) as bar:  # closed on an error too, so `error: ...` gets a line of its own
        while step < args.max_iters:
            batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
            lr = lr_at(step, args)
            set_lr(optimizer, lr)
            snapshot.take()
            with autocast:
                loss, logs = module.compute_loss(raw_model, batch["image"], batch["semantic"], batch["instance"],
                                                 generator=generator, forward=forward, **loss_kw)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), args.grad_clip or float("inf"))
            if not torch.isfinite(gnorm):
                skipped += 1
                skip_step(optimizer, snapshot, loss, gnorm, step, rank, skipped)
                continue
            skipped = 0
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(step)
            step += 1
            bar.update()
            meter.add({"loss": loss, "grad_norm": gnorm, **logs})
            if step % args.log_interval == 0 or step == args.max_iters:
                if master:
                    write_log(log, step, lr, *meter.read())
                meter.reset()
            if step % args.eval_interval == 0 or step == args.max_iters:
                t_eval = time.time()
                states = generator_states(generator, ddp, world)
                if master:
                    eval_model = ema.model if ema else raw_model
                    stq = evaluate_and_log(args, step, eval_model, eval_seqs, device, autocast, log)
                    set_train_mode(raw_model, args.freeze_bn)
                    best = max(best, stq)
                    state = training_state(args, cfg, step, best, raw_model, ema, optimizer, states, world)
                    save_checkpoint(ckpt_path, state)
                if ddp:
                    torch.distributed.barrier()
                meter.exclude(time.time() - t_eval)
    if master:
        log.close()
        left = " (nothing was left to train)" if step == start_step else ""
        print(f"done: step {step} of {args.max_iters}{left} | best STQ {best:.4f} | {ckpt_path} | {log.name}")
    if ddp:
        check_replicas(raw_model, ema, world, device, master)
        torch.distributed.barrier()  # no rank tears the group down while another still talks to it
        torch.distributed.destroy_process_group()
    return ckpt_path


if __name__ == "__main__":
    args = parse_args()
    # a mistake in the command or its files: one line `error: ...`; Ctrl-C: how to resume; bugs keep a traceback
    run_cli(main, args, on_interrupt=f"to go on from the last checkpoint: the same command with --resume "
                                     f"(--out_dir {args.out_dir})")
