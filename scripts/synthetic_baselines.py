"""Baselines a model must beat on the held-out synthetic videos (what train.py / infer.py score by default).

    python scripts/synthetic_baselines.py [--dataset synthetic|synthetic_hard] [--split val] [--json]

Every baseline is built from the ground truth, so it isolates one skill:
  road everywhere             : the trivial answer (no segmentation at all)
  semantics, things merged    : perfect classes, every thing class one segment per frame (no instances)
  semantics, instances, no ids: perfect classes and instance masks, but a fresh id in every frame (no tracking)
  oracle                      : the ground truth itself (STQ = 1 up to void conventions)
  oracle at Pix2Seq-D's output: the ground truth through Pix2Seq-D's mask resolution (every 2nd pixel, nearest x2
                                back): the ceiling of its output resolution; "parts split": also through the tiny
                                preset's split_parts (an occluded object cut in two gets a second id there)
  oracle at Video K-Net stride s: each GT segment's mask average-pooled to stride s (4: tiny preset, 8: paper),
                                upsampled bilinearly and arg-maxed, as the model's masks are decoded: its ceiling
A model segments instances only when its AQ beats "things merged", and tracks only when it beats "no ids".
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import metrics  # noqa: E402
import pix2seq_d  # noqa: E402


def through_stride(sem, inst, stride):
    """GT (H, W) maps -> the same maps after each segment's soft mask went to `stride` and back (Video K-Net's
    decoding: average pool, bilinear upsampling, arg-max over segments); void pixels go to their best segment."""
    key = sem * 2 ** 20 + inst
    segments = np.unique(key[sem != data.IGNORE_LABEL])
    masks = torch.from_numpy(key[None] == segments[:, None, None]).float()[None]  # (1, S, H, W)
    low = F.avg_pool2d(masks, stride)
    up = F.interpolate(low, size=sem.shape, mode="bilinear", align_corners=False)[0]
    best = segments[up.argmax(0).numpy()]
    return best // 2 ** 20, best % 2 ** 20


def baselines(sem, inst, t):
    """GT (H, W) maps of frame t -> {name: (pred_semantic, pred_instance)}."""
    things = np.isin(sem, data.THING_CLASSES)
    half = (slice(None, None, 2), slice(None, None, 2))
    pix2seq = [m[half].repeat(2, 0).repeat(2, 1)[: sem.shape[0], : sem.shape[1]] for m in (sem, inst)]
    return {
        "road everywhere": (np.zeros_like(sem), np.zeros_like(inst)),
        "semantics, things merged": (sem, things.astype(np.int64)),
        "semantics, instances, no ids": (sem, np.where(inst > 0, inst + 1000 * (t + 1), 0)),
        "oracle": (sem, inst),
        "oracle at Pix2Seq-D's output (stride 2)": tuple(pix2seq),
        "oracle at Video K-Net stride 4 (tiny)": through_stride(sem, inst, 4),
        "oracle at Video K-Net stride 8 (paper)": through_stride(sem, inst, 8),
    }


def split_oracle(sem, inst, history):
    """GT (H, W) maps, [the last output at stride 2 as (2, h, w), or none] -> (pred_semantic, pred_instance, the
    output at stride 2): Pix2Seq-D's stride-2 oracle after the tiny preset's split_parts, history as the model's."""
    cfg = pix2seq_d.Pix2SeqDConfig(**pix2seq_d.PRESETS["tiny"])
    half = torch.from_numpy(np.stack([sem[::2, ::2] + 1, inst[::2, ::2]]))  # (2, h, w) model classes + 1, ids
    out = pix2seq_d.split_parts(half, history, data.THING_CLASSES, cfg.max_instances, cfg.split_min_cells)
    up = out.numpy().repeat(2, 1).repeat(2, 2)[:, : sem.shape[0], : sem.shape[1]]
    return up[0] - 1, up[1], out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="synthetic", choices=["synthetic", "synthetic_hard"])
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    scorers = {}
    for seq in data.load_sequences(args.dataset, split=args.split):
        history = []
        for t in range(len(seq)):
            sem, inst = seq.label(t)
            preds = baselines(sem, inst, t)
            split_sem, split_inst, last = split_oracle(sem, inst, history)
            preds["oracle at Pix2Seq-D's output, parts split (tiny)"] = (split_sem, split_inst)
            history = [last]
            for name, pred in preds.items():
                scorers.setdefault(name, metrics.VideoPanopticMetrics()).update(seq.name, sem, inst, *pred)
    rows = {name: {k: s.result()[k] for k in ("STQ", "AQ", "SQ", "VPQ")} for name, s in scorers.items()}
    if args.json:
        print(json.dumps(rows))
    else:
        print("| baseline | STQ | AQ | SQ | VPQ |\n|---|---|---|---|---|")
        for name, r in rows.items():
            print(f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in ("STQ", "AQ", "SQ", "VPQ")) + " |")
    return rows


if __name__ == "__main__":
    main()
