"""data.py: PNG codec, both KITTI-STEP layouts, Cityscapes mapping, joint augmentation, clear errors."""
import json
import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import data


def test_png_roundtrip_exact_for_all_instance_ids(tmp_path):
    rng = np.random.default_rng(0)
    sem = rng.choice(list(range(19)) + [255], size=(7, 300))
    inst = rng.integers(0, 65536, size=(7, 300))
    inst[0, :3] = [0, 255, 65535]
    data.write_panoptic_png(tmp_path / "a.png", sem, inst)
    rgb = np.asarray(Image.open(tmp_path / "a.png"))
    assert (rgb[..., 0] == sem).all() and (rgb[..., 1].astype(int) * 256 + rgb[..., 2] == inst).all()
    s2, i2 = data.read_panoptic_png(tmp_path / "a.png")
    assert s2.dtype == np.int64 and (s2 == sem).all() and (i2 == inst).all()


def test_synthetic_is_deterministic_and_has_moving_tracks():
    a = data.synthetic_video(3, num_frames=6, height=48, width=144)
    b = data.synthetic_video(3, num_frames=6, height=48, width=144)
    assert all((x == y).all() for x, y in zip(a, b))
    images, sem, inst = a
    assert images.shape == (6, 48, 144, 3) and images.dtype == np.uint8
    assert set(np.unique(sem)) <= set(range(19)) | {255}
    things = np.isin(sem, data.THING_CLASSES)
    assert (inst[~things] == 0).all() and (inst[things] > 0).all()
    assert (~np.isin(sem[inst > 0], data.THING_CLASSES)).sum() == 0
    # objects move: some track's pixel centroid changes between the first and last frame
    ids = set(np.unique(inst[0])) & set(np.unique(inst[-1])) - {0}
    moved = [abs(np.argwhere(inst[0] == k)[:, 1].mean() - np.argwhere(inst[-1] == k)[:, 1].mean()) for k in ids]
    assert ids and max(moved) > 1
    # colour alone is not the answer: the same class spans many colours
    road = images[sem == 0].astype(float)
    assert road.std(0).mean() > 8
    assert not (data.synthetic_video(4, 2, 48, 144)[0] == images[:2]).all()


def test_synthetic_hard_is_faster_and_busier_than_synthetic():
    easy, hard = data.load_sequences("synthetic", split="val"), data.load_sequences("synthetic_hard", split="val")
    assert len(easy) == len(hard) and hard[0].image(0).shape == easy[0].image(0).shape

    def tracks_and_motion(seqs):  # tracks per video; mean |x shift| of a track's centroid per frame
        n, shifts = [], []
        for s in seqs:
            inst = np.stack([s.label(t)[1] for t in range(len(s))])
            ids = set(np.unique(inst)) - {0}
            n.append(len(ids))
            for k in ids:
                xs = [np.argwhere(f == k)[:, 1].mean() for f in inst if (f == k).any()]
                shifts += list(np.abs(np.diff(xs)))
        return np.mean(n), np.mean(shifts)

    (n_easy, v_easy), (n_hard, v_hard) = tracks_and_motion(easy), tracks_and_motion(hard)
    assert n_hard > n_easy and v_hard > 1.8 * v_easy
    with pytest.raises(ValueError, match="synthetic_hard split 'dev'"):
        data.load_sequences("synthetic_hard", split="dev")


def _tree(tmp_path, layout):
    seqs = data.synthetic_sequences(2, num_frames=3, height=24, width=40, seed=5)
    data.write_kitti_step(seqs, tmp_path, "train", layout)
    data.write_kitti_step([data.Sequence("0002", seqs[0].images, seqs[0].labels)], tmp_path, "val", layout)
    return seqs


@pytest.mark.parametrize("layout", ["official", "videoknet"])
def test_both_layouts_read_back_exactly(tmp_path, layout):
    seqs = _tree(tmp_path, layout)
    assert data.kitti_step_layout(tmp_path) == layout
    back = data.kitti_step_sequences(tmp_path, "train")
    assert [len(s) for s in back] == [3, 3]
    for s, b in zip(seqs, back):
        for i in range(3):
            assert (s.image(i) == b.image(i)).all()
            for x, y in zip(s.label(i), b.label(i)):
                assert (x == y).all()


