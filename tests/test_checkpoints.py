"""Checkpoints in and out: importing the authors' mmdet K-Net / Video K-Net weights and our own (what loaded, what
was skipped, coverage), torchvision backbones, clear errors for foreign, truncated or other-model files, and runs
killed with SIGKILL at random moments that resume losing nothing."""
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import data
import infer
import train
import video_knet as vk
from scripts import convert_knet_checkpoint
from tests.test_train import FAST, one_thread  # noqa: F401  the quick-run flags; autouse one-thread fixture
from tests.test_video_knet import mmdet_state_dict

REPO = Path(__file__).resolve().parent.parent
# The authors' Video K-Net (KITTI-STEP, R50) key names, written from their module definitions (a copy of
# shared/reference/knet_checkpoint_keys.txt). Their video-only modules: not in the K-Net image checkpoint.
KEYS = [x.strip() for x in (Path(__file__).parent / "knet_checkpoint_keys.txt").read_text().splitlines()
        if x.strip() and not x.startswith("#")]
THEIR_VIDEO_ONLY = re.compile(r"\.(attention_previous|link_ffn)|^(embed_fcs|fc_embed|track_head)\.")


@pytest.fixture(scope="module")
def kitti(tmp_path_factory):
    """A small KITTI-STEP tree (videoknet layout, 2 train + 1 val sequences of 4 frames at 64x96): runs start fast."""
    root = tmp_path_factory.mktemp("kitti")
    seqs = data.synthetic_sequences(3, num_frames=4, height=64, width=96)
    data.write_kitti_step(seqs[:2], root, "train", "videoknet")
    data.write_kitti_step([data.Sequence("0002", seqs[2].images, seqs[2].labels)], root, "val", "videoknet")
    return ["--dataset", "kitti_step", "--root", str(root), "--preset", "tiny"]


def authors_checkpoint(path, video=True):
    """The authors' paper-preset state_dict -> path (mmdet layout); tensor i holds the constant 1000 + i.

    Names from KEYS; shapes from tests/test_video_knet.mmdet_state_dict (written from the reference, not from our
    key mapping) and, for the video-only modules, from the reference's module definitions (C = 256). Constant views
    (expand) keep the file small. video=False: the K-Net image checkpoint, without the video-only modules."""
    C = 256
    shapes = {k: tuple(v.shape) for k, v in mmdet_state_dict(vk.VideoKNet(vk.VideoKNetConfig(**vk.PRESETS["paper"])),
                                                              C=C, N=100).items()}
    assert set(shapes) == {k for k in KEYS if not THEIR_VIDEO_ONLY.search(k)}  # two independent writings agree
    link = {"attention_previous.attn.in_proj_weight": (3 * C, C), "attention_previous.attn.in_proj_bias": (3 * C,),
            "attention_previous.attn.out_proj.weight": (C, C), "attention_previous.attn.out_proj.bias": (C,),
            "link_ffn.layers.0.0.weight": (8 * C, C), "link_ffn.layers.0.0.bias": (8 * C,),
            "link_ffn.layers.1.weight": (C, 8 * C), "link_ffn.layers.1.bias": (C,)}
    link |= {f"{n}.{w}": (C,) for n in ("attention_previous_norm", "link_ffn_norm") for w in ("weight", "bias")}
    shapes |= {f"roi_head.mask_head.{s}.{k}": v for s in range(3) for k, v in link.items()}  # in all 3 stages
    shapes |= {"embed_fcs.0.weight": (C, C), "embed_fcs.1.weight": (C,), "embed_fcs.1.bias": (C,),
               "fc_embed.weight": (C, C), "fc_embed.bias": (C,)}
    for fc in ("fcs.0", "fcs.1", "fc_embed"):
        shapes |= {f"track_head.{fc}.weight": (C, C), f"track_head.{fc}.bias": (C,)}
    assert set(shapes) == set(KEYS)
    keys = [k for k in KEYS if video or not THEIR_VIDEO_ONLY.search(k)]
    state = {k: torch.tensor(1000 + i, dtype=torch.long if k.endswith("num_batches_tracked") else torch.float)
             .expand(shapes[k]) for i, k in enumerate(keys)}
    torch.save({"state_dict": state, "meta": {"epoch": 12}}, path)
    return len(keys)


def fills(model):
    """Model -> {tensor name: the constant it holds, or None if it is not one of authors_checkpoint's constants}."""
    out = {}
    for k, v in model.state_dict().items():
        c = v.flatten()[0].item()
        out[k] = int(c) if c >= 1000 and (v == c).all() else None
    return out


