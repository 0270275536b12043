"""Tests for video_knet.py: each piece against something simpler (brute force, hand-built masks, known layouts)."""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import video_knet as vk


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: the learned thresholds below were measured so (summation order changes with the thread
    count), and on a shared 2-core machine one thread is faster and steadier for these tiny sizes."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

SMALL = dict(num_thing_kernels=8, feat_channels=32, backbone_width=8, backbone_depth=(1, 1, 1, 1))


def small_model(seed=0, **kw):
    torch.manual_seed(seed)
    return vk.VideoKNet(vk.VideoKNetConfig(**{**SMALL, **kw}))


def toy_clip(H=64, W=96, shift=4):
    """One 2-frame clip: sky / vegetation / road as stuff, a person (id 1) and a moving car (id 2); void bottom row."""
    sem = torch.zeros(2, H, W, dtype=torch.long)
    ins = torch.zeros_like(sem)
    img = torch.zeros(2, 3, H, W)
    for t in range(2):
        sem[t, : H // 4], sem[t, H // 4: H // 2] = 10, 8
        x = 10 + shift * t
        sem[t, 30:50, x:x + 24], ins[t, 30:50, x:x + 24] = 13, 2
        sem[t, 20:52, 70:80], ins[t, 20:52, 70:80] = 11, 1
        sem[t, -2:] = 255
        colours = {0: (0.5, 0.3, 0.5), 8: (0.2, 0.6, 0.1), 10: (0.3, 0.5, 0.9), 11: (0.9, 0.1, 0.2),
                   13: (0.0, 0.0, 0.6), 255: (0.0, 0.0, 0.0)}
        for c, rgb in colours.items():
            img[t, :, sem[t] == c] = torch.tensor(rgb)[:, None]
    return img[None], sem[None], ins[None]


# -----------------------------------------------------------------------------
# Hungarian matching


def brute_force(cost):
    R, C = cost.shape
    if R <= C:
        return min(sum(cost[i, p[i]] for i in range(R)) for p in itertools.permutations(range(C), R))
    return brute_force(cost.T)


def test_hungarian_equals_brute_force_on_random_rectangular_costs():
    rng = np.random.default_rng(0)
    for trial in range(60):
        R, C = rng.integers(1, 7, size=2)
        cost = rng.normal(size=(R, C)) if trial % 2 else rng.integers(0, 4, size=(R, C)).astype(float)  # ties too
        rows, cols = vk.hungarian(cost)
        assert len(rows) == min(R, C) and len(set(rows)) == len(rows) and len(set(cols)) == len(cols)
        assert list(rows) == sorted(rows)
        assert cost[rows, cols].sum() == pytest.approx(brute_force(cost), abs=1e-9)


def test_hungarian_edge_cases_and_errors():
    rows, cols = vk.hungarian(np.zeros((0, 3)))
    assert len(rows) == len(cols) == 0
    with pytest.raises(ValueError):
        vk.hungarian(np.array([[0.0, np.nan]]))


def test_assign_recovers_a_permutation_of_hand_built_masks():
    cfg = vk.VideoKNetConfig()
    tgt_masks = torch.zeros(3, 8, 8)
    tgt_masks[0, :4, :4], tgt_masks[1, 4:, 4:], tgt_masks[2, :, 6:] = 1, 1, 1
    tgt = dict(thing=tgt_masks, thing_label=torch.tensor([0, 1, 1]), valid=torch.ones(8, 8))
    perm = torch.tensor([2, 0, 1])  # kernel k+1 predicts GT perm[k]; kernel 0 predicts nothing
    logits = torch.full((4, 8, 8), -10.0)
    logits[1:] = tgt_masks[perm] * 20 - 10
    cost = vk.match_cost(logits, None, tgt["thing"], tgt["thing_label"], tgt["valid"], cfg.w_cls, cfg.w_bce,
                         cfg.w_dice)  # (4, 3)
    (pairs,), (starts,) = vk.assign(cost[None, None], [3])
    assert pairs.tolist() == [[0, 0, 0], [1, 2, 3], perm.tolist()] and starts.tolist() == [0, 3]
    # two frames at once, the second with one GT (padded to 3): each frame is its own problem
    costs = torch.stack([cost, cost[:, [2, 0, 1]]])  # frame 1: GT 0 is the old GT 2
    (pairs,), (starts,) = vk.assign(costs[None], [3, 1])
    assert starts.tolist() == [0, 3, 4] and pairs[:, 3].tolist() == [1, 1, 0]  # kernel 1 predicts the old GT 2
    batched = vk.match_cost(torch.stack([logits, logits.flip(0)]), None, torch.stack([tgt_masks] * 2),
                            torch.tensor([[0, 1, 1]] * 2), torch.ones(2, 8, 8))
    assert torch.allclose(batched[0], cost) and torch.allclose(batched[1], cost.flip(0))
    with pytest.raises(ValueError, match="do not fit"):  # GT counts must match the frames and the padding
        vk.assign(costs[None], [3, 4])


# -----------------------------------------------------------------------------
# Loss terms on hand-built masks


def test_dice_and_bce_on_hand_built_masks():
    t = torch.zeros(1, 8, 8)
    t[0, 2:6, 2:6] = 1
    ones = torch.ones_like(t)
    dice = lambda logits, w=ones: vk.mask_losses(logits, t, w)[1].item()  # noqa: E731
    assert dice(t * 40 - 20) < 1e-3  # perfect
    assert dice(torch.full_like(t, -20.0)) == pytest.approx(1.0, abs=1e-3)  # empty
    assert dice(torch.zeros_like(t)) == pytest.approx(1 - 16 / (32 + 2e-3), rel=1e-6)  # p = 1/2: 1 - 2*8 / (16 + 16)
    half = torch.zeros_like(t)
    half[..., :4] = 1  # only the left half counts: there the prediction below is perfect
    assert dice(torch.where(torch.arange(8) < 4, t * 40 - 20, 20.0), half) < 1e-3
    logits = torch.randn(1, 8, 8)
    assert vk.mask_losses(logits, t, ones)[0].item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, t).item(), rel=1e-6)
    assert vk.mask_losses(logits, t, half)[0].item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits[..., :4], t[..., :4]).item(), rel=1e-6)


