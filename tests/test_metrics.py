"""metrics.py: the reference cases (deeplab2 / VPSNet / panopticapi / Video K-Net outputs), hand-built cases for each
rule, a brute-force re-statement of the definitions on random videos, streaming, bad input, and the CLI."""
import functools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import metrics

CASES = sorted((Path(__file__).parent / "metric_cases").glob("*.json"))
MAPS = ("gt_semantic", "gt_instance", "pred_semantic", "pred_instance")


@functools.lru_cache(maxsize=None)
def load_case(name):
    return json.loads((Path(__file__).parent / "metric_cases" / f"{name}.json").read_text())


@functools.lru_cache(maxsize=None)
def run_case(name, convention):
    case = load_case(name)
    p = case["params"]
    m = metrics.VideoPanopticMetrics(p["num_classes"], p["thing_classes"], p["ignore_label"], p["window_sizes"],
                                     convention)
    for seq in case["sequences"]:
        for f in seq["frames"]:
            w = np.array(f["weights"]) if "weights" in f else None
            m.update(seq["sequence_id"], *(np.array(f[k]) for k in MAPS), weights=w)
    return m.result()


def close(got, want, tol):
    """want None (reference NaN / undefined) <-> got NaN."""
    if want is None:
        return got is None or math.isnan(got)
    return abs(got - want) <= tol


def check(got, want, tol, what):
    assert close(got, want, tol), f"{what}: got {got}, reference {want}"


# ----------------------------------------------------------------------------- reference cases


def test_all_reference_cases_present():
    assert len(CASES) == 30, "tests/metric_cases must hold the 30 JSON files copied from shared/metric_cases"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_stq_matches_deeplab2_numpy(path):
    ref, res = load_case(path.stem)["expected"]["stq_deeplab2_numpy"], run_case(path.stem, "official")
    for key in ("STQ", "AQ", "SQ", "num_gt_tracks", "num_classes_in_mean"):
        check(res[key], ref[key], 1e-9, key)
    for c, want in ref["per_class"].items():
        ours = res["IoU_per_class"].get("void" if c.startswith("void") else c)
        if ours is None:  # ignore_label inside 0..K-1: its own slot in deeplab2, only the void entry here
            assert want["tp"] == want["fp"] == want["fn"] == 0
            continue
        for key in ("iou", "tp", "fp", "fn"):
            check(ours[key], want[key], 1e-9, f"class {c} {key}")
    assert len(res["per_sequence"]) == len(ref["per_sequence"])
    for ours, want in zip(res["per_sequence"], ref["per_sequence"]):
        assert ours["sequence_id"] == want["sequence_id"]
        for key in ("STQ", "AQ", "SQ", "length", "num_gt_tracks"):
            check(ours[key], want[key], 1e-9, f"sequence {want['sequence_id']} {key}")


VPQ_CASES = [p for p in CASES if "vpq_vps" in load_case(p.stem)["expected"]]


@pytest.mark.parametrize("path", VPQ_CASES, ids=[p.stem for p in VPQ_CASES])
def test_vpq_matches_vpsnet_and_pq_matches_panopticapi(path):
    expected, res = load_case(path.stem)["expected"], run_case(path.stem, "official")
    for win in expected["vpq_vps"]["windows"]:
        ours = res["VPQ_details"][str(win["nframes"])]
        for group in ("All", "Things", "Stuff"):
            if "error" in win[group]:  # ZeroDivisionError: no class of the group has TP + FP + FN > 0
                assert ours[group]["n"] == 0 and math.isnan(ours[group]["pq"])
                continue
            for key in ("pq", "sq", "rq", "n"):
                check(ours[group][key], win[group][key], 1e-9, f"k={win['nframes']} {group} {key}")
        for c, want in win["per_class"].items():
            for key in want:
                check(ours["per_class"][c][key], want[key], 1e-9, f"k={win['nframes']} class {c} {key}")
    for ours, key in (("VPQ", "VPQ_All"), ("VPQ_things", "VPQ_Things"), ("VPQ_stuff", "VPQ_Stuff")):
        check(res[ours], expected["vpq_vps"][key], 1e-9, key)
    papi, ours = expected["pq_panopticapi"], res["VPQ_details"]["1"]
    for group in ("All", "Things", "Stuff"):
        if "error" not in papi[group]:
            for key in ("pq", "sq", "rq", "n"):
                check(ours[group][key], papi[group][key], 1e-9, f"panopticapi {group} {key}")
    for c, want in papi["per_class_raw"].items():
        for key in want:
            check(ours["per_class"][c][key], want[key], 1e-9, f"panopticapi class {c} {key}")
    check(res["PQ"], papi["All"].get("pq"), 1e-9, "PQ")


