"""scripts/decoding_ablation.py, instance_diagnostics.py and condition_oracle.py: what they print, on tiny models."""
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import infer
from scripts import decoding_ablation
from tests.test_train import one_thread  # noqa: F401  autouse: one thread, as the other end-to-end tests


@pytest.mark.slow
def test_rows_now_before_and_set(tmp_path, capsys):
    torch.manual_seed(0)
    model, cfg = infer.build_model("video_knet", dict(infer.MODELS["video_knet"].PRESETS["tiny"]))
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "config": asdict(cfg), "step": 0,
                "args": {"model": "video_knet", "dataset": "synthetic", "seed": 0}}, ckpt)
    rows = decoding_ablation.main(["--ckpt", str(ckpt), "--split", "val", "--set", "score_thr=0.9,overlap_thr=0.9"])
    assert list(rows) == ["now", "before", "score_thr=0.9,overlap_thr=0.9"]
    assert rows["before"]["SQ"] <= rows["now"]["SQ"]  # void on rejected pixels never helps SQ
    assert rows["score_thr=0.9,overlap_thr=0.9"] != rows["now"]  # the change reached the merge
    out = capsys.readouterr().out
    assert sum(line.startswith("| ") for line in out.splitlines()) == 4 and "| now |" in out  # header + 3 rows
    with pytest.raises(SystemExit):  # an unknown field is an argparse error
        decoding_ablation.main(["--ckpt", str(ckpt), "--set", "no_such_field=1"])


def test_instance_diagnostics_counts_a_perfect_and_a_forgetful_predictor(tmp_path, monkeypatch, capsys):
    """scripts/instance_diagnostics.py with predictions replaced by the ground truth: every instance matched and
    every id kept; with the ids shifted by the frame index: still matched, never kept; with the leftmost object of
    each frame painted road: frame 0's rank 1 never matched, every other rank always."""
    from scripts import instance_diagnostics

    torch.manual_seed(0)
    model, cfg = infer.build_model("video_knet", dict(infer.MODELS["video_knet"].PRESETS["tiny"]))
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "config": asdict(cfg), "step": 0,
                "args": {"model": "video_knet", "dataset": "synthetic", "seed": 0}}, ckpt)
    def drop_leftmost(sem, ins):
        objects = sorted({(c, i) for c, i in zip(sem[ins > 0].tolist(), ins[ins > 0].tolist())})
        x = [np.nonzero((sem == c) & (ins == i))[1].mean() for c, i in objects]
        c, i = objects[int(np.argmin(x))]
        gone = (sem == c) & (ins == i)
        return np.where(gone, 0, sem), np.where(gone, 0, ins)

    for shift in (0, 1, "drop"):
        def ground_truth(model, name, seq, device, **kw):
            for t in range(len(seq)):
                sem, ins = seq.label(t)
                yield (t, *drop_leftmost(sem, ins)) if shift == "drop" else (t, sem, ins + shift * t * (ins > 0))

        monkeypatch.setattr(infer, "predict_sequence", ground_truth)
        total = instance_diagnostics.main(["--ckpt", str(ckpt), "--videos", "2", "--show", str(int(shift == 0))])
        assert total["frames"] == 2 * 16 and total["gt"] > total["frames"]  # several objects per frame
        assert total["rank 1"] == 2 and total["rank 3"] > 0  # two videos, several objects at frame 0
        if shift == "drop":
            assert total["rank 1 matched"] == 0
            assert all(total[f"{k} matched"] == total[k] for k in total if k.startswith("rank") and k != "rank 1"
                       and not k.endswith("matched"))
            continue
        assert total["pred"] == total["matched"] == total["gt"] and total["pairs"] > 0
        assert total["kept"] == (total["pairs"] if shift == 0 else 0)
        assert all(total[f"rank {r} matched"] == total[f"rank {r}"] for r in range(1, 10))
    shown = capsys.readouterr().out  # --show 1, then 0: one frame's instances, each with its best kernel
    assert shown.count("best kernel") == shown.count("frame 0 GT") > 0 and shown.count("frame 1 GT") == 0
    seen = []  # --set reaches the model's config before predicting
    monkeypatch.setattr(infer, "predict_sequence", lambda model, *a, **k: seen.append(model.cfg.split_min_px) or [])
    instance_diagnostics.main(["--ckpt", str(ckpt), "--videos", "1", "--set", "split_min_px=7"])
    assert seen == [7]
    with pytest.raises(SystemExit):  # not a field of the config: an argparse error
        instance_diagnostics.main(["--ckpt", str(ckpt), "--set", "split_min_cells=4"])


def test_condition_oracle_with_a_model_that_copies_its_condition(tmp_path, monkeypatch, capsys):
    """scripts/condition_oracle.py with a denoiser that outputs the last conditioning mask (ids from noise: never):
    from its own void start it copies nothing useful (AQ 0); with the ground truth swapped in at frame 0 it keeps
    frame 0's objects where they were (AQ above 0); with the ground truth of every frame it lags one frame behind
    the motion (AQ 0.47 on this video)."""
    import bitdiffusion as bd
    import pix2seq_d
    from scripts import condition_oracle

    torch.manual_seed(0)
    model, cfg = infer.build_model("pix2seq_d", dict(pix2seq_d.PRESETS["tiny"]))
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "config": asdict(cfg), "step": 0,
                "args": {"model": "pix2seq_d", "dataset": "synthetic", "seed": 0}}, ckpt)

    # (1, 2 n_bits [+ 3], h, w) condition -> one-hot logits of its mask
    def copy_condition(x_t, gamma, feats, cond, self_cond_x0=None):
        last = bd.decode(cond[:, :2 * cfg.n_bits], cfg.n_bits)  # (1, 2, h, w): class + 1, id
        n = 2 ** cfg.n_bits
        return torch.cat([F.one_hot(last[:, 0], n), F.one_hot(last[:, 1], n)], -1).permute(0, 3, 1, 2).float() * 10

    load = infer.load_checkpoint

    def load_copier(path):
        m, c = load(path)
        m.denoise = copy_condition
        m.cfg.steps = 2  # the copier's output does not depend on the noise
        return m, c

    monkeypatch.setattr(infer, "load_checkpoint", load_copier)
    sequences = condition_oracle.data.load_sequences
    monkeypatch.setattr(condition_oracle.data, "load_sequences", lambda *a: sequences(*a)[:1])
    rows = condition_oracle.main(["--ckpt", str(ckpt)])
    assert cfg.num_cond_frames == 1 and cfg.cond in ("mask", "mask+diff")  # the copier reads the last frame's bits
    assert list(rows) == ["model", "gt first frame", "gt every frame"]
    aq = [r["AQ"] for r in rows.values()]  # frame 0 copied for 16 frames of motion, then each frame's ground truth
    assert aq[0] < aq[1] < 0.3 < aq[2]
    assert condition_oracle.pix2seq_d.condition_input is condition_oracle.CONDITION_INPUT  # restored
    assert capsys.readouterr().out.count("| gt ") == 2