def test_sigmoid_focal_known_values():
    loss = vk.sigmoid_focal(torch.zeros(2), torch.tensor([1.0, 0.0]))
    assert loss.tolist() == pytest.approx([0.25 * 0.25 * math.log(2), 0.75 * 0.25 * math.log(2)], rel=1e-6)
    big = vk.sigmoid_focal(torch.tensor([8.0]), torch.tensor([1.0]))
    assert big.item() < 1e-6  # easy examples are down-weighted


def test_multi_positive_ce_matches_its_formula():
    torch.manual_seed(0)
    sim = torch.randn(3, 4)
    pos = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.bool)
    expected = []
    for r in (0, 2):  # rows with a positive
        s = sum(math.exp(sim[r, j] - sim[r, i]) for i in range(4) for j in range(4) if pos[r, i] and not pos[r, j])
        expected.append(math.log(1 + s))
    assert vk.multi_pos_ce(sim, pos).item() == pytest.approx(sum(expected) / 2, rel=1e-5)


def test_cosine_l2_keeps_three_hard_negatives_per_positive():
    cos = torch.tensor([[0.9, 0.8, 0.5, 0.2, 0.05]])
    pos = torch.tensor([[True, False, False, False, False]])
    # positive (0.9 - 1)^2; negatives (cos - 0.1)^2 = .49, .16, .01, 0 -> the hardest three are kept
    assert vk.cosine_l2(cos, pos).item() == pytest.approx((0.01 + 0.49 + 0.16 + 0.01) / 4, rel=1e-5)


def test_rank_target_and_stage_losses_on_hand_built_masks():
    thing = torch.zeros(2, 4, 8)
    thing[0, :, 0:4], thing[1, :, 2:6] = 1, 1  # two overlapping GT masks
    stuff = torch.zeros(2, 4, 8)
    stuff[0, :, 6:] = 1  # stuff class 0 present, stuff class 1 absent
    tgt = dict(thing=thing, thing_label=torch.tensor([0, 1]), stuff=stuff, stuff_present=torch.tensor([True, False]),
               valid=torch.ones(4, 8))
    kernel_idx, gt_idx = torch.tensor([1, 3]), torch.tensor([1, 0])  # kernel 1 -> GT 1, kernel 3 -> GT 0
    batched = {k: v[None] for k, v in tgt.items()}  # one frame
    idx = torch.stack([torch.zeros(2, dtype=torch.long), kernel_idx, gt_idx])
    # the higher kernel (3) wins the overlap, as in the original (it writes the pairs in ascending kernel order)
    assert vk.rank_target(batched, idx)[0, 0].tolist() == [3, 3, 3, 3, 1, 1, -1, -1]
    assert vk.rank_target(batched, idx.flip(1))[0, 0].tolist() == [3, 3, 3, 3, 1, 1, -1, -1]  # whatever the order
    masks = torch.full((6, 4, 8), -20.0)  # 4 thing kernels + 2 stuff kernels, perfect masks
    masks[1], masks[3], masks[4] = thing[1] * 40 - 20, thing[0] * 40 - 20, stuff[0] * 40 - 20
    cls = torch.full((6, 4), -20.0)  # K = 4: 2 thing classes, 2 stuff classes
    cls[1, 1] = cls[3, 0] = cls[4, 2] = 20.0
    present = torch.tensor([[0], [0]])
    losses = lambda: [v.item() for v in vk.stage_losses(masks[None], cls[None], batched, idx, present, 4, 2)]  # noqa
    assert max(losses()) < 1e-3  # dice: the eps terms only
    cls[0, 3] = cls[5, 0] = 20.0  # a thing kernel's stuff logit, a stuff kernel's thing logit: both unweighted
    assert losses()[0] < 1e-5
    cls[0, 1] = 20.0  # an unmatched thing kernel claims "car": a false positive
    assert losses()[0] == pytest.approx(0.75 * 20, rel=1e-3)


def test_stage_losses_of_two_frames_are_those_of_each_frame_alone():
    g = torch.Generator().manual_seed(0)
    nf, N, K, nt, kt, G = 2, 6, 4, 4, 2, 3
    tgt = dict(thing=torch.rand(nf, G, 4, 8, generator=g), thing_label=torch.randint(0, kt, (nf, G), generator=g),
               stuff=torch.rand(nf, K - kt, 4, 8, generator=g), valid=(torch.rand(nf, 4, 8, generator=g) > 0.2).float(),
               stuff_present=torch.tensor([[True, False], [True, True]]))
    masks, cls = torch.randn(nf, N, 4, 8, generator=g), torch.randn(nf, N, K, generator=g)
    idx = torch.tensor([[0, 0, 1], [1, 3, 0], [2, 0, 1]])  # frame 0: kernels 1, 3; frame 1: kernel 0
    present = tgt["stuff_present"].nonzero().T
    both = vk.stage_losses(masks, cls, tgt, idx, present, nt, kt)
    for f in range(nf):
        one = {k: v[f:f + 1] for k, v in tgt.items()}
        sel = idx[0] == f
        alone = vk.stage_losses(masks[f:f + 1], cls[f:f + 1], one, torch.stack([idx[0, sel] * 0, idx[1, sel],
                                idx[2, sel]]), one["stuff_present"].nonzero().T, nt, kt)
        for b, a in zip(both, alone):
            assert b[f].item() == pytest.approx(a.item(), rel=1e-6)


