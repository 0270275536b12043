"""Score one checkpoint with today's decoding and with the decoding it replaced (what each decoding change bought).

    python scripts/decoding_ablation.py --ckpt out/ckpt.pt [--split val]

Video K-Net: pixels whose arg-max candidate the panoptic merge rejects go to the best kept segment (now) or stay void
(before). Pix2Seq-D: each pixel's class and id are the arg-max of the last DDIM step's logits over real classes and
ids (now) or the bits of the last x0 estimate, clamped (before: void wins on uncertain pixels). Same weights, same
sampling noise; prints one markdown row per decoding. Not collected by pytest.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bitdiffusion as bd  # noqa: E402
import data  # noqa: E402
import infer  # noqa: E402
import pix2seq_d  # noqa: E402
import video_knet  # noqa: E402

KEYS = ("STQ", "AQ", "SQ", "VPQ")
MERGE, DECODE = video_knet.panoptic_merge, pix2seq_d.decode_logits


def merge_leaving_void(probs, scores, num_thing_kernels, num_thing_classes, *args):
    """video_knet.panoptic_merge as before: pixels whose arg-max candidate is rejected stay void (-1)."""
    seg, kernel, label, score = MERGE(probs, scores, num_thing_kernels, num_thing_classes, *args)
    nt, kt = num_thing_kernels, num_thing_classes
    top_s, top_i = scores[:nt, :kt].flatten().topk(nt)  # the merge's candidates, as it builds them
    cand_kernel = torch.cat([top_i // kt, torch.arange(nt, len(scores), device=probs.device)])
    cand_label = torch.cat([top_i % kt, torch.arange(kt, scores.shape[1], device=probs.device)])
    cand_score = torch.cat([top_s, scores[cand_kernel[nt:], cand_label[nt:]]])
    best = (cand_score[:, None, None] * probs[cand_kernel]).argmax(0)  # (H, W) arg-max candidate
    kept = ((cand_kernel[:, None] == kernel[None]) & (cand_label[:, None] == label[None])).any(1)
    return torch.where(kept[best], seg, -1), kernel, label, score


def decode_bits(logits, cfg):
    """pix2seq_d.decode_logits as before: the bits of the softmax-expected x0, class clamped to K, id to M - 1."""
    pred = bd.decode(bd.logits_to_x0(logits[None], cfg.n_bits, cfg.bit_scale), cfg.n_bits)[0]
    return torch.stack([pred[0].clamp(max=cfg.num_classes), pred[1].clamp(max=cfg.max_instances - 1)])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--split", default="val")
    args = p.parse_args(argv)
    model, ckpt = infer.load_checkpoint(args.ckpt)
    name, seed = ckpt["args"]["model"], ckpt["args"]["seed"]
    sequences = data.load_sequences(ckpt["args"]["dataset"], None, args.split)
    rows = {}
    for label, merge, decode in (("now", MERGE, DECODE), ("before", merge_leaving_void, decode_bits)):
        video_knet.panoptic_merge, pix2seq_d.decode_logits = merge, decode
        kw = dict(generator=torch.Generator().manual_seed(seed)) if name == "pix2seq_d" else {}  # as train.py's eval
        rows[label] = infer.evaluate(model, name, sequences, torch.device("cpu"), progress=False, **kw)
    video_knet.panoptic_merge, pix2seq_d.decode_logits = MERGE, DECODE
    print(f"| {name} decoding (step {ckpt['step']}) | " + " | ".join(KEYS) + " |\n|---|" + "---|" * len(KEYS))
    for label, r in rows.items():
        print(f"| {label} | " + " | ".join(f"{r[k]:.3f}" for k in KEYS) + " |")
    return rows


if __name__ == "__main__":
    main()
