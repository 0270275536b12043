"""Video panoptic metrics: STQ (AQ, SQ), VPQ over windows of k frames, PQ; and an evaluator CLI.

STQ: Weber et al., "STEP: Segmenting and Tracking Every Pixel", NeurIPS 2021 Datasets & Benchmarks (arXiv:2102.11859):
     STQ = sqrt(AQ * SQ), as deeplab2's numpy reference (evaluation/numpy/segmentation_and_tracking_quality.py).
VPQ: Kim et al., "Video Panoptic Segmentation", CVPR 2020, its VPQ metric section (mcahny/vps tools/eval_vpq.py).
PQ:  Kirillov et al., "Panoptic Segmentation", CVPR 2019, Sec. 4 (cocodataset/panopticapi) = VPQ with k = 1.

A frame is two (H, W) integer maps: semantic class (0..K-1, or ignore_label = void) and instance id (0..65535; 0 on
stuff, on void, and on GT crowd = thing pixel with id 0). A segment (tube) is one (class, instance). Per frame, one
np.unique over the int64 key gt_id * P + pred_id gives every (GT segment, predicted segment, pixel count) triple, and
STQ and VPQ for every k are computed from these triples only: cost per frame grows with the pixels, not pixels x
segments. Streaming, one pass: per sequence one confusion matrix, the (GT track, predicted track) overlap counts, and
the triples (not the pixels) of the last max(k) - 1 frames.

Conventions (`convention=`, CLI `--convention`):
  official (default)
    STQ  deeplab2. SQ = mean IoU over classes with a non-empty union, from one confusion matrix with the void row
         dropped and the void column kept (predicting void on a valid pixel adds a "void class" with IoU 0). AQ over
         thing tracks, class-agnostic; GT crowd pixels removed on both sides; predicted thing pixels on GT void or
         stuff count in |p|; pooled over sequences weighted by their number of GT tracks; AQ = 0 without GT track
         (so STQ = 0); SQ and STQ are NaN when no pixel is valid.
    VPQ  VPSNet (= panopticapi PQ at k = 1): tubes of one class match when IoU > 0.5 (strictly), the union minus the
         prediction's overlap with GT void; GT crowd is neither matched nor a false negative; an unmatched prediction
         is forgiven when more than half of it lies on GT void or on GT crowd of its class; predicted void is not a
         segment. Per-class sums over all windows of all sequences, then the mean over classes with TP + FP + FN > 0
         (All / Things / Stuff; NaN where a group has none, where the reference raises ZeroDivisionError).
  videoknet: what Video K-Net's KITTI-STEP scripts (tools/eval_dstq_step.py, eval_dvpq_step.py) compute
    STQ  as above after removing every pixel whose GT is void (AQ can only go up).
    VPQ  ViP-DeepLab style: GT crowd is an ordinary segment (a false negative if missed); the union minus the overlap
         with GT (void, instance 0) only; an unmatched prediction is forgiven when more than half of it lies on GT
         void of any instance id; mean over all classes, absent ones count 0. Predicted void pixels are ignored (no
         segment; they stay in the GT areas): the script raises IndexError on them.

Differences from the references:
  - int64 counts, float64 division, exact: Video K-Net adds eps = 1e-10 to its denominators (|diff| < 1e-9).
  - a label outside 0..K-1 other than ignore_label is a ValueError (deeplab2: IndexError, or silently void for K).
  - weights= (per pixel, deeplab2's weighted STQ) scale the STQ counts only; VPQ always counts pixels.
  - VPQ uses true tube areas; VPSNet's script adds window areas into its per-frame JSON dicts in place, which
    inflates a GT area for k >= 3 when a track starts inside a window (not reproduced).
  - void is class index K internally (deeplab2 keeps an ignore_label < K at its own index; same numbers).

Shape letters: H W frame size; K classes; S = K + 1 (classes and void); M (gt, pred) pairs; k window length.
"""
import argparse
import json
import math
import os
import re
import sys
from collections import deque

import numpy as np
from PIL import Image
from tqdm import tqdm

CONVENTIONS = ("official", "videoknet")
MAX_INSTANCE = 1 << 16  # instance ids are < 2**16 (KITTI-STEP PNG: G * 256 + B)
KITTI_STEP_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
                      "bicycle")