def test_stage_losses_resize_only_the_positives_to_the_same_numbers_and_gradients():
    g = torch.Generator().manual_seed(1)
    nf, N, K, nt, kt, G = 2, 6, 4, 4, 2, 3
    tgt = dict(thing=torch.rand(nf, G, 8, 16, generator=g), thing_label=torch.randint(0, kt, (nf, G), generator=g),
               stuff=torch.rand(nf, K - kt, 8, 16, generator=g),
               valid=(torch.rand(nf, 8, 16, generator=g) > 0.2).float(),
               stuff_present=torch.tensor([[True, False], [True, True]]))
    cls = torch.randn(nf, N, K, generator=g)
    idx = torch.tensor([[0, 0, 1], [1, 3, 0], [2, 0, 1]])  # (frame, kernel, GT) pairs
    present = tgt["stuff_present"].nonzero().T

    def up(x):
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    small = torch.randn(nf, N, 4, 8, generator=g, requires_grad=True)
    ref = torch.stack(vk.stage_losses(up(small), cls, tgt, idx, present, nt, kt))  # all masks resized first
    ref_grad, = torch.autograd.grad(ref.sum(), small)
    got = torch.stack(vk.stage_losses(small, cls, tgt, idx, present, nt, kt, resize=up))
    got_grad, = torch.autograd.grad(got.sum(), small)
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(got_grad, ref_grad)


def test_frame_targets_on_a_hand_built_label_map():
    model = small_model()
    sem = torch.tensor([[13, 13, 0, 0], [13, 13, 0, 0], [11, 11, 255, 255], [11, 11, 255, 255]])
    ins = torch.tensor([[5, 5, 0, 0], [5, 5, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])  # person is a crowd region
    t = vk.frame_targets(sem[None], ins[None], model.train_to_model, 2, 19)
    assert t["thing"].shape == (1, 1, 2, 2) and t["thing"][0, 0].tolist() == [[1, 0], [0, 0]]
    assert t["thing_label"].tolist() == [[1]] and t["sizes"] == [1]  # car = model class 1
    assert t["valid"][0].tolist() == [[1, 1], [0, 0]]  # crowd and void ignored
    assert t["stuff_present"][0].nonzero().squeeze(1).tolist() == [0]  # road = model class 2 = stuff kernel 0
    assert t["label"][0].tolist() == [[1, 2], [0, 255]]  # nearest labels keep the crowd's class


def test_a_step_without_any_thing_instance_has_empty_targets_and_a_finite_loss():
    """No GT thing in any frame of the step (G = 0): stuff, void and crowd only (thing classes with instance 0)."""
    model = small_model()
    img, sem, ins = toy_clip()
    none = torch.zeros_like(ins)  # the person and the car become crowd regions
    t = vk.frame_targets(sem.flatten(0, 1), none.flatten(0, 1), model.train_to_model, 2, 19)
    assert t["thing"].shape == (2, 0, 32, 48) and t["sizes"] == [0, 0] and t["thing_id"].shape == (2, 0)
    assert (t["valid"][:, 16, 36] == 0).all()  # the person's pixels: crowd, no weight
    assert (vk.rank_target(t, torch.zeros(3, 0, dtype=torch.long)) == -1).all()
    loss, _ = vk.compute_loss(model, img, sem, none)
    assert torch.isfinite(loss)
    loss.backward()


# -----------------------------------------------------------------------------
# Training: gradients, overfitting, bad input


def test_semantic_fpn_stride_4_keeps_the_state_dict_and_doubles_the_mask_size():
    m8, m4 = small_model(mask_stride=8), small_model(mask_stride=4)
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(m8) == shapes(m4)  # the original's upsample_times=3: same weights, one more upsampling
    m4.load_state_dict(m8.state_dict())  # so stride-8 weights (and the authors') load into a stride-4 model
    x = torch.rand(1, 3, 64, 96)
    assert m8(x)["masks"][-1].shape[-2:] == (8, 12) and m4(x)["masks"][-1].shape[-2:] == (16, 24)
    with pytest.raises(ValueError, match="stride"):
        small_model(mask_stride=2)
    img, sem, ins = toy_clip()  # the loss compares both at stride 2
    assert torch.isfinite(vk.compute_loss(m4, img, sem, ins)[0])


def test_mask_positions_add_no_weights_and_follow_the_cell_formula():
    """The tiny preset's positions at the mask stride: sin / cos of the cell index (1-based, y channels first) on the
    fastest channels, no new parameters, and they change what the masks see."""
    x = torch.zeros(1, 64, 5, 7)
    pe = vk.sine_position_encoding(x, normalize=False)[0]  # (C, h, w)
    rows, cols = torch.arange(1, 6.0)[:, None].expand(5, 7), torch.arange(1, 8.0)[None].expand(5, 7)
    assert torch.allclose(pe[0], rows.sin(), atol=1e-6) and torch.allclose(pe[1], rows.cos(), atol=1e-6)
    assert torch.allclose(pe[32], cols.sin(), atol=1e-6) and torch.allclose(pe[33], cols.cos(), atol=1e-6)
    norm = vk.sine_position_encoding(x)[0]  # the original's, on P5: one period over the map at most
    assert torch.allclose(norm[32], (cols / 7 * 2 * math.pi).sin(), atol=1e-5)
    plain, pos = small_model(mask_stride=4), small_model(mask_stride=4, mask_positions=True)
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in pos.state_dict().items()}
    pos.load_state_dict(plain.state_dict())
    image = torch.rand(1, 3, 64, 96)
    assert not torch.allclose(plain(image)["masks"][-1], pos(image)["masks"][-1])
    assert vk.PRESETS["tiny"]["mask_positions"] and not vk.VideoKNetConfig().mask_positions  # the paper: none


