"""Pix2Seq-D for video panoptic segmentation: a bit-diffusion model of the panoptic mask, conditioned on the image
and on the previous frames.

Chen, Li, Saxena, Hinton, Fleet, "A Generalist Framework for Panoptic Segmentation of Images and Videos"
(ICCV 2023; Sec. 3 model and loss, Sec. 3.3 video, Sec. 4 architecture), checked against google-research/pix2seq
(models/panoptic_diffusion.py, architectures/{resnet,transformers,convnet_blocks,transunet}.py,
tasks/video_panoptic_segmentation.py, metrics/vps_metrics.py). The diffusion core lives in bitdiffusion.py.

Pipeline for one frame (image size H x W, mask size h x w = H/2 x W/2):
  encoder   image -> ResNet-50 stem + layer1-3 (C2 s4, C3 s8, C4 s16) -> 1x1 to D + 2-D sin-cos positions ->
            pre-LN transformer -> tokens (B, H/16*W/16, D); top-down merge of tokens, C3, C2 -> (B, 2*dec_dim, h, w).
  condition previous masks (t-2, t-1) as clean +-b bits and the frame difference I_t - I_{t-1} averaged to h x w.
  decoder   TransUNet on [x_t, fused features, condition]: GroupNorm res blocks with FiLM from gamma, a
            transformer at h/8 x w/8 cross-attending to the tokens, out 2 x 2^n logits (class group, id group).
  sampler   DDIM (bitdiffusion.ddim_sample) on the decoder only; the encoder runs once per frame.

Differences from the paper / official code:
  - Conditioning (`cond`): this project adds the frame difference I_t - I_{t-1} (raw, 2x2 average-pooled to mask
    size, 3 channels, no extra conv: the decoder's 1x1 conv_in and 3x3 res blocks see it) and defaults to one
    conditioning frame (official: masks of t-2 and t-1, no image difference). A dropped conditioning frame
    (frame dropout) is all void, and a dropped t-1 also zeroes the difference, which is what frame 0 of a video
    sees. Measured on the synthetic videos (README, "Does the frame difference help?", 3 seeds per condition, with
    the older bit decoding): the previous mask helps (AQ +0.08 over 'none' at 2400 tiny steps), the difference
    shows no measurable effect. Two conditioning frames on the 8-bit tiny recipe (seeds 0-1, same step time): STQ /
    AQ 0.576 / 0.393 and 0.529 / 0.333 against 0.585 / 0.406 and 0.528 / 0.332 with one.
  - normalize_input=True: ImageNet mean/std normalisation before the ResNet, to match torchvision weights
    (official: raw [0, 1] inputs). Padding still uses 0.3 in [0, 1] units, as the official code.
  - Plain BatchNorm (official: synchronised BN); no drop-path in the encoder (official 0.1); PyTorch default
    initialisation except torchvision's ResNet init and 1e-3-scaled last convs (official: VarianceScaling,
    ~0 for the last conv of each res block and the output conv).
  - Instance ids are compacted per clip (to 1..n in order) before the shared random permutation of 1..n, or of
    1..max(n, id_range) (official 'shuffle' permutes 1..max id); a clip with more than max_instances - 1 ids is an
    error. Instance ids on void pixels are set to 0 in the target.
  - Inference decodes the class and id of a pixel as the arg-max of the last step's logits over real classes
    and ids (decode_logits: never void), not the bits of the last x0 estimate (official), where an uncertain pixel
    may come out void or as a class id above K; predicted void on labelled pixels costs STQ an IoU-0 class.
  - Re-appearing ids get fresh ids max_instances, max_instances + 1, ... (official vps_metrics: smallest unused
    id, which a later new raw id can collide with). Optional `thing_classes` zeroes ids on stuff (official:
    none; the model learns id 0 on stuff from KITTI-STEP labels).
  - Head widths are fixed at 32 (encoder, 16 heads at D 512) and 64 (bottleneck, 8 heads at 512) as in the paper;
    the fused map has 2 * dec_dim channels (256 in the paper); one res block per level down, two up (paper).
  - The tiny preset drops a conditioning frame with p = 0.5 instead of the paper's 0.2. Frame 0 of a video has no
    condition, so its ids come from noise, a skill only dropped clips teach; the official video model starts from an
    image model (COCO) that learned it on every example, a from-scratch run does not. On the synthetic val split
    (1800 tiny steps, seeds 0-3, README), with random ids: STQ 0.502 / AQ 0.301 against 0.479 / 0.273 at 0.2; with
    left-to-right ids and 2e-3 (with 8 bits, below): 0.578 / 0.398 against 0.498 / 0.296 (paired +0.079 +- 0.012 /
    +0.102 +- 0.017, standard error), and 0.7 is level with 0.5 (0.570 / 0.387; paired -0.008 +- 0.015 / -0.011 +-
    0.021). The paper preset keeps 0.2.
  - The tiny preset numbers the ids of a clip with no condition left to right (dropped_ids="x_order": 1..n by the x of
    each object's centroid) instead of at random. Such a clip stands for frame 0, where the random ids have to come
    from noise: with random targets, each object's id is a guess of its own, and neighbours often make the same one
    (several pedestrians share an id, and every later frame copies the merge); an order read off the image needs no
    guess. Clips with a condition keep random ids, so copying ids from the previous mask is learned as before, and new
    objects still get random ids. On the synthetic val split (1800 tiny steps, seeds 0-2, README): STQ 0.562 / AQ
    0.376 against 0.496 / 0.293 with random ids (paired differences +0.066 +- 0.012 and +0.083 +- 0.013 standard
    error). The paper preset keeps random ids.
  - The tiny preset uses 6 bits per group (64 classes, 63 ids per clip) instead of the paper's 8: the synthetic videos
    have 19 classes and 6 (synthetic_hard: 10) objects, and the output layer's 2 x 256 logits with their softmax took
    a third of a tiny training step. A train.py step takes 436 against 631 ms (idle box), so the tiny recipe runs 2600
    steps instead of 1800 in the same wall time. On the synthetic val split (seeds 0-3, README): STQ / AQ 0.608 /
    0.440 against 0.578 / 0.398 (paired +0.030 +- 0.020 / +0.042 +- 0.027, standard error). The paper preset keeps 8.
  - The tiny preset splits predicted segments at inference (split_min_cells=4, split_parts): a part of a thing
    segment that does not touch its largest part, of >= 4 mask cells (16 pixels), gets a fresh id before the
    prediction is fed back as the next condition, so later frames carry the split. The tiny model often gives one
    id to objects apart (small persons far from each other), and every later frame copies the merge; the official
    code has no such step. On the synthetic val split (the same weights and noise, seeds 0-3, README): STQ / AQ
    0.647 / 0.497 against 0.577 / 0.395 (paired +0.070 +- 0.011 / +0.102 +- 0.017). The paper preset keeps it off:
    on KITTI-STEP an occluder (a pole, a pedestrian) cuts one car into parts that are one object.
  - gamma is embedded as sinusoid(gamma * 1e4) (TransUNet default time_scaling; the panoptic configs do not set it).

Shape letters: B batch, T frames (T = 1 + Tc conditioning frames), C channels, H W image, h w mask (= H/2, W/2),
N tokens, K classes, D width.
Diffusion time t in [0, 1]; gamma(t) the signal variance; b the bit scale.
"""
import math
from collections import deque
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