@pytest.mark.parametrize("layout", ["official", "videoknet"])
def test_dataset_check_json_counts(tmp_path, layout, capsys):
    seqs = _tree(tmp_path, layout)
    assert data.main(["--root", str(tmp_path), "--json", "--frames_per_sequence", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"train", "val"}
    assert report["train"]["sequences"] == 2 and report["train"]["frames"] == 6
    assert report["val"]["sequences"] == 1 and report["val"]["frames"] == 3
    assert report["train"]["image_sizes"] == ["24x40"]
    tracks = set()  # (sequence, class, id) of every thing pixel, counted directly
    for s in seqs:
        for i in range(3):
            sem, inst = s.label(i)
            tracks.update((s.name, int(c), int(k)) for c, k in zip(sem[inst > 0], inst[inst > 0]))
    assert report["train"]["tracks"] == len(tracks) > 0


def test_frames_sorted_numerically_not_by_name(tmp_path):
    for f in [2, 10, 1]:  # "10" sorts before "2" as a string
        p = tmp_path / "images" / "train" / "0001" / f"{f}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((4, 4, 3), f, np.uint8)).save(p)
        data.write_panoptic_png(tmp_path / "panoptic_maps" / "train" / "0001" / f"{f}.png",
                                np.zeros((4, 4), int), np.zeros((4, 4), int))
    seq = data.kitti_step_sequences(tmp_path, "train")[0]
    assert [seq.image(i)[0, 0, 0] for i in range(3)] == [1, 2, 10]


def test_cityscapes_mapping_on_a_written_fixture(tmp_path):
    ids = np.array([[7, 8, 24, 24001, 24002, 26000, 26005, 25003, 33, 0, 4, 27001]], np.int32)
    img = tmp_path / "leftImg8bit" / "train" / "aachen" / "aachen_000000_000019_leftImg8bit.png"
    lab = tmp_path / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_instanceIds.png"
    img.parent.mkdir(parents=True), lab.parent.mkdir(parents=True)
    Image.fromarray(np.zeros((1, 12, 3), np.uint8)).save(img)
    Image.fromarray(ids.astype(np.uint16)).save(lab)  # 16-bit PNG, as the official files
    seqs = data.cityscapes_sequences(tmp_path, "train")
    sem, inst = seqs[0].label(0)
    assert sem.tolist() == [[0, 1, 11, 11, 11, 13, 13, 12, 18, 255, 255, 14]]
    # person/car keep instances (k + 1, crowd = 0); rider/truck/... become stuff
    assert inst.tolist() == [[0, 0, 0, 2, 3, 1, 6, 0, 0, 0, 0, 0]]


# The official cityscapesScripts table (labels.py): labelId -> trainId (255: ignored in evaluation), hasInstances.
CITYSCAPES_LABELS = {0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255, 7: 0, 8: 1, 9: 255, 10: 255, 11: 2,
                     12: 3, 13: 4, 14: 255, 15: 255, 16: 255, 17: 5, 18: 255, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                     24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 29: 255, 30: 255, 31: 16, 32: 17, 33: 18}
CITYSCAPES_HAS_INSTANCES = (24, 25, 26, 27, 28, 29, 30, 31, 32, 33)  # person .. bicycle, caravan and trailer


def test_cityscapes_table_is_the_official_one_for_every_label_id():
    label_ids = np.arange(256)  # plain labelIds (crowd regions for classes with instances), then instances k = 4
    instances = np.array([k * 1000 + 4 for k in CITYSCAPES_HAS_INSTANCES])
    sem, inst = data.cityscapes_instance_ids_to_panoptic(np.concatenate([label_ids, instances])[None])
    want = [CITYSCAPES_LABELS.get(k, 255) for k in label_ids] + [CITYSCAPES_LABELS[k] for k in CITYSCAPES_HAS_INSTANCES]
    assert sem[0].tolist() == want
    assert sorted(set(want) - {255}) == list(range(19))  # all 19 train ids, each from one labelId
    # person and car keep their instances (k + 1; the plain labelId is crowd, 0); rider, truck, bus, train,
    # motorcycle, bicycle become stuff (instance 0); caravan and trailer are void
    want_inst = [0] * 256 + [5 if k in (24, 26) else 0 for k in CITYSCAPES_HAS_INSTANCES]
    assert inst[0].tolist() == want_inst


def test_kitti_step_split_is_the_official_one_and_a_tree_off_it_warns(tmp_path):
    assert data.KITTI_STEP_SPLITS == {"train": (0, 1, 3, 4, 5, 9, 11, 12, 15, 17, 19, 20),  # README / STEP paper
                                      "val": (2, 6, 7, 8, 10, 13, 14, 16, 18)}
    video = data.synthetic_sequences(1, num_frames=1, height=8, width=8)[0]

    def write(number, split):
        data.write_kitti_step([data.Sequence(f"{number:04d}", video.images, video.labels)], tmp_path, split)

    write(0, "train"), write(2, "val"), write(6, "test")  # the test split has its own numbers: never checked
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # on the official split: no warning
        assert len(data.kitti_step_sequences(tmp_path, "train")) == len(data.kitti_step_sequences(tmp_path, "val"))
        data.kitti_step_sequences(tmp_path, "test")
    write(6, "train")  # an official val sequence in train
    with pytest.warns(UserWarning, match=r"train: the train split holds sequences \[6\] of the official val split"):
        data.kitti_step_sequences(tmp_path, "train")
    write(25, "val")
    with pytest.warns(UserWarning, match=r"val split holds sequences \[25\] of neither"):
        data.load_sequences("kitti_step", tmp_path, "val")


def test_augmentation_is_joint_and_aligned():
    T, H, W = 3, 40, 60
    # image channel 0 encodes the pixel's semantic id, channel 1 its instance id: alignment is checkable
    sem = torch.randint(0, 19, (T, H, W))
    inst = torch.randint(0, 50, (T, H, W))
    img = torch.stack([sem.float() / 255, inst.float() / 255, torch.zeros(T, H, W)], 1)
    img[1:] = img[:1]
    sem[1:], inst[1:] = sem[:1].clone(), inst[:1].clone()  # identical frames must stay identical
    for seed in range(20):
        rng = np.random.default_rng(seed)
        i2, s2, n2 = data.augment_clip(img, sem, inst, crop=(32, 48), scale=(0.5, 2.0), rng=rng)
        assert i2.shape == (T, 3, 32, 48) and s2.shape == (T, 32, 48) and s2.dtype == torch.int64
        assert (i2[1:] == i2[:1]).all() and (s2[1:] == s2[:1]).all() and (n2[1:] == n2[:1]).all()
        assert set(s2.unique().tolist()) <= set(range(19)) | {255}
    # with scale 1 (no resampling) the image channels equal the labels everywhere inside the frame
    i2, s2, n2 = data.augment_clip(img, sem, inst, crop=(32, 48), scale=(1.0, 1.0), rng=np.random.default_rng(1))
    assert torch.equal((i2[:, 0] * 255).round().long(), s2) and torch.equal((i2[:, 1] * 255).round().long(), n2)
    # a crop bigger than the frame pads: labels with 255, instance with 0
    i2, s2, n2 = data.augment_clip(img, sem, inst, crop=(64, 80), scale=(1.0, 1.0), flip=False,
                                   pad_value=0.3, rng=np.random.default_rng(0))
    assert (s2[:, H:] == 255).all() and (n2[:, H:] == 0).all() and torch.allclose(i2[:, :, H:], torch.tensor(0.3))
    assert torch.equal(s2[:, :H, :W], sem)
    i3, _, _ = data.augment_clip(img, sem, inst, crop=(64, 80), scale=(1.0, 1.0), flip=False,
                                 pad_value=(0.1, 0.2, 0.3), rng=np.random.default_rng(0))  # one value per channel
    assert torch.allclose(i3[:, :, H:], torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1).expand(T, 3, 64 - H, 80))
    assert torch.equal(i3[:, :, :H, :W], img)