def per_frame_loss(model, out, semantic, instance):
    """compute_loss written as the original loops: per frame its targets, per matching round its own cost matrix and
    Hungarian, per frame its losses; set losses of the B key (reference) frames summed, divided by their GT mask
    count (things; things + present stuff) clamped >= 1; rank CE over all pixels, semantic CE over labelled ones; the
    tracking losses per clip, averaged over clips. -> (loss, {term: value})."""
    cfg, B = model.cfg, semantic.shape[0]
    nt, kt, S = cfg.num_thing_kernels, len(cfg.thing_classes), cfg.num_stages
    up = lambda t: F.interpolate(t.float(), scale_factor=cfg.mask_stride // 2, mode="bilinear",  # noqa: E731
                                 align_corners=False)
    rpn, seg, masks, cls = up(out["rpn_masks"][:, :nt]), up(out["seg_logits"]), [up(m) for m in out["masks"]], \
        out["cls"]
    L = dict.fromkeys(("rpn_bce", "rpn_dice", "rank", "seg", "cls", "bce", "dice", "track", "track_aux"), 0.0)
    targets, track_match = {}, {}
    for f in range(2):  # key frames, then reference frames (frame-major, as the model's outputs)
        sums = dict.fromkeys(("rpn_bce", "rpn_dice", "cls", "bce", "dice", "rank", "seg"), 0.0)
        n_thing = n_all = n_rank = n_label = 0
        for b in range(B):
            i = f * B + b
            t = vk.frame_targets(semantic[b, f][None], instance[b, f][None], model.train_to_model, kt, cfg.num_classes)
            t = targets[i] = {k: v[0] for k, v in t.items()}  # this frame alone
            n_thing, n_all = n_thing + len(t["thing_id"]), n_all + len(t["thing_id"]) + int(t["stuff_present"].sum())

            def match(m, c):  # this frame, one round: kernels (nt) x GT things
                cost = vk.match_cost(m[:nt], c, t["thing"], t["thing_label"], t["valid"], cfg.w_cls, cfg.w_bce,
                                     cfg.w_dice)
                return [torch.as_tensor(x, dtype=torch.long) for x in vk.hungarian(cost.numpy())]

            k, g = match(rpn[i], None)  # initial kernels
            bce, dice = vk.mask_losses(rpn[i, k], t["thing"][g], t["valid"].expand(len(k), -1, -1))
            sums["rpn_bce"], sums["rpn_dice"] = sums["rpn_bce"] + bce.sum(), sums["rpn_dice"] + dice.sum()
            rank = vk.rank_target({"thing": t["thing"][None]}, torch.stack([torch.zeros_like(k), k, g]))[0]
            sums["rank"] = sums["rank"] + F.cross_entropy(rpn[i:i + 1], rank[None], ignore_index=-1, reduction="sum")
            sums["seg"] = sums["seg"] + F.cross_entropy(seg[i:i + 1], t["label"][None], ignore_index=255,
                                                        reduction="sum")
            n_rank, n_label = n_rank + rank.numel(), n_label + int((t["label"] != 255).sum())  # rank: all pixels
            stuff = t["stuff_present"].nonzero().flatten()
            for s in range(S):  # stage s is matched on the previous stage's outputs (stage 0: the initial kernels)
                k, g = (k, g) if s == 0 else match(masks[s - 1][i], cls[s - 1][i, :nt, :kt])
                target, weight = torch.zeros_like(cls[s][i]), torch.zeros_like(cls[s][i])
                target[k, t["thing_label"][g]] = 1
                target[nt + stuff, kt + stuff] = 1
                weight[:nt, :kt] = 1
                for j in range(cls[s].shape[2] - kt):
                    weight[nt + j, kt + j] = 1
                sums["cls"] = sums["cls"] + (vk.sigmoid_focal(cls[s][i], target) * weight).sum()
                rows = torch.cat([k, nt + stuff])
                tmask = torch.cat([t["thing"][g], t["stuff"][stuff]])
                bce, dice = vk.mask_losses(masks[s][i, rows], tmask, t["valid"].expand(len(rows), -1, -1))
                sums["bce"], sums["dice"] = sums["bce"] + bce.sum(), sums["dice"] + dice.sum()
            track_match[i] = match(masks[S - 1][i], cls[S - 1][i, :nt, :kt])  # the last stage's, for tracking
        for key in ("rpn_bce", "rpn_dice"):
            L[key] = L[key] + sums[key] / max(n_thing, 1)
        for key in ("cls", "bce", "dice"):
            L[key] = L[key] + sums[key] / max(n_all, 1)
        L["rank"], L["seg"] = L["rank"] + sums["rank"] / max(n_rank, 1), L["seg"] + sums["seg"] / max(n_label, 1)
    for b in range(B):
        (kk, gk), (kr, gr) = track_match[b], track_match[B + b]
        pos = targets[b]["thing_id"][gk][:, None] == targets[B + b]["thing_id"][gr][None]
        if pos.any():
            ek, er = out["embeds"][b, kk], out["embeds"][B + b, kr]
            L["track"] = L["track"] + vk.multi_pos_ce(ek @ er.T, pos) / B
            L["track_aux"] = L["track_aux"] + vk.cosine_l2(F.normalize(ek, dim=1) @ F.normalize(er, dim=1).T, pos) / B
    loss = (cfg.w_bce * (L["rpn_bce"] + L["bce"]) + cfg.w_dice * (L["rpn_dice"] + L["dice"]) + cfg.w_cls * L["cls"]
            + cfg.w_rank * L["rank"] + cfg.w_seg * L["seg"] + cfg.w_track * L["track"]
            + cfg.w_track_aux * L["track_aux"])
    return loss, L


def test_batched_loss_equals_a_per_frame_loop():
    """README: the loss batched over frames (one cost-matrix copy, one Hungarian per frame) is identical to looping
    over frames. Two clips with different GT counts per frame (so the per-frame-group normalisers matter)."""
    model = small_model(seed=2)
    a, b = toy_clip(shift=4), toy_clip(shift=-6)
    b[1][0, 0][b[2][0, 0] == 1] = 8  # clip 2's key frame loses its person: key frames hold 2 + 1 things, reference
    b[2][0, 0][b[2][0, 0] == 1] = 0  # frames 2 + 2 (per clip it would be 4 and 3)
    img, sem, ins = (torch.cat([x, y]) for x, y in zip(a, b))
    out = model(img)

    def cached(images):  # compute_loss on the same forward (same BatchNorm batch statistics)
        return out

    loss, logs = vk.compute_loss(model, img, sem, ins, forward=cached)
    ref, ref_logs = per_frame_loss(model, out, sem, ins)
    for key, v in ref_logs.items():
        assert logs[key].item() == pytest.approx(float(v.detach()), rel=1e-5, abs=1e-7), key
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert ref_logs["track"] > 0 and ref_logs["rank"] > 0  # every term is exercised
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, retain_graph=True)
    for (name, _), g, r in zip(model.named_parameters(), grads, torch.autograd.grad(ref, params)):
        # summation order differs (matched rows resized alone): near-zero entries get an atol of 1e-5 of the largest
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5 * float(r.abs().max()), msg=f"gradient of {name}")