import bitdiffusion as bd

TIME_SCALING = 1e4  # gamma in [0, 1] is stretched to [0, 1e4] before the sinusoidal embedding (TransUNet default)
PAD_VALUE = 0.3  # official image pad value (in [0, 1] units)
SIZE_MULTIPLE = 16  # image height and width: multiples of the encoder stride (training crops; predict_video pads)
ID_CAP = 1 << 16  # raw instance ids must be < 2^16 (KITTI-STEP: G * 256 + B)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's input normalisation (normalize_input=True)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Pix2SeqDConfig:
    num_classes: int = 19  # K semantic classes, 255 = void (KITTI-STEP 19)
    max_instances: int = 256  # instance ids per clip including 0, <= 2^n_bits (paper 256)
    id_range: int = 0  # a clip's n ids are drawn distinct from 1..max(n, id_range); 0: 1..n (paper: 1..max raw id)
    n_bits: int = 8  # bits per group; groups = (class + 1, instance id) (paper 8 + 8)
    bit_scale: float = 0.1  # b: bits are +-b (paper 0.1)
    cond: str = "mask+diff"  # "none" | "mask" | "mask+diff" (paper: "mask")
    num_cond_frames: int = 1  # previous frames conditioned on, 1 or 2 (paper 2)
    frame_dropout: float = 0.2  # p a conditioning frame becomes all void, zero difference (paper 0.2)
    mask_weight_p: float = 0.2  # pixel weight (1 / (instance size + 1))^p (paper 0.2)
    dropped_ids: str = "random"  # target ids of clips with no condition: "random" (paper) or "x_order" (1..n by x)
    self_cond: bool = False  # Bit Diffusion self-conditioning: the decoder also sees its last x0 estimate (paper off)
    steps: int = 20  # DDIM steps at inference (paper 20)
    td: float = 1.0  # DDIM time difference, in steps (paper 1 or 2)
    backbone_width: int = 64  # ResNet stem width; 64 = torchvision ResNet-50 (paper 64)
    backbone_blocks: tuple = (3, 4, 6)  # bottlenecks in layer1..3 (paper 3, 4, 6)
    enc_layers: int = 12  # encoder transformer layers (paper 12)
    width: int = 512  # D of the encoder and bottleneck transformers, a multiple of 64 (paper 512)
    dec_dim: int = 128  # TransUNet base channels; fused features have 2 * dec_dim (paper 128)
    dec_mult: tuple = (1, 1, 2, 2)  # TransUNet channel multipliers, 4 levels (paper 1, 1, 2, 2)
    bot_layers: int = 6  # bottleneck transformer layers at 1/8 mask size (paper 6)
    dropout: float = 0.1  # encoder transformer dropout (paper 0.1; decoder 0 as paper)
    normalize_input: bool = True  # ImageNet mean/std before the ResNet (paper False: raw [0, 1])
    thing_classes: tuple | None = None  # if set, instance 0 on other classes at inference (paper None)
    split_min_cells: int = 0  # inference: min cells of a segment's part apart to get a fresh id (split_parts), paper 0

    def __post_init__(self):
        self.backbone_blocks = tuple(self.backbone_blocks)
        self.dec_mult = tuple(self.dec_mult)
        self.thing_classes = None if self.thing_classes is None else tuple(self.thing_classes)
        if self.cond not in ("none", "mask", "mask+diff"):
            raise ValueError(f"Pix2SeqDConfig: cond must be 'none', 'mask' or 'mask+diff', got {self.cond!r}")
        if self.dropped_ids not in ("random", "x_order"):
            raise ValueError(f"Pix2SeqDConfig: dropped_ids must be 'random' or 'x_order', got {self.dropped_ids!r}")
        if self.num_cond_frames not in (1, 2):
            raise ValueError(f"Pix2SeqDConfig: num_cond_frames must be 1 or 2, got {self.num_cond_frames}")
        if not 2 <= self.max_instances <= 2 ** self.n_bits or self.num_classes + 1 > 2 ** self.n_bits:
            raise ValueError(f"Pix2SeqDConfig: need max_instances in [2, 2^n_bits] and num_classes < 2^n_bits, got "
                             f"{self.max_instances}, {self.num_classes}, n_bits={self.n_bits}")
        if self.width % 64 or len(self.dec_mult) != 4 or len(self.backbone_blocks) != 3:
            raise ValueError("Pix2SeqDConfig: width must be a multiple of 64, dec_mult have 4 entries and "
                             f"backbone_blocks 3, got {self.width}, {self.dec_mult}, {self.backbone_blocks}")


