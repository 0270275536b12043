"""Benchmark metrics.py (STQ + VPQ k = 1..4, one pass) against re-statements of the reference algorithms.

    python scripts/bench_metrics.py            # prints a markdown table for BENCHMARKS.md

Input: one synthetic KITTI-STEP-sized sequence (375 x 1242, 20 frames): 6 stuff bands, a void strip, a crowd blob and
10 moving person / car tracks; the prediction shifts the objects, confuses a stuff patch, switches two ids at frame 10,
misses one track, adds a false positive and predicts void on a patch. Baselines, written from shared/reference/
metrics.md (not copied):
  - deeplab2's numpy STQ: np.unique per frame (confusion, |p|, |g|, intersections) into dicts, then a Python loop
    over every (GT track, predicted track) pair in result().
  - VPSNet's tools/eval_vpq.py for k = 1..4: per window, decode the RGB id maps of its k frames, stack them, one
    np.unique over gt * 256**3 + pred, then Python loops over the pairs, the GT and the predicted segments.
Both baselines must agree with metrics.py (STQ/AQ/SQ and VPQ per k to 1e-9) or the script fails. No PNG I/O is timed.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import metrics  # noqa: E402

H, W, T, K, THINGS, VOID = 375, 1242, 20, 19, (11, 13), 255


# ----------------------------------------------------------------------------- synthetic sequence


def ellipse(cy, cx, ry, rx):
    yy, xx = np.ogrid[:H, :W]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def synthetic_sequence(seed=0):
    """-> list of T frames (gt_sem, gt_inst, pred_sem, pred_inst), each (H, W) int64."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    tracks = [(11 if i % 3 == 0 else 13, i + 1, rng.uniform(150, 330), rng.uniform(0, W), rng.uniform(15, 45),
               rng.uniform(20, 90), rng.uniform(-15, 15)) for i in range(10)]  # class, id, cy, cx, ry, rx, speed
    frames = []
    for t in range(T):
        wave = (12 * np.sin(xx / 90 + t / 5)).astype(int)
        gs = np.select([yy < 60 + wave, yy < 150 + wave, yy < 200 + wave, yy < 260 + wave, yy < 300 + wave],
                       [10, 2, 8, 1, 9], 0)  # sky, building, vegetation, sidewalk, terrain, road
        gs[(xx % 300 < 8) & (yy < 250)] = 5  # poles
        gi = np.zeros((H, W), np.int64)
        ps, pi = gs.copy(), gi.copy()
        ps[100:160, 400:700] = np.where(ps[100:160, 400:700] == 8, 9, ps[100:160, 400:700])  # vegetation -> terrain
        for cls, tid, cy, cx, ry, rx, v in tracks:
            g = ellipse(cy, (cx + v * t) % W, ry, rx)
            gs[g], gi[g] = cls, tid
            if tid == 4:
                continue  # missed track
            p = ellipse(cy + 2, (cx + v * t + 3) % W, ry, rx * 1.05)
            ps[p], pi[p] = cls, tid + (20 if tid in (2, 5) and t >= 10 else 0)  # id switch at frame 10
        crowd = ellipse(330, 1100, 25, 80)
        gs[crowd], gi[crowd] = 13, 0
        gs[:12], gi[:12] = VOID, 0
        fp = ellipse(200, 600 + 5 * t, 20, 30)
        ps[fp], pi[fp] = 11, 99
        ps[340:375, 0:200], pi[340:375, 0:200] = VOID, 0
        frames.append((gs, gi, ps, pi))
    return frames


# ----------------------------------------------------------------------------- baseline 1: deeplab2 numpy STQ


def count_into(stats, ids):
    """np.unique then a Python loop over the ids into a dict, as deeplab2's _update_dict_stats."""
    values, counts = np.unique(ids, return_counts=True)
    for v, c in zip(values, counts):
        stats[v] = stats.get(v, 0) + c