# ----------------------------------------------------------------------------- importing weights


@pytest.mark.parametrize("video", [True, False], ids=["video_knet_ckpt", "knet_image_ckpt"])
def test_authors_checkpoint_fills_every_tensor_of_the_paper_model(tmp_path, video):
    """Every one of our 525 tensors gets its own tensor of the authors' checkpoint; from the K-Net image checkpoint
    exactly the video-only ones stay at init, and that is no coverage error."""
    n = authors_checkpoint(tmp_path / "knet.pth", video)
    torch.manual_seed(0)
    model = vk.VideoKNet(vk.VideoKNetConfig(**vk.PRESETS["paper"]))
    state = torch.load(tmp_path / "knet.pth", weights_only=True)["state_dict"]
    line = convert_knet_checkpoint.import_mmdet(model, state, "knet.pth")
    got = fills(model)
    left = sorted(k for k, c in got.items() if c is None)
    assert left == ([] if video else sorted(k for k in got if convert_knet_checkpoint.VIDEO_ONLY.match(k)))
    assert len(left) == (0 if video else 23)
    filled = [c for c in got.values() if c is not None]
    assert len(set(filled)) == len(filled) and set(filled) <= set(range(1000, 1000 + n))  # one file tensor each
    assert f"loaded {len(got) - len(left)} of 525 tensors" in line and f"left at init: {len(left)}" in line
    assert ("skipped 24 " if video else "skipped 0;") in line  # stages 0-1's link modules: never used, not ours
    assert ("23 of them video-only" in line) != video


def test_partial_authors_checkpoint_is_an_error_unless_allowed(tmp_path):
    """A file with a third of the authors' tensors: the conversion names its coverage, or with allow_partial loads
    what there is."""
    authors_checkpoint(tmp_path / "knet.pth")
    state = torch.load(tmp_path / "knet.pth", weights_only=True)["state_dict"]
    third = dict(list(state.items())[::3])
    model = vk.VideoKNet(vk.VideoKNetConfig(**vk.PRESETS["paper"]))
    with pytest.raises(infer.UserError, match=r"^knet.pth: it fills \d+\.\d% of the 525 tensors it should, under 95%.*"
                                              r"--allow_partial_init"):
        convert_knet_checkpoint.import_mmdet(model, third, "knet.pth")
    line = convert_knet_checkpoint.import_mmdet(model, third, "knet.pth", allow_partial=True)
    assert re.match(r"knet.pth \(mmdet checkpoint\): loaded \d+ of 525 tensors", line)


def test_converted_authors_checkpoint_into_tiny_preset_is_an_error_unless_partial(tmp_path, kitti, capsys):
    """Today's trap: loading the paper-size weights into --preset tiny silently filled 21 of 309 tensors. The
    authors' file itself is refused with the conversion command."""
    authors_checkpoint(tmp_path / "knet.pth")
    args = ["--model", "video_knet", "--out_dir", str(tmp_path / "o")] + kitti + FAST
    with pytest.raises(infer.UserError, match=r"knet.pth: an mmdet state_dict, not a checkpoint written by train.py; "
                                              r"the authors' Video K-Net checkpoint: convert it first, python "
                                              r"scripts/convert_knet_checkpoint.py .*knet.pth out/authors/ckpt.pt"):
        train.main(train.parse_args(args + ["--init_from", str(tmp_path / "knet.pth")]))
    convert_knet_checkpoint.convert(tmp_path / "knet.pth", tmp_path / "authors.pt")
    args += ["--init_from", str(tmp_path / "authors.pt")]
    with pytest.raises(infer.UserError, match=r"authors.pt: \d+ tensors differ in shape .*backbone\.conv1\.weight "
                                              r"shape \(64, 3, 7, 7\) vs \(16, 3, 7, 7\).*--allow_partial_init"):
        train.main(train.parse_args(args))
    capsys.readouterr()
    train.main(train.parse_args(args + ["--max_iters", "1", "--allow_partial_init"]))
    out = capsys.readouterr().out
    assert re.search(r"init from .*authors.pt \(train.py checkpoint\): loaded \d+ of 309 tensors; skipped", out)


