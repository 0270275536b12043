"""Video K-Net's predict_video(postprocess="original") against ours: each documented difference on a scripted model;
and ours' split of a segment into parts apart (split_apart, the tiny preset's).

The scripted model returns hand-made outputs at full resolution (so regions are exact), and each case puts the two
post-processings where the docstring says they differ: unclaimed pixels, the tracker's semantic box filter, the
id bookkeeping after a box-NMS drop, and the order of sigmoid and resizing."""
import pytest
import torch

import video_knet as vk

H, W = 32, 64
CAR, PERSON = 1, 0  # model classes: things first (person, car), then the other trainIds ascending
SKY = 2 + 10  # model class of trainId 10 (sky): stuff classes follow the 2 thing classes in trainId order


class Scripted(vk.VideoKNet):
    """A tiny VideoKNet whose forward returns the given outputs (mask logits at the frame's full size)."""

    def __init__(self, masks, cls, seg):
        super().__init__(vk.VideoKNetConfig(**dict(vk.PRESETS["tiny"], num_thing_kernels=3)))
        self.scripted = masks, cls, seg
        self.eval()

    def forward(self, images, prev_kernels=None):
        masks, cls, seg = self.scripted
        n = masks.shape[0]
        embeds = torch.eye(n, 64)  # distinct embeddings (only the first frame is run: every track is new)
        return {"masks": [masks[None]], "cls": [cls[None]], "seg_logits": seg[None], "kernels": embeds[None],
                "embeds": embeds[None]}


def scene():
    """-> mask logits (N, H, W), class logits (N, K), semantic logits (K, H, W): sky everywhere, nothing else."""
    n = 3 + 17  # 3 thing kernels, 17 stuff kernels (one per stuff class)
    masks = torch.full((n, H, W), -10.0)
    cls = torch.full((n, 19), -10.0)
    seg = torch.zeros(19, H, W)
    sky_kernel = 3 + SKY - 2
    masks[sky_kernel] = 2.0
    cls[sky_kernel, SKY] = 5.0
    seg[SKY] = 5.0
    return masks, cls, seg


def thing(masks, cls, kernel, label, score, rows, cols):
    """Kernel `kernel` becomes a thing of model class `label` with sigmoid score `score` on rows x cols."""
    masks[kernel][rows, cols] = 10.0
    masks[3 + SKY - 2][rows, cols] = -3.0  # the sky kernel steps back there
    cls[kernel, label] = torch.logit(torch.tensor(score))


def run(model, postprocess):
    frame = torch.full((3, H, W), 0.5)
    return next(vk.predict_video(model, [frame], postprocess=postprocess))


def test_unclaimed_pixels_go_to_the_best_kept_segment_or_road():
    masks, cls, seg = scene()
    thing(masks, cls, 0, CAR, 0.18, slice(8, 20), slice(8, 30))  # wins the arg-max there, but scores < 0.25
    model = Scripted(masks, cls, seg)
    ours_sem, ours_ins = run(model, "ours")
    orig_sem, orig_ins = run(model, "original")
    region = (slice(8, 20), slice(8, 30))
    assert (ours_sem[region] == 10).all() and (ours_sem == 10).all()  # sky, the best kept segment there
    assert (orig_sem[region] == 0).all()  # the original: road (trainId 0)
    assert (orig_sem[0:8] == 10).all()  # elsewhere both are sky
    assert (ours_ins == 0).all() and (orig_ins == 0).all()


def three_cars():
    """A (0.9) a thin ring, B (0.8) inside its box (box IoU 0.79 > 0.7: NMS drops B), C (0.7) a person apart."""
    masks, cls, seg = scene()
    thing(masks, cls, 0, CAR, 0.9, slice(4, 20), slice(4, 24))
    thing(masks, cls, 1, CAR, 0.8, slice(5, 19), slice(5, 23))
    masks[0][5:19, 5:23] = -10.0  # A is the ring around B
    thing(masks, cls, 2, PERSON, 0.7, slice(4, 20), slice(40, 56))
    return masks, cls, seg


def test_ids_after_a_box_nms_drop_stay_on_their_masks_or_shift_as_the_original():
    masks, cls, seg = three_cars()
    seg[CAR, 4:20, 4:24] = seg[PERSON, 4:20, 40:56] = 10.0  # the semantic filter keeps every thing pixel
    model = Scripted(masks, cls, seg)
    ring, inner, person = (4, 4), (10, 10), (10, 45)  # a pixel of A, of B, of C
    ours = run(model, "ours")[1]
    orig = run(model, "original")[1]
    assert [int(ours[p]) for p in (ring, inner, person)] == [1, 0, 2]  # B dropped: no id; C keeps its own
    assert [int(orig[p]) for p in (ring, inner, person)] == [1, 2, 0]  # C's id lands on B, C gets none


