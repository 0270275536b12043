"""The authors' Video K-Net (or K-Net) mmdet checkpoint -> a checkpoint infer.py and train.py --init_from read.

    python scripts/convert_knet_checkpoint.py AUTHORS.pth out/authors/ckpt.pt
    python infer.py --ckpt out/authors/ckpt.pt --dataset kitti_step --root DIR --split val --postprocess original \
        --convention videoknet --out out/authors/pred

The weights are imported into the paper preset by train.py's --init_from import (the key renaming is
video_knet.load_mmdet_checkpoint's), which prints what it loaded, skipped and left at init and refuses a file that
fills under 95% of the tensors it should (--allow_partial_init to accept one). The output is written the way
train.py writes its checkpoints (a temp file, then a rename), at step 0, with no optimizer state. A file that holds
Python objects besides tensors (mmcv's meta) is refused by torch.load(weights_only=True); the error says how to
save its state_dict alone. A checkpoint train.py wrote is refused too: it needs no conversion.
"""
import argparse
import sys
from dataclasses import asdict
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train  # noqa: E402
import video_knet  # noqa: E402
from infer import UserError, build_model, run_cli, torch_load  # noqa: E402


def convert(src, dst, allow_partial=False):
    """mmdet checkpoint path -> train.py-style checkpoint at dst; returns the import's summary line."""
    dst = Path(dst)
    if dst.is_dir():
        raise UserError(f"{dst} is a folder: give the converted checkpoint's file name, e.g. {dst / 'ckpt.pt'}")
    parent = next((p for p in dst.parents if p.exists()), None)  # the deepest part of the path that exists
    if parent is not None and not parent.is_dir():
        raise UserError(f"{dst}: {parent} is a file, not a folder")
    src_ckpt = torch_load(src, "source checkpoint")
    if isinstance(src_ckpt, dict) and "model" in src_ckpt and isinstance(src_ckpt.get("args"), dict):
        raise UserError(f"source checkpoint {src}: already written by train.py (a {src_ckpt['args'].get('model')} "
                        "model); infer.py --ckpt and train.py --init_from read it as it is, without conversion")
    model, cfg = build_model("video_knet", dict(video_knet.PRESETS["paper"]))
    line = train.load_init(model, "video_knet", src, allow_partial, flag="source checkpoint")
    ckpt = {"model": model.state_dict(), "ema": None, "config": asdict(cfg), "step": 0,
            "args": {"model": "video_knet", "preset": "paper", "init_from": str(src)}}
    dst.parent.mkdir(parents=True, exist_ok=True)
    train.save_checkpoint(dst, ckpt)  # a temp file on disk, then the rename
    return line


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="the authors' checkpoint (mmdet: a dict with 'state_dict', or the state_dict)")
    p.add_argument("dst", help="where to write the converted checkpoint, e.g. out/authors/ckpt.pt")
    p.add_argument("--allow_partial_init", action="store_true", help="accept a file that fills under 95%%")
    args = p.parse_args(argv)
    print(convert(args.src, args.dst, args.allow_partial_init))
    print(f"wrote {args.dst}")


if __name__ == "__main__":
    run_cli(main)  # a wrong file: one line `error: ...`, exit 2
