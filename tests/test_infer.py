"""infer.py --frames: a user's own folders of PNG / JPEG frames, any size, no labels; clear errors for bad folders."""
from dataclasses import asdict

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import data
import infer
from tests.test_train import one_thread  # noqa: F401  autouse: one thread, as the other end-to-end tests


def write_checkpoint(path, name):
    """An initial tiny model saved the way train.py saves one (enough for infer.py)."""
    module = infer.MODELS[name]
    torch.manual_seed(0)
    config = dict(module.PRESETS["tiny"], **{"thing_classes": data.THING_CLASSES} if name == "pix2seq_d" else {})
    model, cfg = infer.build_model(name, config)  # (train.py sets Pix2Seq-D's thing classes the same way)
    torch.save({"model": model.state_dict(), "args": {"model": name}, "config": asdict(cfg), "step": 0}, path)
    return path


def write_frames(folder, n, height, width, suffix, seed=0):
    """n synthetic frames (height x width) as folder/frame{i}.{suffix}, i = 1..n; returns the images."""
    images = data.synthetic_video(seed, num_frames=n, height=height, width=width)[0]
    folder.mkdir(parents=True)
    for i, image in enumerate(images, 1):
        Image.fromarray(image).save(folder / f"frame{i}.{suffix}", quality=95)
    return images


@pytest.mark.parametrize("name", ["pix2seq_d", "video_knet"])
def test_frames_folders_of_jpeg_and_png_give_pngs_and_gifs_at_their_own_size(tmp_path, name):
    ckpt = write_checkpoint(tmp_path / "ckpt.pt", name)
    # 10 frames so natural order matters (frame2 before frame10); sizes that are no multiple of 16 or 32
    write_frames(tmp_path / "in" / "street", 10, 40, 70, "jpg")
    write_frames(tmp_path / "in" / "road", 2, 36, 52, "png", seed=1)
    out = tmp_path / "out"
    argv = ["--ckpt", str(ckpt), "--frames", str(tmp_path / "in"), "--out", str(out)]
    assert infer.main(infer.parse_args(argv + ["--steps", "2"] * (name == "pix2seq_d"))) is None  # no labels
    for video, n, size in (("street", 10, (40, 70)), ("road", 2, (36, 52))):
        names = sorted(p.name for p in (out / video).iterdir())
        assert names == sorted(f"frame{i}.png" for i in range(1, n + 1))
        for p in (out / video).iterdir():
            semantic, instance = data.read_panoptic_png(p)  # a valid KITTI-STEP panoptic PNG
            assert semantic.shape == size
            assert (instance[~np.isin(semantic, data.THING_CLASSES)] == 0).all()  # ids on things only
        for view in ("input", "semantic", "instance", "panoptic", "overlay"):
            with Image.open(out / "gifs" / f"{video}_{view}.gif") as gif:  # PIL merges repeated frames: an
                assert gif.size == size[::-1]  # untrained model's semantic GIF may hold only one
                assert gif.n_frames == n or view != "input"
    # the GIF's input frames come in natural name order: frame 2 of the video is the second GIF frame
    frames = [np.asarray(Image.open(tmp_path / "in" / "street" / f"frame{i}.jpg").convert("RGB")) for i in (1, 2, 10)]
    with Image.open(out / "gifs" / "street_input.gif") as gif:
        gif.seek(1)
        second = np.asarray(gif.convert("RGB")).astype(float)
    errors = [np.abs(second - f).mean() for f in frames]
    assert errors[1] < min(errors[0], errors[2])


def test_frames_height_resizes_for_the_model_and_back_and_postprocess_reaches_the_model(tmp_path, monkeypatch):
    ckpt = write_checkpoint(tmp_path / "ckpt.pt", "video_knet")
    write_frames(tmp_path / "video", 2, 48, 80, "png")
    seen = []
    real = infer.video_knet.predict_video

    def spy(model, frames, **kw):
        assert kw == {"postprocess": "original"}
        for frame in frames:
            seen.append(tuple(frame.shape))
            yield from real(model, [frame], **kw)

    monkeypatch.setattr(infer.video_knet, "predict_video", spy)
    out = tmp_path / "out"
    infer.main(infer.parse_args(["--ckpt", str(ckpt), "--frames", str(tmp_path / "video"), "--out", str(out),
                                 "--height", "24", "--no-gifs", "--postprocess", "original"]))
    assert seen == [(3, 24, 40), (3, 24, 40)]  # the model sees half size
    for p in (out / "video").iterdir():
        assert data.read_panoptic_png(p)[0].shape == (48, 80)  # the outputs are at the frames' size


