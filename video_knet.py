"""Video K-Net (Li et al., CVPR 2022) on K-Net (Zhang et al., NeurIPS 2021): kernel-based video panoptic segmentation.

K-Net sec. 3.2-3.4 (kernel update, set losses) and Video K-Net sec. 3.2-3.3 (kernel linking, association
embedding, tracking), settings of the official R50 KITTI-STEP config (lxtGH/Video-K-Net, video_knet_s3_r50_rpn_1x_
kitti_step_sigmoid_stride2_mask_embed_link_ffn_joint_train): ResNet-50 -> FPN -> semantic FPN (stride 8) -> 100
thing + 17 stuff kernels -> 3 x [group feature assembling, adaptive gated update, self-attention, FFN, class head,
dynamic 1x1 mask conv] -> kernels linked to the previous frame's -> embedding -> bi-softmax tracker. Classes inside
the model: things first, then the other trainIds ascending (as in the original); inputs and outputs are trainIds.

Differences from the original (and why):
- Void and crowd pixels (thing class, instance 0) get weight 0 in the mask losses, mask costs and rank loss (the
  original: void is background, a crowd region a GT instance); the semantic CE keeps the crowd's class.
- Semantic CE averages over labelled pixels (the original divides by all pixels, ignored ones included, as the rank
  CE here does). Semantic targets are the labels at stride 2 (nearest); the original builds them from the soft
  stride-2 stuff masks and the matched thing masks (> 0), other pixels ignored.
- Set losses are summed over the B key (and the B reference) frames and divided by those frames' GT mask count,
  clamped >= 1, after an optional `reduce_counts` (DDP); the original averages BCE / dice over the local positives.
- Matching: the cost matrices of all frames and rounds are computed batched and copied to the host at once, then
  solved per frame (the original: one scipy call, and one sync, per image and round). Same assignments.
- Linking runs after stage 3, not inside it: the same maths (linked kernels only feed the embedding), and the
  link modules live only in the last stage, so every parameter is used.
- Both frames of a clip share one backbone pass (and BN statistics); data.py draws the reference offset (+-1, +-2)
  for every clip (the original fixes it once per key frame).
- From scratch (no loaded weights), train.py neither freezes the stem / layer1 / BN statistics nor scales the backbone
  LR by 0.25: all assume pretrained weights (with them, train.py follows the original); BN, not SyncBN.
- Tracker ids stay aligned with their masks when box NMS drops a detection (the original shifts ids onto the wrong
  masks); a dropped detection gets no id. Boxes come from the segment masks (no RPN semantic filter).
- Pixels whose arg-max candidate the merge rejects go to the best kept candidate, not road (0) as in the original
  (deeplab2's STQ scores predicted void on a labelled pixel as an extra IoU-0 class, so void would cost SQ).
- Mask logits are resized to the frame, then passed through the sigmoid (the original: x4, sigmoid, resize).
  predict_video(postprocess="original") follows the original in these last three points, for its weights' numbers.
- No Kernel Fusion (Swin configs only; not in the released R50 config).
- The tiny preset (CPU, 96x288 synthetic frames) uses mask_stride 4, the original SemanticFPNWrapper's
  upsample_times=3 (same weights): at stride 8 small persons vanish (README, oracle ceilings). Paper: stride 8.
- The tiny preset also adds sine positions in cells at the mask stride (mask_positions, no weights; paper: on P5
  only): alike persons side by side have alike features there, which a kernel's 1x1 mask conv cannot tell apart.
  Synthetic val, seeds 0-3 (README): STQ / AQ 0.589 / 0.411 against 0.570 / 0.389 (paired +0.019 / +0.022).
- The tiny preset turns the parts of a thing segment that do not touch into instances of their own at inference
  (split_min_px=16, split_apart): the tiny model often gives one kernel's mask to two objects apart with a high score,
  while the kernel on one of them scores low. Not in the original; off in the paper preset (an occluder cuts a
  KITTI-STEP car in parts). Synthetic val, the same weights, seeds 0-3 (README): STQ / AQ 0.648 / 0.499 against 0.603
  / 0.430 (paired +0.046 / +0.069).
- At inference the tiny preset shares the pixels among the kept segments by mask prob (merge_by_prob), a thing's prob
  counting 1.6x against stuff's (thing_prob_scale): the original's score x prob hands a low-scoring thing's border to
  stuff, and a thin person's upsampled logits peak below a stuff mask's. Same weights, paired STQ / AQ (README):
  +0.009 / +0.012, then +0.009 / +0.014 (+0.005 / +0.006 on twelve later checkpoints). Paper preset: the original's.

Shapes: B batch, T frames (2 in training: key, reference), C channels, H W image, h w features (stride 8 or 4),
N kernels (Nt thing + K - Kt stuff), K classes (Kt thing classes), G GT thing masks, D embedding width (= C);
in matching, Q kernels matched against G GT and P pixels of a mask (at stride 2 in the losses: H/2 * W/2).
"""
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class VideoKNetConfig:
    num_classes: int = 19  # semantic classes K (Cityscapes trainIds), paper 19
    thing_classes: tuple = (11, 13)  # trainIds with instances and track ids (person, car), paper (11, 13)
    num_thing_kernels: int = 100  # thing proposal kernels Nt, paper 100
    num_stages: int = 3  # kernel update stages, paper 3
    feat_channels: int = 256  # FPN / kernel width C, a multiple of 32 (GN groups, 8 heads); FFN 8C; paper 256
    backbone_width: int = 64  # ResNet stem width w; stage widths w..8w, outputs 4w..32w; paper 64 (ResNet-50)
    backbone_depth: tuple = (3, 4, 6, 3)  # bottlenecks per ResNet stage, paper (3, 4, 6, 3)
    mask_stride: int = 8  # stride of features and mask logits: 8 (upsample_times=2) or 4 (=3, same weights), paper 8
    mask_positions: bool = False  # sine positions in feature cells added at the mask stride (no weights), paper False
    w_cls: float = 2.0  # sigmoid focal classification loss and match cost, paper 2
    w_bce: float = 1.0  # mask BCE loss and mask match cost, paper 1
    w_dice: float = 4.0  # dice loss and dice match cost, paper 4
    w_rank: float = 0.1  # rank loss on the initial thing masks, paper 0.1
    w_seg: float = 1.0  # semantic CE on the initial semantic logits, paper 1
    w_track: float = 0.25  # multi-positive contrastive embedding loss, paper 0.25
    w_track_aux: float = 1.0  # cosine L2 embedding loss, paper 1
    score_thr: float = 0.25  # min thing score kept by the panoptic merge, paper 0.25
    overlap_thr: float = 0.6  # min (arg-max area / area of prob >= 0.5) of a kept segment, paper 0.6
    init_score_thr: float = 0.35  # min score that starts a new track, paper 0.35
    obj_score_thr: float = 0.3  # min score that continues a track, paper 0.3
    match_score_thr: float = 0.5  # min bi-softmax score of a match, paper 0.5
    memo_momentum: float = 0.8  # weight of the new embedding in a track's memory, paper 0.8
    split_min_px: int = 0  # inference: min pixels of a segment's part apart to be an instance (split_apart), paper 0
    merge_by_prob: bool = False  # inference: kept segments share the pixels by mask prob, not score x prob, paper False
    thing_prob_scale: float = 1.0  # inference, with merge_by_prob: things' mask probs x this against stuff's, paper 1


PAD_VALUE = (0.485, 0.456, 0.406)  # images are padded with the mean colour (pixel_mean), in training and inference
SIZE_MULTIPLE = 32  # image height and width: multiples of the backbone stride (training crops; predict_video pads)

PRESETS = {
    "paper": dict(num_thing_kernels=100, feat_channels=256, backbone_width=64, backbone_depth=(3, 4, 6, 3)),
    "tiny": dict(num_thing_kernels=16, feat_channels=64, backbone_width=16, backbone_depth=(1, 1, 1, 1), mask_stride=4,
                 mask_positions=True,  # small, alike neighbours (docstring, "differences")
                 split_min_px=16,  # one kernel's mask on two objects apart: split (docstring, "differences")
                 merge_by_prob=True,  # low-scoring things lose their borders to stuff (docstring, "differences")
                 thing_prob_scale=1.6),  # thin things' blurred probs lose to stuff (docstring, "differences")
}


