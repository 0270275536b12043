"""The authors' Video K-Net (or K-Net) mmdet checkpoint -> a checkpoint infer.py and train.py --init_from read.

    python scripts/convert_knet_checkpoint.py AUTHORS.pth out/authors/ckpt.pt
    python infer.py --ckpt out/authors/ckpt.pt --dataset kitti_step --root DIR --split val --postprocess original \
        --convention videoknet --out out/authors/pred
    python train.py --model video_knet --dataset kitti_step --root DIR --init_from out/authors/ckpt.pt ...

The authors' key names are renamed to ours (MMDET_RENAMES) and loaded into the paper preset where the name and shape
match; the script prints what it loaded, skipped and left at init and refuses a file that fills under 95% of the
tensors it should (--allow_partial_init to accept one). A K-Net *image* checkpoint (Cityscapes-STEP) has no link,
embedding or track modules (VIDEO_ONLY): those 23 tensors stay at init and are not counted against it. The output is
written the way train.py writes its checkpoints (a temp file, then a rename), at step 0, with no optimizer state. A
file that holds Python objects besides tensors (mmcv's meta) is refused by torch.load(weights_only=True); the error
says how to save its state_dict alone. A checkpoint train.py wrote is refused too: it needs no conversion.
"""
import argparse
import re
import sys
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train  # noqa: E402
import video_knet  # noqa: E402
from infer import UserError, build_model, run_cli, torch_load  # noqa: E402

# (regex, replacement), applied in order to the authors' mmdet key names (shared/reference/video_knet.md, 1.7)
MMDET_RENAMES = [
    (r"^module\.", ""),
    (r"^(neck\.(lateral|fpn)_convs\.\d+)\.conv\.", r"\1."),  # mmcv ConvModule without a norm: drop ".conv"
    (r"^rpn_head\.localization_fpn\.", "semantic_fpn."),
    (r"^rpn_head\.", "kernel_head."),
    (r"^roi_head\.mask_head\.", "stages."),
    (r"\.feat_transform\.conv\.", ".feat_transform."),
    (r"\.attn\.", "."),  # mmcv MultiheadAttention wraps nn.MultiheadAttention as .attn
    (r"ffn\.layers\.0\.0\.", "ffn.0."),  # mmcv FFN (ffn and link_ffn): Linear, ReLU, Linear
    (r"ffn\.layers\.1\.", "ffn.2."),
    (r"^track_head\.fcs\.0\.", "track_head.0."),  # QDTrack's embedding head: 2 fcs, then fc_embed
    (r"^track_head\.fcs\.1\.", "track_head.2."),
    (r"^track_head\.fc_embed\.", "track_head.4."),
]
# Our names of the modules a K-Net image checkpoint lacks: kernel linking, the embedding and the track head.
VIDEO_ONLY = re.compile(r"^(stages\.\d+\.(attention_previous|link_ffn)|embed_fcs|fc_embed|track_head)[._]")
OBJECTS_HINT = ("; if you trust the file, save its state_dict alone: "
                "torch.save(torch.load(f, weights_only=False)['state_dict'], 'weights.pth')")


def our_name(key):
    """The authors' key -> ours, e.g. roi_head.mask_head.0.ffn.layers.1.weight -> stages.0.ffn.2.weight."""
    for pattern, repl in MMDET_RENAMES:
        key = re.sub(pattern, repl, key)
    return key


def import_mmdet(model, state, where, allow_partial=False):
    """VideoKNet + the authors' state_dict -> summary line; loads in place every tensor whose name and shape fit.

    UserError (starting with `where`) unless allow_partial when it fills under train.MIN_INIT_COVERAGE of the tensors
    it should: all of ours, or for a K-Net image checkpoint (no VIDEO_ONLY module) all others."""
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ours = {key: our_name(key) for key in state}  # their key -> our name
    fits = {ours[k]: v for k, v in state.items() if own.get(ours[k]) == tuple(v.shape)}
    skipped = [(k, f"shape {tuple(v.shape)} vs {own[ours[k]]}" if ours[k] in own else "unexpected")
               for k, v in state.items() if ours[k] not in fits]
    model.load_state_dict(fits, strict=False)
    video = any(VIDEO_ONLY.match(name) for name in ours.values())  # Video K-Net, not a K-Net image checkpoint
    expected = [k for k in own if video or not VIDEO_ONLY.match(k)]
    text, coverage = train.init_summary(own, set(fits), skipped, set(ours.values()) & set(own), expected)
    text = f"{where} (mmdet checkpoint): {text}"
    if len(expected) < len(own):
        text += f"; {len(own) - len(expected)} of them video-only (link, embedding, track heads: not in K-Net images)"
    if coverage < train.MIN_INIT_COVERAGE and not allow_partial:
        raise UserError(f"{where}: it fills {coverage:.1%} of the {len(expected)} tensors it should, under "
                        f"{train.MIN_INIT_COVERAGE:.0%}; pass --allow_partial_init to convert it anyway. {text}")
    return text


def convert(src, dst, allow_partial=False):
    """mmdet checkpoint path -> train.py-style checkpoint at dst (paper preset); returns the import's summary line."""
    dst = Path(dst)
    if dst.is_dir():
        raise UserError(f"{dst} is a folder: give the converted checkpoint's file name, e.g. {dst / 'ckpt.pt'}")
    parent = next((p for p in dst.parents if p.exists()), None)  # the deepest part of the path that exists
    if parent is not None and not parent.is_dir():
        raise UserError(f"{dst}: {parent} is a file, not a folder")
    where = f"source checkpoint {src}"
    ckpt = torch_load(src, "source checkpoint", OBJECTS_HINT)
    if isinstance(ckpt, dict) and "model" in ckpt and isinstance(ckpt.get("args"), dict):
        raise UserError(f"{where}: already written by train.py (a {ckpt['args'].get('model')} model); infer.py "
                        "--ckpt and train.py --init_from read it as it is, without conversion")
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"{where}: neither a checkpoint written by train.py nor an mmdet (Video) K-Net state_dict "
                        "(a dict of tensors, or one under 'state_dict')")
    model, cfg = build_model("video_knet", dict(video_knet.PRESETS["paper"]))
    line = import_mmdet(model, state, where, allow_partial)
    out = {"model": model.state_dict(), "ema": None, "config": asdict(cfg), "step": 0,
           "args": {"model": "video_knet", "preset": "paper", "init_from": str(src)}}
    dst.parent.mkdir(parents=True, exist_ok=True)
    train.save_checkpoint(dst, out)  # a temp file on disk, then the rename
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