PRESETS = {
    "paper": dict(backbone_width=64, backbone_blocks=(3, 4, 6), enc_layers=12, width=512, dec_dim=128,
                  dec_mult=(1, 1, 2, 2), bot_layers=6, dropout=0.1),
    # Same module names and code paths; narrow ResNet (16 wide, one block per layer), one transformer layer each.
    "tiny": dict(backbone_width=16, backbone_blocks=(1, 1, 1), enc_layers=1, width=64, dec_dim=32,
                 dec_mult=(1, 1, 2, 2), bot_layers=1, dropout=0.0,
                 frame_dropout=0.5, dropped_ids="x_order",  # from scratch, no image model: docstring, "differences"
                 n_bits=6, max_instances=64,  # a world of few objects: 2 x 64 logits, not 2 x 256 ("differences")
                 split_min_cells=4),  # one id on two objects apart: split (docstring, "differences")
}


# -----------------------------------------------------------------------------
# Small pure functions

def sincos_2d(h, w, dim, device=None):
    """ints h, w, dim (multiple of 4) -> (h*w, dim) float32 2-D sin-cos positions: [sin y, cos y, sin x, cos x]."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, device=device) / (dim // 4))  # (dim/4,)
    y, x = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    y = y.flatten()[:, None] * omega  # (h*w, dim/4)
    x = x.flatten()[:, None] * omega  # (h*w, dim/4)
    return torch.cat([y.sin(), y.cos(), x.sin(), x.cos()], 1)


def gamma_embedding(gamma, dim):
    """(B,) gamma -> (B, dim) sinusoid of gamma * TIME_SCALING: sin terms then cos terms (not interleaved)."""
    freqs = torch.exp(-math.log(10000) * torch.arange(dim // 2, device=gamma.device) / (dim // 2))
    arg = gamma.float()[:, None] * TIME_SCALING * freqs  # (B, dim/2)
    return torch.cat([arg.sin(), arg.cos()], 1)


def frame_difference(cur, prev):
    """(B, 3, H, W) current and previous frames in [0, 1] -> (B, 3, H/2, W/2) I_t - I_{t-1}, 2x2 average."""
    return F.avg_pool2d(cur - prev, 2)


def condition_input(cond_maps, diff, cond, n_bits, b):
    """(B, Tc, 2, h, w) int64 (class + 1, id) maps oldest first, (B, 3, h, w) diff -> (B, C, h, w) decoder input.

    C = Tc * 2 * n_bits for 'mask' (clean +-b bits, frame-major: frame j's bits at j * 2 * n_bits), plus the 3
    difference channels for 'mask+diff', and 0 for 'none'. An all-zero map (void) encodes to all -b."""
    if cond == "none":
        return diff.new_zeros(diff.shape[0], 0, *diff.shape[2:]).float()
    bits = bd.encode(cond_maps.flatten(1, 2), n_bits, b)  # (B, Tc*2*n_bits, h, w)
    return torch.cat([bits, diff.float()], 1) if cond == "mask+diff" else bits


def permute_ids(instance, max_instances, generator=None, id_range=0):
    """(B, T, h, w) int64 ids -> same, the n ids of a clip mapped to n distinct random ids in 1..max(n, id_range);
    0 -> 0. id_range 0: a random permutation of 1..n.

    Official 'shuffle' order: one permutation for all frames of a training clip, so copying ids from the
    conditioning masks stays learnable while which id a new object gets is random. With 1..n, id 1 is in every
    clip and high ids are rare; a wider range removes that skew. No host sync: presence table of size ID_CAP,
    rank by cumsum, the first n of a random order of 1..max(n, id_range) by argsort of random keys."""
    B = instance.shape[0]
    flat = instance.flatten(1).clamp(0, ID_CAP - 1)  # (B, T*h*w)
    present = torch.zeros(B, ID_CAP, dtype=torch.bool, device=instance.device).scatter_(1, flat, True)
    present[:, 0] = True
    rank = present.long().cumsum(1) - 1  # (B, ID_CAP): compact id of each present raw id, 0 -> 0
    n = rank[:, -1]  # (B,) nonzero ids per clip
    _require(n < max_instances, f"pix2seq_d: a clip has more than {max_instances - 1} instance ids")
    slots = torch.arange(max_instances - 1, device=instance.device)
    keys = torch.rand(B, max_instances - 1, generator=generator, device=instance.device)
    n_range = n.clamp(min=min(id_range, max_instances - 1))  # (B,) ids drawn from 1..n_range
    keys = keys.masked_fill(slots >= n_range[:, None], 2.0)  # slots out of range sort last
    lut = torch.cat([flat.new_zeros(B, 1), keys.argsort(1) + 1], 1)  # (B, max_instances): compact -> new id
    new = lut.gather(1, rank.gather(1, flat).clamp(max=max_instances - 1))
    return new.view_as(instance)


def ids_left_to_right(ids, max_instances):
    """(B, h, w) int64 ids < max_instances -> same, the n ids of each image renumbered 1..n in the order of their
    centroids' x (left to right; equal x in any order); 0 -> 0. No host sync: centroids by scatter_add, ranks by
    argsort."""
    B = ids.shape[0]
    flat = ids.flatten(1)
    x = torch.arange(ids.shape[-1], device=ids.device, dtype=torch.float32).expand_as(ids).flatten(1)
    count = torch.zeros(B, max_instances, device=ids.device).scatter_add_(1, flat, torch.ones_like(x))
    cx = torch.zeros(B, max_instances, device=ids.device).scatter_add_(1, flat, x) / count.clamp(min=1)
    cx = cx.masked_fill(count == 0, float("inf"))
    cx[:, 0] = -1.0  # id 0 first: it keeps 0
    lut = cx.argsort(1).argsort(1)  # (B, max_instances): rank of each id; present ids 1..n, absent ones after
    return lut.gather(1, flat).view_as(ids)


def pixel_weights(ids, max_instances, p):
    """(B, h, w) int64 ids -> (B, h, w) float32 weight (1 / (count(id) + 1))^p, mean 1 per image (id 0 counted)."""
    flat = ids.flatten(1)
    counts = torch.zeros(flat.shape[0], max_instances, device=ids.device).scatter_add_(
        1, flat, torch.ones_like(flat, dtype=torch.float32))  # (B, max_instances)
    w = (counts + 1).pow(-p).gather(1, flat)
    return (w / w.mean(1, keepdim=True)).view_as(ids)


def _require(ok, msg):
    """Raise ValueError(msg) unless the bool tensor `ok` is all true; on CUDA an async assert (no host sync)."""
    if ok.device.type == "cuda":
        torch._assert_async(ok.all(), msg)
    elif not bool(ok.all()):
        raise ValueError(msg)


def _gn(c):
    """GroupNorm with min(c/4, 32) groups, lowered until it divides c (official: min(c // 4, 32))."""
    g = max(min(c // 4, 32), 1)
    while c % g:
        g -= 1
    return nn.GroupNorm(g, c)


def _shrink_(conv, scale=1e-3):
    """Scale a layer's initial weights (near-zero residual / output init, official ~0) and zero its bias."""
    with torch.no_grad():
        conv.weight.mul_(scale)
        conv.bias.zero_()
    return conv


# -----------------------------------------------------------------------------
# Encoder: torchvision-named ResNet-50 C4, transformer, top-down merge

class Bottleneck(nn.Module):
    """torchvision Bottleneck (v1.5: stride s on the 3x3), same names. (B, Ci, H, W) -> (B, 4P, H/s, W/s), P planes."""

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))  # (B, P, H, W)
        out = self.relu(self.bn2(self.conv2(out)))  # (B, P, H/s, W/s)
        out = self.bn3(self.conv3(out))  # (B, 4P, H/s, W/s)
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))  # (B, 4P, H/s, W/s)


class ResNet50C4(nn.Module):
    """(B, 3, H, W) -> (C2 (B, 4w, H/4, W/4), C3 (B, 8w, H/8, W/8), C4 (B, 16w, H/16, W/16)); w = width.

    torchvision's resnet50 without layer4 / avgpool / fc: same module names and, with the defaults, the same
    shapes, so its state_dict loads directly (see load_backbone_weights) and gives identical features."""

    def __init__(self, width=64, blocks=(3, 4, 6)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers = []
        inplanes = width
        for i, n in enumerate(blocks):  # layer i + 1: n bottlenecks; the first widens (and, past layer1, strides)
            planes = width * 2 ** i
            first = Bottleneck(inplanes, planes, stride=1 if i == 0 else 2)
            layers.append(nn.Sequential(first, *[Bottleneck(planes * 4, planes) for _ in range(n - 1)]))
            inplanes = planes * 4
        self.layer1, self.layer2, self.layer3 = layers
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, w, H/4, W/4)
        c2 = self.layer1(x)  # (B, 4w, H/4, W/4)
        c3 = self.layer2(c2)  # (B, 8w, H/8, W/8)
        return c2, c3, self.layer3(c3)  # C4 (B, 16w, H/16, W/16)


class Attention(nn.Module):
    """Multi-head attention of x (B, N, D) over ctx (B, M, Dc) (self-attention when ctx is None)."""

    def __init__(self, dim, heads, ctx_dim=None):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(ctx_dim or dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, ctx=None):
        B, N, D = x.shape
        ctx = x if ctx is None else ctx  # (B, M, Dc)
        head_dim = D // self.heads
        q = self.q(x).view(B, N, self.heads, head_dim).transpose(1, 2)  # (B, heads, N, D/heads)
        k, v = self.kv(ctx).view(B, -1, 2, self.heads, head_dim).permute(2, 0, 3, 1, 4)  # (B, heads, M, D/heads) each
        y = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, D/heads)
        return self.proj(y.transpose(1, 2).reshape(B, N, D))  # (B, N, D)


