"""Videos in and out: KITTI-STEP, Cityscapes, embedded synthetic videos, training clips, the dataset check.

KITTI-STEP (Weber et al., "STEP: Segmenting and Tracking Every Pixel", 2021) labels every pixel of 21 KITTI
tracking sequences with one of the 19 Cityscapes train classes and, for person (11) and car (13), a track id.
A label is a panoptic PNG: R = semantic id (255 = void), G * 256 + B = instance id (0 on stuff, on void and on
crowd). This file reads and writes that format, loads the two directory layouts in use, maps Cityscapes
instanceIds to the same label space (for pre-training), generates synthetic road-like videos so everything
runs with no files, and cuts training clips with one augmentation shared by every frame of a clip.

Accepted KITTI-STEP layouts (detected automatically):
  official   ROOT/images/{train,val,test}/{seq:04d}/{frame:06d}.png + ROOT/panoptic_maps/{train,val}/{seq:04d}/...
  videoknet  ROOT/video_sequence/{train,val,test}/{seq:06d}_{frame:06d}_leftImg8bit.png + ..._panoptic.png beside
Cityscapes: ROOT/leftImg8bit/{split}/{city}/*_leftImg8bit.png + ROOT/gtFine/{split}/{city}/*_gtFine_instanceIds.png

Shape letters: T frames, H W height width. Images are uint8 (H, W, 3) on disk and float (T, 3, H, W) in [0, 1]
in clips; semantic and instance maps are int64 (H, W) or (T, H, W).

Dataset check: `python data.py --dataset kitti_step --root DIR [--json]` prints per split the sequences,
frames, image sizes, classes and tracks seen.
"""
import argparse
import json
import math
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps


# -----------------------------------------------------------------------------
# Label space: the 19 Cityscapes train classes, as used by KITTI-STEP

CLASS_NAMES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
               "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
               "bicycle")
PALETTE = np.array([(128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
                    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
                    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
                    (0, 80, 100), (0, 0, 230), (119, 11, 32)], dtype=np.uint8)  # Cityscapes colours, (19, 3)
NUM_CLASSES = 19
THING_CLASSES = (11, 13)  # person, car: the only KITTI-STEP classes with track ids
IGNORE_LABEL = 255
EXIF_ORIENTATION = 0x0112  # EXIF tag: how a viewer turns the stored pixels (1 = as stored; 5-8 a quarter turn)
KITTI_STEP_SPLITS = {"train": (0, 1, 3, 4, 5, 9, 11, 12, 15, 17, 19, 20), "val": (2, 6, 7, 8, 10, 13, 14, 16, 18)}
# Cityscapes labelId -> trainId (the official cityscapesScripts table); every other labelId is void.
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                        26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


class DataError(ValueError):
    """Bad input on disk: the message names the file and what is wrong."""


class MissingSplit(DataError):
    """A split with no frames at all (e.g. a tree without the test split)."""


# -----------------------------------------------------------------------------
# PNG codec

def _open_png(path, label=False):
    """Any PNG path -> PIL image fully decoded, or DataError naming the file. label=True: a lossless PNG is required
    (a JPEG saved under a .png name decodes, but its compression changes the ids)."""
    try:
        with Image.open(path) as im:
            im.load()
            kind = im.format
            copy = im.copy()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for truncated or non-PNG files
        raise DataError(f"{path}: unreadable or truncated image ({type(e).__name__}: {e})") from None
    if label and kind != "PNG":
        raise DataError(f"{path}: a label map must be a PNG file (lossless), but this is a {kind} file")
    return copy


def upright_size(im):
    """PIL image (the header is enough) -> (width, height) as read_image returns it: swapped by an EXIF quarter turn."""
    return im.size[::-1] if im.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8) else im.size


