"""Stream a trained model over videos: KITTI-STEP panoptic PNGs, five GIFs per sequence, and the scores.

    python infer.py --ckpt out/ckpt.pt --dataset kitti_step --root DIR --split val --out preds
    python infer.py --ckpt out/ckpt.pt                        # the held-out synthetic videos, no files needed
    python infer.py --ckpt out/ckpt.pt --frames DIR --out preds   # your own frames, no labels

Writes OUT/{seq:04d}/{frame:06d}.png (R = class, G*256+B = track id; readable by metrics.py and deeplab2), and per
sequence OUT/gifs/{seq}_{input,semantic,instance,panoptic,overlay}.gif. With ground truth it scores STQ / AQ / SQ
/ VPQ and saves OUT/metrics.json. The checkpoint names its model and config, so one script serves both models.

--frames DIR: a folder of images (PNG or JPEG, in natural name order: 2.png before 10.png) is one video; a folder of
such folders is one video per folder. Each prediction is written at its image's own size (the model pads to the
multiple it needs and crops back) as OUT/{video}/{image name}.png, plus the GIFs.
"""
import argparse
import json
import math
import sys
import types
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

import data
import metrics
import pix2seq_d
import video_knet

# Model name -> its file. Each exposes the same names: Config, Model, PRESETS, PAD_VALUE, SIZE_MULTIPLE, compute_loss,
# predict_video, load_backbone_weights.
MODELS = {"pix2seq_d": pix2seq_d, "video_knet": video_knet}


def build_model(name, config):
    """Model name + config dict -> (nn.Module, config dataclass). Tuples come back from JSON-ish dicts as lists."""
    Config, Model = MODELS[name].Config, MODELS[name].Model
    fields = Config.__dataclass_fields__
    unknown = set(config) - set(fields)
    if unknown:
        raise ValueError(f"unknown {name} config fields {sorted(unknown)}")
    cfg = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    return Model(cfg), cfg


class UserError(ValueError):
    """A mistake in the command or in the files it names, not a bug: the scripts print `error: ...`, no traceback."""