def test_every_parameter_gets_a_finite_gradient():
    model = small_model()
    img, sem, ins = toy_clip()
    loss, logs = vk.compute_loss(model, img, sem, ins)
    loss.backward()
    assert set(logs) >= {"cls", "bce", "dice", "rank", "seg", "track", "track_aux"}
    assert all(v.ndim == 0 and not v.requires_grad for v in logs.values())
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero


def test_overfit_one_clip_then_predict_it():
    model = small_model(seed=1)
    img, sem, ins = toy_clip()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    losses = []
    for step in range(100):
        loss, _ = vk.compute_loss(model, img, sem, ins)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    factor = np.mean(losses[:3]) / np.mean(losses[-3:])  # 21-35x over seeds 0-19 (worst: seed 12; 57 -> ~2)
    assert factor > 15, f"loss fell only {factor:.1f}x ({losses[0]:.2f} -> {losses[-1]:.2f})"
    preds = list(vk.predict_video(model.eval(), img[0]))
    with pytest.raises(TypeError, match="frames must be float tensors .* got ndarray"):  # a copier's PIL frame
        next(vk.predict_video(model, [img[0, 0].numpy()]))
    for (s, i), gs in zip(preds, sem[0]):  # 0.984-0.994 over seeds 0-19; ids below: right on all 20
        assert (s == gs)[gs != 255].float().mean() > 0.9
    car = [i[sem[0, t] == 13].mode().values.item() for t, (_, i) in enumerate(preds)]
    person = [i[sem[0, t] == 11].mode().values.item() for t, (_, i) in enumerate(preds)]
    assert car[0] > 0 and person[0] > 0 and car[0] != person[0] and car == car[:1] * 2 and person == person[:1] * 2


def test_compute_loss_rejects_bad_shapes():
    model = small_model()
    img, sem, ins = toy_clip(H=64, W=96)
    with pytest.raises(ValueError, match=r"divisible by 32, got \(1, 2, 3, 50, 96\)"):  # the shape passed in
        vk.compute_loss(model, img[..., :50, :], sem[..., :50, :], ins[..., :50, :])
    with pytest.raises(ValueError, match="compute_loss"):
        vk.compute_loss(model, img, sem[:, :1], ins[:, :1])
    for bad_sem, bad_ins in [(sem.clamp(max=0) + 19, ins), (sem.clamp(max=0) - 1, ins), (sem, ins - 1),
                             (sem, ins + 2 ** 32)]:  # the last would alias into the next class's ids
        with pytest.raises(ValueError, match=r"semantic must be in \[0, 19\) or 255"):  # was read as void or road
            vk.compute_loss(model, img, bad_sem, bad_ins)


# -----------------------------------------------------------------------------
# Inference: merge, tracker, video loop


def test_panoptic_merge_gives_rejected_pixels_to_the_best_kept_segment():
    H, W = 2, 6
    probs = torch.zeros(4, H, W)  # kernels: 2 things, 2 stuff (model classes 2, 3)
    probs[0, :, :2] = 0.9  # a confident car on the left
    probs[1, :, 4:] = 0.9  # a person with a low score on the right
    probs[2, :, 2:4] = 0.9  # road in the middle
    probs[2, :, 5] = 0.2  # ... a little of it under the person's right column
    probs[3] = 0.01
    scores = torch.tensor([[0.05, 0.9, 0, 0], [0.1, 0.05, 0, 0], [0, 0, 0.8, 0], [0, 0, 0, 0.5]])
    seg, kernel, label, score = vk.panoptic_merge(probs, scores, 2, 2)
    assert kernel.tolist() == [0, 2] and label.tolist() == [1, 2]  # by score: car 0.9, road 0.8
    assert seg[:, :2].eq(0).all() and seg[:, 2:4].eq(1).all()
    # the rejected person's pixels: no void; each goes to the kept candidate with the highest score x prob there
    # (column 4: car 0.9 x 0 = road 0.8 x 0 = stuff 0.5 x 0.01 -> the stuff kernel 3 (rank 2 is not kept: its area
    # is 0, so the car, rank 0, wins the tie); column 5: road 0.8 x 0.2)
    assert seg[:, 5].eq(1).all() and seg.ge(0).all()
    # nothing kept at all (every candidate rejected): void
    seg, kernel, _, _ = vk.panoptic_merge(probs[:2], scores[:2, :2], 2, 2, score_thr=0.95)
    assert len(kernel) == 0 and seg.eq(-1).all()


def test_panoptic_merge_by_prob_gives_a_low_scoring_things_border_back():
    probs = torch.zeros(4, 1, 8)  # kernels: 2 things, 2 stuff (model classes 2, 3)
    probs[0, 0, :6] = torch.tensor([0.9, 0.9, 0.9, 0.9, 0.9, 0.7])  # a car scored 0.4
    probs[1, 0, 5] = 0.5  # a person scored 0.9, its mask one column of the car's border
    probs[2, 0, 4:] = torch.tensor([0.4, 0.45, 0.9, 0.9])  # road scored 0.95, a little under the car's border
    probs[3] = 0.01  # never kept: no pixel with prob >= 0.5
    scores = torch.tensor([[0.05, 0.4, 0, 0], [0.9, 0.05, 0, 0], [0, 0, 0.95, 0], [0, 0, 0, 0.5]])
    car, person, road = (0, 1), (1, 0), (2, 2)  # (kernel, model class)

    def merged(**kw):
        seg, kernel, label, _ = vk.panoptic_merge(probs, scores, 2, 2, **kw)
        names = [(int(k), int(c)) for k, c in zip(kernel, label)]  # segment index -> (kernel, class)
        return names, [names[i] for i in seg[0].tolist()]

    # score x prob: road (0.95 x 0.4) takes column 4 from the car (0.4 x 0.9), the person (0.45) column 5; the car
    # keeps 4 of its 6 pixels with prob >= 0.5 (>= overlap_thr 0.6), so all three are kept
    names, pixels = merged()
    assert sorted(names) == sorted([car, person, road]) and pixels == [car] * 4 + [road, person] + [road] * 2
    # by prob, the same three kept, the car takes its border back; the person is left without pixels: dropped
    names, pixels = merged(by_prob=True)
    assert sorted(names) == sorted([car, road]) and pixels == [car] * 6 + [road] * 2