def test_clip_dataset_modes_and_loader():
    seqs = data.synthetic_sequences(2, num_frames=5, height=32, width=64)
    ds = data.ClipDataset(seqs, "consecutive", clip_len=3, crop=(32, 64), scale=(1, 1), flip=False)
    assert len(ds) == 2 * 3  # key frames 2, 3, 4 of each video
    item = ds[0]
    assert item["image"].shape == (3, 3, 32, 64)
    assert torch.equal(item["semantic"], torch.from_numpy(np.stack([seqs[0].label(k)[0] for k in range(3)])))
    pair = data.ClipDataset(seqs, "pair", crop=(32, 64), scale=(1, 1), flip=False)
    rng = np.random.default_rng(0)
    offsets = {pair.frame_indices(0, 2, rng)[1] - 2 for _ in range(200)}
    assert offsets == {-2, -1, 1, 2}  # drawn anew every time
    assert all(0 <= pair.frame_indices(0, 0, rng)[1] <= 2 for _ in range(50))  # reflected at the start
    loader = torch.utils.data.DataLoader(pair, batch_size=2, num_workers=2)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 2, 3, 32, 64) and batch["instance"].dtype == torch.int64


# ----------------------------------------------------------------------------- errors


def test_error_missing_root_names_layouts(tmp_path, capsys):
    (tmp_path / "somethingelse").mkdir()
    with pytest.raises(data.DataError, match="(?s)official.*videoknet"):
        data.kitti_step_sequences(tmp_path, "train")
    assert data.main(["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "somethingelse" in err and "accepted KITTI-STEP layouts" in err
    assert data.main(["--root", str(tmp_path / "nope")]) == 2  # a missing root names the layouts too
    assert re.fullmatch(r"(?s)error: KITTI-STEP root .*nope does not exist.*\n  official: .*\n  videoknet: .*\n",
                        capsys.readouterr().err)
    assert data.main(["--dataset", "cityscapes", "--root", str(tmp_path / "nope")]) == 2
    assert "nope does not exist or is not a directory; the Cityscapes layout is ROOT/leftImg8bit/" in \
        capsys.readouterr().err
    assert data.main(["--dataset", "cityscapes", "--root", str(tmp_path)]) == 2  # a root of something else
    assert re.search(r"leftImg8bit/\w+ not found: the Cityscapes layout is", capsys.readouterr().err)


def test_error_image_without_label(tmp_path):
    _tree(tmp_path, "official")
    (tmp_path / "panoptic_maps" / "train" / "0001" / "000002.png").unlink()
    with pytest.raises(data.DataError, match="0001/000002.png: image has no panoptic label"):
        data.kitti_step_sequences(tmp_path, "train")


def test_error_size_mismatch(tmp_path):
    _tree(tmp_path, "videoknet")
    lab = tmp_path / "video_sequence" / "train" / "000000_000001_panoptic.png"
    data.write_panoptic_png(lab, np.zeros((5, 5), int), np.zeros((5, 5), int))
    seq = data.kitti_step_sequences(tmp_path, "train")[0]
    with pytest.raises(data.DataError, match="000000_000001_panoptic.png: label size"):
        seq.label(1, seq.image(1).shape)
    with pytest.raises(data.DataError, match="label size"):
        data.ClipDataset([seq], "consecutive", 2, crop=(8, 8))[0]


def test_error_truncated_png_names_file(tmp_path):
    p = tmp_path / "x.png"
    data.write_panoptic_png(p, np.zeros((20, 20), int), np.zeros((20, 20), int))
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(data.DataError, match="x.png: unreadable or truncated"):
        data.read_panoptic_png(p)
    (tmp_path / "y.png").write_text("not a png")
    with pytest.raises(data.DataError, match="y.png"):
        data.read_image(tmp_path / "y.png")


def test_read_image_scales_16_bit_grey_and_keeps_8_bit(tmp_path):
    grey = np.array([[0, 257, 32896], [65535, 1000, 60000]], np.uint16)  # 0, 1, 128, 255, ~3.9, ~233.5 in 8 bits
    Image.fromarray(grey).save(tmp_path / "g16.png")  # PIL reads it back as mode I;16
    img = data.read_image(tmp_path / "g16.png")
    assert img.dtype == np.uint8 and img.shape == (2, 3, 3)
    assert (img == img[..., :1]).all()  # grey: three equal channels
    assert img[..., 0].tolist() == [[0, 1, 128], [255, 4, 233]]  # not clipped to white
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert (data.read_image(tmp_path / "rgb.png") == rgb).all()
    Image.fromarray(np.zeros((2, 2), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(data.DataError, match="f.tif: float image"):
        data.read_image(tmp_path / "f.tif")


@pytest.mark.parametrize("suffix", ["jpg", "png"])
def test_read_image_turns_frames_upright_by_their_exif_orientation(tmp_path, suffix):
    """A phone frame stored 64 wide x 32 high with orientation 6 (a viewer turns it a quarter clockwise) reads as
    32 wide x 64 high with its left edge on top, as viewers show it; orientation 1 reads as stored."""
    stored = np.zeros((32, 64, 3), np.uint8)
    stored[:, :8] = 255  # a white left edge
    for orientation, shape in ((6, (64, 32, 3)), (1, (32, 64, 3))):
        exif = Image.Exif()
        exif[data.EXIF_ORIENTATION] = orientation
        path = tmp_path / f"o{orientation}.{suffix}"
        Image.fromarray(stored).save(path, exif=exif, quality=95)
        img = data.read_image(path)
        assert img.shape == shape
        white = img[:8].mean() > 200 if orientation == 6 else img[:, :8].mean() > 200
        assert white and img[-8:, -8:].mean() < 50


def test_error_semantic_ids_out_of_range(tmp_path):
    p = tmp_path / "bad.png"
    data.write_panoptic_png(p, np.array([[0, 19, 254, 255]]), np.zeros((1, 4), int))
    with pytest.raises(data.DataError, match=r"bad.png: semantic ids \[19, 254\]"):
        data.read_panoptic_png(p)
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "gray.png")
    with pytest.raises(data.DataError, match="gray.png: panoptic PNG must be RGB"):
        data.read_panoptic_png(tmp_path / "gray.png")
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "lossy.png", format="JPEG")
    with pytest.raises(data.DataError, match="lossy.png: a label map must be a PNG file .* this is a JPEG file"):
        data.read_panoptic_png(tmp_path / "lossy.png")