@pytest.mark.parametrize("path", VPQ_CASES, ids=[p.stem for p in VPQ_CASES])
def test_videoknet_convention_matches_its_scripts(path):
    expected, res = load_case(path.stem)["expected"], run_case(path.stem, "videoknet")
    stq = expected["stq_videoknet_void_masked"]
    for key in ("STQ", "AQ", "SQ"):
        check(res[key], stq[key], 1e-9, f"void-masked {key}")
    for ours, want in zip(res["per_sequence"], stq["per_sequence"]):
        for key in ("STQ", "AQ", "SQ"):
            check(ours[key], want[key], 1e-9, f"void-masked sequence {key}")
    vpq = expected["vpq_vipdeeplab_videoknet"]
    if "error" in vpq:  # not run by the generator (the script hard-codes ignore 255 and 19 classes)
        return
    for win in vpq["windows"]:
        if "error" in win:  # the script crashed (IndexError on predicted void): nothing to compare
            continue
        ours = res["VPQ_details"][str(win["nframes"])]
        for group, key in (("All", "VPQ_all_classes"), ("Things", "VPQ_things_all"), ("Stuff", "VPQ_stuff_all")):
            check(ours[group]["pq"], win[key], 1e-6, f"k={win['nframes']} {key}")
        for c, want in win["per_class"].items():
            for key in want:
                check(ours["per_class"][c][key], want[key], 1e-6, f"k={win['nframes']} class {c} {key}")
    if all("error" not in w for w in vpq["windows"]):
        check(res["VPQ"], vpq["VPQ_all_classes"], 1e-6, "VPQ")


# ----------------------------------------------------------------------------- brute force (definitions, metrics.md)


def brute_stq(video, K, things, ignore, videoknet):
    """Pixel masks and Python loops straight from the definitions: -> STQ, AQ, SQ."""
    conf_tp, conf_fp, conf_fn = np.zeros(K + 1), np.zeros(K + 1), np.zeros(K + 1)  # index K = void column
    aq_sum, tracks = 0.0, 0
    for _, frames in video:
        gs, gi, ps, pi = (np.stack([f[j] for f in frames]) for j in range(4))
        keep = gs != ignore if videoknet else np.ones(gs.shape, bool)
        valid = keep & (gs != ignore)
        pc = np.where(ps == ignore, K, ps)
        for c in range(K + 1):
            conf_tp[c] += (valid & (gs == c) & (pc == c)).sum() if c < K else 0
            conf_fp[c] += (valid & (gs != c) & (pc == c)).sum()
            conf_fn[c] += (valid & (gs == c) & (pc != c)).sum() if c < K else 0
        thing_g, thing_p = np.isin(gs, things) & keep, np.isin(ps, things) & keep
        crowd = thing_g & (gi == 0)
        gts = {(s, i) for s, i in zip(gs[thing_g & ~crowd], gi[thing_g & ~crowd])}
        preds = {(s, i) for s, i in zip(ps[thing_p & ~crowd], pi[thing_p & ~crowd])}
        for s, i in gts:
            g = (gs == s) & (gi == i) & keep
            score = 0.0
            for t, j in preds:
                p = (ps == t) & (pi == j) & thing_p & ~crowd
                tpa = (g & p).sum()
                score += tpa * tpa / (g.sum() + p.sum() - tpa) if tpa else 0.0
            aq_sum, tracks = aq_sum + score / g.sum(), tracks + 1
    union = conf_tp + conf_fp + conf_fn
    sq = (conf_tp[union > 0] / union[union > 0]).mean() if (union > 0).any() else math.nan
    aq = aq_sum / tracks if tracks else 0.0
    return math.sqrt(aq * sq), aq, sq