def test_panoptic_merge_thing_scale_moves_the_thing_stuff_border_only_when_sharing_by_prob():
    # kernels 0 and 1 things (class 0), kernel 2 stuff (class 1); four pixels in a row
    probs = torch.tensor([[[0.9, 0.45, 0.5, 0.3]], [[0.1, 0.0, 0.0, 0.6]], [[0.1, 0.6, 0.4, 0.05]]])
    scores = torch.tensor([[0.9, 0.0], [0.8, 0.0], [0.0, 0.9]])  # (N, K)

    def pixels(**kw):
        seg, kernel, _, _ = vk.panoptic_merge(probs, scores, 2, 1, **kw)
        return kernel[seg[0]].tolist()  # kernel of each pixel

    assert pixels(by_prob=True) == [0, 2, 0, 1]
    assert pixels(by_prob=True, thing_scale=1.6) == [0, 0, 0, 1]  # 0.45 x 1.6 = 0.72 beats the stuff's 0.6
    assert pixels(by_prob=True, thing_scale=0.5) == [0, 2, 2, 1]  # 0.5 x 0.5 loses to 0.4; thing 1 keeps pixel 3
    assert pixels(thing_scale=1.6) == [0, 2, 0, 1]  # score x prob (the original's share): no effect


def test_mask_boxes_and_box_iou_on_hand_built_cases():
    m = torch.zeros(2, 5, 7, dtype=torch.bool)
    m[0, 1:3, 2:6], m[1, 4, 0] = True, True
    assert vk.mask_boxes(m).tolist() == [[2, 1, 6, 3], [0, 4, 1, 5]]  # x0 y0 x1 y1, exclusive ends
    a, b = torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 0, 3, 2], [5, 5, 6, 6]])
    assert vk.box_iou(a, b).tolist() == [[pytest.approx(2 / 6), 0.0]]


def test_tracker_keeps_ids_in_a_static_scene_and_gives_a_new_object_a_new_id():
    tracker = vk.Tracker()
    emb = torch.eye(3) * 10
    boxes = torch.tensor([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], dtype=torch.float)
    labels, scores = torch.tensor([1, 0, 1]), torch.tensor([0.9, 0.8, 0.7])
    for _ in range(4):
        ids = tracker.update(boxes[:2], scores[:2], labels[:2], emb[:2])
        assert ids.tolist() == [0, 1]
    assert tracker.update(boxes, scores, labels, emb).tolist() == [0, 1, 2]
    assert tracker.update(boxes[[2, 0]], scores[[2, 0]], labels[[2, 0]], emb[[2, 0]]).tolist() == [2, 0]


def test_tracker_ids_stay_aligned_when_box_nms_drops_a_detection():
    tracker = vk.Tracker()
    emb = torch.eye(3) * 10
    # detection 0 has a low score and nearly the box of detection 1: NMS drops it. Ids must follow input order.
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 11], [40, 0, 50, 10]], dtype=torch.float)
    scores, labels = torch.tensor([0.5, 0.9, 0.8]), torch.tensor([1, 1, 1])
    first = tracker.update(boxes, scores, labels, emb)
    assert first.tolist() == [-1, 0, 1]
    second = tracker.update(boxes, scores, labels, emb)
    assert second.tolist() == [-1, 0, 1]


class Scene:
    """Hand-built detections for the tracker: objects with a fixed box and a base embedding (D = 8) plus fresh noise
    every frame. A, B, N: class 0 (N is a newcomer unlike A); C: class 1. Ids are reported per object name."""

    BASE = {"A": (4, 0, 0, 0), "B": (0, 4, 0, 0), "C": (0, 0, 4, 0), "N": (-2, 0, 0, 4)}  # N . A = -8: unlike A
    LABEL = {"A": 0, "B": 0, "C": 1, "N": 0}

    def __init__(self, seed=0, noise=0.3, **tracker_kw):
        self.tracker, self.g, self.noise = vk.Tracker(**tracker_kw), torch.Generator().manual_seed(seed), noise

    def embed(self, name):
        return F.pad(torch.tensor(self.BASE[name], dtype=torch.float), (0, 4)) + self.noise * torch.randn(
            8, generator=self.g)

    def frame(self, dets, embeds=None):
        """[(name, score)] (+ explicit embeddings) -> {name: id}; boxes are disjoint, one column of 20 px each."""
        names = [n for n, _ in dets]
        boxes = torch.tensor([[20.0 * "ABCN".index(n), 0, 20.0 * "ABCN".index(n) + 10, 10] for n in names])
        embeds = torch.stack([self.embed(n) for n in names]) if embeds is None else embeds
        ids = self.tracker.update(boxes.reshape(-1, 4), torch.tensor([s for _, s in dets]).reshape(-1),
                                  torch.tensor([self.LABEL[n] for n in names], dtype=torch.long),
                                  embeds.reshape(-1, 8))
        return dict(zip(names, ids.tolist()))


def test_tracker_forgets_a_track_after_memo_frames_and_keeps_it_within():
    """A leaves for `gap` frames while B and C stay and a newcomer N of A's class appears: A gets its old id back iff
    gap < memo_frames (5; QDTrack: a track last seen at L is dropped at frame L + 5), otherwise a fresh one."""
    for gap in range(1, 8):
        s = Scene(seed=gap)
        assert s.frame([("B", 0.9), ("C", 0.85), ("A", 0.8)]) == {"B": 0, "C": 1, "A": 2}
        for k in range(gap):
            ids = s.frame([("B", 0.9), ("C", 0.85)] + [("N", 0.7)] * (k > 0))
            assert ids["B"] == 0 and ids["C"] == 1 and ids.get("N", 3) == 3, (gap, k, ids)
        ids = s.frame([("B", 0.9), ("C", 0.85), ("A", 0.8)] + [("N", 0.7)] * (gap > 1))
        want_a = 2 if gap < 5 else 3 + (gap > 1)
        assert ids["A"] == want_a, f"A away {gap} frames: id {ids['A']}, expected {want_a} (memo_frames 5)"
        assert ids["B"] == 0 and ids["C"] == 1 and ids.get("N", 3) == 3, (gap, ids)
    s = Scene(memo_frames=2)  # the memory length is the argument, not a constant
    s.frame([("B", 0.9), ("A", 0.8)])
    s.frame([("B", 0.9)])
    s.frame([("B", 0.9)])
    assert s.frame([("B", 0.9), ("A", 0.8)])["A"] == 2