def test_semantic_filter_empties_boxes_and_the_dummy_boxes_suppress_each_other():
    masks, cls, seg = scene()
    thing(masks, cls, 0, CAR, 0.9, slice(4, 20), slice(4, 24))
    thing(masks, cls, 2, PERSON, 0.7, slice(4, 20), slice(40, 56))
    model = Scripted(masks, cls, seg)  # the semantic logits say sky everywhere: both filtered masks are empty
    ours = run(model, "ours")[1]
    orig = run(model, "original")[1]
    assert int(ours[10, 10]) == 1 and int(ours[10, 45]) == 2
    assert int(orig[10, 10]) == 1 and int(orig[10, 45]) == 0  # both boxes (-1, -1, 10, 10): IoU 1, C dropped
    seg[PERSON, 4:20, 40:56] = 10.0  # with the person's pixels confirmed, its box is real again
    assert int(run(model, "original")[1][10, 45]) == 2


def test_original_takes_the_sigmoid_before_the_last_resize():
    logits = torch.tensor([[-10.0, -10.0, 2.0, 2.0]]).repeat(2, 1)[None]  # (1, 2, 4): a step from -10 to 2
    ours = vk.mask_probabilities(logits, (16, 32), 16, 32)  # stride 8: x4 then x2 in the original
    orig = vk.mask_probabilities(logits, (16, 32), 16, 32, original=True)
    assert ours.shape == orig.shape == (1, 16, 32)
    flat = [0, 1, 2, 29, 30, 31]  # columns far from the step: both are sigmoid(-10) or sigmoid(2)
    assert torch.allclose(ours[..., flat], orig[..., flat], atol=1e-6)
    # at the step the original interpolates probabilities over the last x2, ours only logits: soft edges differ
    assert (orig - ours).abs().max() > 0.05
    same = vk.mask_probabilities(logits, (8, 16), 8, 16, original=True)  # x4 reaches the size: no second resize
    assert torch.allclose(same, vk.mask_probabilities(logits, (8, 16), 8, 16), atol=1e-6)
    with pytest.raises(ValueError, match="postprocess"):
        next(vk.predict_video(Scripted(*scene()), [torch.zeros(3, H, W)], postprocess="authors"))


def test_split_apart_keeps_ids_by_overlap_and_gives_parts_their_own():
    sem = torch.zeros(8, 20, dtype=torch.long)  # road
    ins = torch.zeros(8, 20, dtype=torch.long)
    sem[0:4, 0:5] = sem[0:4, 10:15] = 13  # car 1: two parts of 20 pixels, apart
    ins[0:4, 0:5] = ins[0:4, 10:15] = 1
    sem[6:8, 0:8], ins[6:8, 0:8] = 11, 2  # person 2: 16 pixels ...
    sem[6:8, 12:14], ins[6:8, 12:14] = 11, 2  # ... and a 4-pixel part (under min_px): stays person 2
    last_sem, last_ins = sem.clone(), torch.zeros_like(ins)
    last_ins[0:4, 10:15] = 1  # car 1 was on the right part: it keeps id 1 there
    last_ins[0:4, 0:5] = 5  # car 5 was on the left part: the part takes 5 back
    last_ins[6:8] = ins[6:8]
    ids = iter([100, 101])
    out = vk.split_apart(sem, ins, (last_sem, last_ins), (11, 13), 16, lambda: next(ids))
    expect = ins.clone()
    expect[0:4, 0:5] = 5
    assert torch.equal(out, expect)
    out = vk.split_apart(sem, ins, None, (11, 13), 16, lambda: next(ids))  # no last frame: the largest part keeps it
    assert out[0:4, 0:5].unique().tolist() in ([1], [100]) and out[0:4, 10:15].unique().tolist() in ([1], [100])
    assert out[0, 0] != out[0, 10] and torch.equal(out[4:], ins[4:])
    last_ins[0:4, 0:5] = 2  # the left part's last id is taken in this frame (person 2; here a car): a fresh id
    last_sem[0:4, 0:5] = 13
    out = vk.split_apart(sem, ins, (last_sem, last_ins), (11, 13), 16, lambda: 7)
    assert out[0:4, 0:5].unique().tolist() == [7] and out[0:4, 10:15].unique().tolist() == [1]


@pytest.mark.parametrize("split_min_px", [0, 16])
def test_a_kernel_on_two_objects_apart_gives_two_tracks(split_min_px):
    masks, cls, seg = scene()
    thing(masks, cls, 0, CAR, 0.9, slice(8, 20), slice(4, 20))  # one kernel, two cars apart: the larger keeps its id
    thing(masks, cls, 0, CAR, 0.9, slice(8, 20), slice(40, 52))
    model = Scripted(masks, cls, seg)
    model.cfg.split_min_px = split_min_px
    frame = torch.full((3, H, W), 0.5)
    for sem, ins in vk.predict_video(model, [frame, frame, frame]):  # the ids stay over the frames
        assert ins[8:20, 4:20].unique().tolist() == [1]
        assert ins[8:20, 40:52].unique().tolist() == ([2] if split_min_px else [1])
