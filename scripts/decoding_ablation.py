"""Score one checkpoint with today's decoding and with the decoding it replaced (what each decoding change bought).

    python scripts/decoding_ablation.py --ckpt out/ckpt.pt [--split val]
    python scripts/decoding_ablation.py --ckpt out/ckpt.pt --split test --set overlap_thr=0.45 \
        --set overlap_thr=0,score_thr=0.1

Video K-Net: pixels whose arg-max candidate the panoptic merge rejects go to the best kept segment (now) or stay void
(before). Pix2Seq-D: each pixel's class and id are the arg-max of the last DDIM step's logits over real classes and
ids (now) or the bits of the last x0 estimate, clamped (before: void wins on uncertain pixels). Same weights, same
sampling noise; prints one markdown row per decoding. Each --set adds a row of today's decoding with those config
fields changed (e.g. the merge and tracker thresholds; tune them on the test split, report val). Not collected by
pytest.
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


def merge_leaving_void(*args, **kwargs):
    """video_knet.panoptic_merge as before: pixels whose arg-max candidate is rejected stay void (fill=False)."""
    return MERGE(*args, **{**kwargs, "fill": False})


def decode_bits(logits, cfg):
    """pix2seq_d.decode_logits as before: the bits of the softmax-expected x0, class clamped to K, id to M - 1."""
    pred = bd.decode(bd.logits_to_x0(logits[None], cfg.n_bits, cfg.bit_scale), cfg.n_bits)[0]
    return torch.stack([pred[0].clamp(max=cfg.num_classes), pred[1].clamp(max=cfg.max_instances - 1)])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--root", help="dataset root, for a checkpoint trained on kitti_step or cityscapes")
    p.add_argument("--split", default="val")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                   help="one more row: today's decoding with these numeric config fields changed")
    args = p.parse_args(argv)
    model, ckpt = infer.load_checkpoint(args.ckpt)
    name, seed = ckpt["args"]["model"], ckpt["args"]["seed"]
    sequences = data.load_sequences(ckpt["args"]["dataset"], args.root, args.split)
    defaults = dict(vars(model.cfg))
    changes = {}  # --set row label -> {field: value}, checked before minutes of evaluation
    for change in args.set:
        changes[change] = {}
        for item in change.split(","):
            key, _, value = item.partition("=")
            if key not in defaults:
                p.error(f"--set {item}: {name}'s config has no field {key!r} (expected KEY=VALUE)")
            try:
                changes[change][key] = type(defaults[key])(float(value))
            except (TypeError, ValueError):
                p.error(f"--set {item}: expected KEY=NUMBER")
    rows = {}
    for label, merge, decode in (("now", MERGE, DECODE), ("before", merge_leaving_void, decode_bits)):
        video_knet.panoptic_merge, pix2seq_d.decode_logits = merge, decode
        kw = dict(generator=torch.Generator().manual_seed(seed)) if name == "pix2seq_d" else {}  # as train.py's eval
        rows[label] = infer.evaluate(model, name, sequences, torch.device("cpu"), progress=False, **kw)
    video_knet.panoptic_merge, pix2seq_d.decode_logits = MERGE, DECODE
    for change, fields in changes.items():
        for key, value in fields.items():
            setattr(model.cfg, key, value)
        kw = dict(generator=torch.Generator().manual_seed(seed)) if name == "pix2seq_d" else {}
        rows[change] = infer.evaluate(model, name, sequences, torch.device("cpu"), progress=False, **kw)
        for key, value in defaults.items():
            setattr(model.cfg, key, value)
    print(f"| {name} decoding (step {ckpt['step']}) | " + " | ".join(KEYS) + " |\n|---|" + "---|" * len(KEYS))
    for label, r in rows.items():
        print(f"| {label} | " + " | ".join(f"{r[k]:.3f}" for k in KEYS) + " |")
    return rows


if __name__ == "__main__":
    infer.run_cli(main)  # a mistake in the command or its files: one line `error: ...`