class Deeplab2STQ:
    """STQ as deeplab2's numpy STQuality computes it (label bit shift 16, offset 2**24)."""

    def __init__(self, num_classes, things, ignore_label, shift=16, offset=2 ** 24):
        self.K, self.things, self.ignore, self.shift, self.offset = num_classes, things, ignore_label, shift, offset
        self.conf, self.preds, self.gts, self.inters = {}, {}, {}, {}

    def update_state(self, y_true, y_pred, seq):
        sem_t, sem_p = y_true >> self.shift, y_pred >> self.shift
        if self.ignore > self.K:
            sem_t, sem_p = np.where(sem_t == self.ignore, self.K, sem_t), np.where(sem_p == self.ignore, self.K, sem_p)
        if seq not in self.conf:
            self.conf[seq] = np.zeros((self.K + 1, self.K + 1), np.int64)
            np.add.at(self.conf[seq], (sem_t.ravel(), sem_p.ravel()), 1)
            self.preds[seq], self.gts[seq], self.inters[seq] = {}, {}, {}
        else:
            u, c = np.unique(((sem_t << self.shift) + sem_p).ravel(), return_counts=True)
            self.conf[seq][u >> self.shift, u & ((1 << self.shift) - 1)] += c
        gt_thing, pred_thing = np.zeros(y_true.shape, bool), np.zeros(y_true.shape, bool)
        for c in self.things:
            gt_thing |= sem_t == c
            pred_thing |= sem_p == c
        crowd = gt_thing & ((y_true & ((1 << self.shift) - 1)) == 0)
        gt_thing, pred_thing = gt_thing & ~crowd, pred_thing & ~crowd
        count_into(self.preds[seq], y_pred[pred_thing])
        count_into(self.gts[seq], y_true[gt_thing])
        both = gt_thing & pred_thing
        count_into(self.inters[seq], y_true[both] * self.offset + y_pred[both])

    def result(self):
        aq_sum, tracks, total = 0.0, 0, np.zeros((self.K + 1, self.K + 1), np.int64)
        for seq in self.conf:
            for g, g_size in self.gts[seq].items():
                inner = 0.0
                for p, p_size in self.preds[seq].items():
                    tpa = self.inters[seq].get(self.offset * g + p)
                    if tpa is not None:
                        inner += tpa * (tpa / (tpa + (p_size - tpa) + (g_size - tpa)))
                aq_sum += 1.0 / g_size * inner
            tracks += len(self.gts[seq])
            total += self.conf[seq]
        total[self.K] = 0  # void row
        tp = np.diag(total)
        union = total.sum(0) + total.sum(1) - tp
        sq = np.sum(tp / np.maximum(union, 1e-15)) / np.count_nonzero(union)
        aq = aq_sum / max(tracks, 1e-15)
        return {"STQ": np.sqrt(aq * sq), "AQ": aq, "SQ": sq}


# ----------------------------------------------------------------------------- baseline 2: VPSNet VPQ


