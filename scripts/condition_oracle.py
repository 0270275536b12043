"""Pix2Seq-D: where AQ is lost, in making ids from noise or in carrying them from frame to frame.

    python scripts/condition_oracle.py --ckpt out/ckpt.pt [--split val]

Scores one Pix2Seq-D checkpoint three ways, with the same weights and the same sampling noise:
- model: as infer.py does, each frame conditioned on the model's own previous predictions;
- gt first frame: frame 0's prediction replaced by the ground truth in the conditioning (the model must still
  predict frame 0 from an all-void condition, and that prediction is scored), the later frames as "model";
- gt every frame: every conditioning mask is the ground truth of its frame (teacher forcing).
The ground truth enters as in training: labels at mask size (every 2nd pixel), class + 1, void 0, the video's
instance ids numbered 1..n. A large gap between "model" and "gt first frame" means the model cannot separate new
objects from noise (frame 0 has nothing to copy) though it copies ids well. Prints one markdown row per way.
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import infer  # noqa: E402
import metrics  # noqa: E402
import pix2seq_d  # noqa: E402

KEYS = ("STQ", "AQ", "SQ", "VPQ")
CONDITION_INPUT = pix2seq_d.condition_input
MODES = {"model": None, "gt first frame": "first", "gt every frame": "all"}


def ground_truth_maps(seq, max_instances):
    """Sequence -> [(2, h, w) int64] per frame: class + 1 (void 0) and ids 1..n, at the padded frame's mask size."""
    labels = [seq.label(t) for t in range(len(seq))]
    raw = np.unique(np.concatenate([ins[sem != data.IGNORE_LABEL].ravel() for sem, ins in labels]))
    raw = raw[raw > 0]
    if len(raw) >= max_instances:
        raise SystemExit(f"error: video {seq.name} has {len(raw)} instance ids, the model at most {max_instances - 1}")
    maps = []
    for sem, ins in labels:
        H, W = sem.shape
        pad = (0, -W % pix2seq_d.SIZE_MULTIPLE, 0, -H % pix2seq_d.SIZE_MULTIPLE)
        sem = F.pad(torch.from_numpy(sem).long(), pad, value=data.IGNORE_LABEL)[::2, ::2]  # (h, w), nearest
        ins = F.pad(torch.from_numpy(np.searchsorted(raw, ins) + 1) * torch.from_numpy(np.isin(ins, raw)), pad)
        sem = torch.where(sem == data.IGNORE_LABEL, 0, sem + 1)
        maps.append(torch.stack([sem, ins[::2, ::2] * (sem > 0)]))
    return maps


def conditioned_on(truth, which):
    """[(2, h, w)] ground truth of one video, "first" | "all" -> a condition_input that swaps it into the history."""
    frame = [-1]  # predict_video builds the condition once per frame, in order

    def condition_input(cond_maps, diff, cond, n_bits, b):  # cond_maps (1, Tc, 2, h, w): frames t - Tc .. t - 1
        frame[0] += 1
        t, Tc = frame[0], cond_maps.shape[1]
        cond_maps = cond_maps.clone()
        for j in range(Tc):
            f = t - Tc + j
            if f >= 0 and (which == "all" or f == 0):
                cond_maps[0, j] = truth[f]
        return CONDITION_INPUT(cond_maps, diff, cond, n_bits, b)

    return condition_input


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--root", help="dataset root, for a checkpoint trained on kitti_step or cityscapes")
    p.add_argument("--split", default="val")
    args = p.parse_args(argv)
    model, ckpt = infer.load_checkpoint(args.ckpt)
    if ckpt["args"]["model"] != "pix2seq_d":
        raise SystemExit(f"error: --ckpt {args.ckpt} is a {ckpt['args']['model']} checkpoint; this is for pix2seq_d")
    sequences = data.load_sequences(ckpt["args"]["dataset"], args.root, args.split)
    rows = {}
    try:
        for label, which in MODES.items():
            scorer = metrics.VideoPanopticMetrics(data.NUM_CLASSES, data.THING_CLASSES, data.IGNORE_LABEL)
            # seeded as train.py's evaluation, anew for each row: the same sampling noise in every row
            generator = torch.Generator().manual_seed(ckpt["args"]["seed"])
            for seq in sequences:
                if which is not None:
                    pix2seq_d.condition_input = conditioned_on(ground_truth_maps(seq, model.cfg.max_instances), which)
                for t, sem, ins in infer.predict_sequence(model, "pix2seq_d", seq, torch.device("cpu"),
                                                          generator=generator):
                    scorer.update(seq.name, *seq.label(t, sem.shape), sem, ins)
            rows[label] = scorer.result()
    finally:
        pix2seq_d.condition_input = CONDITION_INPUT
    print(f"| pix2seq_d conditioning (step {ckpt['step']}, {args.split}) | " + " | ".join(KEYS) + " |\n|---|"
          + "---|" * len(KEYS))
    for label, r in rows.items():
        print(f"| {label} | " + " | ".join(f"{r[k]:.3f}" for k in KEYS) + " |")
    return rows


if __name__ == "__main__":
    infer.run_cli(main)  # a mistake in the command or its files: one line `error: ...`