def read_image(path):
    """Image file -> uint8 (H, W, 3) RGB, turned upright as image viewers show it (EXIF orientation, e.g. phone
    JPEGs). 16-bit grey images (PIL modes I;16 and I, e.g. 16-bit PNGs) are scaled to 8 bits (x 255 / 65535),
    which PIL's convert("RGB") would clip to white; float images are an error."""
    im = _open_png(path)
    if im.getexif().get(EXIF_ORIENTATION, 1) != 1:
        im = ImageOps.exif_transpose(im)
    if im.mode.startswith("I"):
        grey = np.asarray(im).astype(np.int64)
        if grey.min() < 0 or grey.max() > 65535:
            raise DataError(f"{path}: integer image values outside 0..65535 (min {grey.min()}, max {grey.max()})")
        return np.repeat(((grey * 255 + 32767) // 65535).astype(np.uint8)[..., None], 3, axis=2)
    if im.mode == "F":
        raise DataError(f"{path}: float image (PIL mode F): save frames as 8- or 16-bit images")
    return np.array(im.convert("RGB"))


def read_panoptic_png(path, num_classes=NUM_CLASSES, ignore_label=IGNORE_LABEL):
    """KITTI-STEP panoptic PNG -> (semantic int64 (H, W), instance int64 (H, W)); R = class, G*256+B = id."""
    im = _open_png(path, label=True)
    if im.mode != "RGB":
        raise DataError(f"{path}: panoptic PNG must be RGB (R = class, G*256+B = instance), got mode {im.mode}")
    rgb = np.asarray(im).astype(np.int64)
    semantic, instance = rgb[..., 0], rgb[..., 1] * 256 + rgb[..., 2]
    bad = np.unique(semantic[(semantic >= num_classes) & (semantic != ignore_label)])
    if bad.size:
        raise DataError(f"{path}: semantic ids {bad.tolist()} outside 0..{num_classes - 1} and {ignore_label}")
    return semantic, instance


def write_panoptic_png(path, semantic, instance):
    """(semantic (H, W), instance (H, W)) ints -> KITTI-STEP panoptic PNG at path (instance ids up to 65535)."""
    semantic, instance = np.asarray(semantic), np.asarray(instance)
    if semantic.min() < 0 or semantic.max() > 255 or instance.min() < 0 or instance.max() > 65535:
        raise ValueError(f"{path}: semantic must be in 0..255 and instance in 0..65535")
    rgb = np.stack([semantic, instance // 256, instance % 256], -1).astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


# -----------------------------------------------------------------------------
# Sequences: a video is a list of frames held as paths (read lazily) or as arrays (synthetic)

@dataclass
class Sequence:
    name: str      # e.g. "0002"
    images: list   # per frame: image path, or uint8 (H, W, 3)
    labels: list   # per frame: panoptic PNG or Cityscapes instanceIds path, or (semantic, instance); None if unlabelled

    def __len__(self):
        return len(self.images)

    def image(self, i):
        """Frame i -> uint8 (H, W, 3)."""
        x = self.images[i]
        return x if isinstance(x, np.ndarray) else read_image(x)

    def label(self, i, image_shape=None):
        """Frame i -> (semantic int64 (H, W), instance int64 (H, W)); checks the size against image_shape."""
        x = self.labels[i]
        if isinstance(x, tuple):
            semantic, instance = x
        elif str(x).endswith("_instanceIds.png"):
            semantic, instance = read_cityscapes_label(x)
        else:
            semantic, instance = read_panoptic_png(x)
        if image_shape is not None and semantic.shape != tuple(image_shape[:2]):
            raise DataError(f"{x}: label size {semantic.shape} differs from image {self.images[i]} size "
                            f"{tuple(image_shape[:2])}")
        return semantic, instance


def _frames_by_number(files, pattern):
    """Paths -> {(seq, frame): path} parsed with a regex of two int groups; numeric, never directory order."""
    out = {}
    for f in files:
        m = re.fullmatch(pattern, f.name)
        if m:
            out[(int(m.group(1)), int(m.group(2)))] = f
    return out


def _group(images, labels, split, labelled):
    """{(seq, frame): path} for images and labels -> [Sequence] sorted by sequence then frame number."""
    seqs = {}
    for (s, f), path in sorted(images.items()):
        if labelled and (s, f) not in labels:
            raise DataError(f"{path}: image has no panoptic label (split {split})")
        seqs.setdefault(s, ([], []))
        seqs[s][0].append(path)
        seqs[s][1].append(labels.get((s, f)))
    return [Sequence(f"{s:04d}", im, lab if labelled else None) for s, (im, lab) in sorted(seqs.items())]


KITTI_STEP_LAYOUTS = ("accepted KITTI-STEP layouts are\n"
                      "  official:  ROOT/images/{train,val,test}/{seq:04d}/{frame:06d}.png and "
                      "ROOT/panoptic_maps/{train,val}/{seq:04d}/{frame:06d}.png\n"
                      "  videoknet: ROOT/video_sequence/{train,val,test}/{seq:06d}_{frame:06d}_leftImg8bit.png "
                      "with {seq:06d}_{frame:06d}_panoptic.png beside it")
CITYSCAPES_LAYOUT = ("the Cityscapes layout is ROOT/leftImg8bit/{split}/{city}/*_leftImg8bit.png with "
                     "ROOT/gtFine/{split}/{city}/*_gtFine_instanceIds.png")


def kitti_step_layout(root):
    """Root dir -> "official" or "videoknet"; DataError saying what is there and the accepted layouts otherwise."""
    if root is None:
        raise DataError(f"KITTI-STEP needs a root directory (--root DIR); {KITTI_STEP_LAYOUTS}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"KITTI-STEP root {root} does not exist or is not a directory; {KITTI_STEP_LAYOUTS}")
    if (root / "images").is_dir():
        return "official"
    if (root / "video_sequence").is_dir():
        return "videoknet"
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())[:20]
    raise DataError(f"{root} is not a KITTI-STEP root: found {found or 'nothing'}; {KITTI_STEP_LAYOUTS}")


def kitti_step_sequences(root, split):
    """KITTI-STEP root (either layout) and split in train/val/test -> [Sequence] (test: labels None)."""
    layout = kitti_step_layout(root)  # first: a missing root is a DataError, not a TypeError from Path(None)
    root, labelled = Path(root), split != "test"
    if layout == "official":
        image_dir = root / "images" / split
        images = {(int(p.parent.name), int(p.stem)): p for p in image_dir.glob("*/*.png")
                  if p.parent.name.isdigit() and p.stem.isdigit()}
        labels = {(int(p.parent.name), int(p.stem)): p for p in (root / "panoptic_maps" / split).glob("*/*.png")
                  if p.parent.name.isdigit() and p.stem.isdigit()}
    else:
        image_dir = root / "video_sequence" / split
        files = list(image_dir.glob("*.png"))
        images = _frames_by_number(files, r"(\d+)_(\d+)_leftImg8bit\.png")
        labels = _frames_by_number(files, r"(\d+)_(\d+)_panoptic\.png")
    if not images:
        raise MissingSplit(f"{image_dir}: no frames found for split {split} ({layout} layout)")
    sequences = _group(images, labels, split, labelled)
    check_official_split(sequences, split, image_dir)
    return sequences


def check_official_split(sequences, split, where):
    """KITTI-STEP [Sequence] of `split` -> None; warns naming `where` when a train / val tree holds a sequence of the
    other official split (KITTI_STEP_SPLITS) or of neither: its scores would not compare with published ones."""
    if split not in KITTI_STEP_SPLITS:
        return
    other = "val" if split == "train" else "train"
    numbers = [int(s.name) for s in sequences]
    moved = [n for n in numbers if n in KITTI_STEP_SPLITS[other]]
    unknown = [n for n in numbers if n not in KITTI_STEP_SPLITS[split] + KITTI_STEP_SPLITS[other]]
    found = [f"{moved} of the official {other} split"] * bool(moved) + [f"{unknown} of neither"] * bool(unknown)
    if found:
        warnings.warn(f"{where}: the {split} split holds sequences {' and '.join(found)} (official {split}: "
                      f"{list(KITTI_STEP_SPLITS[split])}); its scores will not compare with published ones",
                      stacklevel=2)


def cityscapes_sequences(root, split):
    """Cityscapes root and split -> [Sequence] of one frame each, labels mapped to KITTI-STEP's label space."""
    if root is None:
        raise DataError(f"Cityscapes needs a root directory (--root DIR); {CITYSCAPES_LAYOUT}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Cityscapes root {root} does not exist or is not a directory; {CITYSCAPES_LAYOUT}")
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir():
        raise MissingSplit(f"{image_dir} not found: {CITYSCAPES_LAYOUT}")
    out = []
    for p in sorted(image_dir.glob("*/*_leftImg8bit.png")):
        label = root / "gtFine" / split / p.parent.name / p.name.replace("_leftImg8bit", "_gtFine_instanceIds")
        if not label.is_file():
            raise DataError(f"{p}: image has no label {label}")
        out.append(Sequence(p.name[: -len("_leftImg8bit.png")], [p], [label]))
    if not out:
        raise DataError(f"{image_dir}: no *_leftImg8bit.png images found; {CITYSCAPES_LAYOUT}")
    return out


def read_cityscapes_label(path):
    """Cityscapes *_gtFine_instanceIds.png -> (semantic int64 (H, W), instance int64 (H, W)), KITTI-STEP space."""
    return cityscapes_instance_ids_to_panoptic(np.asarray(_open_png(path, label=True)).astype(np.int64))


def cityscapes_instance_ids_to_panoptic(ids):
    """gtFine instanceIds int (H, W) -> (semantic, instance) int64 (H, W) in KITTI-STEP's label space.

    id < 1000 is a labelId (a crowd group for person/car); otherwise labelId * 1000 + k. Only person and car
    keep instances (k + 1, so 0 stays crowd); the other Cityscapes thing classes become stuff, as in
    Cityscapes-STEP. Unmapped labelIds are void (255).
    """
    label_id = np.where(ids >= 1000, ids // 1000, ids)
    table = np.full(256, IGNORE_LABEL, dtype=np.int64)
    for k, v in CITYSCAPES_TRAIN_IDS.items():
        table[k] = v
    semantic = table[np.clip(label_id, 0, 255)]
    instance = np.where((ids >= 1000) & np.isin(semantic, THING_CLASSES), ids % 1000 + 1, 0)
    return semantic, instance


# -----------------------------------------------------------------------------
# Synthetic videos: road scenes with moving, entering, leaving and occluding cars and pedestrians

# Base colours of the background classes; objects get a random colour each, and every pixel gets noise.
_BASE_COLOUR = {0: (90, 90, 95), 1: (150, 135, 140), 2: (120, 95, 80), 5: (170, 170, 160), 7: (200, 190, 40),
                8: (60, 110, 40), 9: (130, 150, 80), 10: (120, 170, 220)}


def synthetic_video(seed, num_frames=16, height=96, width=288, num_objects=6, speed=1.0):
    """Seed -> (images uint8 (T, H, W, 3), semantic int64 (T, H, W), instance int64 (T, H, W)), deterministic.

    Sky over buildings and vegetation, a road with sidewalks, poles and signs; the camera pans, so the
    background shifts. Cars (13) and persons (11) move at their own speeds, enter and leave the frame and
    occlude each other (nearer, i.e. lower, objects are drawn on top). Track ids are unique per video and kept
    across frames. Bright stripes and Gaussian noise make texture matter; cars and clothes have random colours.
    A thin band at the bottom (the ego car's hood) is void.
    """
    rng = np.random.default_rng(seed)
    T, H, W = num_frames, height, width
    pan = rng.uniform(-0.6, 0.6) * speed * W / 100  # pixels per frame
    pano_w = W + int(math.ceil(abs(pan) * T)) + 2
    horizon = int(H * rng.uniform(0.35, 0.45))
    rows = np.arange(H)[:, None]
    # Background panorama (H, pano_w): sky, building/vegetation skyline, sidewalk, road, terrain verge.
    bg = np.full((H, pano_w), 10, np.int64)
    x = 0
    while x < pano_w:  # skyline blocks of random height and class
        w = int(rng.integers(W // 12, W // 4))
        top = horizon - int(rng.integers(H // 10, H // 3))
        bg[top:horizon + 1, x:x + w] = rng.choice([2, 2, 8])
        x += w
    cols = np.arange(pano_w)[None, :]
    edge = (rows - horizon) / max(H - horizon, 1)  # 0 at the horizon, 1 at the bottom
    bg = np.where(rows > horizon, 1, bg)
    road = (np.abs(cols - pano_w / 2) < (0.15 + 0.55 * edge) * pano_w) & (rows > horizon)
    bg = np.where(road, 0, bg)
    bg = np.where((rows > horizon) & (edge < 0.12) & ~road, 9, bg)
    for x in rng.integers(0, pano_w, size=max(1, pano_w // 80)):  # poles (4 px at width 288), a sign on some
        bg[horizon - H // 5:horizon + H // 12, x:x + max(2, W // 72)] = 5
        if rng.random() < 0.5:
            bg[horizon - H // 5:horizon - H // 8, x - W // 80:x + W // 80] = 7
    # Objects: class, size, lane row (bottom y), start x, speed, colour.
    objs = []
    for k in range(num_objects):
        car = rng.random() < 0.6
        bottom = horizon + int(rng.uniform(0.2, 0.95) * (H - horizon))
        scale = 0.3 + 0.7 * (bottom - horizon) / (H - horizon)  # perspective: nearer is bigger
        h = max(3, int((H * 0.28 if car else H * 0.3) * scale))
        w = max(2, int((h * rng.uniform(1.6, 2.4)) if car else h * 0.35))
        v = rng.uniform(0.6, 2.0) * speed * W / 100 * (1 if rng.random() < 0.5 else -1) * (1.0 if car else 0.3)
        x0 = rng.uniform(-w, W) - v * rng.uniform(0, T / 2)  # some start outside and enter
        objs.append(dict(cls=13 if car else 11, id=k + 1, h=h, w=w, bottom=bottom, x0=x0, v=v,
                         colour=rng.integers(0, 256, 3)))
    objs.sort(key=lambda o: o["bottom"])  # far first, so nearer objects occlude
    stripes = (np.sin(np.arange(W)[None, :] * 0.9 + rows * 0.4) > 0.6)  # a texture that is not class-specific
    images = np.zeros((T, H, W, 3), np.uint8)
    semantic = np.zeros((T, H, W), np.int64)
    instance = np.zeros((T, H, W), np.int64)
    for t in range(T):
        off = int(round(abs(pan) * t)) if pan >= 0 else int(round(abs(pan) * (T - 1 - t)))
        sem = bg[:, off:off + W].copy()
        inst = np.zeros((H, W), np.int64)
        colour = np.array([_BASE_COLOUR.get(c, (0, 0, 0)) for c in range(256)], np.float32)[sem]
        for o in objs:
            left = int(round(o["x0"] + o["v"] * t))
            top = o["bottom"] - o["h"]
            y0, y1, x0, x1 = max(top, 0), min(o["bottom"], H), max(left, 0), min(left + o["w"], W)
            if y1 <= y0 or x1 <= x0:
                continue  # outside the frame
            yy, xx = np.mgrid[y0:y1, x0:x1]
            u, v = (xx - left) / o["w"], (yy - top) / o["h"]
            if o["cls"] == 13:  # car: body with a cabin on top
                m = (v > 0.45) | ((v > 0.1) & (u > 0.2) & (u < 0.8))
                shade = np.where((v < 0.45) & (u > 0.28) & (u < 0.72), 0.45, 1.0)[..., None]
            else:  # person: head and a body, narrower at the top
                m = ((u - 0.5) ** 2 / 0.12 + (v - 0.12) ** 2 / 0.02 < 1) | ((v > 0.22) & (np.abs(u - 0.5) < 0.45))
                shade = np.where(v > 0.6, 0.6, 1.0)[..., None]
            sem[y0:y1, x0:x1][m] = o["cls"]
            inst[y0:y1, x0:x1][m] = o["id"]
            colour[y0:y1, x0:x1][m] = (o["colour"] * shade)[m]
        sem[H - max(1, H // 24):] = IGNORE_LABEL  # ego hood: void
        inst[sem == IGNORE_LABEL] = 0
        colour[sem == IGNORE_LABEL] = (30, 30, 30)
        colour = colour * np.where(stripes, 1.25, 1.0)[..., None] + rng.normal(0, 12, (H, W, 3))
        images[t] = np.clip(colour, 0, 255).astype(np.uint8)
        semantic[t], instance[t] = sem, inst
    return images, semantic, instance


def synthetic_sequences(num_videos, seed=0, **kw):
    """Videos with seeds seed, seed+1, ... -> [Sequence] held in memory (kw: synthetic_video's arguments)."""
    out = []
    for i in range(num_videos):
        images, semantic, instance = synthetic_video(seed + i, **kw)
        out.append(Sequence(f"{i:04d}", list(images), list(zip(semantic, instance))))
    return out


def write_kitti_step(sequences, root, split, layout="official"):
    """[Sequence] -> a KITTI-STEP tree at root in the official or videoknet layout (sequence names = numbers)."""
    root = Path(root)
    for seq in sequences:
        s = int(seq.name)
        for i in range(len(seq)):
            if layout == "official":
                img = root / "images" / split / f"{s:04d}" / f"{i:06d}.png"
                lab = root / "panoptic_maps" / split / f"{s:04d}" / f"{i:06d}.png"
            elif layout == "videoknet":
                img = root / "video_sequence" / split / f"{s:06d}_{i:06d}_leftImg8bit.png"
                lab = img.with_name(f"{s:06d}_{i:06d}_panoptic.png")
            else:
                raise ValueError(f"unknown layout {layout!r}: official or videoknet")
            img.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(seq.image(i)).save(img)
            if seq.labels is not None and split != "test":
                write_panoptic_png(lab, *seq.label(i))


# -----------------------------------------------------------------------------
# Training clips with one joint augmentation per clip

def augment_clip(images, semantic, instance, crop, scale=(0.5, 2.0), flip=True, pad_value=0.0, rng=None):
    """Clip (T, 3, H, W) float, (T, H, W) int64 x2 -> the same at crop (h, w): one scale/crop/flip for all frames.

    Random scale r ~ U(scale) of the input size (images bilinear, labels nearest), a random crop (images padded
    with pad_value, a number or an RGB triple, labels with 255 where the scaled frame is smaller), and a
    horizontal flip with p = 0.5.
    """
    rng = rng or np.random.default_rng()
    T, _, H, W = images.shape
    r = rng.uniform(*scale)
    h, w = max(1, round(H * r)), max(1, round(W * r))
    if (h, w) != (H, W):
        images = F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False, antialias=r < 1)
        labels = torch.stack([semantic, instance], 1).float()  # (T, 2, H, W); ids < 2**24 are exact in float32
        labels = F.interpolate(labels, size=(h, w), mode="nearest").long()
        semantic, instance = labels[:, 0], labels[:, 1]
    ch, cw = crop
    ph, pw = max(ch - h, 0), max(cw - w, 0)
    if ph or pw:  # pad_value: a number or one per channel, what the model pads with at inference
        canvas = images.new_tensor(pad_value).reshape(1, -1, 1, 1).expand(T, 3, h + ph, w + pw).clone()
        canvas[..., :h, :w] = images
        images = canvas
        semantic = F.pad(semantic, (0, pw, 0, ph), value=IGNORE_LABEL)
        instance = F.pad(instance, (0, pw, 0, ph), value=0)
    y, x = int(rng.integers(0, h + ph - ch + 1)), int(rng.integers(0, w + pw - cw + 1))
    images, semantic, instance = (a[..., y:y + ch, x:x + cw] for a in (images, semantic, instance))
    if flip and rng.random() < 0.5:
        images, semantic, instance = (a.flip(-1) for a in (images, semantic, instance))
    return images.contiguous(), semantic.contiguous(), instance.contiguous()


class ClipDataset(torch.utils.data.Dataset):
    """Training clips from [Sequence]: item -> {"image": (T, 3, h, w) float, "semantic", "instance": (T, h, w)}.

    mode "consecutive": frames t-T+1 .. t (T = clip_len), the target last (Pix2Seq-D); t starts at T-1 when the
    sequence is long enough, and indices are clamped for shorter ones (single Cityscapes images).
    mode "pair": key frame t, then a reference at a random offset in {-2, -1, +1, +2} drawn anew every time
    (reflected when it falls outside the sequence) (Video K-Net). One item per key frame.
    """

    def __init__(self, sequences, mode="consecutive", clip_len=2, crop=(384, 1248), scale=(0.5, 2.0), flip=True,
                 pad_value=0.0):
        if mode not in ("consecutive", "pair"):
            raise ValueError(f"unknown clip mode {mode!r}: consecutive or pair")
        self.sequences, self.mode = sequences, mode
        self.clip_len = clip_len if mode == "consecutive" else 2
        self.crop, self.scale, self.flip, self.pad_value = tuple(crop), tuple(scale), flip, pad_value
        first = lambda n: min(self.clip_len - 1, n - 1) if mode == "consecutive" else 0
        self.index = [(s, t) for s, seq in enumerate(sequences) for t in range(first(len(seq)), len(seq))]
        if any(seq.labels is None for seq in sequences):
            raise DataError("training clips need labelled sequences (the test split has images only)")

    def __len__(self):
        return len(self.index)

    def frame_indices(self, s, t, rng):
        """(sequence, key frame) -> frame indices of the clip, in clip order."""
        n = len(self.sequences[s])
        if self.mode == "consecutive":
            return [min(max(t - k, 0), n - 1) for k in range(self.clip_len - 1, -1, -1)]
        off = int(rng.choice([-2, -1, 1, 2]))
        ref = t + off if 0 <= t + off < n else t - off
        return [t, min(max(ref, 0), n - 1)]

    def __getitem__(self, i):
        """Index, or (index, seed) for reproducible draws (e.g. (i, [seed, epoch, i])), -> one augmented clip."""
        i, seed = i if isinstance(i, tuple) else (i, int(torch.randint(0, 2**62, (1,))))  # torch: seeded per worker
        rng = np.random.default_rng(seed)
        s, t = self.index[i]
        seq = self.sequences[s]
        images, semantic, instance = [], [], []
        for k in self.frame_indices(s, t, rng):
            im = seq.image(k)
            sem, inst = seq.label(k, im.shape)
            images.append(torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1).float() / 255)
            semantic.append(torch.from_numpy(sem))
            instance.append(torch.from_numpy(inst))
        images, semantic, instance = augment_clip(torch.stack(images), torch.stack(semantic), torch.stack(instance),
                                                  self.crop, self.scale, self.flip, self.pad_value, rng)
        return {"image": images, "semantic": semantic, "instance": instance}


# -----------------------------------------------------------------------------
# Colours for visualisation

def colorize_semantic(semantic):
    """Semantic int (H, W) -> uint8 (H, W, 3) in the Cityscapes palette; void black."""
    table = np.zeros((256, 3), np.uint8)
    table[:NUM_CLASSES] = PALETTE
    return table[np.clip(semantic, 0, 255)]


def colorize_instance(semantic, instance):
    """(H, W) ints -> uint8 (H, W, 3): a stable colour per (class, track id), black for stuff and void."""
    key = (semantic.astype(np.int64) * 65536 + instance) * 2654435761 % (2**32)  # Knuth hash, stable per id
    rgb = np.stack([key & 255, (key >> 8) & 255, (key >> 16) & 255], -1).astype(np.uint8) | 64
    return np.where(((instance > 0) & (semantic != IGNORE_LABEL))[..., None], rgb, 0).astype(np.uint8)


def colorize_panoptic(semantic, instance):
    """(H, W) ints -> uint8 (H, W, 3): stuff in the Cityscapes palette, things in per-track colours."""
    return np.where((instance > 0)[..., None], colorize_instance(semantic, instance), colorize_semantic(semantic))


# -----------------------------------------------------------------------------
# Dataset check: what a user should see before a two-day run

SYNTHETIC_DEFAULTS = dict(num_frames=16, height=96, width=288)  # the embedded dataset of train.py / infer.py
# synthetic_hard: the same scenes with 2.5x faster objects and camera pan and 10 objects instead of 6, so objects
# cross, occlude each other, enter and leave far more often (for the frame-difference ablation, README).
SYNTHETIC_HARD = dict(speed=2.5, num_objects=10)
DATASETS = ("synthetic", "synthetic_hard", "kitti_step", "cityscapes")
SYNTHETIC_VIDEOS = {"train": 48, "val": 6, "test": 6}


def load_sequences(dataset, root=None, split="train", **synthetic_kw):
    """Dataset name (kitti_step, cityscapes, synthetic, synthetic_hard) + root + split -> [Sequence]."""
    if dataset == "kitti_step":
        return kitti_step_sequences(root, split)
    if dataset == "cityscapes":
        return cityscapes_sequences(root, split)
    if dataset in ("synthetic", "synthetic_hard"):  # train, val and test use disjoint seeds, so val is held out
        if split not in SYNTHETIC_VIDEOS:
            raise DataError(f"{dataset} split {split!r}: train, val or test")
        hard = SYNTHETIC_HARD if dataset == "synthetic_hard" else {}
        kw = {**SYNTHETIC_DEFAULTS, **hard, "num_videos": SYNTHETIC_VIDEOS[split], **synthetic_kw}
        return synthetic_sequences(seed={"train": 0, "val": 100_000, "test": 200_000}[split], **kw)
    raise DataError(f"unknown dataset {dataset!r}: kitti_step, cityscapes, synthetic or synthetic_hard")


def describe(sequences, frames_per_sequence=20):
    """[Sequence] -> {"sequences", "frames", "image_sizes", "classes", "tracks", "frames_read"} (sampled labels)."""
    sizes, classes, tracks, read = set(), set(), set(), 0
    for seq in sequences:
        n = len(seq)
        idx = range(n) if frames_per_sequence <= 0 else sorted(set(np.linspace(0, n - 1, min(n, frames_per_sequence))
                                                                     .round().astype(int).tolist()))
        for i in idx:
            im = seq.image(i)
            sizes.add(f"{im.shape[0]}x{im.shape[1]}")
            read += 1
            if seq.labels is not None:
                sem, inst = seq.label(i, im.shape)
                classes.update(np.unique(sem[sem != IGNORE_LABEL]).tolist())
                ids = np.unique(sem[inst > 0] * 65536 + inst[inst > 0])
                tracks.update((seq.name, int(k)) for k in ids)
    return {"sequences": len(sequences), "frames": sum(len(s) for s in sequences), "image_sizes": sorted(sizes),
            "classes": sorted(classes), "tracks": len(tracks), "frames_read": read}


def main(argv=None):
    p = argparse.ArgumentParser(description="Check a dataset tree: sequences, frames, sizes, classes, tracks.")
    p.add_argument("--dataset", default="kitti_step", choices=DATASETS)
    p.add_argument("--root", help="dataset root (see the layouts in this file's docstring)")
    p.add_argument("--splits", default="train,val,test", help="comma-separated splits to check")
    p.add_argument("--frames_per_sequence", type=int, default=20, help="labels read per sequence (0 = all)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args(argv)
    report, missing = {}, None
    try:
        if args.dataset == "kitti_step":
            kitti_step_layout(args.root)  # a wrong root fails here, before any split
        for split in args.splits.split(","):
            try:
                report[split] = describe(load_sequences(args.dataset, args.root, split), args.frames_per_sequence)
            except MissingSplit as e:
                missing = e  # absent splits are normal (e.g. no test images); bad files are not
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not report:
        print(f"error: no split of {args.splits} found under {args.root}: {missing}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report))
    else:
        for split, r in report.items():
            names = ", ".join(CLASS_NAMES[c] for c in r["classes"])
            print(f"{split:>5}: {r['sequences']} sequences, {r['frames']} frames, sizes {' '.join(r['image_sizes'])}, "
                  f"{r['tracks']} tracks seen in {r['frames_read']} frames read\n       classes: {names or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