def to_coco(frames):
    """(sem, inst) frames -> RGB id maps (gt, pred), GT segments per frame, category per id; one id per
    (class, instance) for the whole sequence, 0 = VOID (any instance), GT (thing, 0) is crowd."""
    ids, pan_of, gt_rgb, pred_rgb, gt_info = {}, {}, [], [], []
    for gs, gi, ps, pi in frames:
        out = []
        for sem, inst in ((gs, gi), (ps, pi)):
            pan = np.where(sem == VOID, -1, sem * 65536 + inst)
            seg = np.zeros(sem.shape, np.int64)
            for v in np.unique(pan[pan >= 0]).tolist():
                if v not in ids:
                    ids[v] = len(ids) + 1
                    pan_of[ids[v]] = v
                seg[pan == v] = ids[v]
            out.append(np.stack([seg % 256, seg // 256 % 256, seg // 65536], -1).astype(np.uint8))
        gt_rgb.append(out[0])
        pred_rgb.append(out[1])
        seg = out[0].astype(np.int64) @ np.array([1, 256, 65536])
        u, c = np.unique(seg[seg > 0], return_counts=True)
        gt_info.append({int(i): {"category_id": pan_of[i] // 65536, "area": int(a),
                                 "iscrowd": int(pan_of[i] // 65536 in THINGS and pan_of[i] % 65536 == 0)}
                        for i, a in zip(u.tolist(), c)})
    return gt_rgb, pred_rgb, gt_info, {i: v // 65536 for i, v in pan_of.items()}


def vpsnet_vpq(gt_rgb, pred_rgb, gt_info, cats, nframes):
    """One sequence, windows of nframes -> per-class {tp, fp, fn, iou}, looping as tools/eval_vpq.py does."""
    offset, stat = 256 ** 3, {}
    for t in range(len(gt_rgb) - nframes + 1):
        pan_gt, pan_pred, gt_segs, pred_segs = [], [], {}, {}
        for j in range(t, t + nframes):
            g = gt_rgb[j].astype(np.uint32)
            p = pred_rgb[j].astype(np.uint32)
            pan_gt.append(g[..., 0] + g[..., 1] * 256 + g[..., 2] * 65536)
            pan_pred.append(p[..., 0] + p[..., 1] * 256 + p[..., 2] * 65536)
            for i, info in gt_info[j].items():
                seg = gt_segs.setdefault(i, dict(info, area=0))
                seg["area"] += info["area"]
            labels, counts = np.unique(pan_pred[-1], return_counts=True)
            for i, c in zip(labels, counts):
                if i != 0:
                    pred_segs.setdefault(int(i), {"category_id": cats[int(i)], "area": 0})["area"] += int(c)
        key = np.stack(pan_gt).astype(np.uint64) * offset + np.stack(pan_pred).astype(np.uint64)
        pairs = {(int(k // offset), int(k % offset)): int(c) for k, c in zip(*np.unique(key, return_counts=True))}
        g_hit, p_hit = set(), set()
        for (g, p), inter in pairs.items():
            if g not in gt_segs or p not in pred_segs or gt_segs[g]["iscrowd"]:
                continue
            if gt_segs[g]["category_id"] != pred_segs[p]["category_id"]:
                continue
            iou = inter / (pred_segs[p]["area"] + gt_segs[g]["area"] - inter - pairs.get((0, p), 0))
            if iou > 0.5:
                s = stat.setdefault(gt_segs[g]["category_id"], {"tp": 0, "fp": 0, "fn": 0, "iou": 0.0})
                s["tp"], s["iou"] = s["tp"] + 1, s["iou"] + iou
                g_hit.add(g)
                p_hit.add(p)
        crowd = {}
        for g, info in gt_segs.items():
            if g in g_hit:
                continue
            if info["iscrowd"]:
                crowd[info["category_id"]] = g
                continue
            stat.setdefault(info["category_id"], {"tp": 0, "fp": 0, "fn": 0, "iou": 0.0})["fn"] += 1
        for p, info in pred_segs.items():
            if p in p_hit:
                continue
            ignored = pairs.get((0, p), 0) + pairs.get((crowd.get(info["category_id"], -1), p), 0)
            if ignored / info["area"] > 0.5:
                continue
            stat.setdefault(info["category_id"], {"tp": 0, "fp": 0, "fn": 0, "iou": 0.0})["fp"] += 1
    pq = [s["iou"] / (s["tp"] + s["fp"] / 2 + s["fn"] / 2) for s in stat.values() if s["tp"] + s["fp"] + s["fn"]]
    return sum(pq) / len(pq)


# ----------------------------------------------------------------------------- timing


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None):
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)  # no options: --help only
    frames = synthetic_sequence()
    n_gt = len(np.unique(np.concatenate([(gs * 65536 + gi).ravel() for gs, gi, _, _ in frames])))

    def ours():
        m = metrics.VideoPanopticMetrics(K, THINGS, VOID, (1, 2, 3, 4))
        for f in frames:
            m.update("0000", *f)
        return m.result()

    def ours_pq_only():
        m = metrics.VideoPanopticMetrics(K, THINGS, VOID, (1,))
        for f in frames:
            m.update("0000", *f)
        return m.result()

    def deeplab2():
        m = Deeplab2STQ(K, THINGS, VOID)
        for gs, gi, ps, pi in frames:
            m.update_state((gs << 16) + gi, (ps << 16) + pi, "0000")
        return m.result()

    coco = to_coco(frames)
    t_ours, res = best_of(ours)
    t_pq, _ = best_of(ours_pq_only)
    t_dl2, ref = best_of(deeplab2)
    t_vps, vps = best_of(lambda: [vpsnet_vpq(*coco, k) for k in (1, 2, 3, 4)], repeat=1)
    for key in ("STQ", "AQ", "SQ"):
        assert abs(res[key] - ref[key]) < 1e-9, (key, res[key], ref[key])
    for k, v in zip("1234", vps):
        assert abs(res["VPQ_per_window"][k] - v) < 1e-9, (k, res["VPQ_per_window"][k], v)
    ms = lambda t: 1e3 * t / T  # noqa: E731
    print(f"{H}x{W}, {T} frames, {n_gt} GT segments (void included); STQ {res['STQ']:.4f}, VPQ k=1..4 "
          + " ".join(f"{v:.4f}" for v in res["VPQ_per_window"].values()) + " (baselines agree to 1e-9)\n")
    print("| what | ms / frame | relative to deeplab2 STQ |")
    print("| --- | ---: | ---: |")
    print(f"| metrics.py: STQ + VPQ k=1..4 (one pass) | {ms(t_ours):.1f} | {t_ours / t_dl2:.2f}x |")
    print(f"| metrics.py: STQ + PQ only (windows=(1,)) | {ms(t_pq):.1f} | {t_pq / t_dl2:.2f}x |")
    print(f"| deeplab2 numpy STQ alone (re-statement) | {ms(t_dl2):.1f} | 1.00x |")
    print(f"| VPSNet eval_vpq.py VPQ k=1..4 (re-statement) | {ms(t_vps):.1f} | {t_vps / t_dl2:.2f}x |")


if __name__ == "__main__":
    main()