def brute_vpq(video, K, things, ignore, k, videoknet):
    """Every window of k frames, every (GT tube, predicted tube) pair by masks: -> PQ over the window set."""
    tp, fp, fn, iou = (np.zeros(K) for _ in range(4))
    for _, frames in video:
        for t in range(len(frames) - k + 1):
            gs, gi, ps, pi = (np.stack([f[j] for f in frames[t:t + k]]) for j in range(4))
            void = gs == ignore
            gsegs = {(s, i) for s, i in zip(gs[~void], gi[~void])}
            psegs = {(s, i) for s, i in zip(ps[ps != ignore], pi[ps != ignore])}
            crowd = {(s, 0) for s in things if (s, 0) in gsegs} if not videoknet else set()
            g_hit, p_hit = set(), set()
            for s, i in gsegs - crowd:
                g = (gs == s) & (gi == i)
                for j in [j for (c, j) in psegs if c == s]:
                    p = (ps == s) & (pi == j)
                    inter = (g & p).sum()
                    on_void = (p & void & (gi == 0)).sum() if videoknet else (p & void).sum()
                    if inter / (g.sum() + p.sum() - inter - on_void) > 0.5:
                        tp[s], iou[s] = tp[s] + 1, iou[s] + inter / (g.sum() + p.sum() - inter - on_void)
                        g_hit.add((s, i))
                        p_hit.add((s, j))
            for s, i in gsegs - crowd - g_hit:
                fn[s] += 1
            for s, j in psegs - p_hit:
                p = (ps == s) & (pi == j)
                ignored = (p & void).sum() + ((p & (gs == s) & (gi == 0)).sum() if (s, 0) in crowd else 0)
                fp[s] += ignored / p.sum() <= 0.5
    den = tp + fp / 2 + fn / 2
    classes = [c for c in range(K) if c != ignore and (videoknet or den[c] > 0)]
    pq = [iou[c] / den[c] if den[c] else 0.0 for c in classes]
    return float(np.mean(pq)) if pq else math.nan


def random_video(rng, K=5, ignore=255, T=(4, 3), H=5, W=6):
    """Two sequences of correlated GT / prediction (H, W) maps with void, crowd, predicted void and id noise."""
    video = []
    for seq, length in enumerate(T):
        frames = []
        for _ in range(length):
            gs = rng.integers(0, K, (H, W))
            gs[rng.random((H, W)) < 0.1] = ignore
            gi = np.where(np.isin(gs, (2, 3)), rng.integers(0, 3, (H, W)), 0)
            gi[(gs == ignore) & (rng.random((H, W)) < 0.3)] = 4  # GT void with an instance id
            ps, pi = gs.copy(), gi.copy()
            noise = rng.random((H, W)) < 0.25
            ps[noise] = rng.choice(list(range(K)) + [ignore], noise.sum())
            pi[noise] = rng.integers(0, 3, noise.sum())
            frames.append((gs, gi, ps, pi))
        video.append((f"s{seq}", frames))
    return video


def run(video, convention="official", K=5, things=(2, 3), ignore=255, windows=(1, 2, 3, 4)):
    m = metrics.VideoPanopticMetrics(K, things, ignore, windows, convention)
    for seq, frames in video:
        for f in frames:
            m.update(seq, *f)
    return m.result()


@pytest.mark.parametrize("convention", ["official", "videoknet"])
@pytest.mark.parametrize("seed", range(6))
def test_random_videos_match_brute_force(seed, convention):
    rng = np.random.default_rng(seed)
    ignore = 255 if seed % 3 else 0  # also an ignore label inside 0..K-1
    video = random_video(rng, ignore=ignore)
    things = (2, 3)
    res = run(video, convention, ignore=ignore, things=things)
    for key, want in zip(("STQ", "AQ", "SQ"), brute_stq(video, 5, things, ignore, convention == "videoknet")):
        check(res[key], want, 1e-12, key)
    for k in (1, 2, 3, 4):
        want = brute_vpq(video, 5, things, ignore, k, convention == "videoknet")
        check(res["VPQ_per_window"][str(k)], want, 1e-12, f"VPQ k={k}")