class Block(nn.Module):
    """Pre-LN transformer layer: self-attention, optional cross-attention to ctx, GELU MLP (x4); (B, N, D) -> same."""

    def __init__(self, dim, heads, cross=False, dropout=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim) if cross else None
        self.xattn = Attention(dim, heads) if cross else None
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, ctx=None):
        x = x + self.drop(self.attn(self.norm1(x)))  # (B, N, D)
        if self.xattn is not None:
            x = x + self.drop(self.xattn(self.norm2(x), ctx))  # (B, N, D), ctx (B, M, D)
        return x + self.drop(self.mlp(self.norm3(x)))  # (B, N, D)


class UpMerge(nn.Module):
    """(B, C_lo, h, w), (B, C_hi, 2h, 2w) | None -> (B, out, 2h, 2w). Official UpsampleBlock: 1x1 conv + GN + SiLU
    on the low-res map, nearest x2, add the high-res map (if any), 3x3 conv + GN + SiLU."""

    def __init__(self, lo, hi, out):
        super().__init__()
        mid = hi or out  # channels of the sum: the high-res map's, or out without one
        self.conv1 = nn.Conv2d(lo, mid, 1)
        self.gn1 = _gn(mid)
        self.conv2 = nn.Conv2d(mid, out, 3, padding=1)
        self.gn2 = _gn(out)

    def forward(self, lo, hi=None):
        x = F.interpolate(F.silu(self.gn1(self.conv1(lo))), scale_factor=2.0, mode="nearest")  # (B, mid, 2h, 2w)
        return F.silu(self.gn2(self.conv2(x if hi is None else x + hi)))  # (B, out, 2h, 2w)


# -----------------------------------------------------------------------------
# Decoder: TransUNet with FiLM from gamma and a cross-attending bottleneck transformer

class ResBlock(nn.Module):
    """(B, Ci, h, w), (B, E) -> (B, Co, h, w).

    y = GN, SiLU, conv3x3, GN, FiLM(emb), SiLU, conv3x3 of x; out = (y + skip(x)) / sqrt 2."""

    def __init__(self, cin, cout, emb_dim):
        super().__init__()
        self.gn0 = _gn(cin)
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1)
        self.gn1 = _gn(cout)
        self.film = nn.Linear(emb_dim, 2 * cout)
        self.conv1 = _shrink_(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, 1)  # (B, Co, 1, 1) each
        y = self.conv0(F.silu(self.gn0(x)))  # (B, Co, h, w)
        y = self.conv1(F.silu(self.gn1(y) * (1 + scale) + shift))  # (B, Co, h, w)
        return (y + self.skip(x)) / math.sqrt(2)  # (B, Co, h, w)