# -----------------------------------------------------------------------------
# Backbone (torchvision's ResNet-50 v1.5, same names and maths), FPN, semantic FPN

class Bottleneck(nn.Module):
    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # v1.5: the stride is on the 3x3 conv
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None if stride == 1 and cin == 4 * planes else nn.Sequential(
            nn.Conv2d(cin, 4 * planes, 1, stride, bias=False), nn.BatchNorm2d(4 * planes))

    def forward(self, x):
        """(B, cin, H', W') -> (B, 4 planes, H'/stride, W'/stride)."""
        out = self.relu(self.bn1(self.conv1(x)))  # (B, planes, H', W')
        out = self.relu(self.bn2(self.conv2(out)))  # (B, planes, H'/stride, W'/stride)
        out = self.bn3(self.conv3(out))  # (B, 4 planes, H'/stride, W'/stride)
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
    """torchvision's ResNet-50 without avgpool / fc: ResNet50() has exactly its parameter names and shapes."""

    def __init__(self, width=64, depth=(3, 4, 6, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.out_channels = [4 * width * 2 ** i for i in range(4)]  # C2..C5
        cin = width
        for i, n in enumerate(depth):
            planes = width * 2 ** i
            blocks = [Bottleneck(cin if j == 0 else 4 * planes, planes, 2 if i and j == 0 else 1) for j in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = 4 * planes
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        """(B, 3, H, W) normalised -> [C2, C3, C4, C5] at strides 4, 8, 16, 32 with 4w, 8w, 16w, 32w channels."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, w, H/4, W/4)
        feats = [self.layer1(x)]  # C2: (B, 4w, H/4, W/4)
        for layer in (self.layer2, self.layer3, self.layer4):
            feats.append(layer(feats[-1]))  # C3, C4, C5: twice the channels, half the size each
        return feats


class FPN(nn.Module):
    """mmdet FPN: lateral 1x1, top-down nearest upsampling + add, 3x3 output convs; no norm, no activation."""

    def __init__(self, in_channels, c):
        super().__init__()
        self.lateral_convs = nn.ModuleList(nn.Conv2d(cin, c, 1) for cin in in_channels)
        self.fpn_convs = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for _ in in_channels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats):
        """[C2..C5] -> [P2..P5], each (B, C, H/s, W/s) at its stride s = 4, 8, 16, 32."""
        lat = [conv(f) for conv, f in zip(self.lateral_convs, feats)]  # (B, C, H/s, W/s) each
        for i in range(len(lat) - 1, 0, -1):  # top-down: P5 into P4, P4 into P3, P3 into P2
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[-2:], mode="nearest")
        return [conv(x) for conv, x in zip(self.fpn_convs, lat)]  # (B, C, H/s, W/s) each


def conv_gn(cin, cout, k, stride=1):
    """mmcv ConvModule with its `.conv` / `.gn` key names: conv (no bias, normal std 0.01) -> GN(32) -> ReLU."""
    conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
    nn.init.normal_(conv.weight, std=0.01)
    return nn.Sequential(OrderedDict(conv=conv, gn=nn.GroupNorm(32, cout), relu=nn.ReLU(inplace=True)))


def sine_position_encoding(x, temperature=10000.0, normalize=True):
    """(B, C, H, W) -> (B, C, H, W) mmdet SinePositionalEncoding(C/2, normalize, scale 2 pi), no padding.
    normalize=False: positions in cells 1..n, so the fastest channels repeat every 2 pi cells (neighbours differ)."""
    B, C, H, W = x.shape
    dim_t = temperature ** (2 * (torch.arange(C // 2, device=x.device) // 2) / (C // 2))

    def embed(n):  # (n, C/2), sin and cos interleaved
        pos = torch.arange(1, n + 1, device=x.device, dtype=torch.float32)[:, None]  # (n, 1) cells
        pos = (pos / (n + 1e-6) * 2 * math.pi if normalize else pos) / dim_t  # (n, C/2); normalised: in (0, 2 pi]
        return torch.stack([pos[:, 0::2].sin(), pos[:, 1::2].cos()], dim=2).flatten(1)

    pos = torch.cat([embed(H)[:, None].expand(H, W, -1), embed(W)[None].expand(H, W, -1)], dim=2)  # y first
    return pos.permute(2, 0, 1)[None].expand(B, C, H, W).to(x.dtype)


class SemanticFPN(nn.Module):
    """K-Net's SemanticFPNWrapper: P2 (3x3, stride 2), P3, P4 (up x2), P5 + sine encoding (up x4), summed at s8.

    stride=4 is the original's upsample_times=3: P2's conv keeps stride 1 and every other level upsamples once more,
    so the sum is at stride 4 with exactly the same parameters (names and shapes) as at stride 8."""

    def __init__(self, c, stride=8, positions=False):
        super().__init__()
        self.positions = positions
        if stride not in (4, 8):
            raise ValueError(f"SemanticFPN: stride must be 4 or 8, got {stride}")
        extra = stride == 4  # one more x2 upsampling per level
        levels = [nn.Sequential(OrderedDict(conv0=conv_gn(c, c, 3, stride=1 if extra else 2)))]
        for i in range(1, 4):
            layers = OrderedDict()
            for j in range(i):
                layers[f"conv{j}"] = conv_gn(c, c, 3)
                if j < i - 1 + extra:
                    layers[f"upsample{j}"] = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            levels.append(nn.Sequential(layers))
        self.convs_all_levels = nn.ModuleList(levels)
        self.conv_pred = conv_gn(c, c, 1)
        self.aux_convs = nn.ModuleList([conv_gn(c, c, 1)])

    def forward(self, feats):
        """[P2..P5] -> localization and semantic features, each (B, C, h, w) at the stride (8 or 4)."""
        feats = list(feats[:3]) + [feats[3] + sine_position_encoding(feats[3])]  # P5 gets the positions
        x = sum(level(f) for level, f in zip(self.convs_all_levels, feats))  # (B, C, h, w)
        if self.positions:  # not in the original: where each pixel is, to tell alike neighbours apart
            x = x + sine_position_encoding(x, normalize=False)
        return self.conv_pred(x), self.aux_convs[0](x)  # (B, C, h, w) each


# -----------------------------------------------------------------------------
# Kernels: initial kernels, update stages, linking, embedding head

class KernelHead(nn.Module):
    """Initial kernels: Nt learned thing kernels (+ features summed under their masks), stuff rows of conv_seg."""

    def __init__(self, c, num_thing_kernels, num_classes, num_thing_classes):
        super().__init__()
        self.kt = num_thing_classes
        self.loc_convs = nn.ModuleList([conv_gn(c, c, 1)])
        self.seg_convs = nn.ModuleList([conv_gn(c, c, 1)])
        self.init_kernels = nn.Conv2d(c, num_thing_kernels, 1, bias=False)
        self.conv_seg = nn.Conv2d(c, num_classes, 1)
        nn.init.normal_(self.init_kernels.weight, std=1.0)
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def forward(self, loc, sem):
        """(B, C, h, w) x2 -> kernels (B, N, C), mask logits (B, N, h, w), seg logits (B, K, h, w), x (B, C, h, w)."""
        loc = self.loc_convs[0](loc)  # (B, C, h, w)
        sem = self.seg_convs[0](sem)  # (B, C, h, w)
        masks = self.init_kernels(loc)  # (B, Nt, h, w)
        seg = self.conv_seg(sem)  # (B, K, h, w)
        x = loc + sem  # (B, C, h, w), the features of every stage
        assembled = torch.einsum("bnhw,bchw->bnc", (masks > 0).to(x.dtype), x)  # (B, Nt, C)
        things = self.init_kernels.weight.flatten(1) + assembled  # (B, Nt, C)
        stuff = self.conv_seg.weight[self.kt:].flatten(1).expand(x.shape[0], -1, -1)  # (B, K - Kt, C), no bias
        return torch.cat([things, stuff], 1), torch.cat([masks, seg[:, self.kt:]], 1), seg, x


class KernelUpdator(nn.Module):
    """Adaptive kernel update (K-Net eq. 4-7): gates from features F and kernels K, gated mix, then FC-LN-ReLU."""

    def __init__(self, c):
        super().__init__()
        self.dynamic_layer = nn.Linear(c, 2 * c)  # F -> p
        self.input_layer = nn.Linear(c, 2 * c)  # K -> q
        self.input_gate = nn.Linear(c, c)
        self.update_gate = nn.Linear(c, c)
        self.norm_in = nn.LayerNorm(c)
        self.norm_out = nn.LayerNorm(c)
        self.input_norm_in = nn.LayerNorm(c)
        self.input_norm_out = nn.LayerNorm(c)
        self.fc_layer = nn.Linear(c, c)
        self.fc_norm = nn.LayerNorm(c)

    def forward(self, feats, kernels):
        """(B, N, C) assembled features, (B, N, C) kernels -> (B, N, C) updated kernels."""
        p_in, p_out = self.dynamic_layer(feats).chunk(2, -1)  # (B, N, C) each
        q_in, q_out = self.input_layer(kernels).chunk(2, -1)  # (B, N, C) each
        gate = p_in * q_in  # (B, N, C)
        g_feat = self.norm_in(self.update_gate(gate)).sigmoid()  # G_F
        g_kern = self.input_norm_in(self.input_gate(gate)).sigmoid()  # G_K
        out = g_feat * self.norm_out(p_out) + g_kern * self.input_norm_out(q_out)  # (B, N, C)
        return F.relu(self.fc_norm(self.fc_layer(out)))


def ffn(c):
    return nn.Sequential(nn.Linear(c, 8 * c), nn.ReLU(inplace=True), nn.Linear(8 * c, c))


def fc_ln_relu(c):
    return nn.Sequential(nn.Linear(c, c, bias=False), nn.LayerNorm(c), nn.ReLU(inplace=True))


class KernelUpdateStage(nn.Module):
    """One K-Net update stage; with link=True also Video K-Net's kernel linking (cross-attention + FFN)."""

    def __init__(self, c, num_classes, link=False):
        super().__init__()
        self.feat_transform = nn.Conv2d(c, c, 1)
        self.kernel_update_conv = KernelUpdator(c)
        self.attention = nn.MultiheadAttention(c, 8, batch_first=True)
        self.attention_norm = nn.LayerNorm(c)
        self.ffn = ffn(c)
        self.ffn_norm = nn.LayerNorm(c)
        self.cls_fcs = fc_ln_relu(c)
        self.fc_cls = nn.Linear(c, num_classes)
        self.mask_fcs = fc_ln_relu(c)
        self.fc_mask = nn.Linear(c, c)
        if link:
            self.attention_previous = nn.MultiheadAttention(c, 8, batch_first=True)
            self.attention_previous_norm = nn.LayerNorm(c)
            self.link_ffn = ffn(c)
            self.link_ffn_norm = nn.LayerNorm(c)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        nn.init.constant_(self.fc_cls.bias, -math.log(99))  # prior probability 0.01

    def forward(self, x, kernels, masks):
        """(B, C, h, w), (B, N, C), (B, N, h, w) logits -> kernels (B, N, C), masks (B, N, h, w), cls (B, N, K)."""
        x = self.feat_transform(x)  # (B, C, h, w)
        feats = torch.einsum("bnhw,bchw->bnc", (masks > 0).to(x.dtype), x)  # (B, N, C) sum over p > 0.5, not a mean
        k = self.kernel_update_conv(feats, kernels)  # (B, N, C)
        k = self.attention_norm(k + self.attention(k, k, k, need_weights=False)[0])  # (B, N, C)
        k = self.ffn_norm(k + self.ffn(k))  # (B, N, C)
        masks = torch.einsum("bnc,bchw->bnhw", self.fc_mask(self.mask_fcs(k)), x)  # (B, N, h, w) dynamic 1x1 conv
        return k, masks, self.fc_cls(self.cls_fcs(k))

    def link(self, kernels, prev):
        """(B, N, C) kernels, (B, N, C) previous frame's kernels -> (B, N, C) linked kernels (tracking input)."""
        attended = self.attention_previous(kernels, prev, prev, need_weights=False)[0]  # (B, N, C)
        t = self.attention_previous_norm(kernels + attended)  # (B, N, C)
        return self.link_ffn_norm(t + self.link_ffn(t))


class VideoKNet(nn.Module):
    """Video K-Net: frames (B, 3, H, W) or clips (B, 2, 3, H, W) in [0, 1], H and W multiples of 32 -> raw outputs.

    The pipeline of the module docstring, features at h, w = H/s, W/s (s = mask_stride). A clip is flattened
    frame-major to B' = 2B (key frames, then reference frames) and the key frames' last kernels are linked to the
    reference frames' (not detached; nor in the original); a single frame is linked to prev_kernels when given.

    forward returns a dict: rpn_masks (B', N, h, w) and seg_logits (B', K, h, w) of the initial kernels; masks /
    cls, per-stage lists of (B', N, h, w) / (B', N, K) logits; kernels (B', N, C), the last un-linked kernels (the
    next frame's memory); embeds (B', N, D), the tracking embeddings."""

    def __init__(self, cfg):
        super().__init__()
        if cfg.feat_channels % 32 or not set(cfg.thing_classes) <= set(range(cfg.num_classes)):
            raise ValueError(f"video_knet: need feat_channels % 32 == 0 and thing_classes in range(num_classes), got "
                             f"{cfg.feat_channels}, {cfg.thing_classes}")
        self.cfg = cfg
        c = cfg.feat_channels
        self.backbone = ResNet50(cfg.backbone_width, cfg.backbone_depth)
        self.neck = FPN(self.backbone.out_channels, c)
        self.semantic_fpn = SemanticFPN(c, cfg.mask_stride, cfg.mask_positions)
        self.kernel_head = KernelHead(c, cfg.num_thing_kernels, cfg.num_classes, len(cfg.thing_classes))
        self.stages = nn.ModuleList(KernelUpdateStage(c, cfg.num_classes, link=i == cfg.num_stages - 1)
                                    for i in range(cfg.num_stages))
        self.embed_fcs = fc_ln_relu(c)
        self.fc_embed = nn.Linear(c, c)
        # QDTrack's embedding head: 2 fcs (xavier), its own fc_embed (normal, std 0.01)
        self.track_head = nn.Sequential(nn.Linear(c, c), nn.ReLU(True), nn.Linear(c, c), nn.ReLU(True), nn.Linear(c, c))
        nn.init.xavier_uniform_(self.track_head[0].weight)
        nn.init.xavier_uniform_(self.track_head[2].weight)
        nn.init.normal_(self.track_head[4].weight, std=0.01)
        for fc in self.track_head[::2]:
            nn.init.zeros_(fc.bias)
        order = list(cfg.thing_classes) + [k for k in range(cfg.num_classes) if k not in cfg.thing_classes]
        to_model = torch.full((256,), 255, dtype=torch.long)
        to_model[order] = torch.arange(cfg.num_classes)
        self.register_buffer("train_to_model", to_model, persistent=False)  # trainId -> model class, 255 void
        self.register_buffer("model_to_train", torch.tensor(order), persistent=False)
        self.register_buffer("pixel_mean", torch.tensor(PAD_VALUE).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1), persistent=False)

    def forward(self, images, prev_kernels=None):
        """(B, 3, H, W) [+ prev_kernels (B, N, C)] or (B, 2, 3, H, W) -> dict of raw outputs (see the class)."""
        clip = images.dim() == 5
        if clip and images.shape[1] != 2:
            raise ValueError(f"video_knet: a clip is (B, 2, 3, H, W) (key, reference frame), got {tuple(images.shape)}")
        if (images.dim() not in (4, 5) or images.shape[-3] != 3
                or images.shape[-2] % SIZE_MULTIPLE or images.shape[-1] % SIZE_MULTIPLE):
            raise ValueError(f"video_knet: expected images (B, 3, H, W) or (B, 2, 3, H, W) with H, W divisible by "
                             f"{SIZE_MULTIPLE}, got {tuple(images.shape)}")
        images = images.transpose(0, 1).flatten(0, 1) if clip else images  # (B', 3, H, W), key frames first
        feats = self.neck(self.backbone((images - self.pixel_mean) / self.pixel_std))  # P2..P5
        loc, sem = self.semantic_fpn(feats)  # (B', C, h, w) each
        kernels, masks, seg, x = self.kernel_head(loc, sem)  # (B', N, C), (B', N, h, w), (B', K, h, w), (B', C, h, w)
        out = dict(rpn_masks=masks, seg_logits=seg, masks=[], cls=[])
        for stage in self.stages:
            kernels, masks, cls = stage(x, kernels, masks)  # (B', N, C), (B', N, h, w), (B', N, K)
            out["masks"].append(masks)
            out["cls"].append(cls)
        track = kernels  # (B', N, C)
        if clip:
            b = len(kernels) // 2  # B: key frames, then reference frames
            track = torch.cat([self.stages[-1].link(kernels[:b], kernels[b:]), kernels[b:]])
        elif prev_kernels is not None:
            track = self.stages[-1].link(kernels, prev_kernels)
        out.update(kernels=kernels, embeds=self.track_head(self.fc_embed(self.embed_fcs(track))))  # (B', N, D)
        return out


# The names train.py and infer.py look up in every model file (with PRESETS, compute_loss, predict_video).
Config = VideoKNetConfig
Model = VideoKNet


# -----------------------------------------------------------------------------
# Matching

def hungarian(cost):
    """(R, C) finite cost -> (rows, cols) int64 numpy arrays of a min-cost one-to-one matching of size min(R, C).

    Shortest augmenting paths with row / column potentials (Jonker-Volgenant style, O(R^2 C)): rows are added one
    at a time, a Dijkstra sweep over reduced costs (>= 0 thanks to the potentials) finds the cheapest augmenting
    path. Tall matrices are solved transposed. Rows come back ascending, as from scipy's linear_sum_assignment."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2 or not np.isfinite(cost).all():
        raise ValueError(f"hungarian: expected a finite 2-D cost matrix, got shape {cost.shape}")
    flip = cost.shape[0] > cost.shape[1]
    cost = cost.T if flip else cost
    n, m = cost.shape
    u = np.zeros(n + 1)  # row potentials
    v = np.zeros(m + 1)  # column potentials; column 0 is a virtual start column
    match = np.zeros(m + 1, dtype=np.int64)  # 1-based row on column j, 0: free
    way = np.zeros(m + 1, dtype=np.int64)  # the previous column on the shortest path to column j
    for i in range(1, n + 1):
        match[0], j0 = i, 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while match[j0] != 0:  # grow the shortest-path tree until it reaches a free column
            used[j0] = True
            reduced = cost[match[j0] - 1] - u[match[j0]] - v[1:]
            better = ~used[1:] & (reduced < minv[1:])
            minv[1:][better] = reduced[better]
            way[1:][better] = j0
            j0 = int(np.argmin(np.where(used[1:], np.inf, minv[1:]))) + 1
            delta = minv[j0]
            u[match[used]] += delta
            v[used] -= delta
            minv[~used] -= delta
        while j0:  # augment along the path
            match[j0], j0 = match[way[j0]], way[j0]
    cols = np.nonzero(match[1:])[0]
    rows, cols = (cols, match[1:][cols] - 1) if flip else (match[1:][cols] - 1, cols)
    order = np.argsort(rows)
    return rows[order], cols[order]


@torch.no_grad()
@torch.autocast("cuda", enabled=False)  # matching in fp32, also under the caller's autocast
def match_cost(mask_logits, cls_logits, targets, labels, weights, w_cls=2.0, w_mask=1.0, w_dice=4.0):
    """(..., Q, h, w) logits, (..., Q, Kt) logits or None, (..., G, h, w) soft targets, (..., G) int64, (..., h, w)
    weights -> (..., Q, G) cost; the leading dims (e.g. frames) are independent problems.

    mmdet's FocalLossCost (alpha 0.25, gamma 2) + MaskCost (minus soft pixel accuracy, p clamped >= 0.01) +
    DiceCost (p clamped >= 0.001, eps 1e-3); pixels with weight 0 (void, crowd) are left out. Memory: a few
    (..., Q, P) float32 temporaries (for 16 frames of 100 kernels at 192x624, about 0.8 GB each)."""
    w = weights.flatten(-2).float().unsqueeze(-2)  # (..., 1, P)
    t = targets.flatten(-2).float()  # (..., G, P)
    p = mask_logits.flatten(-2).float().sigmoid()  # (..., Q, P)
    pm = p.clamp(min=0.01) * w  # MaskCost's p
    pd = p.clamp(min=0.001) * w  # DiceCost's p
    td = t * w
    cost = -w_mask * (pm @ t.mT + (w - pm) @ (1 - t).mT) / w.sum(-1, keepdim=True).clamp(min=1)  # (..., Q, G)
    dice_den = (pd * pd).sum(-1)[..., :, None] + (td * td).sum(-1)[..., None, :] + 2e-3  # (..., Q, G)
    cost = cost - w_dice * 2 * (pd @ td.mT) / dice_den
    if cls_logits is not None:
        q = cls_logits.float().sigmoid()  # (..., Q, Kt)
        q = q.gather(-1, labels.unsqueeze(-2).expand(*q.shape[:-1], labels.shape[-1]))  # (..., Q, G): each GT's class
        cost = cost + w_cls * (-(q + 1e-12).log() * 0.25 * (1 - q) ** 2 + (1 - q + 1e-12).log() * 0.75 * q ** 2)
    return cost


def assign(costs, sizes):
    """(R, nf, Q, G) costs of R matching rounds over nf frames, GT padded to G (frame f has sizes[f]) -> per round a
    (3, P) int64 numpy array of (frame, kernel, GT) pairs, each frame's min-cost matching in frame order, and the
    (nf + 1,) starts of each frame's pairs. GT indices are frame-local.

    One host copy for every round and frame (the original syncs once per image for scipy), then Hungarian per frame."""
    R, nf, Q, G = costs.shape
    if len(sizes) != nf or max(sizes, default=0) > G:
        raise ValueError(f"assign: GT counts {sizes} do not fit {nf} frames of at most {G} GT")
    out, starts = [], []
    for c in costs.detach().cpu().numpy():  # one round: every frame
        frames = [hungarian(c[f, :, :n]) for f, n in enumerate(sizes)]  # G = 0 gives empty matchings
        out.append(np.concatenate([np.stack([np.full(len(k), f), k, gt]) for f, (k, gt) in enumerate(frames)], 1))
        starts.append(np.cumsum([0] + [len(k) for k, _ in frames]))
    return out, starts


# -----------------------------------------------------------------------------
# Losses

def frame_targets(semantic, instance, train_to_model, num_thing_classes, num_classes):
    """(nf, H, W) int64 trainIds (255 void), (nf, H, W) int64 instance ids (0: none or crowd; < 2**32) -> dict of the
    frames' targets at stride 2. G is the most GT things in a frame; slots past a frame's count are padding.

    thing (nf, G, H/2, W/2) soft masks (2x2 means = the original's bilinear x0.5; zero in padding), thing_label
    (nf, G) model classes (0 in padding), thing_id (nf, G) keys class * 2**32 + id that match across frames (-1 in
    padding), sizes: the frames' GT counts (host ints); stuff (nf, K - Kt, H/2, W/2) soft masks and stuff_present
    (nf, K - Kt) bool, K - Kt = num_classes - num_thing_classes; valid (nf, H/2, W/2) soft weights (0 on void, crowd);
    label (nf, H/2, W/2) nearest classes, 255 ignore. All frames at once: one unique, not one per frame."""
    nf, H, W = semantic.shape
    lab = train_to_model[semantic.clamp(0, 255)]  # (nf, H, W) model classes, 255 void
    is_thing = lab < num_thing_classes
    key = torch.where(is_thing & (instance > 0), lab * 2 ** 32 + instance, -1)  # (nf, H, W) -1 off things and crowd
    thing_px = key >= 0  # (nf, H, W) pixels of GT thing instances
    frame = torch.arange(nf, device=key.device)[:, None, None].expand_as(key)[thing_px]  # the frame of each
    found = torch.unique(frame * 2 ** 40 + key[thing_px])  # (M,) frame * 2**40 + key, sorted
    found_frame = found // 2 ** 40  # (M,)
    sizes = torch.bincount(found_frame, minlength=nf)  # (nf,) GT per frame
    first = sizes.cumsum(0) - sizes  # (nf,) where each frame's GT start in `found`
    slot = torch.arange(len(found), device=key.device) - first[found_frame]  # (M,) index within its frame
    sizes = sizes.tolist()
    ids = torch.full((nf, max(sizes, default=0)), -1, dtype=torch.long, device=key.device)  # (nf, G)
    ids[found_frame, slot] = found % 2 ** 40

    def pool(m):  # (nf, n, H, W) bool -> (nf, n, H/2, W/2) float 2x2 means (n may be 0)
        return m.float().unflatten(2, (H // 2, 2)).unflatten(4, (W // 2, 2)).mean((3, 5))

    stuff = lab[:, None] == torch.arange(num_thing_classes, num_classes, device=lab.device)[:, None, None]
    valid = (lab != 255) & ~(is_thing & (instance == 0))  # (nf, H, W)
    thing = key[:, None] == torch.where(ids < 0, -2, ids)[..., None, None]  # (nf, G, H, W); -2 matches no pixel
    return dict(thing=pool(thing), thing_label=ids.clamp(min=0) // 2 ** 32, thing_id=ids, sizes=sizes,
                stuff=pool(stuff), stuff_present=stuff.flatten(2).any(2), label=lab[:, ::2, ::2],
                valid=pool(valid[:, None])[:, 0])


def sigmoid_focal(logits, targets, alpha=0.25, gamma=2.0):
    """(..., K) logits, (..., K) {0, 1} targets -> (..., K) elementwise sigmoid focal loss (RetinaNet)."""
    p = logits.sigmoid()
    pt = p * targets + (1 - p) * (1 - targets)
    a = alpha * targets + (1 - alpha) * (1 - targets)
    return a * (1 - pt) ** gamma * F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


def mask_losses(logits, targets, weights, eps=1e-3):
    """(M, h, w) logits, soft targets, pixel weights -> weighted mean BCE (M,), dice (M,) = mmdet 2.18's 1 - 2 sum(pt)
    / (sum(p^2) + sum(t^2) + 2 eps) on p, t times the weights."""
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * weights
    p = (logits.sigmoid() * weights).flatten(1)  # (M, h*w)
    t = (targets * weights).flatten(1)
    return (bce.flatten(1).sum(1) / weights.flatten(1).sum(1).clamp(min=1e-6),
            1 - 2 * (p * t).sum(1) / ((p * p).sum(1) + (t * t).sum(1) + 2 * eps))


def multi_pos_ce(sim, pos):
    """(R, S) similarities, (R, S) bool positives -> mean over rows with a positive of log(1 + sum exp(s- - s+))."""
    diff = sim[:, None, :] - sim[:, :, None]  # [r, i, j] = s_rj - s_ri
    diff = diff.masked_fill(~(pos[:, :, None] & ~pos[:, None, :]), float("-inf")).flatten(1)  # i pos., j neg.
    return torch.logsumexp(F.pad(diff, (0, 1)), dim=1)[pos.any(1)].mean()  # the padded 0 is the "1 +"


def cosine_l2(cos, pos, neg_margin=0.1, neg_pos_ub=3):
    """(R, S) cosines, (R, S) bool (>= 1 positive) -> mean of (s - t)^2 over positives and the hardest <= 3 x
    #positives negatives, s = clamp(cos - margin on negatives, 0, 1) (QDTrack's L2Loss with hard mining)."""
    err = (torch.where(pos, cos, cos - neg_margin).clamp(0, 1) - pos.float()).flatten() ** 2
    neg = (~pos).flatten().nonzero().squeeze(1)
    keep = pos.flatten().clone()
    keep[neg[err.detach()[neg].topk(min(len(neg), neg_pos_ub * int(pos.sum()))).indices]] = True
    return err[keep].mean()


def per_frame(v, frame, nf):
    """(M,) values, (M,) int64 frame of each -> (nf,) sums per frame."""
    return v.new_zeros(nf).index_add(0, frame, v)


def stage_losses(masks, cls, batch, idx, present, nt, kt, resize=None):
    """All frames, one stage: (nf, N, h, w) mask logits, (nf, N, K) logits, batched targets (frame_targets), matched
    (frame, kernel, GT) idx (3, P), present stuff (frame, class) (2, Ps) -> per frame (focal, BCE, dice), each (nf,)
    summed over the frame's positives (matched thing kernels and the kernels of present stuff classes). resize:
    (1, M, h, w) -> the targets' size, run on the positives only (as resizing all N first, without their gradient)."""
    fr, k, g = idx
    sf, sj = present
    rows_f = torch.cat([fr, sf])  # (P + Ps,) frame and kernel of every positive
    rows_k = torch.cat([k, nt + sj])
    tmask = torch.cat([batch["thing"][fr, g], batch["stuff"][sf, sj]])  # (P + Ps, h, w)
    nf, n, K = cls.shape
    target = torch.zeros_like(cls)
    weight = torch.zeros_like(cls)
    target[fr, k, batch["thing_label"][fr, g]] = 1
    target[sf, nt + sj, kt + sj] = 1
    weight[:, :nt, :kt] = 1  # thing kernels learn the thing classes; stuff kernels only their own class' presence
    weight[:, torch.arange(nt, n), torch.arange(kt, K)] = 1
    logits = masks[rows_f, rows_k]  # (P + Ps, h, w)
    logits = resize(logits[None])[0] if resize else logits  # (P + Ps, h', w'): the targets' size
    bce, dice = mask_losses(logits, tmask, batch["valid"][rows_f])
    focal = (sigmoid_focal(cls, target) * weight).sum((1, 2))
    return focal, per_frame(bce, rows_f, nf), per_frame(dice, rows_f, nf)


def rank_target(targets, pairs):
    """The frames' targets (frame_targets), matched (frame, kernel, GT) pairs (3, P) int64 on their device -> (nf, h,
    w) int64: the highest matched kernel whose GT mask covers a pixel (soft mask > 0), -1 where none does. The original
    writes the matched masks in ascending kernel order, so there too the last, i.e. highest, wins."""
    thing = targets["thing"]  # (nf, G, h, w)
    nf, G, h, w = thing.shape
    kernel_of = torch.full((nf, G), -1, dtype=torch.long, device=thing.device)  # -1: GT not matched
    kernel_of[pairs[0], pairs[2]] = pairs[1]
    covered = torch.where(thing > 0, kernel_of[..., None, None], -1)  # (nf, G, h, w)
    none = covered.new_full((nf, 1, h, w), -1)  # so that a step without GT things (G = 0) works too
    return torch.cat([none, covered], 1).amax(1)  # (nf, h, w)


@torch.autocast("cuda", enabled=False)  # dot products in fp32
def track_losses(embeds, targets, matches, B):
    """(2B, N, D) embeddings, the 2B frames' targets (frame_targets), last-stage matches per frame -> (multi-positive
    CE, cosine L2), averaged over clips."""
    ce = l2 = embeds.sum() * 0  # keeps the embedding path in the graph with no instance (DDP needs every gradient)
    for b in range(B):
        kk, gk = matches[b]  # key frame: kernels, GT
        kr, gr = matches[B + b]  # reference frame
        pos = targets["thing_id"][b, gk][:, None] == targets["thing_id"][B + b, gr][None]  # (Pk, Pr) same instance
        if pos.any():
            ek = embeds[b, kk]  # (Pk, D) key (linked) kernels' embeddings
            er = embeds[B + b, kr]  # (Pr, D) reference kernels' embeddings
            ce = ce + multi_pos_ce(ek @ er.T, pos)
            l2 = l2 + cosine_l2(F.normalize(ek, dim=1) @ F.normalize(er, dim=1).T, pos)
    return ce / B, l2 / B


def compute_loss(model, images, semantic, instance, generator=None, reduce_counts=None, forward=None):
    """(B, 2, 3, H, W) [0, 1], (B, 2, H, W) int64 trainIds, (B, 2, H, W) int64 ids -> (loss, dict of detached scalars).

    Both frames (key, reference) at full weight; masks compared at stride 2 (logits upsampled x4, or x2 at
    mask_stride 4) to soft targets:
    - initial kernels: BCE (w_bce) + dice (w_dice) on Hungarian-matched thing kernels, rank CE (w_rank) over the Nt
      thing logits per pixel (target: the matched kernel whose GT mask covers it), semantic CE (w_seg);
    - each stage: focal (w_cls) + BCE + dice; stuff kernel j stands for stuff class j. The original's quirk is kept:
      stage s is matched on the detached outputs of stage s - 1 (stage 1 on the initial masks, no class cost);
    - tracking: a fresh match on each frame's last stage picks one kernel per GT instance; key (linked) and reference
      embeddings of one instance are positives: multi-positive CE on dot products (w_track) + L2 on cosines with
      hard negatives (w_track_aux). Set losses of the B key (reference) frames are divided by their GT mask count
      (things; things + present stuff), clamped >= 1 after `reduce_counts` (optional, on the (2, 2) counts, e.g. a
      DDP all-reduce mean).
    `generator` is unused (the loss has no randomness). `model` is the VideoKNet itself (its cfg and class map are
    read); `forward` runs the network, default `model`: train.py passes its torch.compile / DDP wrapper of it."""
    cfg = model.cfg
    if images.dim() != 5 or images.shape[1] != 2 or not semantic.shape == instance.shape == images[:, :, 0].shape:
        raise ValueError(f"compute_loss: expected images (B, 2, 3, H, W) and labels (B, 2, H, W), got "
                         f"{tuple(images.shape)}, {tuple(semantic.shape)}, {tuple(instance.shape)}")
    # a host sync, as the matching's (which copies its costs to the host anyway)
    bad_instance = (instance < 0) | (instance >= 2 ** 32)  # ids are keyed as class * 2**32 + id in frame_targets
    if bool((((semantic < 0) | (semantic >= cfg.num_classes)) & (semantic != 255)).any() | bad_instance.any()):
        raise ValueError(f"compute_loss: semantic must be in [0, {cfg.num_classes}) or 255 (void), instance in "
                         f"[0, 2**32)")
    B, nt, kt, S = images.shape[0], cfg.num_thing_kernels, len(cfg.thing_classes), cfg.num_stages
    out = (model if forward is None else forward)(images)

    def to_stride2(logits):
        """(2B, M, h, w) logits at the mask stride -> (2B, M, H/2, W/2) float32, where the targets live."""
        return F.interpolate(logits.float(), scale_factor=cfg.mask_stride // 2, mode="bilinear", align_corners=False)

    sem, ins = (t.transpose(0, 1).flatten(0, 1) for t in (semantic, instance))  # (2B, H, W), key frames first
    batch = frame_targets(sem, ins, model.train_to_model, kt, cfg.num_classes)
    rpn = to_stride2(out["rpn_masks"][:, :nt])  # (2B, Nt, H/2, W/2)
    seg = to_stride2(out["seg_logits"])  # (2B, K, H/2, W/2)
    masks = out["masks"]  # S x (2B, N, h, w): only the positives are resized to stride 2, in stage_losses
    cls = [c.float() for c in out["cls"]]  # S x (2B, N, K)
    # round s matches the outputs of stage s (round 0: the initial masks) and trains stage s + 1; round S: tracking
    with torch.no_grad():  # costs only choose the pairs
        to_match = [(rpn, None)] + [(to_stride2(m[:, :nt]), c[:, :nt, :kt]) for m, c in zip(masks, cls)]
        costs = torch.stack([match_cost(m, c, batch["thing"], batch["thing_label"], batch["valid"], cfg.w_cls,
                                        cfg.w_bce, cfg.w_dice) for m, c in to_match])  # (S + 1, 2B, Nt, G)
    rounds, starts = assign(costs, batch["sizes"])  # all rounds and frames in one host copy, Hungarian per frame
    matches = torch.as_tensor(np.concatenate(rounds, 1), device=images.device).split([r.shape[1] for r in rounds], 1)
    last_pairs = matches[S][1:].split(np.diff(starts[S]).tolist(), 1)  # the same, on the last stage

    # set losses: summed per frame, divided by the GT mask count of the B key (or reference) frames
    n_thing = torch.tensor(batch["sizes"], dtype=torch.float32, device=images.device)
    counts = torch.stack([n_thing, n_thing + batch["stuff_present"].sum(1)], 1)  # (2B, [thing, all])
    counts = counts.view(2, B, 2).sum(1)  # (frame, [thing, all])
    counts = (reduce_counts(counts) if reduce_counts else counts).clamp(min=1)

    def normed(v, count):
        """(2B,) per-frame sums, (2,) key / reference counts -> sum over key, reference of (frames' sum / count)."""
        return (v.view(2, B).sum(1) / count).sum()

    losses = dict.fromkeys(("rpn_bce", "rpn_dice", "rank", "seg", "cls", "bce", "dice"), 0.0)
    f_idx, k_idx, gt_idx = matches[0]  # the initial kernels' matching
    bce, dice = mask_losses(rpn[f_idx, k_idx], batch["thing"][f_idx, gt_idx], batch["valid"][f_idx])  # (P,) each
    losses["rpn_bce"] = normed(per_frame(bce, f_idx, 2 * B), counts[:, 0])
    losses["rpn_dice"] = normed(per_frame(dice, f_idx, 2 * B), counts[:, 0])
    present = batch["stuff_present"].nonzero().T  # (2, Ps): frame, stuff class
    rank = rank_target(batch, matches[0])  # (2B, H/2, W/2)
    for s in range(S):
        per_stage = stage_losses(masks[s], cls[s], batch, matches[s], present, nt, kt, to_stride2)
        for key, v in zip(("cls", "bce", "dice"), per_stage):
            losses[key] += normed(v, counts[:, 1])
    for f in range(2):  # per-pixel CEs of the frame's B images: rank over all pixels, semantic over labelled
        fs = slice(f * B, (f + 1) * B)
        # the original's plain mean: pixels without a rank target (-1) count in the denominator
        losses["rank"] += F.cross_entropy(rpn[fs], rank[fs], ignore_index=-1, reduction="sum") / rank[fs].numel()
        label = batch["label"][fs]
        n_label = (label != 255).sum().clamp(min=1)
        losses["seg"] += F.cross_entropy(seg[fs], label, ignore_index=255, reduction="sum") / n_label
    losses["track"], losses["track_aux"] = track_losses(out["embeds"].float(), batch, last_pairs, B)
    loss = (cfg.w_bce * (losses["rpn_bce"] + losses["bce"]) + cfg.w_dice * (losses["rpn_dice"] + losses["dice"])
            + cfg.w_cls * losses["cls"] + cfg.w_rank * losses["rank"] + cfg.w_seg * losses["seg"]
            + cfg.w_track * losses["track"] + cfg.w_track_aux * losses["track_aux"])
    return loss, {k: v.detach() for k, v in losses.items()}


# -----------------------------------------------------------------------------
# Inference: panoptic merge, tracker, video loop

def panoptic_merge(probs, scores, num_thing_kernels, num_thing_classes, score_thr=0.25, overlap_thr=0.6, fill=True,
                   by_prob=False, thing_scale=1.0):
    """(N, H, W) mask probs, (N, K) class probs -> segments (H, W) int64 (-1 void), kernel, label, score (S,) each.

    K-Net's joint merge: thing candidates are the top-Nt (kernel, thing class) pairs, stuff kernel j is scored by
    its class Kt + j. Each pixel goes to the arg-max of score x prob. A candidate is kept if it is stuff or scores
    >= score_thr, and keeps >= overlap_thr of its (prob >= 0.5) area. fill: pixels of rejected candidates go to the
    kept candidate with the highest score x prob there, void only if none is kept; fill=False leaves them -1 (the
    original, which then paints them road). by_prob (not in the original): once the kept candidates are chosen, each
    pixel goes to the kept one of highest prob, not score x prob (a kept one left without pixels is dropped); with
    thing_scale, a thing's prob is multiplied by it there (> 1: things win more border pixels from stuff). Segments
    are ordered by descending score (decisions do not depend on the order)."""
    nt, kt, dev = num_thing_kernels, num_thing_classes, probs.device
    top_s, top_i = scores[:nt, :kt].flatten().topk(nt)
    kernel = torch.cat([top_i // kt, torch.arange(nt, len(scores), device=dev)])  # (N,): Nt thing pairs, then stuff
    label = torch.cat([top_i % kt, torch.arange(kt, scores.shape[1], device=dev)])
    score = torch.cat([top_s, scores[kernel[nt:], label[nt:]]])
    best = (score[:, None, None] * probs[kernel]).argmax(0)  # (H, W) candidate index
    area = torch.bincount(best.flatten(), minlength=len(score))  # arg-max pixels per candidate
    mask_area = (probs[kernel] >= 0.5).flatten(1).sum(1)  # pixels with prob >= 0.5 per candidate
    keep = (area > 0) & (mask_area > 0) & (area >= overlap_thr * mask_area) & ((label >= kt) | (score >= score_thr))
    keep = keep.nonzero().squeeze(1)
    keep = keep[score[keep].argsort(descending=True)]
    seg_index = torch.full_like(label, -1)  # candidate -> its segment (index into the returned kernel/label/score)
    seg_index[keep] = torch.arange(len(keep), device=dev)
    seg = seg_index[best]  # (H, W), -1 where the arg-max candidate was rejected
    if by_prob and len(keep):  # every pixel, rejected candidates' too, to the kept one of highest prob
        gain = torch.where(label[keep] < kt, thing_scale, 1.0)  # (S,)
        seg = (gain[:, None, None] * probs[kernel[keep]]).argmax(0)  # (H, W) segment index; ties to the higher score
        has_pixels = torch.bincount(seg.flatten(), minlength=len(keep)) > 0  # (S,)
        keep = keep[has_pixels]
        seg = (has_pixels.cumsum(0) - 1)[seg]  # renumbered without the empty ones
    elif fill and len(keep):  # those pixels go to their best kept candidate instead of void
        best_kept = keep[(score[keep, None, None] * probs[kernel[keep]]).argmax(0)]  # (H, W) candidate index
        seg = torch.where(seg < 0, seg_index[best_kept], seg)
    return seg, kernel[keep], label[keep], score[keep]


def box_iou(a, b):
    """(P, 4), (Q, 4) boxes x0 y0 x1 y1 -> (P, Q) IoU."""
    wh = (torch.min(a[:, None, 2:], b[None, :, 2:]) - torch.max(a[:, None, :2], b[None, :, :2])).clamp(min=0)
    inter = wh.prod(2)  # (P, Q)
    area_a = (a[:, 2:] - a[:, :2]).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).prod(1)
    return inter / (area_a[:, None] + area_b[None] - inter).clamp(min=1e-6)


def mask_boxes(masks):
    """(M, H, W) bool non-empty masks -> (M, 4) float boxes x0 y0 x1 y1 with exclusive ends."""
    H, W = masks.shape[1:]
    x = masks.any(1).float()  # (M, W); argmax finds the first hit
    y = masks.any(2).float()  # (M, H)
    return torch.stack([x.argmax(1), y.argmax(1), W - x.flip(1).argmax(1), H - y.flip(1).argmax(1)], 1).float()


class Tracker:
    """QDTrack's bi-softmax tracker with a momentum memory (QuasiDenseEmbedTracker, R50 KITTI-STEP values)."""

    def __init__(self, init_score_thr=0.35, obj_score_thr=0.3, match_score_thr=0.5, memo_momentum=0.8,
                 memo_frames=5, nms_conf_thr=0.5, nms_backdrop_iou=0.3, nms_class_iou=0.7):
        self.init_score_thr = init_score_thr
        self.obj_score_thr = obj_score_thr
        self.match_score_thr = match_score_thr
        self.momentum = memo_momentum
        self.memo_frames = memo_frames
        self.nms_conf_thr = nms_conf_thr
        self.nms_backdrop_iou = nms_backdrop_iou  # box NMS IoU below the obj score threshold
        self.nms_class_iou = nms_class_iou  # and above it
        self.tracks = {}  # id -> (embedding (D,), label, last frame seen)
        self.backdrops = []  # last frame's unmatched detections: [(embedding, label)]
        self.frame = self.next_id = 0
        self.kept = torch.zeros(0, dtype=torch.long)  # last update: kept detections (input indices, score order)

    def update(self, boxes, scores, labels, embeds):
        """(M, 4) boxes, (M,) scores, (M,) int64 labels, (M, D) embeddings -> (M,) int64 ids in input order, -1 none."""
        order = scores.detach().float().cpu().argsort(descending=True, stable=True)
        b, s, lab, e = (t.detach().cpu()[order] for t in (boxes.float(), scores.float(), labels, embeds.float()))
        iou = box_iou(b, b).tril(-1)  # [i, j]: detection j scored higher than i
        nms_iou = torch.where(s < self.obj_score_thr, self.nms_backdrop_iou, self.nms_class_iou)  # (M,) each's NMS IoU
        keep = ~(iou > nms_iou[:, None]).any(1)
        order, b, s, lab, e = (t[keep] for t in (order, b, s, lab, e))
        iou = iou[keep][:, keep]
        self.kept = order  # input indices of the detections that survive the box NMS, in score order
        ids = torch.full((len(s),), -1, dtype=torch.long)
        memo = [(k, v[0], v[1]) for k, v in self.tracks.items()] + [(-1, emb, lb) for emb, lb in self.backdrops]
        if len(s) and memo:
            memo_ids = torch.tensor([m[0] for m in memo])
            memo_labels = torch.tensor([m[2] for m in memo])
            sim = e @ torch.stack([m[1] for m in memo]).T
            score = (sim.softmax(1) + sim.softmax(0)) / 2 * (lab[:, None] == memo_labels[None])  # same class only
            for i in range(len(s)):  # greedy, in score order
                conf, j = score[i].max(0)
                if conf > self.match_score_thr and memo_ids[j] > -1:
                    if s[i] > self.obj_score_thr:
                        ids[i] = memo_ids[j]
                        score[:i, j] = score[i + 1:, j] = 0
                    elif conf > self.nms_conf_thr:
                        ids[i] = -2  # a low-score duplicate of a live track: suppressed
        new = (ids == -1) & (s > self.init_score_thr)
        ids[new] = torch.arange(self.next_id, self.next_id + int(new.sum()))
        self.next_id += int(new.sum())
        for i in (ids >= 0).nonzero().flatten().tolist():
            old = self.tracks.get(int(ids[i]))
            emb = e[i] if old is None else (1 - self.momentum) * old[0] + self.momentum * e[i]
            self.tracks[int(ids[i])] = (emb, int(lab[i]), self.frame)
        back = [i for i in (ids == -1).nonzero().flatten().tolist() if not (iou[i] > self.nms_backdrop_iou).any()]
        self.backdrops = [(e[i], int(lab[i])) for i in back]
        self.tracks = {k: v for k, v in self.tracks.items() if self.frame - v[2] < self.memo_frames}
        self.frame += 1
        return torch.full((len(scores),), -1, dtype=torch.long).index_put_((order,), ids.clamp(min=-1))


def mask_probabilities(mask_logits, size, H, W, original=False):
    """(N, h, w) mask logits -> (N, H, W) probabilities: upsampled to the padded size, cropped to the frame (H, W).

    Ours: bilinear resize of the logits, then the sigmoid. original=True: as the original's test path, bilinear x4
    (its test-time mask_upsample_stride), sigmoid, then bilinear to the padded size, so the probabilities, not the
    logits, are interpolated over the last factor (soft edges differ; flat regions agree)."""
    if original:
        up = F.interpolate(mask_logits[None].float(), scale_factor=4, mode="bilinear", align_corners=False).sigmoid()
        return F.interpolate(up, size=size, mode="bilinear", align_corners=False)[0, :, :H, :W]
    up = F.interpolate(mask_logits[None].float(), size=size, mode="bilinear", align_corners=False)
    return up[0, :, :H, :W].sigmoid()


def connected_parts(key):
    """(h, w) int64 segment keys, -1 outside segments -> (h, w) int64 part labels, 0 outside.

    Pixels of one key joined through 4-neighbours of that key form a part; each part is labelled by the largest
    (flat index + 1) among its pixels, spread one neighbour per sweep until nothing changes. Also in pix2seq_d.py: each
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


def split_apart(sem, ins, last, thing_classes, min_px, fresh_id):
    """(H, W) int64 trainIds and ids, the last frame's (sem, ins) or None, a callable -> (H, W) ids.

    A thing segment (class, id > 0) in parts that do not touch: its id stays on the part that covers most of the
    segment's last-frame pixels (none: the largest part), and every other part of >= min_px pixels takes the id of
    the same class that covers most of it in the last frame, if this frame does not use it yet, else fresh_id()."""
    thing = torch.isin(sem, torch.tensor(thing_classes, device=sem.device)) & (ins > 0)
    key = torch.where(thing, sem * 2 ** 32 + ins, -1)  # (H, W): one value per (class, id) segment
    part = connected_parts(key)
    apart = []  # (H, W) bool masks of the parts that leave their segment
    for k in key[thing].unique().tolist():
        labels, pixels = part[key == k].unique(return_counts=True)
        parts = [part == labels[i] for i in pixels.argsort(descending=True).tolist() if pixels[i] >= min_px]
        if len(parts) < 2:
            continue
        stay = 0  # the largest part, unless another covers more of the segment's last-frame pixels
        if last is not None:
            was = (last[0] == k // 2 ** 32) & (last[1] == k % 2 ** 32)
            overlap = [int((p & was).sum()) for p in parts]
            stay = max(range(len(parts)), key=overlap.__getitem__) if max(overlap) else 0
        apart += [p for i, p in enumerate(parts) if i != stay]
    ins = ins.clone()
    used = set(ins[thing].unique().tolist())
    for p in apart:
        new = None
        if last is not None:
            before = last[1][p & (last[0] == sem[p][0]) & (last[1] > 0)]  # last-frame ids of that class under it
            ids, count = before.unique(return_counts=True)
            new = next((int(ids[i]) for i in count.argsort(descending=True).tolist() if int(ids[i]) not in used), None)
        ins[p] = fresh_id() if new is None else new
        used.add(int(ins[p][0]))
    return ins


@torch.no_grad()
def predict_video(model, frames, postprocess="ours"):
    """Iterable of (3, H, W) float [0, 1] -> yields (semantic (H, W) int64 trainIds / 255, instance (H, W) int64).

    Online, one frame at a time (the caller sets model.eval(); a torch.compile wrapper is fine): pad to a multiple
    of SIZE_MULTIPLE with the mean colour, run the model with the previous frame's kernels to link to, merge, track
    the thing segments. Void and unassigned pixels are 255 with instance 0; stuff has instance 0; thing instances
    are track id + 1, consistent over the video, and 0 where the tracker gives no id (low score or suppressed).
    With cfg.split_min_px, parts of a thing segment apart from each other become instances (split_apart).

    postprocess="original" follows the original's test path in the last three differences of the module docstring
    (for the authors' weights and numbers). Details beyond that list: its tracker boxes use the RPN semantic map
    resized from the padded size without cropping, inclusive box ends and (-1, -1, 10, 10) for an empty mask; after
    a box-NMS drop its ids shift one segment up and the last segments get none."""
    if postprocess not in ("ours", "original"):
        raise ValueError(f"predict_video: postprocess must be 'ours' or 'original', got {postprocess!r}")
    if model.training:
        raise ValueError("video_knet.predict_video: the model is in training mode; call model.eval() first")
    original = postprocess == "original"
    cfg = model.cfg
    kt = len(cfg.thing_classes)
    tracker = Tracker(cfg.init_score_thr, cfg.obj_score_thr, cfg.match_score_thr, cfg.memo_momentum)
    prev = None  # the previous frame's kernels
    last = None  # the previous frame's output (semantic, instance), for split_apart

    def fresh_id():  # an output id (track id + 1) no track will take
        tracker.next_id += 1
        return tracker.next_id
    for frame in frames:
        if not torch.is_tensor(frame):  # e.g. a numpy array from PIL
            raise TypeError(f"video_knet.predict_video: frames must be float tensors (3, H, W) in [0, 1], got "
                            f"{type(frame).__name__}")
        if frame.dim() != 3 or frame.shape[0] != 3:
            raise ValueError(f"predict_video: expected frames (3, H, W), got {tuple(frame.shape)}")
        H, W = frame.shape[1:]
        pad = (0, -W % SIZE_MULTIPLE, 0, -H % SIZE_MULTIPLE)
        canvas = F.pad(frame - model.pixel_mean, pad) + model.pixel_mean  # (3, Hp, Wp), padded with the mean colour
        out = model(canvas[None], prev_kernels=prev)
        prev = out["kernels"]
        probs = mask_probabilities(out["masks"][-1][0], canvas.shape[1:], H, W, original)  # (N, H, W)
        seg, kernel, label, score = panoptic_merge(probs, out["cls"][-1][0].float().sigmoid(), cfg.num_thing_kernels,
                                                   kt, cfg.score_thr, cfg.overlap_thr, fill=not original,
                                                   by_prob=cfg.merge_by_prob and not original,
                                                   thing_scale=cfg.thing_prob_scale)
        thing = (label < kt).nonzero().squeeze(1)  # segment indices of things
        masks = seg[None] == thing[:, None, None]  # (M, H, W)
        if original:  # the semantic filter, inclusive box ends, a dummy box for an empty mask
            seg_logits = F.interpolate(out["seg_logits"].float(), size=(H, W), mode="bilinear", align_corners=False)
            masks = masks & (seg_logits[0].argmax(0) < kt)
            boxes = mask_boxes(masks) - torch.tensor([0.0, 0.0, 1.0, 1.0], device=masks.device)
            boxes[~masks.flatten(1).any(1)] = torch.tensor([-1.0, -1.0, 10.0, 10.0], device=masks.device)
        else:
            boxes = mask_boxes(masks)
        ids = tracker.update(boxes, score[thing], label[thing], out["embeds"][0, kernel[thing]].float())
        seg_id = torch.zeros(len(label) + 1, dtype=torch.long, device=seg.device)  # the last entry: unclaimed
        if original:
            kept = ids[tracker.kept]  # the kept detections' ids in the tracker's order, paired with segments in theirs
            seg_id[thing[:len(kept)]] = (kept + 1).clamp(min=0).to(seg.device)
        else:
            seg_id[thing] = (ids + 1).to(seg.device)  # no id (-1) -> 0
        unclaimed = torch.tensor([0 if original else 255], device=seg.device)  # the original paints them road
        seg_cls = torch.cat([model.model_to_train[label], unclaimed])
        sem, ins = seg_cls[seg], seg_id[seg]  # seg == -1 picks the last entry
        if cfg.split_min_px and not original:
            ins = split_apart(sem, ins, last, cfg.thing_classes, cfg.split_min_px, fresh_id)
            last = (sem, ins)
        yield sem, ins


# -----------------------------------------------------------------------------
# Loading weights
# (The authors' mmdet checkpoints: scripts/convert_knet_checkpoint.py renames their keys to this file's names.)

def load_backbone_weights(model, state_dict):
    """VideoKNet, torchvision ResNet-50 state_dict -> None; copies every backbone tensor in place (fc.* ignored).

    Any other missing or unexpected key, or a shape mismatch, is a ValueError naming them (e.g. the tiny preset's
    narrow backbone cannot take ImageNet weights)."""
    own = model.backbone.state_dict()
    given = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
    missing = sorted(set(own) - set(given))
    unexpected = sorted(set(given) - set(own))
    shapes = [f"{k}: {tuple(given[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in given and given[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(f"video_knet.load_backbone_weights: not a torchvision ResNet-50 state_dict for this backbone;"
                         f" missing {missing[:8]} ({len(missing)}), unexpected {unexpected[:8]} ({len(unexpected)}),"
                         f" wrong shapes {shapes[:8]} ({len(shapes)})")
    model.backbone.load_state_dict(given)