# ----------------------------------------------------------------------------- hand-built rules


def row(*values):
    return np.array([values])


@pytest.mark.parametrize("convention", ["official", "videoknet"])
def test_perfect_prediction_scores_one_even_with_void_and_crowd(convention):
    video = random_video(np.random.default_rng(7))
    video = [(s, [(gs, gi, gs, gi) for gs, gi, _, _ in frames]) for s, frames in video]
    res = run(video, convention)
    for key in ("STQ", "AQ", "SQ", "VPQ", "PQ", "VPQ_things", "VPQ_stuff"):
        assert res[key] == pytest.approx(1.0, abs=1e-12), key


def test_instance_id_permutation_leaves_every_number_unchanged():
    rng = np.random.default_rng(3)
    video = random_video(rng)
    perm_gt = np.array([0, 2, 1, 3, 7])  # GT: 0 (crowd) stays 0, other ids permuted
    perm_pred = np.array([5, 0, 9, 3, 4])  # prediction: any relabelling, instance 0 included
    relabelled = [(s, [(gs, perm_gt[gi], ps, perm_pred[pi]) for gs, gi, ps, pi in frames]) for s, frames in video]

    def leaves(obj, prefix=""):
        if isinstance(obj, dict):
            return [x for k, v in obj.items() for x in leaves(v, f"{prefix}/{k}")]
        return [x for i, v in enumerate(obj) for x in leaves(v, f"{prefix}/{i}")] if isinstance(obj, list) else \
            [(prefix, obj)]
    for convention in ("official", "videoknet"):
        a, b = leaves(run(video, convention)), leaves(run(relabelled, convention))
        assert [k for k, _ in a] == [k for k, _ in b]
        for (key, x), (_, y) in zip(a, b):
            assert x == y or (isinstance(x, float) and close(y, None if math.isnan(x) else x, 1e-12)), key


def test_id_switch_lowers_vpq_for_longer_windows_but_not_pq():
    # 4 frames of [road road car car]; the prediction's car id switches 1 -> 2 after frame 2 (pixel-perfect).
    gt = [(row(0, 0, 1, 1), row(0, 0, 1, 1))] * 4
    pred = [(row(0, 0, 1, 1), row(0, 0, i, i)) for i in (1, 1, 2, 2)]
    res = run([("a", [g + p for g, p in zip(gt, pred)])], K=2, things=(1,))
    # k=2: windows 01, 23 match the car; window 12: each half has IoU 2/4 = 0.5, not > 0.5 -> FN 1, FP 2.
    # k=3: both windows match one half with IoU 4/6, the other half is a FP. k=4: IoU 4/8 -> nothing matches.
    expected = {"1": 1.0, "2": (1 + 2 / 3.5) / 2, "3": (1 + (4 / 3) / 3) / 2, "4": 0.5}
    for k, want in expected.items():
        assert res["VPQ_per_window"][k] == pytest.approx(want, abs=1e-12), k
    assert res["PQ"] == 1.0 and res["SQ"] == 1.0
    assert res["AQ"] == pytest.approx((4 * 4 / 8 + 4 * 4 / 8) / 8)  # two predicted tracks of 4 px, IoU_id 1/2 each


def test_iou_of_exactly_one_half_is_not_a_match():
    frame = (row(1, 1, 1, 1), row(1, 1, 1, 1), row(1, 1, 0, 0), row(1, 1, 0, 0))  # car IoU 2/4
    res = run([("a", [frame])], K=2, things=(1,), windows=(1,))
    pc = res["VPQ_details"]["1"]["per_class"]
    assert (pc["1"]["tp"], pc["1"]["fp"], pc["1"]["fn"]) == (0, 1, 1) and pc["0"]["fp"] == 1
    assert res["PQ"] == 0.0
    frame = (row(1, 1, 1, 1, 1), row(1, 1, 1, 1, 1), row(1, 1, 1, 0, 0), row(1, 1, 1, 0, 0))  # IoU 3/5
    assert run([("a", [frame])], K=2, things=(1,), windows=(1,))["VPQ_details"]["1"]["per_class"]["1"]["tp"] == 1