def test_own_checkpoint_import_counts_and_coverage(tmp_path):
    """A train.py checkpoint missing half its tensors: an error naming the coverage, or with --allow_partial_init
    a partial load whose summary counts loaded / skipped / left at init."""
    torch.manual_seed(0)
    source, _ = infer.build_model("video_knet", dict(vk.PRESETS["tiny"]))
    state = source.state_dict()
    keep = dict(list(state.items())[::2])
    keep["not.ours"] = torch.zeros(3)
    keep["backbone.conv1.weight"] = torch.zeros(1, 3, 7, 7)  # kept (index 0) with another shape
    path = tmp_path / "half.pt"
    torch.save({"model": keep, "args": {"model": "video_knet"}, "config": {}, "step": 0}, path)
    model, _ = infer.build_model("video_knet", dict(vk.PRESETS["tiny"]))
    with pytest.raises(infer.UserError, match=r"half.pt: 1 tensors differ in shape .*backbone.conv1.weight shape "
                                              r"\(1, 3, 7, 7\) vs \(16, 3, 7, 7\).*--allow_partial_init"):
        train.load_init(model, "video_knet", path)
    del keep["backbone.conv1.weight"]
    torch.save({"model": keep, "args": {"model": "video_knet"}, "config": {}, "step": 0}, path)
    with pytest.raises(infer.UserError, match=r"half.pt: it fills 49\.8% of the 309 tensors it should, under 95%"):
        train.load_init(model, "video_knet", path)
    line = train.load_init(model, "video_knet", path, allow_partial=True)
    assert line == (f"init from {path} (train.py checkpoint): loaded 154 of 309 tensors; skipped 1 (first few: "
                    "not.ours (unexpected)); left at init: 155 (first few: backbone.conv1.weight (missing), "
                    "backbone.bn1.weight (missing), backbone.bn1.running_mean (missing), "
                    "backbone.bn1.num_batches_tracked (missing), ...)")
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in keep.items() if k in after)


@pytest.mark.parametrize("name", ["pix2seq_d", "video_knet"])
def test_backbone_weights_print_what_they_loaded(tmp_path, name, capsys):
    model, _ = infer.build_model(name, dict(train.MODELS[name].PRESETS["tiny"]))
    other, _ = infer.build_model(name, dict(train.MODELS[name].PRESETS["tiny"]))
    torch.save(other.backbone.state_dict(), tmp_path / "r50.pth")
    n, total = len(model.backbone.state_dict()), len(model.state_dict())
    line = train.load_backbone(model, train.MODELS[name], tmp_path / "r50.pth")
    assert line == f"backbone weights from {tmp_path / 'r50.pth'}: loaded {n} of {total} tensors (the backbone); " \
                   f"left at init: {total - n}"
    assert all(torch.equal(v, other.backbone.state_dict()[k]) for k, v in model.backbone.state_dict().items())
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(infer.UserError, match="--backbone_weights .*bad.pth: .*conv1.weight"):
        train.load_backbone(model, train.MODELS[name], tmp_path / "bad.pth")


# ----------------------------------------------------------------------------- foreign, truncated, other model


def fake_checkpoint(path, name):
    """A minimal train.py-style checkpoint of the tiny `name` model (no training needed)."""
    model, cfg = infer.build_model(name, dict(train.MODELS[name].PRESETS["tiny"]))
    torch.save({"model": model.state_dict(), "args": {"model": name}, "config": vars(cfg), "step": 0}, path)


def test_weights_that_do_not_fit_their_config_name_the_tensors(tmp_path):
    fake_checkpoint(tmp_path / "p2s.pt", "pix2seq_d")
    ckpt = torch.load(tmp_path / "p2s.pt", weights_only=True)
    # as if written by another version of the code: one tensor renamed
    ckpt["model"]["extra.weight"] = ckpt["model"].pop("decoder.conv_out.weight")
    torch.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(infer.UserError, match=r"do not fit its pix2seq_d config \(Missing key\(s\).*out\.weight.*"
                                              r"Unexpected key\(s\).*extra\.weight"):
        infer.load_checkpoint(tmp_path / "other.pt")


