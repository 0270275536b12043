"""Where a checkpoint loses AQ: per-frame instance counts, matches, id hand-over, and which ids cover each object.

    python scripts/instance_diagnostics.py --ckpt out/ckpt.pt [--split test] [--videos 3] [--show 1] [--set KEY=N]

For the first --videos videos of the split, per frame: ground-truth thing instances, predicted thing segments (class,
id) with an id, how many ground-truth instances a predicted segment matches with IoU > 0.5, and, for an instance
matched in two consecutive frames, whether its predicted id stayed the same. With --show N, the first N frames of the
first video list, per ground-truth instance, its pixels' most common predicted (trainId / id) pairs, and for Video
K-Net the last stage's kernel with the highest mean mask probability over the instance, that probability and the
kernel's thing-class scores (a missed instance: no kernel covers it, or one does with a low score). Few matches
means the masks are the problem (segmentation); matches that change id mean association is. Last, each video's
frame 0 instances by their left-to-right rank (centroid x): how many of rank 1, 2, ... are matched (Pix2Seq-D's tiny
preset numbers the objects of a frame with no condition in that order, so a rank it cannot count to shows here).
"""
import argparse
import collections
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import infer  # noqa: E402
import video_knet  # noqa: E402


def kernel_outputs(model, image):
    """Video K-Net, one (H, W, 3) uint8 frame -> (N, H, W) last-stage mask probabilities, (N, Kt) thing scores."""
    frame = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    H, W = frame.shape[1:]
    pad = (0, -W % video_knet.SIZE_MULTIPLE, 0, -H % video_knet.SIZE_MULTIPLE)
    canvas = torch.nn.functional.pad(frame - model.pixel_mean, pad) + model.pixel_mean
    with torch.no_grad():
        out = model(canvas[None])
    probs = video_knet.mask_probabilities(out["masks"][-1][0], canvas.shape[1:], H, W, False)
    return probs, out["cls"][-1][0, :, :len(model.cfg.thing_classes)].sigmoid()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--root", help="dataset root, for a checkpoint trained on kitti_step or cityscapes")
    p.add_argument("--split", default="test", help="test by default: keep the val videos for reporting")
    p.add_argument("--videos", type=int, default=3)
    p.add_argument("--show", type=int, default=0, help="frames of the first video to list object by object")
    p.add_argument("--set", action="append", default=[], metavar="KEY=N",
                   help="a numeric config field for inference, e.g. split_min_cells=4 on a checkpoint from before it")
    args = p.parse_args(argv)
    model, ckpt = infer.load_checkpoint(args.ckpt)
    for item in args.set:
        key, _, value = item.partition("=")
        if not hasattr(model.cfg, key) or not value.lstrip("-").isdigit():
            p.error(f"--set {item}: expected KEY=N with KEY a field of the {ckpt['args']['model']} config")
        setattr(model.cfg, key, int(value))
    name = ckpt["args"]["model"]
    total = collections.Counter()
    for v, seq in enumerate(data.load_sequences(ckpt["args"]["dataset"], args.root, args.split)[: args.videos]):
        kw = dict(generator=torch.Generator().manual_seed(ckpt["args"]["seed"])) if name == "pix2seq_d" else {}
        previous = {}  # GT instance -> predicted (class, id) matched in the previous frame
        for t, sem, ins in infer.predict_sequence(model, name, seq, torch.device("cpu"), **kw):
            gt_sem, gt_ins = seq.label(t)
            gt = sorted({(c, i) for c, i in zip(gt_sem[gt_ins > 0].tolist(), gt_ins[gt_ins > 0].tolist())})
            thing = np.isin(sem, data.THING_CLASSES) & (ins > 0)
            pred = sorted(set(zip(sem[thing].tolist(), ins[thing].tolist())))
            matched = {}
            shown = v == 0 and t < args.show
            kernels = kernel_outputs(model, seq.image(t)) if shown and name == "video_knet" else None
            for c, i in gt:
                g = (gt_sem == c) & (gt_ins == i)
                for pc, pi in pred:
                    q = (sem == pc) & (ins == pi)
                    if (g & q).sum() > 0.5 * (g | q).sum():
                        matched[(c, i)] = (pc, pi)
                if shown:
                    top = collections.Counter(zip(sem[g].tolist(), ins[g].tolist())).most_common(3)
                    print(f"video {seq.name} frame {t} GT {c}/{i} ({g.sum()} px): "
                          + ", ".join(f"{a}/{b} x{n}" for (a, b), n in top))
                    if kernels is not None:
                        probs, scores = kernels
                        p, k = probs[:, torch.from_numpy(g)].mean(1).max(0)
                        print(f"    best kernel {k.item()}: mean probability {p.item():.2f}, thing scores "
                              + " ".join(f"{s:.2f}" for s in scores[k].tolist()))
            if t == 0:  # frame 0's instances in left-to-right order of their centroids
                by_x = sorted(gt, key=lambda k: np.nonzero((gt_sem == k[0]) & (gt_ins == k[1]))[1].mean())
                for rank, k in enumerate(by_x, 1):
                    total.update({f"rank {rank}": 1, f"rank {rank} matched": int(k in matched)})
            kept = [matched[k] == previous[k] for k in matched if k in previous]
            total.update(frames=1, gt=len(gt), pred=len(pred), matched=len(matched), pairs=len(kept), kept=sum(kept))
            previous = matched
    f = max(1, total["frames"])
    print(f"{name} step {ckpt['step']}, {args.split} split, {total['frames']} frames: per frame {total['gt'] / f:.2f} "
          f"GT thing instances, {total['pred'] / f:.2f} predicted, {total['matched'] / f:.2f} matched (IoU > 0.5); "
          f"matched in consecutive frames with the same id: {total['kept']}/{total['pairs']}")
    ranks = range(1, 1 + sum(k.startswith("rank") and not k.endswith("matched") for k in total))  # 1..max rank
    print("frame 0, matched by left-to-right rank: " + ", ".join(
        f"{r}: {total[f'rank {r} matched']}/{total[f'rank {r}']}" for r in ranks))
    return total


if __name__ == "__main__":
    infer.run_cli(main)  # a mistake in the command or its files: one line `error: ...`