def test_bad_frame_folders_name_the_file(tmp_path, capsys, monkeypatch):
    ckpt = write_checkpoint(tmp_path / "ckpt.pt", "video_knet")

    def error(folder):
        with pytest.raises(infer.UserError) as e:
            infer.main(infer.parse_args(["--ckpt", str(ckpt), "--frames", str(folder), "--out", str(tmp_path / "o")]))
        return str(e.value)

    (tmp_path / "empty").mkdir()
    assert "empty" in error(tmp_path / "empty")
    assert "nope: no such folder" in error(tmp_path / "nope")
    (tmp_path / "a_file").write_text("")
    assert "a_file: not a folder" in error(tmp_path / "a_file")
    write_frames(tmp_path / "sizes", 2, 40, 70, "png")
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "sizes" / "frame3.png")
    assert "frame3.png is 60x40 but" in error(tmp_path / "sizes") and "frame1.png is 70x40" in error(tmp_path / "sizes")
    write_frames(tmp_path / "notes", 2, 40, 70, "png")
    (tmp_path / "notes" / "notes.txt").write_text("hello")
    (tmp_path / "notes" / ".DS_Store").write_bytes(b"\0")  # hidden files are skipped
    assert "notes.txt is not a PNG or JPEG" in error(tmp_path / "notes")
    write_frames(tmp_path / "broken", 2, 40, 70, "png")
    (tmp_path / "broken" / "frame3.png").write_bytes(b"not a png")
    assert "frame3.png is not a readable image" in error(tmp_path / "broken")
    write_frames(tmp_path / "twins", 1, 40, 70, "png")
    Image.fromarray(np.zeros((40, 70, 3), np.uint8)).save(tmp_path / "twins" / "frame1.jpg")
    assert "named frame1" in error(tmp_path / "twins")
    write_frames(tmp_path / "mixed" / "a", 1, 40, 70, "png")
    Image.fromarray(np.zeros((40, 70, 3), np.uint8)).save(tmp_path / "mixed" / "b.png")
    assert "both folders and files" in error(tmp_path / "mixed")
    (tmp_path / "hollow" / "a").mkdir(parents=True)
    assert "hollow/a holds no images" in error(tmp_path / "hollow")
    write_frames(tmp_path / "deep" / "a" / "b", 1, 40, 70, "png")  # one level too deep
    assert "deep/a/b is a folder inside a video folder" in error(tmp_path / "deep")
    with monkeypatch.context() as m:  # as an unreadable folder (root here reads every folder)
        m.setattr(Path, "iterdir", lambda self: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
        assert "cannot list" in error(tmp_path / "notes") and "Permission denied" in error(tmp_path / "notes")
    p2s = write_checkpoint(tmp_path / "p2s.pt", "pix2seq_d")
    write_frames(tmp_path / "good", 1, 40, 70, "png")
    with pytest.raises(infer.UserError, match="--postprocess is a Video K-Net flag"):
        infer.main(infer.parse_args(["--ckpt", str(p2s), "--frames", str(tmp_path / "good"), "--postprocess",
                                     "original"]))
    with pytest.raises(SystemExit):
        infer.parse_args(["--frames", str(tmp_path), "--dataset", "kitti_step", "--root", str(tmp_path)])
    assert "--frames replaces --dataset, --root and --split" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --split had no effect with --frames, silently
        infer.parse_args(["--frames", str(tmp_path), "--split", "test"])
    assert "--frames replaces --dataset, --root and --split" in capsys.readouterr().err
    assert infer.parse_args([]).split == "val"
    with pytest.raises(SystemExit):  # KITTI's own folder name: was "no frames found" after the checkpoint loaded
        infer.parse_args(["--dataset", "kitti_step", "--root", str(tmp_path), "--split", "training"])
    err = capsys.readouterr().err  # newer Pythons print the choices without quotes
    assert "invalid choice: 'training'" in err and all(split in err for split in ("train", "val", "test"))


def test_out_inside_frames_is_refused_before_any_image_is_overwritten(tmp_path):
    ckpt = write_checkpoint(tmp_path / "ckpt.pt", "video_knet")
    one = tmp_path / "videos" / "street"  # one video; its parent `videos` is a folder of videos
    write_frames(one, 2, 40, 70, "png")
    before = {f.name: f.read_bytes() for f in one.iterdir()}
    for frames, out in [(one, one), (one, tmp_path / "videos"), (one, one / "pred"), (one.parent, one.parent),
                        (one.parent, one), (one.parent, one.parent / "pred")]:
        with pytest.raises(infer.UserError, match="--frames .*: over or beside"):
            infer.main(infer.parse_args(["--ckpt", str(ckpt), "--frames", str(frames), "--out", str(out)]))
    assert {f.name: f.read_bytes() for f in one.iterdir()} == before  # nothing written, nothing overwritten
    # beside it is fine: --frames videos --out tmp_path writes tmp_path/street/, not videos/street/
    infer.check_out_beside_frames(tmp_path, one.parent, infer.frame_folders(one.parent))


def test_frame_folders_skip_what_file_managers_leave_and_size_frames_upright(tmp_path):
    """Thumbs.db, desktop.ini and __MACOSX are skipped like dot-files; a phone frame stored on its side with an EXIF
    quarter turn counts at its upright size, as data.read_image reads it."""
    write_frames(tmp_path / "v", 2, 40, 70, "png")
    (tmp_path / "v" / "Thumbs.db").write_bytes(b"\0")
    (tmp_path / "v" / "desktop.ini").write_text("[.ShellClassInfo]")
    (tmp_path / "__MACOSX").mkdir()  # beside the video folder: not a second video
    exif = Image.Exif()
    exif[data.EXIF_ORIENTATION] = 6
    Image.fromarray(np.zeros((70, 40, 3), np.uint8)).save(tmp_path / "v" / "frame3.jpg", exif=exif)  # 40 x 70 stored
    seqs = infer.frame_folders(tmp_path)
    assert [s.name for s in seqs] == ["v"] and len(seqs[0]) == 3
    assert all(seqs[0].image(t).shape == (40, 70, 3) for t in range(3))


def test_authors_checkpoint_converts_for_infer(tmp_path):
    """scripts/convert_knet_checkpoint.py: the authors' mmdet file -> a checkpoint infer.py loads with every tensor."""
    from scripts import convert_knet_checkpoint
    from tests.test_checkpoints import authors_checkpoint, fills
    authors_checkpoint(tmp_path / "knet.pth")
    line = convert_knet_checkpoint.convert(tmp_path / "knet.pth", tmp_path / "out" / "ckpt.pt")
    assert "loaded 525 of 525 tensors" in line
    model, ckpt = infer.load_checkpoint(tmp_path / "out" / "ckpt.pt")
    assert ckpt["args"]["model"] == "video_knet" and ckpt["config"]["num_thing_kernels"] == 100
    assert all(c is not None for c in fills(model).values())  # every tensor holds one of the file's constants
    assert not list((tmp_path / "out").glob("*.tmp"))
    torch.save({"foo": 1}, tmp_path / "foreign.pth")  # not a checkpoint: the error names the script's argument
    with pytest.raises(infer.UserError, match=r"^source checkpoint .*foreign.pth: neither a checkpoint"):
        convert_knet_checkpoint.convert(tmp_path / "foreign.pth", tmp_path / "out2" / "ckpt.pt")
    with pytest.raises(infer.UserError, match=r"out is a folder: give .*out/ckpt.pt"):  # before minutes of loading
        convert_knet_checkpoint.convert(tmp_path / "foreign.pth", tmp_path / "out")
    with pytest.raises(infer.UserError, match=r"knet.pth is a file, not a folder"):
        convert_knet_checkpoint.convert(tmp_path / "foreign.pth", tmp_path / "knet.pth" / "sub" / "ckpt.pt")
    with pytest.raises(infer.UserError, match=r"^source checkpoint .*ckpt.pt: already written by train.py \(a "
                       r"video_knet model\); infer.py --ckpt and train.py --init_from read it as it is"):
        convert_knet_checkpoint.convert(tmp_path / "out" / "ckpt.pt", tmp_path / "out3" / "ckpt.pt")