def test_crowd_rules_per_convention():
    # GT [crowd x4 | road x4], prediction [car#1 x2 | road x6]. Classes: 0 road (stuff), 1 car (thing).
    frame = (row(1, 1, 1, 1, 0, 0, 0, 0), row(0, 0, 0, 0, 0, 0, 0, 0), row(1, 1, 0, 0, 0, 0, 0, 0),
             row(1, 1, 0, 0, 0, 0, 0, 0))
    off, vk = (run([("a", [frame])], c, K=2, things=(1,), windows=(1,)) for c in ("official", "videoknet"))
    # official: crowd is no FN and the car prediction lies on crowd -> forgiven; road IoU 4/6 matched.
    assert off["PQ"] == pytest.approx(4 / 6) and off["VPQ_details"]["1"]["All"]["n"] == 1
    assert math.isnan(off["PQ_things"])
    # videoknet: crowd is a segment, car IoU 2/4 = 0.5 -> FN + FP; mean over both classes.
    assert vk["PQ"] == pytest.approx((0 + 4 / 6) / 2)
    # STQ: no GT track -> AQ = 0 -> STQ = 0; SQ from semantics (crowd pixels are ordinary car pixels).
    assert off["AQ"] == 0.0 and off["STQ"] == 0.0 and off["SQ"] == pytest.approx((2 / 4 + 4 / 6) / 2)
    # AQ: crowd pixels leave both sides: prediction car#7 over [crowd crowd car#1 car#1] scores 1, not 1/2.
    frame = (row(1, 1, 1, 1), row(0, 0, 1, 1), row(1, 1, 1, 1), row(7, 7, 7, 7))
    assert run([("a", [frame])], K=2, things=(1,))["AQ"] == 1.0


def test_void_rules_per_convention():
    V = 255
    # predicted car over [void void car#1 car#1]: official AQ counts the void pixels in |p|, videoknet drops them.
    frame = (row(V, V, 1, 1), row(0, 0, 1, 1), row(1, 1, 1, 1), row(1, 1, 1, 1))
    off, vk = (run([("a", [frame])], c, K=2, things=(1,), windows=(1,)) for c in ("official", "videoknet"))
    assert off["AQ"] == pytest.approx(2 * (2 / 4) / 2) and vk["AQ"] == 1.0
    assert off["SQ"] == vk["SQ"] == 1.0  # GT-void row dropped: no FP for the car
    assert off["PQ_things"] == vk["PQ_things"] == 1.0  # union minus the void overlap: IoU 2 / 2
    # GT void with instance id 5: only (void, 0) leaves the union in videoknet -> IoU 2/4, not matched.
    frame = (row(V, V, 1, 1), row(5, 5, 1, 1), row(1, 1, 1, 1), row(1, 1, 1, 1))
    off, vk = (run([("a", [frame])], c, K=2, things=(1,), windows=(1,)) for c in ("official", "videoknet"))
    assert off["PQ_things"] == 1.0 and vk["PQ_things"] == 0.0
    # predicting void on a valid pixel: FN for the class and the void column enters the SQ mean with IoU 0.
    frame = (row(1, 1, 0, 0), row(1, 1, 0, 0), row(1, V, 0, 0), row(1, 0, 0, 0))
    res = run([("a", [frame])], K=2, things=(1,), windows=(1,))
    assert res["SQ"] == pytest.approx((1 / 2 + 1 + 0) / 3) and res["num_classes_in_mean"] == 3
    assert res["IoU_per_class"]["void"] == {"iou": 0.0, "tp": 0, "fp": 1, "fn": 0}