def test_foreign_truncated_and_other_model_checkpoints_are_user_errors(tmp_path, kitti):
    fake_checkpoint(tmp_path / "p2s.pt", "pix2seq_d")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    blob = (tmp_path / "p2s.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[: len(blob) // 2])
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    damaged = bytearray(blob)
    at = damaged.find(b"_rebuild_tensor")
    damaged[at:at + 8] = b"\x02\x03ABCDEF"  # bytes changed in a class name: one printable line, no raw bytes
    (tmp_path / "damaged.pt").write_bytes(bytes(damaged))
    cases = [("cut.pt", "cut.pt: the file is truncated or not written by torch.save"),
             ("damaged.pt", r"damaged.pt: the file holds Python objects \(or is damaged\).*torch._utils.\?\?ABCDEF"),
             ("text.pt", "text.pt: the file is truncated or not written by torch.save"),
             ("foreign.pt", r"foreign.pt: not a checkpoint written by train.py \(it has \['weights'\]"),
             ("nope.pt", "nope.pt: file not found"), ("", ": a folder, not a file")]
    for f, msg in cases:
        with pytest.raises(infer.UserError, match=f"--ckpt .*{msg}"):
            infer.load_checkpoint(tmp_path / f)
        with pytest.raises(infer.UserError, match=f"--init_from .*{msg}"):
            train.main(train.parse_args(["--init_from", str(tmp_path / f), "--out_dir", str(tmp_path / "o")] + kitti
                                        + FAST))
    base = ["--model", "video_knet", "--out_dir", str(tmp_path / "o")] + kitti + FAST
    authors_checkpoint(tmp_path / "knet.pth")
    with pytest.raises(infer.UserError, match=r"knet.pth: an mmdet state_dict, not a checkpoint written by train.py"):
        train.main(train.parse_args(["--init_from", str(tmp_path / "knet.pth"), "--out_dir", str(tmp_path / "o")]
                                    + kitti + FAST))
    with pytest.raises(infer.UserError, match=r"--init_from .*p2s.pt holds a pix2seq_d model, not video_knet"):
        train.main(train.parse_args(base + ["--init_from", str(tmp_path / "p2s.pt")]))
    (tmp_path / "o").mkdir()
    os.replace(tmp_path / "p2s.pt", tmp_path / "o" / "ckpt.pt")
    with pytest.raises(infer.UserError, match=r"--resume: .*ckpt.pt holds a pix2seq_d model, not video_knet: pass "
                                              r"--model pix2seq_d or another --out_dir"):
        train.main(train.parse_args(base + ["--resume"]))
    fake_checkpoint(tmp_path / "knet.pt", "video_knet")
    with pytest.raises(infer.UserError, match="--steps and --td are Pix2Seq-D sampler flags; .*knet.pt holds a "
                                              "video_knet model"):
        infer.main(infer.parse_args(["--ckpt", str(tmp_path / "knet.pt"), "--steps", "5"]))


def test_scripts_print_one_error_line_and_exit_2(tmp_path):
    """As a user runs them: `error: ...` on stderr naming the file, exit code 2, no traceback."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 cut short")
    for cmd, msg in [(["train.py", "--dataset", "kitti_step", "--root", str(tmp_path / "nope")],
                      "(?s)KITTI-STEP root .*nope does not exist.*official:.*videoknet:"),
                     (["infer.py", "--ckpt", str(tmp_path / "cut.pt")], r"--ckpt .*cut.pt: the file is truncated")]:
        r = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
        assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr, r.stderr
        assert re.search(msg, r.stderr), r.stderr


def test_checkpoint_is_on_disk_before_the_rename(tmp_path, monkeypatch):
    """save_checkpoint: the new file's bytes are fsync'ed before os.replace gives it the checkpoint's name."""
    calls, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def replace(src, dst):
        calls.append(("replace", Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    train.save_checkpoint(tmp_path / "ckpt.pt", {"step": 3, "w": torch.ones(2)})
    inode = os.stat(tmp_path / "ckpt.pt").st_ino  # a rename keeps the inode
    assert calls.index(("fsync", inode)) < calls.index(("replace", "ckpt.pt"))
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["step"] == 3 and not list(tmp_path.glob("*.tmp"))


def test_resume_cuts_the_log_back_to_the_checkpoint(tmp_path):
    """truncate_log keeps the lines of steps <= the checkpoint's (eval lines included) and drops a line cut short."""
    lines = [json.dumps({"step": s, "loss": 1.0 / s}) for s in range(1, 6)] + [json.dumps({"step": 4, "eval": {}})]
    (tmp_path / "log.jsonl").write_text("\n".join(lines[:4] + lines[5:] + [lines[4]]) + "\n" + lines[4][:7])
    train.truncate_log(tmp_path / "log.jsonl", 4)
    kept = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [(r["step"], "eval" in r) for r in kept] == [(1, False), (2, False), (3, False), (4, False), (4, True)]
    train.truncate_log(tmp_path / "log.jsonl", 0)  # --resume with no checkpoint yet: nothing of the old run stays
    assert (tmp_path / "log.jsonl").read_text() == ""


# ----------------------------------------------------------------------------- SIGKILL at random moments

# Runs train.py with two pauses to aim a kill at: half-way through writing a checkpoint, and at the start of an
# evaluation. Each prints a mark first; the test kills the process in the pause after the n-th mark.
WRAPPER = """import io, os, sys, time
sys.path.insert(0, {repo!r})
import torch, train
real_save, real_evaluate = torch.save, train.evaluate

def save_slowly(obj, f, *a, **kw):
    buf = io.BytesIO()
    real_save(obj, buf, *a, **kw)
    data, out = buf.getvalue(), open(f, "wb") if isinstance(f, (str, os.PathLike)) else f
    out.write(data[: len(data) // 2])
    out.flush()
    print("MARK save", flush=True)
    time.sleep(0.2)
    out.write(data[len(data) // 2:])
    if out is not f:
        out.close()

def evaluate_slowly(*a, **kw):
    print("MARK eval", flush=True)
    time.sleep(0.2)
    return real_evaluate(*a, **kw)

torch.save, train.evaluate = save_slowly, evaluate_slowly
train.main(train.parse_args(sys.argv[1:]))
"""


def same(x, y):
    """Nested dicts / lists of tensors and values -> exactly equal?"""
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return type(x) is type(y) and len(x) == len(y) and all(same(u, v) for u, v in zip(x, y))
    return torch.equal(x, y) if torch.is_tensor(x) else x == y


def run_and_kill(cmd, prefix, n, delay):
    """Start cmd; SIGKILL it `delay` seconds after the n-th stdout line that starts with prefix. -> killed or not."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
    seen = 0
    for line in p.stdout:
        seen += line.startswith(prefix)
        if seen == n:
            time.sleep(delay)
            p.send_signal(signal.SIGKILL)
            break
    p.stdout.close()
    return p.wait() == -signal.SIGKILL


@pytest.mark.slow
def test_killed_runs_resume_and_lose_nothing(tmp_path, kitti):
    """SIGKILL at seeded random moments (during the first training steps, mid-way through a checkpoint write, during
    an evaluation), each time rerunning the same command with --resume: the run ends at the same step, with the same
    weights, optimizer state and losses as an uninterrupted one, a checkpoint that loads with weights_only=True and a
    log without repeated steps."""
    flags = ["--model", "video_knet", *kitti, "--max_iters", "8", "--eval_interval", "4", "--log_interval", "1",
             "--batch_size", "2", "--eval_videos", "1", "--eval_frames", "2", "--crop", "64x96"]
    (tmp_path / "wrapper.py").write_text(WRAPPER.format(repo=str(REPO)))
    cmd = [sys.executable, str(tmp_path / "wrapper.py"), *flags, "--out_dir", str(tmp_path / "killed"), "--resume"]
    rng = random.Random(0)

    def saved_step():
        ckpt = tmp_path / "killed" / "ckpt.pt"
        return torch.load(ckpt, weights_only=True)["step"] if ckpt.exists() else 0

    kills = []  # (line prefix, n, delay, checkpoint step after the kill): shown when an assert fails
    for prefix, delay in [("step ", 0.3), ("MARK save", 0.1), ("MARK eval", 0.1), ("MARK save", 0.1)]:
        left = (8 - saved_step()) // 4  # checkpoints (and evaluations) the run would still write
        n = rng.randint(1, 3) if prefix == "step " else rng.randint(1, max(left, 1))
        delay = rng.uniform(0, delay)  # a step takes ~0.2 s, the marks pause 0.2 s
        assert run_and_kill(cmd, prefix, n, delay), kills + [(prefix, n)]
        kills.append((prefix, n, round(delay, 3), saved_step()))
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO)
    assert r.returncode == 0, (kills, r.stderr[-2000:])

    train.main(train.parse_args(flags + ["--out_dir", str(tmp_path / "straight")]))
    a, b = (torch.load(tmp_path / d / "ckpt.pt", weights_only=True) for d in ("straight", "killed"))
    assert a["step"] == b["step"] == 8, kills
    for part in ("model", "ema", "optimizer"):
        assert same(a[part], b[part]), (part, kills)
    la, lb = ([json.loads(x) for x in (tmp_path / d / "log.jsonl").read_text().splitlines()]
              for d in ("straight", "killed"))
    assert [r["step"] for r in lb if "loss" in r] == list(range(1, 9)), kills  # every step once, in order
    assert [r["step"] for r in lb if "eval" in r] == [4, 8], kills
    assert [(r["step"], r["loss"]) for r in la if "loss" in r] == [(r["step"], r["loss"]) for r in lb if "loss" in r]
    assert not list((tmp_path / "killed").glob("*.tmp")), kills