def run_cli(main, *args, on_interrupt=""):
    """main(*args) for a command line: a UserError or data.DataError (a mistake in the command or its files) prints
    one line `error: ...` and exits with status 2; Ctrl-C prints `interrupted` (and on_interrupt, e.g. how to
    resume) and exits with status 130; a bug keeps its traceback."""
    try:
        return main(*args)
    except KeyboardInterrupt:
        print(f"\ninterrupted{'; ' + on_interrupt if on_interrupt else ''}", file=sys.stderr)
        sys.exit(130)
    except (UserError, data.DataError) as e:
        message = str(e).strip()
        if "Original Traceback" in message:  # raised in a DataLoader worker: keep the worker's own last line
            message = message.splitlines()[-1].split("Error: ", 1)[-1]
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def check_device(name):
    """--device string -> torch.device; UserError for anything but cpu / cuda / cuda:N, or a GPU this torch or this
    machine does not have (the code paths are written and tested for CPU and CUDA only: no mps, xpu, ...)."""
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: use cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise UserError(f"--device {name}: no CUDA device is available (torch {torch.__version__} is {build}); "
                        "use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                        f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def check_out_dir(path, flag):
    """Output folder -> None; UserError when the path exists and is not a folder (e.g. a checkpoint file)."""
    if Path(path).exists() and not Path(path).is_dir():
        raise UserError(f"{flag} {path}: a file of that name exists; give a folder")


def torch_load(path, flag, objects_hint="", missing_hint=""):
    """File path -> torch.load(path, weights_only=True); UserError naming the flag and the file when that fails."""
    if not Path(path).is_file():
        what = "a folder, not a file" if Path(path).is_dir() else "file not found"
        raise UserError(f"{flag} {path}: {what}{missing_hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated (e.g. a killed copy), not a PyTorch file, or pickled Python objects
        msg = str(e).split("WeightsUnpickler error:")[-1].strip() or type(e).__name__
        objects = "Unsupported global" in msg
        what = ("holds Python objects (or is damaged), which weights_only=True refuses" if objects else
                "is truncated or not written by torch.save")
        why = "".join(c if c.isprintable() else "?" for c in msg.splitlines()[0].split(". ")[0][:160])  # no raw bytes
        raise UserError(f"{flag} {path}: the file {what} ({why}){objects_hint * objects}") from None


def check_checkpoint(ckpt, path, flag="--ckpt"):
    """torch.load result -> None if train.py wrote it (model, args, config, step); else UserError naming the file."""
    keys = ("model", "args", "config", "step")
    if not (isinstance(ckpt, dict) and all(k in ckpt for k in keys) and isinstance(ckpt["args"], dict)
            and ckpt["args"].get("model") in MODELS):
        found = sorted(map(str, ckpt))[:6] if isinstance(ckpt, dict) else f"a {type(ckpt).__name__}"
        raise UserError(f"{flag} {path}: not a checkpoint written by train.py (it has {found}, not {list(keys)} "
                        f"with args.model in {sorted(MODELS)}); train.py writes OUT_DIR/ckpt.pt")


def read_checkpoint(path, flag="--ckpt"):
    """train.py checkpoint path -> its dict; UserError naming the file when it is missing, truncated or foreign."""
    ckpt = torch_load(path, flag, missing_hint=" (train.py writes OUT_DIR/ckpt.pt)")
    check_checkpoint(ckpt, path, flag)
    return ckpt


def load_checkpoint(path, device="cpu", ema=True):
    """Checkpoint path -> (model in eval mode on device, checkpoint dict). EMA weights when present and ema=True."""
    ckpt = read_checkpoint(path)
    try:
        model, _ = build_model(ckpt["args"]["model"], ckpt["config"])
        model.load_state_dict(ckpt["ema"] if ema and ckpt.get("ema") is not None else ckpt["model"])
    except (ValueError, RuntimeError, TypeError) as e:  # e.g. written by another version of the model code
        lines = [line.strip() for line in str(e).strip().splitlines()]  # load_state_dict: a header, then the keys
        why = "; ".join(lines[1:] if lines[0].startswith("Error(s) in loading") else lines)[:300]
        raise UserError(f"--ckpt {path}: its weights do not fit its {ckpt['args']['model']} config ({why})") from None
    return model.to(device).eval(), ckpt


def compile_for_inference(model, name, backend="inductor", fullgraph=False):
    """Model -> what predict_video takes, with the network compiled (torch.compile, static shapes); weights shared.

    Video K-Net: the module (two graphs: the first frame, and later frames that link to the previous kernels).
    Pix2Seq-D: its sampler calls model.encode (once per frame) and model.denoise (per DDIM step), not forward, so
    those two are compiled and handed over with cfg; `model` itself is left as it was. fullgraph=True: a graph
    break is an error."""
    if name == "pix2seq_d":
        kw = dict(dynamic=False, backend=backend, fullgraph=fullgraph)
        return types.SimpleNamespace(cfg=model.cfg, encode=torch.compile(model.encode, **kw),
                                     denoise=torch.compile(model.denoise, **kw))
    return torch.compile(model, dynamic=False, backend=backend, fullgraph=fullgraph)


# -----------------------------------------------------------------------------
# A user's own frames (--frames): no labels, any size

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SKIPPED_NAMES = ("thumbs.db", "desktop.ini", "__macosx")  # what file managers leave beside images (any case)


def by_name(path):
    """Path -> sort key in natural name order (frame2.png before frame10.png)."""
    return metrics.natural_key(path.name)


def listing(folder):
    """Folder -> its entries, without hidden ones (dot-files, SKIPPED_NAMES); UserError if it cannot be listed."""
    try:
        return [f for f in Path(folder).iterdir() if not f.name.startswith(".") and f.name.lower() not in SKIPPED_NAMES]
    except OSError as e:  # no read permission, a vanished network drive...
        raise UserError(f"--frames: cannot list {folder} ({type(e).__name__}: {e.strerror or e})") from None


def frame_folder(folder):
    """Folder of images -> data.Sequence named after the folder (no labels); UserError naming what is wrong.

    Hidden entries (listing) are skipped; any other must be a PNG or JPEG file, and all of one size once turned
    upright (EXIF orientation, as data.read_image reads them)."""
    files = sorted(listing(folder), key=by_name)
    for f in files:
        if f.is_dir():
            raise UserError(f"--frames: {f} is a folder inside a video folder; --frames takes a folder of images "
                            f"(one video) or a folder of such folders (one video each), one level deep")
        if f.suffix.lower() not in IMAGE_SUFFIXES:
            raise UserError(f"--frames: {f} is not a PNG or JPEG image (a video folder holds images only)")
    if not files:
        raise UserError(f"--frames: {folder} holds no images")
    stems = [f.stem for f in files]
    if len(set(stems)) < len(stems):
        twin = next(f for f in files if stems.count(f.stem) > 1)
        raise UserError(f"--frames: two images in {folder} are named {twin.stem} (their outputs would collide)")
    sizes = {}
    for f in files:  # reads the headers only: a wrong size shows up before minutes of predicting
        try:
            with Image.open(f) as im:
                sizes[f] = data.upright_size(im)
        except Exception as e:  # PIL: UnidentifiedImageError, OSError...
            raise UserError(f"--frames: {f} is not a readable image ({type(e).__name__})") from None
    if len(set(sizes.values())) > 1:
        first = files[0]
        odd = next(f for f in files if sizes[f] != sizes[first])
        raise UserError(f"--frames: {odd} is {sizes[odd][0]}x{sizes[odd][1]} but {first} is "
                        f"{sizes[first][0]}x{sizes[first][1]} (width x height): one video, one frame size")
    return data.Sequence(Path(folder).resolve().name, files, None)


def frame_folders(root):
    """--frames DIR -> [data.Sequence]: DIR of images is one video, DIR of folders of images one video each."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--frames {root}: " + ("not a folder" if Path(root).exists() else "no such folder"))
    entries = listing(root)
    folders = sorted((f for f in entries if f.is_dir()), key=by_name)
    if not entries:
        raise UserError(f"--frames {root}: the folder is empty (expected images, or one folder of images per video)")
    if folders and len(folders) < len(entries):
        stray = sorted(set(entries) - set(folders), key=by_name)[0]
        raise UserError(f"--frames {root}: holds both folders and files ({stray}); put the images of each video in "
                        f"a folder of their own, or give the folder of one video")
    return [frame_folder(f) for f in folders] if folders else [frame_folder(root)]


def check_out_beside_frames(out, root, sequences):
    """--out folder, --frames folder, its [Sequence] -> None; UserError when an output would land inside --frames.

    Predictions go to OUT/{video folder name}/: with --out the frames folder itself, or the parent of a one-video
    folder, they would overwrite the input images; anywhere inside --frames they would become part of the input."""
    root, out = Path(root).resolve(), Path(out).resolve()
    for target in [out, out / "gifs"] + [out / s.name for s in sequences]:
        if target == root or root in target.parents:
            where = "is" if target == root else "is inside"
            raise UserError(f"--out {out}: it would write {target}, which {where} --frames {root}: over or beside "
                            "your images; give an output folder outside --frames")


# -----------------------------------------------------------------------------
# Streaming prediction and scoring

def predict_sequence(model, name, seq, device, autocast=nullcontext(), max_frames=0, height=0, **kw):
    """Sequence -> iterator of (frame index, semantic (H, W) int64 np, instance (H, W) int64 np), streamed.

    height > 0: the model sees each frame resized to that height (aspect kept, bilinear with antialiasing), and the
    predictions are resized back to (H, W) (nearest), e.g. to show a KITTI-trained model frames of its own scale."""
    n = len(seq) if max_frames <= 0 else min(max_frames, len(seq))
    size = None  # (H, W) of the video's frames, known at the first frame

    def frames():
        nonlocal size
        for i in range(n):
            frame = torch.from_numpy(seq.image(i)).to(device).permute(2, 0, 1).float() / 255  # (3, H, W)
            size = frame.shape[1:]
            if height > 0 and height != size[0]:
                width = max(1, round(size[1] * height / size[0]))
                frame = F.interpolate(frame[None], (height, width), mode="bilinear", antialias=True)[0].clamp(0, 1)
            yield frame

    with autocast:
        for i, (sem, inst) in enumerate(MODELS[name].predict_video(model, frames(), **kw)):
            if sem.shape != size:  # resized: back to the frame's own size
                both = F.interpolate(torch.stack([sem, inst])[None].float(), size, mode="nearest")[0].long()
                sem, inst = both[0], both[1]
            yield i, sem.cpu().numpy(), inst.cpu().numpy()


def evaluate(model, name, sequences, device, autocast=nullcontext(), max_frames=0, out=None, gifs=False,
             convention="official", progress=True, image_names=False, height=0, **kw):
    """Model + [Sequence] -> metrics.result() dict (None without labels); optionally writes PNGs and GIFs to out.

    PNGs are out/{sequence}/{frame index:06d}.png, or named after the input images with image_names=True. height:
    see predict_sequence."""
    scorer = metrics.VideoPanopticMetrics(data.NUM_CLASSES, data.THING_CLASSES, data.IGNORE_LABEL,
                                          convention=convention)
    labelled = all(s.labels is not None for s in sequences)
    total = sum(len(s) if max_frames <= 0 else min(max_frames, len(s)) for s in sequences)
    # `with`: an error mid-way clears the bar, so `error: ...` starts a line of its own
    with tqdm(total=total, desc="predict", unit="frame", disable=not progress, leave=False) as bar:
        for seq in sequences:
            views = {}  # view name -> [PIL frames], downscaled as they come, so memory stays small
            for i, sem, inst in predict_sequence(model, name, seq, device, autocast, max_frames, height, **kw):
                if out is not None:
                    stem = Path(seq.images[i]).stem if image_names else f"{i:06d}"
                    data.write_panoptic_png(Path(out) / seq.name / f"{stem}.png", sem, inst)
                if labelled:
                    scorer.update(seq.name, *seq.label(i, sem.shape), sem, inst)
                if gifs and i < GIF_FRAMES:
                    for view, im in gif_views(seq.image(i), sem, inst).items():
                        views.setdefault(view, []).append(im)
                bar.update()
            for view, ims in views.items():
                (Path(out) / "gifs").mkdir(parents=True, exist_ok=True)
                ims[0].save(Path(out) / "gifs" / f"{seq.name}_{view}.gif", save_all=True, append_images=ims[1:],
                            duration=125, loop=0)  # 8 frames/s
    return scorer.result() if labelled else None


GIF_FRAMES, GIF_WIDTH = 100, 600


def gif_views(image, sem, inst):
    """uint8 (H, W, 3) image, (H, W) semantic and instance -> {view: PIL image at most GIF_WIDTH wide}."""
    pan = data.colorize_panoptic(sem, inst)
    views = {"input": image, "semantic": data.colorize_semantic(sem), "instance": data.colorize_instance(sem, inst),
             "panoptic": pan, "overlay": (0.5 * image + 0.5 * pan).astype(np.uint8)}
    h, w = sem.shape
    size = (min(GIF_WIDTH, w), max(1, round(h * min(GIF_WIDTH, w) / w)))
    return {k: Image.fromarray(v).resize(size, Image.NEAREST) for k, v in views.items()}


def format_scores(r):
    """metrics.result() dict -> a few readable lines."""
    f = lambda x: "  nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"
    vpq = " ".join(f"k={k}: {f(v)}" for k, v in r["VPQ_per_window"].items())
    return (f"STQ {f(r['STQ'])} | AQ {f(r['AQ'])} | SQ {f(r['SQ'])} | VPQ {f(r['VPQ'])} ({vpq}) | "
            f"VPQ things {f(r['VPQ_things'])} stuff {f(r['VPQ_stuff'])}")


# -----------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Predict videos with a trained checkpoint; write PNGs, GIFs, scores.")
    p.add_argument("--ckpt", default="out/ckpt.pt", help="checkpoint written by train.py")
    p.add_argument("--dataset", default="synthetic", choices=data.DATASETS)
    p.add_argument("--root", help="dataset root (kitti_step / cityscapes)")
    p.add_argument("--frames", help="your own frames instead of a dataset: a folder of images (one video) or of "
                   "folders of images (one video each), PNG or JPEG, any size")
    p.add_argument("--split", default=None, choices=["train", "val", "test"],
                   help="the split of --dataset to run on (test: no scores); default val")
    p.add_argument("--out", default="out/pred", help="output folder for PNGs, GIFs and metrics.json")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="torch.compile the network on CUDA (CPU runs eager fp32)")
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True, help="use the EMA weights")
    p.add_argument("--gifs", action=argparse.BooleanOptionalAction, default=True, help="write five GIFs per sequence")
    p.add_argument("--max_frames", type=int, default=0, help="frames per sequence (0 = all)")
    p.add_argument("--height", type=int, default=0, help="resize frames to this height for the model (aspect kept) "
                   "and the predictions back to the frames' size; 0 = as they are (the model pads)")
    p.add_argument("--steps", type=int, default=None, help="Pix2Seq-D: DDIM steps (default: the config's)")
    p.add_argument("--td", type=float, default=None, help="Pix2Seq-D: DDIM time difference in steps")
    p.add_argument("--seed", type=int, default=0, help="Pix2Seq-D: sampling noise seed")
    p.add_argument("--convention", default="official", choices=["official", "videoknet"], help="see metrics.py")
    p.add_argument("--postprocess", choices=["ours", "original"], default=None,
                   help="Video K-Net: 'original' follows the original's test path (mask sigmoid order, road for "
                   "unclaimed pixels, semantic box filter, its id bookkeeping) for the authors' weights; see "
                   "video_knet.predict_video (default: ours)")
    args = p.parse_args(argv)
    if not args.dataset.startswith("synthetic") and not args.root:
        p.error(f"--dataset {args.dataset} needs --root")
    if args.height < 0:
        p.error(f"--height {args.height}: must be >= 0 (0 = frames as they are)")
    if args.steps is not None and args.steps < 1 or args.td is not None and args.td < 0:
        p.error(f"--steps {args.steps} / --td {args.td}: need steps >= 1 and td >= 0")
    if args.max_frames < 0:
        p.error(f"--max_frames {args.max_frames}: must be >= 0 (0 = all)")
    if args.frames and (args.root or args.dataset != "synthetic" or args.split is not None):
        p.error("--frames replaces --dataset, --root and --split: give one or the other")
    args.split = "val" if args.split is None else args.split
    if args.dataset.startswith("synthetic") and args.root:
        p.error(f"--root {args.root} is given but --dataset is {args.dataset}: add --dataset kitti_step or cityscapes")
    return args


def main(args):
    device = check_device(args.device)
    check_out_dir(args.out, "--out")
    # --- system: bf16 autocast + torch.compile on CUDA (the network only; metrics run in numpy), eager fp32 on CPU
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    cuda = device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    if args.frames:  # before the model loads: a wrong folder shows up at once
        sequences, source = frame_folders(args.frames), args.frames
        check_out_beside_frames(args.out, args.frames, sequences)
    else:
        sequences, source = data.load_sequences(args.dataset, args.root, args.split), f"{args.dataset}/{args.split}"
    model, ckpt = load_checkpoint(args.ckpt, device, args.ema)
    name = ckpt["args"]["model"]
    if name != "pix2seq_d" and (args.steps is not None or args.td is not None):
        raise UserError(f"--steps and --td are Pix2Seq-D sampler flags; {args.ckpt} holds a {name} model")
    if name != "video_knet" and args.postprocess is not None:
        raise UserError(f"--postprocess is a Video K-Net flag; {args.ckpt} holds a {name} model")
    net = compile_for_inference(model, name) if cuda and args.compile else model
    kw = {}
    if name == "pix2seq_d":
        kw = dict(steps=args.steps, td=args.td, generator=torch.Generator(device).manual_seed(args.seed))
    elif args.postprocess is not None:
        kw = dict(postprocess=args.postprocess)
    has_ema = ckpt.get("ema") is not None
    weights = "EMA weights" if args.ema and has_ema else "raw weights" + (" (it holds no EMA)" * args.ema)
    frames = sum(len(s) if args.max_frames <= 0 else min(args.max_frames, len(s)) for s in sequences)
    print(f"{name} from {args.ckpt} (step {ckpt['step']}, {weights}) on {len(sequences)} videos of {source} "
          f"({frames} frames)")
    result = evaluate(net, name, sequences, device, autocast, args.max_frames, args.out, args.gifs,
                      args.convention, image_names=bool(args.frames), height=args.height, **kw)
    if result is not None:
        print(format_scores(result))
        Path(args.out, "metrics.json").write_text(json.dumps(metrics.to_json(result), indent=1))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    run_cli(main, parse_args())