def test_aq_is_pooled_over_sequences_by_track_count():
    one = [(row(1), row(1), row(1), row(1))]  # one track, perfect
    three = [(row(1, 1, 1), row(1, 2, 3), row(0, 0, 0), row(0, 0, 0))]  # three tracks, all missed
    res = run([("a", one), ("b", three)], K=2, things=(1,), windows=(1,))
    assert res["AQ"] == pytest.approx(1 / 4)  # not the mean of (1, 0)
    assert [s["AQ"] for s in res["per_sequence"]] == [1.0, 0.0]
    assert [s["num_gt_tracks"] for s in res["per_sequence"]] == [1, 3]


def test_empty_all_void_and_single_pixel_frames():
    V = 255
    res = run([("a", [(row(V, V), row(0, 0), row(1, 0), row(3, 0))])], K=2, things=(1,))
    assert math.isnan(res["SQ"]) and math.isnan(res["STQ"]) and res["AQ"] == 0.0  # nothing valid
    assert math.isnan(res["PQ"])  # the car on void is forgiven: no class to average
    empty = np.zeros((0, 4), np.int64)
    res = run([("a", [(empty,) * 4] * 2)], K=2, things=(1,))
    assert res["num_frames"] == 2 and math.isnan(res["STQ"]) and math.isnan(res["VPQ"])
    res = run([("a", [(row(1), row(4), row(1), row(9))] * 3)], K=2, things=(1,), windows=(1, 3))
    assert res["STQ"] == res["VPQ"] == res["PQ"] == 1.0
    res = run([("a", [(row(0), row(0), row(1), row(1))])], K=2, things=(1,), windows=(1,))
    assert res["SQ"] == 0.0 and res["STQ"] == 0.0 and res["PQ"] == 0.0
    assert math.isnan(run([("a", [(row(0),) * 4])], K=2, things=(1,), windows=(2,))["VPQ"])  # shorter than k


def test_weights_scale_invariant_and_ones_equal_unweighted():
    video = random_video(np.random.default_rng(11))
    res = run(video)
    for w in (1.0, 2.0):
        m = metrics.VideoPanopticMetrics(5, (2, 3), 255, (1, 2), "official")
        for seq, frames in video:
            for f in frames:
                m.update(seq, *f, weights=np.full(f[0].shape, w))
        for key in ("STQ", "AQ", "SQ"):
            assert m.result()[key] == pytest.approx(res[key], abs=1e-12)


# ----------------------------------------------------------------------------- streaming and errors


def test_streaming_memory_does_not_grow_with_frames():
    frames = random_video(np.random.default_rng(5), T=(4,))[0][1]
    m = metrics.VideoPanopticMetrics(5, (2, 3), 255, (1, 2, 3, 4))
    sizes = []
    for t in range(60):
        m.update("a", *frames[t % 4])
        sizes.append(len(m._seq["aq_keys"]))
    assert len(m._seq["frames"]) == 3  # k_max - 1 frames of (pair, count) triples, no pixels
    assert sizes[-1] == sizes[3]  # overlap counts grow with distinct tracks, not with frames
    assert m.result()["VPQ_details"]["4"]["windows"] == 57


def test_split_sequence_and_bad_input_are_clear_errors():
    m = metrics.VideoPanopticMetrics(2, (1,), 255)
    f = (row(0, 1), row(0, 1), row(0, 1), row(0, 1))
    m.update("a", *f)
    m.update("b", *f)
    with pytest.raises(ValueError, match="'a' was already finished"):
        m.update("a", *f)
    with pytest.raises(ValueError, match="gt_semantic holds 7"):
        m.update("b", row(0, 7), *f[1:])
    with pytest.raises(ValueError, match="pred_instance holds"):
        m.update("b", *f[:3], row(0, 70000))
    with pytest.raises(ValueError, match="pred_semantic is int64 \\(1, 3\\)"):
        m.update("b", f[0], f[1], row(0, 1, 1), f[3])
    with pytest.raises(ValueError, match="integers"):
        m.update("b", f[0].astype(float), *f[1:])
    with pytest.raises(ValueError, match=r"things \(5,\) must be classes in 0..1 other than 255$"):  # no word on
        metrics.VideoPanopticMetrics(2, (5,), 255)  # the convention, which is fine
    with pytest.raises(ValueError, match="convention"):
        metrics.VideoPanopticMetrics(convention="vps")


# ----------------------------------------------------------------------------- CLI