def test_tracker_matches_ids_within_a_class_only():
    """A detection of class 1 whose embedding is A's (class 0) never takes A's id; C (class 1) keeps its own."""
    s = Scene()
    assert s.frame([("A", 0.9), ("C", 0.85)]) == {"A": 0, "C": 1}
    impostor = s.embed("A")  # A's embedding, reported as class 1 at a box of its own, beside the real C
    ids = s.tracker.update(torch.tensor([[60.0, 0, 70, 10], [40, 0, 50, 10]]), torch.tensor([0.9, 0.85]),
                           torch.tensor([1, 1]), torch.stack([impostor, s.embed("C")]))
    assert ids.tolist() == [2, 1], ids  # the impostor starts a track of its own; C keeps its id
    assert s.tracker.tracks[0][1] == 0 and s.tracker.tracks[2][1] == 1  # the tracks keep their classes
    assert s.frame([("A", 0.9), ("C", 0.85)]) == {"A": 0, "C": 1}  # A and C still find their own tracks


def test_tracker_memory_is_a_momentum_average_of_the_embeddings():
    """QDTrack's memory update: memo <- (1 - m) memo + m new on every match (m = memo_momentum, 0.8); a new track
    starts at its first embedding."""
    for m in (0.8, 0.5):
        s = Scene(memo_momentum=m)
        e = [s.embed("A") for _ in range(3)]
        want = e[0]
        for t in range(3):
            assert s.frame([("A", 0.9)], e[t][None]) == {"A": 0}
            want = e[0] if t == 0 else (1 - m) * want + m * e[t]
            torch.testing.assert_close(s.tracker.tracks[0][0], want, msg=f"momentum {m}, frame {t}")


def test_tracker_low_scores_neither_start_nor_extend_tracks():
    """init_score_thr 0.35 starts a track, obj_score_thr 0.3 continues one; a matched detection at or below 0.3 is
    suppressed (no id) and does not refresh the track, which still comes back within the memory."""
    s = Scene()
    assert s.frame([("A", 0.34), ("B", 0.36)]) == {"A": -1, "B": 0}  # A too weak to start a track
    assert s.frame([("A", 0.34), ("B", 0.36)]) == {"A": -1, "B": 0}  # ... also when seen again (as a backdrop)
    assert s.frame([("A", 0.6), ("B", 0.32)]) == {"A": 1, "B": 0}  # now it starts; B continues at 0.32
    last_seen = s.tracker.tracks[0][2]
    assert s.frame([("A", 0.6), ("B", 0.25)]) == {"A": 1, "B": -1}  # B matched but below 0.3: suppressed
    assert s.tracker.tracks[0][2] == last_seen and s.tracker.next_id == 2  # not refreshed, no new track
    assert s.frame([("A", 0.6), ("B", 0.9)]) == {"A": 1, "B": 0}


def test_predict_video_pads_crops_and_streams():
    model = small_model().eval()
    frames = (torch.rand(3, 50, 70) for _ in range(3))
    out = list(vk.predict_video(model, frames))
    assert len(out) == 3
    for s, i in out:
        assert s.shape == i.shape == (50, 70) and s.dtype == i.dtype == torch.int64
        assert set(s.unique().tolist()) <= set(range(19)) | {255}
        assert (i[(s != 11) & (s != 13)] == 0).all()
    with pytest.raises(ValueError):
        next(vk.predict_video(model, [torch.rand(50, 70)]))
    with pytest.raises(ValueError, match="eval"):  # the caller sets eval mode; training-mode BatchNorm would drift
        next(vk.predict_video(model.train(), [torch.rand(3, 50, 70)]))


# -----------------------------------------------------------------------------
# Weights: torchvision ResNet-50 layout, mmdet K-Net names