class TransUNet(nn.Module):
    """(B, Cin, h, w) input, (B,) gamma, (B, N, D) tokens -> (B, Cout, h, w) logits; h, w divisible by 8.

    Level i = 0..3 runs at h/2^i x w/2^i with C_i = dim * mult[i] channels; the bottleneck is D = bot_dim wide."""

    def __init__(self, cin, dim, mult, bot_layers, bot_dim, cout):
        super().__init__()
        chans = [dim * m for m in mult]  # C_i
        emb = 4 * dim  # width of the gamma embedding
        self.dim = dim
        self.time_mlp = nn.Sequential(nn.Linear(dim, emb), nn.SiLU(), nn.Linear(emb, emb), nn.SiLU())
        self.conv_in = nn.Conv2d(cin, chans[0], 1)
        self.gn_in = _gn(chans[0])
        self.down = nn.ModuleList()
        self.down_conv = nn.ModuleList()
        skips = [chans[0]]  # channels of each lateral the down path keeps, in order; x is always the last one
        for i, c in enumerate(chans):  # one res block per level, stride-2 conv between levels
            self.down.append(ResBlock(skips[-1], c, emb))
            skips.append(c)
            if i < len(chans) - 1:
                self.down_conv.append(nn.Conv2d(c, c, 3, 2, 1))
                skips.append(c)
        self.bot_gn_in = _gn(chans[-1])
        self.bot_in = nn.Conv2d(chans[-1], bot_dim, 1)
        self.time_token = nn.Linear(emb, bot_dim)
        self.bottleneck = nn.ModuleList([Block(bot_dim, bot_dim // 64, cross=True) for _ in range(bot_layers)])
        self.bot_gn_out = _gn(bot_dim)
        self.bot_out = nn.Conv2d(bot_dim, bot_dim, 1)
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        c = bot_dim  # channels coming up
        for i in reversed(range(len(chans))):  # two res blocks per level, each eats one lateral
            co = chans[i]
            self.up.append(nn.ModuleList([ResBlock(c + skips.pop(), co, emb), ResBlock(co + skips.pop(), co, emb)]))
            c = co
            if i > 0:
                self.up_conv.append(nn.Conv2d(c, c, 3, padding=1))
        self.gn_out = _gn(c)
        self.conv_out = _shrink_(nn.Conv2d(c, cout, 1))

    def forward(self, x, gamma, tokens):
        emb = self.time_mlp(gamma_embedding(gamma, self.dim))  # (B, 4*dim)
        x = self.gn_in(self.conv_in(x))  # (B, C_0, h, w)
        laterals = [x]
        for i, block in enumerate(self.down):
            x = block(x, emb)  # (B, C_i, h/2^i, w/2^i)
            laterals.append(x)
            if i < len(self.down_conv):
                x = self.down_conv[i](x)  # (B, C_i, h/2^(i+1), w/2^(i+1))
                laterals.append(x)
        B, _, hb, wb = x.shape  # h/8, w/8
        z = self.bot_in(self.bot_gn_in(x)).flatten(2).transpose(1, 2)  # (B, hb*wb, D)
        z = z + sincos_2d(hb, wb, z.shape[-1], z.device).to(z.dtype)
        z = torch.cat([z, self.time_token(emb)[:, None]], 1)  # (B, hb*wb + 1, D): gamma as an extra token
        for block in self.bottleneck:
            z = block(z, tokens)  # (B, hb*wb + 1, D), cross-attending to the (B, N, D) tokens
        x = self.bot_out(self.bot_gn_out(z[:, :-1].transpose(1, 2).reshape(B, -1, hb, wb)))  # (B, D, hb, wb)
        for i, blocks in enumerate(self.up):  # back from level 3 to level 0
            for block in blocks:
                x = block(torch.cat([x, laterals.pop()], 1), emb)  # (B, C_(3-i), h/2^(3-i), w/2^(3-i))
            if i < len(self.up_conv):
                x = self.up_conv[i](F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (B, C, 2x the size)
        return self.conv_out(F.silu(self.gn_out(x)))  # (B, Cout, h, w)


# -----------------------------------------------------------------------------
# The model

class Pix2SeqD(nn.Module):
    """Encoder + TransUNet denoiser. forward(image, x_t, gamma, cond) -> {"logits": (B, 2*2^n_bits, h, w)}."""

    def __init__(self, cfg: Pix2SeqDConfig):
        super().__init__()
        self.cfg = cfg
        w, d = cfg.backbone_width, cfg.width
        self.backbone = ResNet50C4(w, cfg.backbone_blocks)
        self.enc_in = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(16 * w, d), nn.LayerNorm(d))
        self.encoder = nn.ModuleList([Block(d, d // 32, dropout=cfg.dropout) for _ in range(cfg.enc_layers)])
        self.enc_norm = nn.LayerNorm(d)
        fuse = 2 * cfg.dec_dim
        self.merge = nn.ModuleList([UpMerge(d, 8 * w, 8 * w), UpMerge(8 * w, 4 * w, 4 * w), UpMerge(4 * w, 0, fuse)])
        n_cond = 0 if cfg.cond == "none" else 2 * cfg.n_bits * cfg.num_cond_frames + 3 * (cfg.cond == "mask+diff")
        n_self = 2 * cfg.n_bits if cfg.self_cond else 0  # the self-conditioning slot: the last x0 estimate
        self.decoder = TransUNet(2 * cfg.n_bits + n_self + fuse + n_cond, cfg.dec_dim, cfg.dec_mult, cfg.bot_layers, d,
                                 2 * 2 ** cfg.n_bits)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def encode(self, image):
        """(B, 3, H, W) in [0, 1], H, W % 16 == 0 -> {"fused": (B, 2*dec_dim, H/2, W/2), "tokens": (B, N, D)}."""
        x = (image - self.mean) / self.std if self.cfg.normalize_input else image
        c2, c3, c4 = self.backbone(x)  # (B, 4w, H/4, W/4), (B, 8w, H/8, W/8), (B, 16w, H/16, W/16); w backbone width
        B, _, h16, w16 = c4.shape
        tokens = self.enc_in(c4.flatten(2).transpose(1, 2))  # (B, N = H/16*W/16, D)
        tokens = tokens + sincos_2d(h16, w16, tokens.shape[-1], tokens.device).to(tokens.dtype)
        for block in self.encoder:
            tokens = block(tokens)  # (B, N, D)
        tokens = self.enc_norm(tokens)
        x = self.merge[0](tokens.transpose(1, 2).reshape(B, -1, h16, w16), c3)  # (B, 8w, H/8, W/8)
        x = self.merge[1](x, c2)  # (B, 4w, H/4, W/4)
        fused = self.merge[2](x)  # (B, 2*dec_dim, H/2, W/2)
        return {"fused": fused, "tokens": tokens}

    def denoise(self, x_t, gamma, feats, cond, self_cond_x0=None):
        """(B, 2*n_bits, h, w) x_t, (B,) gamma, encode() output, (B, C, h, w) cond -> (B, 2*2^n_bits, h, w) logits.

        With cfg.self_cond, self_cond_x0 (B, 2*n_bits, h, w) is the last x0 estimate (None: zeros); else ignored."""
        inputs = [x_t, feats["fused"], cond]
        if self.cfg.self_cond:  # the slot goes right after x_t: (B, 2*n_bits, h, w)
            inputs.insert(1, torch.zeros_like(x_t) if self_cond_x0 is None else self_cond_x0.to(x_t.dtype))
        return self.decoder(torch.cat(inputs, 1), gamma, feats["tokens"])

    def forward(self, image, x_t, gamma, cond, self_cond_x0=None):
        """(B, 3, H, W), (B, 2*n_bits, H/2, W/2), (B,), (B, C, H/2, W/2), self_cond_x0 as in denoise
        -> {"logits": (B, 2*2^n_bits, H/2, W/2)}."""
        return {"logits": self.denoise(x_t, gamma, self.encode(image), cond, self_cond_x0)}


# The names train.py and infer.py look up in every model file (with PRESETS, compute_loss, predict_video).
Config = Pix2SeqDConfig
Model = Pix2SeqD


def load_backbone_weights(model, state_dict):
    """Pix2SeqD (or its backbone), torchvision ResNet-50 state_dict -> None; copies stem and layer1-3 in place.

    fc.* and layer4.* are ignored; any other missing or unexpected key, or a shape mismatch, is a ValueError
    naming them (e.g. the tiny preset's narrow backbone cannot take ImageNet weights)."""
    backbone = model.backbone if hasattr(model, "backbone") else model
    own = backbone.state_dict()
    given = {k: v for k, v in state_dict.items() if not k.startswith(("fc.", "layer4."))}
    missing = sorted(set(own) - set(given))
    unexpected = sorted(set(given) - set(own))
    shapes = [f"{k}: {tuple(given[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in given and given[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(f"pix2seq_d.load_backbone_weights: not a torchvision ResNet-50 state_dict for this backbone;"
                         f" missing {missing[:8]} ({len(missing)}), unexpected {unexpected[:8]} ({len(unexpected)}),"
                         f" wrong shapes {shapes[:8]} ({len(shapes)})")
    backbone.load_state_dict(given)


# -----------------------------------------------------------------------------
# Training loss

def _check_clip(images, semantic, instance, cfg):
    T = 1 + cfg.num_cond_frames
    if images.dim() != 5 or images.shape[1] != T or images.shape[2] != 3:
        raise ValueError(f"pix2seq_d: images must be (B, {T}, 3, H, W) for num_cond_frames={cfg.num_cond_frames}, "
                         f"got {tuple(images.shape)}")
    B, _, _, H, W = images.shape
    if H % SIZE_MULTIPLE or W % SIZE_MULTIPLE:
        raise ValueError(f"pix2seq_d: H and W must be multiples of {SIZE_MULTIPLE}, got {H}x{W}")
    for name, x in (("semantic", semantic), ("instance", instance)):
        if x.shape != (B, T, H, W) or x.dtype != torch.int64:
            raise ValueError(f"pix2seq_d: {name} must be int64 {(B, T, H, W)}, got {x.dtype} {tuple(x.shape)}")
    _require(((semantic >= 0) & (semantic < cfg.num_classes)) | (semantic == 255),
             f"pix2seq_d: semantic must be in [0, {cfg.num_classes}) or 255 (void)")
    _require((instance >= 0) & (instance < ID_CAP), f"pix2seq_d: instance ids must be in [0, {ID_CAP})")


def compute_loss(model, images, semantic, instance, generator=None, forward=None):
    """(B, T, 3, H, W) images in [0, 1], (B, T, H, W) int64 semantic / instance -> (loss, logs); T = 1 + Tc.

    Pix2Seq-D training step (Alg. 1 with the panoptic objective). The last frame is the target, the earlier
    ones give the conditioning (ground-truth masks and, for 'mask+diff', I_t - I_{t-1}):
      1. labels to mask size by nearest (every 2nd pixel); class + 1 (255 -> 0 = void); id 0 on void;
      2. ids compacted and permuted per clip (permute_ids), shared by all frames of the clip;
      3. each conditioning frame is dropped to all void with p = frame_dropout (t-1 dropped: zero difference);
         with dropped_ids="x_order", a clip whose every conditioning frame is dropped gets target ids 1..n left to
         right (ids_left_to_right) instead of its random ones;
      4. t ~ U(0, 1), gamma = cos schedule, x_t = sqrt(gamma) x0 + sqrt(1 - gamma) eps at mask size;
         with cfg.self_cond, half the clips also get the model's no-grad x0 estimate of their x_t (Bit Diffusion);
      5. loss = w_cls * CE(class logits) + w_ins * CE(id logits), per pixel weighted by pixel_weights.
    w_cls = w_ins = 0.5 gives the official mean over the two groups. Frame dropout, the permutation, t and
    eps come from `generator` (on the inputs' device). logs holds detached scalars. No host sync of its own:
    label checks are async asserts on CUDA, ValueErrors elsewhere (bitdiffusion's id checks too).
    `model` is the Pix2SeqD itself (its cfg is read); `forward` runs the network, default `model`: train.py passes
    its torch.compile / DDP wrapper of the same model."""
    cfg = model.cfg
    forward = model if forward is None else forward
    _check_clip(images, semantic, instance, cfg)
    B = images.shape[0]
    dev = images.device
    sem = semantic[..., ::2, ::2]  # (B, T, h, w), nearest
    sem = torch.where(sem == 255, 0, sem + 1)
    ins = permute_ids(instance[..., ::2, ::2] * (sem > 0), cfg.max_instances, generator, cfg.id_range)
    keep = torch.rand(B, cfg.num_cond_frames, generator=generator, device=dev) >= cfg.frame_dropout  # (B, Tc)
    cond_maps = torch.stack([sem[:, :-1], ins[:, :-1]], 2) * keep[:, :, None, None, None]  # (B, Tc, 2, h, w)
    diff = frame_difference(images[:, -1], images[:, -2]) * keep[:, -1, None, None, None]  # (B, 3, h, w)
    cond = condition_input(cond_maps, diff, cfg.cond, cfg.n_bits, cfg.bit_scale)
    target = torch.stack([sem[:, -1], ins[:, -1]], 1)  # (B, 2, h, w)
    if cfg.dropped_ids == "x_order":  # a clip with no condition at all (as frame 0): its ids numbered left to right
        dropped = ~keep.any(1)  # (B,)
        target[:, 1] = torch.where(dropped[:, None, None], ids_left_to_right(target[:, 1], cfg.max_instances),
                                   target[:, 1])
    x0 = bd.encode(target, cfg.n_bits, cfg.bit_scale)  # (B, 2*n_bits, h, w)
    gamma = bd.gamma_cosine(torch.rand(B, generator=generator, device=dev))
    x_t, _ = bd.q_sample(x0, gamma, generator)
    self_cond_x0 = None
    if cfg.self_cond:  # half the clips see a no-grad x0 estimate of their own x_t (Bit Diffusion), half zeros;
        # the estimate runs on the raw model (eager, training-mode BatchNorm as the official code), not on `forward`

        def estimate(x_t_sub, gamma_sub, zeros, image_sub, cond_sub):
            return model(image_sub, x_t_sub, gamma_sub, cond_sub, zeros)["logits"].float()
        self_cond_x0 = bd.self_cond_estimate(estimate, x_t, gamma, n_bits=cfg.n_bits, b=cfg.bit_scale,
                                             objective="softmax", generator=generator, extra=(images[:, -1], cond))
    logits = forward(images[:, -1], x_t, gamma, cond, self_cond_x0)["logits"].float()  # (B, 2*2^n_bits, h, w)
    weight = pixel_weights(target[:, 1], cfg.max_instances, cfg.mask_weight_p)
    n = 2 ** cfg.n_bits
    loss_cls = bd.softmax_xent_loss(logits[:, :n], target[:, :1], weight)
    loss_ins = bd.softmax_xent_loss(logits[:, n:], target[:, 1:], weight)
    w_cls = w_ins = 0.5
    loss = w_cls * loss_cls + w_ins * loss_ins
    return loss, {"loss_cls": loss_cls.detach(), "loss_ins": loss_ins.detach()}


# -----------------------------------------------------------------------------
# Streaming inference

def decode_logits(logits, cfg):
    """(2 * 2^n_bits, h, w) last-step logits -> (2, h, w) int64 (class + 1 in 1..K, id in 0..max_instances - 1).

    The arg-max of each group over the values a pixel may take: never void (0) or a class above K, never an id
    outside the permutation range (official: the bits of the last x0 estimate, where void wins on uncertain pixels
    and deeplab2's STQ counts it as an extra IoU-0 class on labelled ones)."""
    n = 2 ** cfg.n_bits
    cls = logits[1:cfg.num_classes + 1].argmax(0) + 1
    ids = logits[n:n + cfg.max_instances].argmax(0)
    return torch.stack([cls, ids])


def connected_parts(key):
    """(h, w) int64 segment keys, -1 outside segments -> (h, w) int64 part labels, 0 outside.

    Pixels of one key joined through 4-neighbours of that key form a part; each part is labelled by the largest
    (flat index + 1) among its pixels, spread one neighbour per sweep until nothing changes. Also in video_knet.py: each
    model file stands alone."""
    h, w = key.shape
    inside = key >= 0
    padded = F.pad(key, (1, 1, 1, 1), value=-1)  # (h + 2, w + 2)
    shifts = [(1, 2), (1, 0), (2, 1), (0, 1)]  # the right, left, lower and upper neighbour in the padded map
    same = [inside & (padded[y:y + h, x:x + w] == key) for y, x in shifts]  # (h, w) each: joined to that neighbour
    label = torch.where(inside, torch.arange(1, h * w + 1, device=key.device).view(h, w), 0)
    while True:
        padded_label = F.pad(label, (1, 1, 1, 1))
        new = label
        for (y, x), joined in zip(shifts, same):
            new = torch.where(joined, torch.maximum(new, padded_label[y:y + h, x:x + w]), new)
        if torch.equal(new, label):
            return label
        label = new


def split_parts(pred, history, thing_classes, max_instances, min_cells):
    """(2, h, w) int64 (class + 1, id) prediction, the conditioning history [(2, h, w)] -> the prediction with
    every part of a thing segment (class, id > 0) that does not touch the segment's largest part and covers
    >= min_cells cells given a fresh id: the smallest id in 1..max_instances - 1 used neither in this frame nor in
    the history (none left: the part keeps its id). Smaller parts keep theirs."""
    cls, ids = pred
    thing = torch.isin(cls - 1, torch.tensor(thing_classes, device=cls.device)) & (ids > 0)
    key = torch.where(thing, cls * max_instances + ids, -1)  # (h, w): one value per (class, id) segment
    part = connected_parts(key)
    used = set(ids.unique().tolist()).union(*(m[1].unique().tolist() for m in history))
    free = [i for i in range(1, max_instances) if i not in used]
    ids = ids.clone()
    for k in key[thing].unique().tolist():
        labels, cells = part[key == k].unique(return_counts=True)
        for i in cells.argsort(descending=True)[1:].tolist():  # every part but the largest
            if cells[i] >= min_cells and free:
                ids[part == labels[i]] = free.pop(0)
    return torch.stack([cls, ids])


class IdRemapper:
    """(h, w) int64 ids per frame -> same with fresh ids for ids that come back after leaving the window.

    Official vps_metrics post-processing: an id seen before but absent from the last `window` frames (the
    conditioning frames) is a new object the model gave a recycled id, so it gets a fresh id (here
    first_fresh, first_fresh + 1, ..., above every id the model can output); ids in the window keep their mapping."""

    def __init__(self, window, first_fresh):
        self.map = {0: 0}  # id from the model -> id returned
        self.recent = deque([set()] * window, maxlen=window)  # the ids of each of the last `window` frames
        self.next = first_fresh  # the next fresh id

    def __call__(self, ins):
        ids = torch.unique(ins).tolist()
        for i in ids:
            if i not in self.map:
                self.map[i] = i
            elif i != 0 and not any(i in r for r in self.recent):
                self.map[i] = self.next
                self.next += 1
        self.recent.append(set(ids))
        lut = torch.zeros(max(ids) + 1, dtype=torch.int64, device=ins.device)
        lut[torch.tensor(ids, device=ins.device)] = torch.tensor([self.map[i] for i in ids], device=ins.device)
        return lut[ins]


@torch.no_grad()
def predict_video(model, frames, generator=None, steps=None, td=None):
    """model, iterable of (3, H, W) float frames in [0, 1] -> iterator of (semantic (H, W), instance (H, W)) int64.

    Streaming (paper Sec. 3.3): per frame, pad to a multiple of 16 with 0.3, encode once, condition on the model's
    own last num_cond_frames predictions (all void before the video starts) and I_t - I_{t-1} (zero at frame 0),
    run DDIM (`steps`, `td`, default cfg's; with cfg.self_cond each step sees the last x0 estimate) on the
    decoder, decode the last step's logits without a void choice (decode_logits), give separate parts of a segment
    fresh ids (split_parts, with cfg.split_min_cells), upsample x2 nearest and crop.
    With cfg.thing_classes, instance 0 on stuff; ids that re-appear after leaving the conditioning window get fresh
    ids (IdRemapper). The caller sets model.eval(), as for any module at inference (infer.compile_for_inference
    passes a namespace of compiled encode / denoise with the same cfg)."""
    if getattr(model, "training", False):
        raise ValueError("pix2seq_d.predict_video: the model is in training mode; call model.eval() first")
    cfg = model.cfg
    steps = cfg.steps if steps is None else steps
    td = cfg.td if td is None else td
    remap = IdRemapper(cfg.num_cond_frames, cfg.max_instances)
    prev = history = None  # the previous padded frame (1, 3, Hp, Wp) and the model's last Tc (2, h, w) predictions
    size = None  # the video's frame size (H, W)
    for image in frames:
        if not torch.is_tensor(image):  # e.g. a numpy array from PIL
            raise TypeError(f"pix2seq_d.predict_video: frames must be float tensors (3, H, W) in [0, 1], got "
                            f"{type(image).__name__}")
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"pix2seq_d.predict_video: frames must be (3, H, W), got {tuple(image.shape)}")
        H, W = image.shape[-2:]
        pad = (0, -W % SIZE_MULTIPLE, 0, -H % SIZE_MULTIPLE)
        x = F.pad(image.float(), pad, value=PAD_VALUE)[None]  # (1, 3, Hp, Wp)
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        if prev is None:  # frame 0: all-void conditioning masks, zero difference
            prev = x
            size = (H, W)
            history = [x.new_zeros(2, h, w, dtype=torch.int64)] * cfg.num_cond_frames
        elif (H, W) != size:
            raise ValueError(f"pix2seq_d.predict_video: frame size changed from {size} to {(H, W)}")
        feats = model.encode(x)
        cond_maps = torch.stack(history)[None]  # (1, Tc, 2, h, w)
        cond = condition_input(cond_maps, frame_difference(x, prev), cfg.cond, cfg.n_bits, cfg.bit_scale)
        last = {}

        def denoise_fn(x_t, gamma, self_cond_x0):  # self_cond_x0: the last x0 estimate (None without self_cond)
            last["logits"] = model.denoise(x_t, gamma, feats, cond, self_cond_x0)  # (1, 2 * 2^n_bits, h, w)
            return last["logits"]

        # the x0 estimate ddim_sample returns is not used: decode_logits reads the last step's logits
        bd.ddim_sample(denoise_fn, (1, 2 * cfg.n_bits, h, w), steps=steps, td=td, b=cfg.bit_scale, n_bits=cfg.n_bits,
                       self_cond=cfg.self_cond, generator=generator, device=x.device)
        pred = decode_logits(last["logits"][0].float(), cfg)  # (2, h, w) model ids, fed back as the next condition
        if cfg.split_min_cells and cfg.thing_classes is not None:  # before the feedback: next frames carry the split
            pred = split_parts(pred, history, cfg.thing_classes, cfg.max_instances, cfg.split_min_cells)
        history = history[1:] + [pred]
        prev = x
        sem, ins = pred.repeat_interleave(2, 1).repeat_interleave(2, 2)[:, :H, :W]  # (H, W) each, nearest
        # model class c + 1 -> trainId c; 0 (void: never from decode_logits, possible from other decodings) -> 255
        sem = torch.where(sem == 0, 255, sem - 1)
        ins = ins * (sem != 255)
        if cfg.thing_classes is not None:
            ins = ins * torch.isin(sem, torch.tensor(cfg.thing_classes, device=sem.device))
        yield sem, remap(ins)