# -----------------------------------------------------------------------------
# Counting helpers

def group_sum(index, values, n):
    """(M,) int index in [0, n), (M,) values -> (n,) per-index sums in the dtype of values (int64 stays exact)."""
    return np.bincount(index, weights=values, minlength=n).astype(values.dtype)


def merge_counts(keys, counts):
    """(M,) int64 keys with repeats, (M,) counts -> (U,) sorted unique keys, (U,) summed counts."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    return uniq, group_sum(inverse.ravel(), counts, len(uniq))


# -----------------------------------------------------------------------------
# STQ

def segmentation_quality(confusion):
    """(S, S) confusion (GT rows, pred columns, void last) -> SQ, per-class iou (S,) (NaN if empty), tp, fp, fn, n.

    The void row is dropped (GT void never counts) and the void column kept: predicting void on a valid pixel is a
    false negative of its class and makes the void class count in the mean with IoU 0, as deeplab2 does.
    """
    conf = confusion.copy()
    conf[-1] = 0
    tp = np.diag(conf)
    fp, fn = conf.sum(0) - tp, conf.sum(1) - tp
    union = tp + fp + fn
    valid = union > 0
    iou = np.divide(tp, union, out=np.full(len(tp), np.nan), where=valid)
    n = int(valid.sum())
    sq = float(np.where(valid, iou, 0.0).sum() / n) if n else math.nan  # all GT void: 0/0 = NaN
    return sq, iou, tp, fp, fn, n


def association_quality(keys, counts, none):
    """(M,) keys gt_track * (none + 1) + pred_track (none = no track), (M,) counts -> (sum_g score(g), #GT tracks).

    score(g) = 1/|g| sum_p TPA(p, g) * IoU_id(p, g), with IoU_id = TPA / (|g| + |p| - TPA): no threshold, no
    one-to-one matching; a GT track is scored against every predicted track it touches, whatever their classes.
    """
    g, p = keys // (none + 1), keys % (none + 1)
    has_g, has_p = g != none, p != none
    g_ids, g_of = np.unique(g[has_g], return_inverse=True)
    p_ids, p_of = np.unique(p[has_p], return_inverse=True)
    g_size = group_sum(g_of.ravel(), counts[has_g], len(g_ids))  # |g| over the sequence
    p_size = group_sum(p_of.ravel(), counts[has_p], len(p_ids))  # |p|, GT void and stuff pixels included
    both = has_g & has_p
    gi, pi = np.searchsorted(g_ids, g[both]), np.searchsorted(p_ids, p[both])
    tpa = counts[both]
    inner = np.bincount(gi, weights=tpa * (tpa / (g_size[gi] + p_size[pi] - tpa)), minlength=len(g_ids))
    return float(np.sum(1.0 / g_size * inner)), len(g_ids)


# -----------------------------------------------------------------------------
# VPQ

def match_window(keys, counts, num_classes, is_thing, official=True):
    """(M,) keys gt_id * P + pred_id, (M,) int64 pixel counts of one window -> tp, fp, fn (S,) int64, iou sum (S,).

    ids are class << 16 | instance with void as class K, P = S << 16. Tubes of one class match when
    IoU = |g n p| / (|g| + |p| - |g n p| - |p n void|) > 0.5 (strictly, so at most one partner each). void is every
    GT void pixel (official) or GT (void, 0) only (videoknet); crowd and forgiving rules: module docstring.
    """
    void, S = num_classes, num_classes + 1
    g, p = keys // (S << 16), keys % (S << 16)
    gc, gi, pc = g >> 16, g & 0xFFFF, p >> 16
    g_ids, g_of = np.unique(g, return_inverse=True)  # GT tubes, and the tube of each pair
    p_ids, p_of = np.unique(p, return_inverse=True)
    g_of, p_of = g_of.ravel(), p_of.ravel()
    g_area, p_area = group_sum(g_of, counts, len(g_ids)), group_sum(p_of, counts, len(p_ids))
    g_void = gc == void
    crowd = is_thing[gc] & (gi == 0) & official
    p_on_void = group_sum(p_of, counts * (g_void if official else g_void & (gi == 0)), len(p_ids))
    candidate = (gc == pc) & (pc != void) & ~crowd
    union = g_area[g_of] + p_area[p_of] - counts - p_on_void[p_of]  # >= counts > 0 on candidates
    iou = np.where(candidate, counts / np.maximum(union, 1), 0.0)
    match = candidate & (iou > 0.5)
    tp = np.bincount(gc[match], minlength=S)
    iou_sum = np.bincount(gc[match], weights=iou[match], minlength=S)
    g_hit, p_hit = np.zeros(len(g_ids), bool), np.zeros(len(p_ids), bool)
    g_hit[g_of[match]], p_hit[p_of[match]] = True, True
    g_cls, p_cls = g_ids >> 16, p_ids >> 16
    g_counted = (g_cls != void) & ~(is_thing[g_cls] & ((g_ids & 0xFFFF) == 0) & official)
    fn = np.bincount(g_cls[g_counted & ~g_hit], minlength=S)
    ignored = g_void | (crowd & (gc == pc))  # pixels that may excuse an unmatched prediction
    forgiven = group_sum(p_of, counts * ignored, len(p_ids)) / p_area > 0.5
    fp = np.bincount(p_cls[(p_cls != void) & ~p_hit & ~forgiven], minlength=S)
    return tp, fp, fn, iou_sum


def panoptic_quality(tp, fp, fn, iou, classes, things, all_classes=False):
    """per-class (S,) tp, fp, fn, iou sums -> {"All"/"Things"/"Stuff": {pq, sq, rq, n}, "per_class": {...}}.

    PQ_c = iou_c / (tp_c + fp_c / 2 + fn_c / 2), SQ_c = iou_c / tp_c, RQ_c = tp_c / (same); the group means run over
    the classes with tp + fp + fn > 0 (official) or over all classes (all_classes=True, videoknet); NaN if none.
    """
    den = tp + 0.5 * fp + 0.5 * fn
    pq = np.divide(iou, den, out=np.zeros(len(den)), where=den > 0)
    sq = np.divide(iou, tp, out=np.zeros(len(den)), where=tp > 0)
    rq = np.divide(tp, den, out=np.zeros(len(den)), where=den > 0)
    counted = np.ones(len(den), bool) if all_classes else (tp + fp + fn) > 0
    out = {}
    for name, members in (("All", classes), ("Things", [c for c in classes if c in things]),
                          ("Stuff", [c for c in classes if c not in things])):
        m = [c for c in members if counted[c]]
        out[name] = {key: float(v[m].mean()) if m else math.nan for key, v in (("pq", pq), ("sq", sq), ("rq", rq))}
        out[name]["n"] = len(m)
    out["per_class"] = {str(c): {"pq": float(pq[c]), "sq": float(sq[c]), "rq": float(rq[c]), "iou": float(iou[c]),
                                 "tp": int(tp[c]), "fp": int(fp[c]), "fn": int(fn[c])} for c in classes}
    return out


# -----------------------------------------------------------------------------
# Streaming accumulator

class VideoPanopticMetrics:
    """Streaming STQ / VPQ / PQ over a split: update() one frame at a time, sequences one after another; result()."""

    def __init__(self, num_classes=19, things=(11, 13), ignore_label=255, windows=(1, 2, 3, 4), convention="official"):
        things, windows = tuple(int(c) for c in things), tuple(sorted({int(k) for k in windows}))
        if not (1 <= num_classes <= 32767 and 0 <= ignore_label < MAX_INSTANCE and windows and min(windows) >= 1):
            raise ValueError(f"need 1 <= num_classes <= 32767, 0 <= ignore_label < 65536 and windows >= 1, got "
                             f"{num_classes}, {ignore_label}, {windows}")
        if any(not 0 <= c < num_classes or c == ignore_label for c in things):
            raise ValueError(f"things {things} must be classes in 0..{num_classes - 1} other than {ignore_label}")
        if convention not in CONVENTIONS:
            raise ValueError(f"convention one of {CONVENTIONS}, got {convention!r}")
        self.num_classes, self.things, self.ignore_label = num_classes, things, ignore_label
        self.windows, self.convention = windows, convention
        S = num_classes + 1
        self.P = S << 16  # ids (class << 16 | instance, void = class K) are < P
        self.is_thing = np.isin(np.arange(S), things)
        self._lut = np.full(max(num_classes, ignore_label + 1), -1 << 40, np.int64)  # semantic -> class << 16, < 0 bad
        self._lut[:num_classes] = np.arange(num_classes) << 16
        self._lut[ignore_label] = num_classes << 16
        self._vpq = {k: {"tp": np.zeros(S, np.int64), "fp": np.zeros(S, np.int64), "fn": np.zeros(S, np.int64),
                         "iou": np.zeros(S), "windows": 0} for k in sorted(set(windows) | {1})}  # PQ is k = 1
        self._done, self._seq, self._seen = [], None, set()

    def update(self, sequence_id, gt_semantic, gt_instance, pred_semantic, pred_instance, weights=None):
        """Adds one frame: four (H, W) integer maps (+ optional (H, W) float STQ weights); frames in temporal order."""
        maps = [np.asarray(a) for a in (gt_semantic, gt_instance, pred_semantic, pred_instance)]
        for name, a in zip(("gt_semantic", "gt_instance", "pred_semantic", "pred_instance"), maps):
            if a.ndim != 2 or a.shape != maps[0].shape or not np.issubdtype(a.dtype, np.integer):
                raise ValueError(f"{name} is {a.dtype} {a.shape}: expected integers of shape (H, W) = {maps[0].shape}")
        if weights is not None and np.shape(weights) != maps[0].shape:
            raise ValueError(f"weights have shape {np.shape(weights)}; expected {maps[0].shape}")
        key = (self._ids(*maps[:2], "gt") * self.P + self._ids(*maps[2:], "pred")).ravel()
        if self._seq is None or sequence_id != self._seq["sequence_id"]:
            if sequence_id in self._seen:
                raise ValueError(f"sequence {sequence_id!r} was already finished: feed each sequence's frames "
                                 "consecutively (a sequence may not be split)")
            if self._seq is not None:  # the previous sequence is finished: keep only its sums
                self._done.append(self._summary(self._seq))
            self._seen.add(sequence_id)
            self._seq = {"sequence_id": sequence_id, "length": 0, "frames": deque(maxlen=max(self.windows) - 1),
                         "conf": np.zeros((self.num_classes + 1,) * 2, np.int64),
                         "aq_keys": np.zeros(0, np.int64), "aq_counts": np.zeros(0, np.int64)}
        if weights is None:  # every (gt segment, pred segment) pair of the frame with its pixel count
            keys, counts = np.unique(key, return_counts=True)
            weighted = counts
        else:
            keys, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
            weighted = np.bincount(inverse.ravel(), weights=np.ravel(weights).astype(np.float64), minlength=len(keys))
        self._update_stq(keys, weighted)
        self._update_vpq(keys, counts)
        self._seq["length"] += 1

    def _ids(self, semantic, instance, side):
        """(H, W) semantic, instance -> (H, W) int64 id = class << 16 | instance, void as class K; checks values."""
        if semantic.size == 0:
            return np.zeros(semantic.shape, np.int64)
        if instance.min() < 0 or instance.max() >= MAX_INSTANCE:
            raise ValueError(f"{side}_instance holds {instance.min()}..{instance.max()}: ids must be in 0..65535")
        lo, hi = semantic.min(), semantic.max()
        bad = lo if lo < 0 else hi if hi >= len(self._lut) else None
        if bad is None:
            ids = self._lut[semantic] + instance.astype(np.int64, copy=False)  # a label outside the classes is < 0
            bad = semantic[ids < 0][0] if ids.min() < 0 else None
        if bad is not None:
            raise ValueError(f"{side}_semantic holds {bad}: classes are 0..{self.num_classes - 1}, "
                             f"void is {self.ignore_label}")
        return ids

    def _update_stq(self, keys, counts):
        s, S = self._seq, self.num_classes + 1
        g, p = keys // self.P, keys % self.P
        if self.convention == "videoknet":  # Video K-Net removes GT-void pixels before STQ
            keep = (g >> 16) != self.num_classes
            g, p, counts = g[keep], p[keep], counts[keep]
        gc, pc = g >> 16, p >> 16
        s["conf"] = s["conf"] + group_sum(gc * S + pc, counts, S * S).reshape(S, S)
        crowd = self.is_thing[gc] & ((g & 0xFFFF) == 0)
        g_track = self.is_thing[gc] & ~crowd
        p_track = self.is_thing[pc] & ~crowd  # crowd pixels leave AQ on both sides
        sel = g_track | p_track
        none = self.P  # "no track" marker
        aq = np.where(g_track, g, none)[sel] * (none + 1) + np.where(p_track, p, none)[sel]
        s["aq_keys"], s["aq_counts"] = merge_counts(np.concatenate([s["aq_keys"], aq]),
                                                    np.concatenate([s["aq_counts"], counts[sel]]))

    def _update_vpq(self, keys, counts):
        frames = self._seq["frames"]  # (keys, counts) of the previous max(windows) - 1 frames, newest last
        win_keys, win_counts, official = keys, counts, self.convention == "official"
        for k in range(1, len(frames) + 2):  # the windows of k = 1, 2, ... frames that end at this frame
            if k > 1:  # a tube's pixels are the sum over its frames: add the triples of frame t - k + 1
                prev_keys, prev_counts = frames[-(k - 1)]
                win_keys, win_counts = merge_counts(np.concatenate([win_keys, prev_keys]),
                                                    np.concatenate([win_counts, prev_counts]))
            if k in self._vpq:
                for name, value in zip(("tp", "fp", "fn", "iou"),
                                       match_window(win_keys, win_counts, self.num_classes, self.is_thing, official)):
                    self._vpq[k][name] += value
                self._vpq[k]["windows"] += 1
        frames.append((keys, counts))

    def _summary(self, s):
        aq_sum, tracks = association_quality(s["aq_keys"], s["aq_counts"], self.P)
        return {"sequence_id": s["sequence_id"], "length": s["length"], "conf": s["conf"], "aq_sum": aq_sum,
                "tracks": tracks}

    def result(self):
        """-> dict: STQ AQ SQ, IoU_per_class, per_sequence, VPQ (per window, Things, Stuff), PQ...; NaN = undefined."""
        seqs = self._done + ([self._summary(self._seq)] if self._seq is not None else [])
        S, K = self.num_classes + 1, self.num_classes
        classes = [c for c in range(K) if c != self.ignore_label]
        per_sequence = []
        for s in seqs:
            sq = segmentation_quality(s["conf"])[0]
            aq = s["aq_sum"] / max(s["tracks"], 1e-15)
            per_sequence.append({"sequence_id": s["sequence_id"], "STQ": math.sqrt(aq * sq), "AQ": aq, "SQ": sq,
                                 "length": s["length"], "num_gt_tracks": s["tracks"]})
        tracks = sum(s["tracks"] for s in seqs)
        aq = sum(s["aq_sum"] for s in seqs) / max(tracks, 1e-15)  # track-weighted over sequences
        sq, iou, tp, fp, fn, n = segmentation_quality(sum((s["conf"] for s in seqs), np.zeros((S, S), np.int64)))
        iou_per_class = {(str(c) if c < K else "void"): {"iou": float(iou[c]), "tp": tp[c].item(), "fp": fp[c].item(),
                                                        "fn": fn[c].item()} for c in classes + [K]}
        details = {}
        for k, acc in self._vpq.items():  # no window at all (every sequence shorter than k): NaN in both conventions
            all_classes = self.convention == "videoknet" and acc["windows"] > 0
            details[str(k)] = panoptic_quality(acc["tp"], acc["fp"], acc["fn"], acc["iou"], classes, self.things,
                                               all_classes) | {"windows": acc["windows"]}
        out = {"convention": self.convention, "num_sequences": len(seqs), "num_frames": sum(s["length"] for s in seqs),
               "STQ": math.sqrt(aq * sq), "AQ": aq, "SQ": sq, "num_gt_tracks": tracks, "num_classes_in_mean": n,
               "IoU_per_class": iou_per_class}
        for group, suffix in (("All", ""), ("Things", "_things"), ("Stuff", "_stuff")):
            per_k = {str(k): details[str(k)][group]["pq"] for k in self.windows}
            out["VPQ" + suffix] = sum(per_k.values()) / len(per_k)  # mean over window lengths, NaN if one is NaN
            out["VPQ" + suffix + "_per_window"] = per_k
            out["PQ" + suffix] = details["1"][group]["pq"]
        out["VPQ_details"] = details
        out["per_sequence"] = per_sequence
        return out


# -----------------------------------------------------------------------------
# Evaluator CLI

class UserError(ValueError):
    """Bad input to the CLI (a missing, unreadable or misshapen PNG, bad flags): printed as `error: ...`."""


def read_panoptic_png(path):
    """KITTI-STEP panoptic PNG path -> semantic (H, W) int64 = R, instance (H, W) int64 = G * 256 + B."""
    try:
        with Image.open(path) as image:
            image.load()
            kind, mode, rgb = image.format, image.mode, np.asarray(image)
    except Exception as e:  # PIL: OSError (missing, truncated, not an image), SyntaxError / ValueError (broken chunks)
        raise UserError(f"{path}: unreadable or truncated PNG ({type(e).__name__}: {e})") from None
    if kind != "PNG":  # e.g. a JPEG saved under a .png name: it decodes, but its compression changes the ids
        raise UserError(f"{path}: a panoptic map must be a PNG file (lossless), but this is a {kind} file")
    if mode != "RGB":
        raise UserError(f"{path}: expected an RGB panoptic PNG (R class, G * 256 + B instance), got {mode}")
    return rgb[..., 0].astype(np.int64), rgb[..., 1].astype(np.int64) * 256 + rgb[..., 2]


def natural_key(name):
    """'frame10.png' -> ['frame', 10, '.png'], so that '2.png' sorts before '10.png'."""
    return [int(t) if t.isdecimal() else t for t in re.split(r"(\d+)", name)]  # isdecimal: exactly \d


def list_frames(gt_dir):
    """GT_DIR -> [(sequence name, [frame file names])], both in natural order; sequences without PNG are skipped."""
    if not os.path.isdir(gt_dir):
        raise UserError(f"ground-truth directory {gt_dir} does not exist")
    out = []
    for seq in sorted(os.listdir(gt_dir), key=natural_key):
        if os.path.isdir(os.path.join(gt_dir, seq)):
            frames = sorted((f for f in os.listdir(os.path.join(gt_dir, seq)) if f.endswith(".png")), key=natural_key)
            out += [(seq, frames)] if frames else []
    if not out:
        raise UserError(f"no {{sequence}}/{{frame}}.png files under {gt_dir}")
    return out


def to_json(obj):
    """result dict -> JSON-safe copy (NaN -> None, numpy scalars -> Python)."""
    if isinstance(obj, (dict, list, tuple)):
        return {str(k): to_json(v) for k, v in obj.items()} if isinstance(obj, dict) else [to_json(v) for v in obj]
    obj = obj.item() if isinstance(obj, np.generic) else obj
    return None if isinstance(obj, float) and math.isnan(obj) else obj


def format_table(res, class_names=None):
    """result dict -> readable text table (percent; '-' where a class is absent from GT and prediction)."""
    def pct(x):
        return "      -" if x is None or math.isnan(x) else f"{100 * x:7.2f}"
    lines = [f"{res['num_sequences']} sequences, {res['num_frames']} frames, convention {res['convention']}; all "
             "scores in percent (a fraction 0.5770 reads 57.70)",
             f"STQ {pct(res['STQ'])}   AQ {pct(res['AQ'])}   SQ {pct(res['SQ'])}   ({res['num_gt_tracks']} GT tracks)",
             "", f"{'':10}{'All':>8}{'Things':>8}{'Stuff':>8}"]
    for k in [*res["VPQ_per_window"], ""]:
        g = [res[f"VPQ{s}_per_window"][k] if k else res[f"VPQ{s}"] for s in ("", "_things", "_stuff")]
        lines.append(f"{f'VPQ k={k}' if k else 'VPQ mean':10} " + " ".join(map(pct, g)))
    lines += ["", f"{'class':16}{'IoU':>8}{'PQ k=1':>8}"]
    pq1 = res["VPQ_details"]["1"]["per_class"]
    for c, v in res["IoU_per_class"].items():
        pq = pq1[c]["pq"] if c in pq1 and pq1[c]["tp"] + pq1[c]["fp"] + pq1[c]["fn"] else None
        lines.append(f"{class_names[int(c)] if class_names and c != 'void' else c:16} {pct(v['iou'])} {pct(pq)}")
    lines += ["", f"{'sequence':16}{'STQ':>8}{'AQ':>8}{'SQ':>8}{'frames':>8}{'tracks':>8}"]
    lines += [f"{str(s['sequence_id']):16} {pct(s['STQ'])} {pct(s['AQ'])} {pct(s['SQ'])} {s['length']:7d} "
              f"{s['num_gt_tracks']:7d}" for s in res["per_sequence"]]
    return "\n".join(lines)


def parse_args(argv=None):
    """argv list (None = sys.argv) -> argparse.Namespace for main()."""
    p = argparse.ArgumentParser(description="Score video panoptic predictions (KITTI-STEP panoptic PNGs): STQ, VPQ.")
    p.add_argument("--gt", required=True, help="ground truth: {sequence}/{frame}.png, e.g. ROOT/panoptic_maps/val")
    p.add_argument("--pred", required=True, help="predictions with the same {sequence}/{frame}.png names")
    p.add_argument("--num_classes", type=int, default=19, help="semantic classes 0..K-1 (KITTI-STEP: 19)")
    p.add_argument("--things", type=int, nargs="*", default=[11, 13], help="thing classes (KITTI-STEP: 11 13)")
    p.add_argument("--ignore_label", type=int, default=255, help="semantic value of void pixels")
    p.add_argument("--windows", type=int, nargs="+", default=[1, 2, 3, 4], help="VPQ window lengths k (frames)")
    p.add_argument("--convention", choices=CONVENTIONS, default="official",
                   help="official: deeplab2 STQ + VPSNet VPQ; videoknet: as Video K-Net's KITTI-STEP scripts")
    p.add_argument("--json", action=argparse.BooleanOptionalAction, default=False,
                   help="print one JSON object (NaN as null) instead of the table")
    return p.parse_args(argv)


def main(argv=None):
    """CLI: score --pred against --gt, print the table (or JSON) and return the result dict."""
    args = parse_args(argv)
    try:
        metrics = VideoPanopticMetrics(args.num_classes, args.things, args.ignore_label, args.windows, args.convention)
    except ValueError as e:
        raise UserError(f"--num_classes / --things / --ignore_label / --windows: {e}") from None
    sequences = list_frames(args.gt)
    if not os.path.isdir(args.pred):
        raise UserError(f"prediction directory {args.pred} does not exist (infer.py --out writes one)")
    gt_frames, extra = {(seq, f) for seq, frames in sequences for f in frames}, []
    for seq in sorted(os.listdir(args.pred), key=natural_key):  # predictions of frames the ground truth lacks
        if os.path.isdir(os.path.join(args.pred, seq)):
            extra += [os.path.join(seq, f) for f in sorted(os.listdir(os.path.join(args.pred, seq)), key=natural_key)
                      if f.endswith(".png") and (seq, f) not in gt_frames]
    if extra:  # the wrong --gt split, or misnamed frames: the score would silently leave them out
        raise UserError(f"predicted frame {os.path.join(args.pred, extra[0])} has no ground truth "
                        f"{os.path.join(args.gt, extra[0])} ({len(extra)} such frames): score against the --gt split "
                        "the predictions were made on")
    with tqdm(total=sum(len(f) for _, f in sequences), desc="frames", unit="frame") as bar:
        for seq, frames in sequences:
            for name in frames:
                gt_path, pred_path = os.path.join(args.gt, seq, name), os.path.join(args.pred, seq, name)
                if not os.path.isfile(pred_path):
                    raise UserError(f"missing predicted frame {pred_path} (ground truth {gt_path}): every ground-truth "
                                    "frame needs a prediction of the same name")
                gt, pred = read_panoptic_png(gt_path), read_panoptic_png(pred_path)
                if gt[0].shape != pred[0].shape:
                    raise UserError(f"size mismatch: {pred_path} is {pred[0].shape[::-1]} (W, H) but "
                                    f"{gt_path} is {gt[0].shape[::-1]}")
                try:
                    metrics.update(seq, *gt, *pred)
                except ValueError as e:
                    raise UserError(f"{gt_path} / {pred_path}: {e}") from None
                bar.update()
    res = metrics.result()
    names = KITTI_STEP_CLASSES if args.num_classes == len(KITTI_STEP_CLASSES) else None
    print(json.dumps(to_json(res), allow_nan=False) if args.json else format_table(res, names))
    return res


if __name__ == "__main__":
    try:
        main()
    except UserError as e:  # bad input: one line, no traceback (a bug keeps its traceback)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