def resnet50_keys():
    """torchvision ResNet-50 (v1.5) state_dict keys without fc, written out from the known layout."""
    def bn(p):
        return {f"{p}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    keys = {"conv1.weight"} | bn("bn1")
    for layer, blocks in enumerate((3, 4, 6, 3), 1):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            for j in (1, 2, 3):
                keys |= {f"{p}.conv{j}.weight"} | bn(f"{p}.bn{j}")
            if b == 0:
                keys |= {f"{p}.downsample.0.weight"} | bn(f"{p}.downsample.1")
    return keys


def test_backbone_has_torchvision_resnet50_keys_shapes_and_layout():
    net = vk.ResNet50()
    sd = net.state_dict()
    assert set(sd) == resnet50_keys()
    assert sum(p.numel() for p in net.parameters()) == 25_557_032 - 2048 * 1000 - 1000  # torchvision minus fc
    shapes = {"conv1.weight": (64, 3, 7, 7), "layer1.0.conv3.weight": (256, 64, 1, 1),
              "layer2.0.conv2.weight": (128, 128, 3, 3), "layer3.0.downsample.0.weight": (1024, 512, 1, 1),
              "layer4.2.conv3.weight": (2048, 512, 1, 1)}
    assert all(tuple(sd[k].shape) == v for k, v in shapes.items())
    assert net.layer2[0].conv2.stride == (2, 2) and net.layer2[0].conv1.stride == (1, 1)  # v1.5
    assert net.layer2[0].downsample[0].stride == (2, 2) and net.bn1.eps == 1e-5
    assert (net.maxpool.kernel_size, net.maxpool.stride, net.maxpool.padding) == (3, 2, 1)
    feats = net.eval()(torch.rand(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in feats] == [(256, 16, 24), (512, 8, 12), (1024, 4, 6), (2048, 2, 3)]


def test_load_backbone_weights_copies_everything_and_rejects_bad_dicts():
    model = small_model()
    torch.manual_seed(1)
    sd = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in model.backbone.state_dict().items()}
    vk.load_backbone_weights(model, {**sd, "fc.weight": torch.zeros(1000, 256), "fc.bias": torch.zeros(1000)})
    assert all(torch.equal(model.backbone.state_dict()[k], v) for k, v in sd.items())
    with pytest.raises(ValueError, match=r"missing \['layer1.0.conv1.weight'\] \(1\)"):
        vk.load_backbone_weights(model, {k: v for k, v in sd.items() if k != "layer1.0.conv1.weight"})
    with pytest.raises(ValueError, match=r"wrong shapes \['conv1.weight: \(1, 3, 7, 7\) vs"):
        vk.load_backbone_weights(model, {**sd, "conv1.weight": torch.zeros(1, 3, 7, 7)})


def mmdet_state_dict(model, C, N, K=19, stages=3):
    """The authors' K-Net key names and shapes (reference section 1.7), filled with distinct constants."""
    shapes = {f"backbone.{k}": tuple(v.shape) for k, v in model.backbone.state_dict().items()}
    for i, cin in enumerate(model.backbone.out_channels):
        shapes |= {f"neck.lateral_convs.{i}.conv.weight": (C, cin, 1, 1), f"neck.lateral_convs.{i}.conv.bias": (C,),
                   f"neck.fpn_convs.{i}.conv.weight": (C, C, 3, 3), f"neck.fpn_convs.{i}.conv.bias": (C,)}
    convs = [f"localization_fpn.convs_all_levels.{L}.conv{j}" for L in range(4) for j in range(max(L, 1))]
    convs += ["localization_fpn.conv_pred", "localization_fpn.aux_convs.0", "loc_convs.0", "seg_convs.0"]
    for name in convs:
        k = 3 if "levels" in name else 1
        shapes |= {f"rpn_head.{name}.conv.weight": (C, C, k, k), f"rpn_head.{name}.gn.weight": (C,),
                   f"rpn_head.{name}.gn.bias": (C,)}
    shapes |= {"rpn_head.init_kernels.weight": (N, C, 1, 1), "rpn_head.conv_seg.weight": (K, C, 1, 1),
               "rpn_head.conv_seg.bias": (K,)}
    for s in range(stages):
        p = f"roi_head.mask_head.{s}."
        shapes |= {p + "feat_transform.conv.weight": (C, C, 1, 1), p + "feat_transform.conv.bias": (C,),
                   p + "attention.attn.in_proj_weight": (3 * C, C), p + "attention.attn.in_proj_bias": (3 * C,),
                   p + "attention.attn.out_proj.weight": (C, C), p + "attention.attn.out_proj.bias": (C,),
                   p + "ffn.layers.0.0.weight": (8 * C, C), p + "ffn.layers.0.0.bias": (8 * C,),
                   p + "ffn.layers.1.weight": (C, 8 * C), p + "ffn.layers.1.bias": (C,),
                   p + "cls_fcs.0.weight": (C, C), p + "fc_cls.weight": (K, C), p + "fc_cls.bias": (K,),
                   p + "mask_fcs.0.weight": (C, C), p + "fc_mask.weight": (C, C), p + "fc_mask.bias": (C,)}
        for lin, out in (("dynamic_layer", 2 * C), ("input_layer", 2 * C), ("input_gate", C), ("update_gate", C),
                         ("fc_layer", C)):
            shapes |= {p + f"kernel_update_conv.{lin}.weight": (out, C), p + f"kernel_update_conv.{lin}.bias": (out,)}
        norms = [f"kernel_update_conv.{n}" for n in ("norm_in", "norm_out", "input_norm_in", "input_norm_out",
                                                     "fc_norm")] + ["attention_norm", "ffn_norm", "cls_fcs.1",
                                                                    "mask_fcs.1"]
        shapes |= {p + f"{n}.{w}": (C,) for n in norms for w in ("weight", "bias")}
    sd = {}
    for i, (k, shape) in enumerate(sorted(shapes.items())):
        sd[k] = torch.full(shape, i, dtype=torch.long if k.endswith("num_batches_tracked") else torch.float)
    return sd


def test_mmdet_key_map_fills_every_knet_tensor():
    from scripts.convert_knet_checkpoint import import_mmdet
    model = small_model()
    sd = mmdet_state_dict(model, C=32, N=8)
    extra = {"roi_head.mask_head.0.attention_previous.attn.in_proj_weight": torch.zeros(96, 32),  # video-only
             "rpn_head.unknown.weight": torch.zeros(3)}
    line = import_mmdet(model, {**sd, **extra}, "knet.pth", allow_partial=True)  # the video-only key: ours at init
    assert f"loaded {len(sd)} of " in line and "skipped 2 " in line
    own = model.state_dict()
    pairs = {"neck.lateral_convs.2.conv.weight": "neck.lateral_convs.2.weight",
             "rpn_head.localization_fpn.convs_all_levels.3.conv2.gn.bias":
                 "semantic_fpn.convs_all_levels.3.conv2.gn.bias",
             "rpn_head.conv_seg.weight": "kernel_head.conv_seg.weight",
             "roi_head.mask_head.1.feat_transform.conv.weight": "stages.1.feat_transform.weight",
             "roi_head.mask_head.2.attention.attn.in_proj_weight": "stages.2.attention.in_proj_weight",
             "roi_head.mask_head.0.ffn.layers.1.weight": "stages.0.ffn.2.weight",
             "roi_head.mask_head.0.kernel_update_conv.input_norm_out.bias":
                 "stages.0.kernel_update_conv.input_norm_out.bias"}
    assert all(torch.equal(own[ours], sd[theirs]) for theirs, ours in pairs.items())
    # every non-video tensor got exactly one checkpoint tensor (the fill values are distinct)
    video = ("stages.2.attention_previous", "stages.2.link_ffn", "embed_fcs", "fc_embed", "track_head")
    fills = [own[k].flatten()[0].item() for k in own if not k.startswith(video)]
    assert all((own[k] == own[k].flatten()[0]).all() for k in own if not k.startswith(video))
    assert sorted(fills) == sorted(range(len(sd)))