def write_png(path, semantic, instance):
    path.parent.mkdir(parents=True, exist_ok=True)
    semantic, instance = np.asarray(semantic), np.asarray(instance)
    Image.fromarray(np.stack([semantic, instance // 256, instance % 256], -1).astype(np.uint8)).save(path)


def write_tree(root, name):
    """Reference case -> root/gt and root/pred PNG trees; returns the CLI flags of its params."""
    case = load_case(name)
    for seq in case["sequences"]:
        for t, f in enumerate(seq["frames"]):
            write_png(root / "gt" / str(seq["sequence_id"]) / f"{t}.png", f["gt_semantic"], f["gt_instance"])
            write_png(root / "pred" / str(seq["sequence_id"]) / f"{t}.png", f["pred_semantic"], f["pred_instance"])
    p = case["params"]
    return ["--gt", str(root / "gt"), "--pred", str(root / "pred"), "--num_classes", str(p["num_classes"]),
            "--ignore_label", str(p["ignore_label"]), "--things", *map(str, p["thing_classes"]),
            "--windows", *map(str, p["window_sizes"])]


def test_cli_json_on_png_tree_matches_reference(tmp_path, capsys):
    flags = write_tree(tmp_path, "dl2_stq_complex_example")
    metrics.main(flags + ["--json"])
    out = json.loads(capsys.readouterr().out)
    ref = load_case("dl2_stq_complex_example")["expected"]
    for key in ("STQ", "AQ", "SQ"):
        check(out[key], ref["stq_deeplab2_numpy"][key], 1e-9, key)
    check(out["VPQ"], ref["vpq_vps"]["VPQ_All"], 1e-9, "VPQ")
    for win in ref["vpq_vps"]["windows"]:
        check(out["VPQ_per_window"][str(win["nframes"])], win["All"]["pq"], 1e-9, f"VPQ k={win['nframes']}")
    assert {"VPQ_things", "VPQ_stuff", "per_sequence", "IoU_per_class", "PQ"} <= set(out)
    metrics.main(flags + ["--convention", "videoknet"])
    table = capsys.readouterr().out
    assert "STQ" in table and "VPQ k=3" in table and "VPQ mean" in table
    assert "in percent" in table.splitlines()[0]  # the table says its unit: train.py and infer.py print fractions
    assert f"STQ {100 * metrics.main(flags + ['--convention', 'videoknet', '--json'])['STQ']:7.2f}" in table


def test_cli_runs_as_a_script_and_nan_is_null(tmp_path):
    flags = write_tree(tmp_path, "dl2_stq_basic_example_00")  # no Stuff class present: VPQ_stuff undefined
    script = Path(metrics.__file__)
    out = subprocess.run([sys.executable, str(script), *flags, "--json"], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout)
    assert res["VPQ_stuff"] is None and res["STQ"] == pytest.approx(1.0)
    bad = subprocess.run([sys.executable, str(script), "--gt", str(tmp_path / "nope"), "--pred", str(tmp_path)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ground-truth directory") and "nope" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_cli_errors_name_the_file(tmp_path):
    flags = write_tree(tmp_path, "dl2_stq_complex_example")
    missing = tmp_path / "pred" / "1" / "2.png"
    missing.unlink()
    with pytest.raises(metrics.UserError, match="missing predicted frame .*2.png"):
        metrics.main(flags)
    write_png(missing, np.zeros((8, 9)), np.zeros((8, 9)))
    with pytest.raises(metrics.UserError, match="size mismatch.*2.png"):
        metrics.main(flags)
    write_png(missing, np.full((8, 8), 40), np.zeros((8, 8)))
    with pytest.raises(metrics.UserError, match="2.png.*pred_semantic holds 40"):
        metrics.main(flags)
    missing.write_bytes(missing.read_bytes()[:40])
    with pytest.raises(metrics.UserError, match="2.png: unreadable or truncated PNG"):
        metrics.main(flags)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(missing)
    with pytest.raises(metrics.UserError, match="2.png: expected an RGB panoptic PNG"):
        metrics.main(flags)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(missing, format="JPEG")  # decodes; its ids would be lossy
    with pytest.raises(metrics.UserError, match="2.png: a panoptic map must be a PNG file .* this is a JPEG file"):
        metrics.main(flags)
    with pytest.raises(metrics.UserError, match="prediction directory .*nope does not exist"):
        metrics.main(flags[:2] + ["--pred", str(tmp_path / "nope")] + flags[4:])
    with pytest.raises(metrics.UserError, match="--things"):
        metrics.main(flags + ["--things", "40"])


def broken_pngs(good):
    """A valid panoptic PNG's bytes -> {what: bytes} of files PIL cannot decode, each failing in another way (Pillow
    raises OSError, ValueError and SyntaxError for these)."""
    i = good.index(b"IDAT")  # the image data chunk: 4 length bytes before, data after the 4 type bytes
    return {"truncated inside the image data": good[:i + 6], "cut to its signature": good[:8],
            "a zero-length IHDR (ValueError)": good[:11] + b"\0" + good[12:],
            "an IDAT of the wrong length (SyntaxError)": good[:i - 1] + b"\1" + good[i:],
            "corrupt image data": good[:i + 4] + bytes([good[i + 4] ^ 0xFF]) + good[i + 5:],
            "not a PNG": b"GIF89a" + good[6:]}


def test_cli_unreadable_pngs_give_one_error_naming_the_file(tmp_path):
    flags = write_tree(tmp_path, "dl2_stq_complex_example")
    for side in ("gt", "pred"):
        path = tmp_path / side / "1" / "2.png"
        good = path.read_bytes()
        for what, bad in broken_pngs(good).items():
            path.write_bytes(bad)
            with pytest.raises(metrics.UserError, match=r"[/\\]2\.png: unreadable or truncated PNG") as e:
                metrics.main(flags)
            assert str(path) in str(e.value), what
        Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(path)  # RGBA: not a panoptic PNG
        with pytest.raises(metrics.UserError, match=r"2\.png: expected an RGB panoptic PNG .* got RGBA"):
            metrics.main(flags)
        path.write_bytes(good)
    path.write_bytes(broken_pngs(good)["an IDAT of the wrong length (SyntaxError)"])
    r = subprocess.run([sys.executable, str(Path(metrics.__file__)), *flags], capture_output=True, text=True)
    last = r.stderr.strip().splitlines()[-1]  # as a script: status 2, one error line (after the progress bar)
    assert r.returncode == 2 and last.startswith(f"error: {path}: unreadable") and "Traceback" not in r.stderr


def test_cli_empty_ground_truth_and_unmatched_predictions_are_errors(tmp_path):
    flags = write_tree(tmp_path, "dl2_stq_complex_example")
    extra = tmp_path / "pred" / "1" / "99.png"
    write_png(extra, np.zeros((8, 8)), np.zeros((8, 8)))  # a prediction with no ground-truth frame
    with pytest.raises(metrics.UserError, match=r"predicted frame .*99\.png has no ground truth .*99\.png \(1 such"):
        metrics.main(flags)
    extra.unlink()
    write_png(tmp_path / "pred" / "7" / "0.png", np.zeros((8, 8)), np.zeros((8, 8)))  # a whole extra sequence
    with pytest.raises(metrics.UserError, match=r"predicted frame .*7.0\.png has no ground truth"):
        metrics.main(flags)
    empty = tmp_path / "empty"
    (empty / "0000").mkdir(parents=True)  # a sequence folder without frames
    with pytest.raises(metrics.UserError, match=r"no \{sequence\}/\{frame\}\.png files under .*empty"):
        metrics.main(["--gt", str(empty), "--pred", str(tmp_path / "pred")])


def test_frames_sort_naturally():
    assert sorted(["10.png", "2.png", "000001.png"], key=metrics.natural_key) == ["000001.png", "2.png", "10.png"]
    # a superscript is a digit to str.isdigit but not to int() or the regex: sorted as text, no crash
    names = ["1\u00b22.png", "\u00b23.png", "1.png"]
    assert sorted(names, key=metrics.natural_key) == ["1.png", "1\u00b22.png", "\u00b23.png"]
