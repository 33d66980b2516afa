"""Train and export the synthetic-traffic detector (a tiny anchor-free YOLO-style CNN).

    .venv/bin/pip install torch==2.13.0 onnx       # training only; the appliance needs neither
    .venv/bin/python models/synthetic-traffic/dataset.py --out /tmp/stdata
    .venv/bin/python models/synthetic-traffic/train.py --data /tmp/stdata --minutes 40 \
        --size 640x384 [--init state_dict.pt]      # README.md has the commands of the file

Input (--size, default 512x288; the shipped file is 640x384): RGB float [0, 1], letterboxed
like the core (centred, padded with 114; a 640x360 frame goes into 640x384 at scale 1). Output
`output0` [B, 4+6, N]: cx, cy, w, h in model-input pixels, then the six appliance class scores
after a sigmoid (YOLOv8 layout), from three levels (stride 8, 16, 32: N = 5040 at 640x384).

--p2 PX (off by default; the shipped file has no such level) adds a fourth, stride-4 level for
small objects: the stem's features (1x1 conv to the FPN width) plus the stride-8 FPN feature
upsampled, a 3x3 conv, and its own head (same shape as the shared one, not shared: the stem's
features differ from the deeper levels', and the trained levels keep their head untouched while
the new one learns). Boxes whose longer side is up to PX px go to it as well as to the stride-8
level (N = 20400 at 640x384, the stride-4 points first). With --init from a three-level
state_dict the new level starts as a copy of the stride-8 one (m2 = m3, head2 = head); only
the 1x1 conv from the stem starts fresh.

--p2-block C (with --p2; default 0: none) puts a residual block on the stem's features before
the stride-4 level only (3x3 conv to C channels, ReLU, 3x3 conv back to the stem's width, added
to them): the stride-4 level otherwise sees each 4x4 patch through one linear map, which is
little for a motorcycle 6-8 px wide. Its last BatchNorm starts at scale 0, so a stride-4 file
given with --init computes exactly what it did and the block is learnt from there.

Assignment: a truth box is given to the levels whose size range holds its longer side
(stride 8: up to 64 px, 16: 32-160 px, 32: from 96 px) and there to the points within 1.5
strides of its centre that lie inside the box grown by half a stride (at least one point per
level); a point claimed by two boxes takes the smaller. Loss: GIoU on the decoded boxes of the
positives + binary cross-entropy on all class scores, summed over points and divided by the
number of positives; the positive's class target is the IoU of its decoded box with the truth
box (IoU-aware, so the score ranks box quality; --no-iou-aware: target 1). Boxes are decoded as
cx = px + dx * s, w = exp(tw) * s.

Training runs for a wall-clock budget (--minutes) with one thread, AdamW, a cosine learning
rate over the budget; flips and brightness/contrast jitter; images drawn weighted toward rare
classes (--sample-power); an exponential moving average of the weights (--ema) is what is
validated, saved and exported. Then the model is exported with torch.onnx.export (opset 17,
dynamic batch) to synthetic-traffic.onnx beside this file, and the loss curve is written to
train_log.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
CLASSES = ("person", "bicycle", "car", "motorcycle", "bus", "truck")
W, H = 512, 288
STRIDES: tuple[int, ...] = (8, 16, 32)
RANGES: tuple[tuple[float, float], ...] = ((0.0, 64.0), (32.0, 160.0), (96.0, 1e9))
NC = len(CLASSES)


# --------------------------------------------------------------------------- model


def cbr(ci: int, co: int, k: int = 3, s: int = 1, p: int | None = None) -> nn.Sequential:
    # explicit padding (an integer), no 'same' strings: the ONNX graph carries plain pads
    p = k // 2 if p is None else p
    return nn.Sequential(
        nn.Conv2d(ci, co, k, s, padding=p, bias=False), nn.BatchNorm2d(co), nn.ReLU(True)
    )


class Net(nn.Module):
    def __init__(
        self,
        width: tuple[int, ...] = (32, 48, 64, 128),
        fpn: int = 32,
        p2: bool = False,
        p2_block: int = 0,
    ) -> None:
        super().__init__()
        self.p2 = p2
        self.p2_block = p2_block
        c2, c3, c4, c5 = width
        self.stem = cbr(3, c2, 4, 4, 0)  # /4: a 4x4 patch per output (cheap on a CPU)
        self.s3 = nn.Sequential(cbr(c2, c3, 3, 2), cbr(c3, c3))  # /8
        self.s4 = nn.Sequential(cbr(c3, c4, 3, 2), cbr(c4, c4))  # /16
        self.s5 = nn.Sequential(cbr(c4, c5, 3, 2), cbr(c5, c5))  # /32
        self.l3, self.l4, self.l5 = cbr(c3, fpn, 1), cbr(c4, fpn, 1), cbr(c5, fpn, 1)
        self.m3, self.m4 = cbr(fpn, fpn), cbr(fpn, fpn)
        self.head = nn.Sequential(cbr(fpn, fpn), nn.Conv2d(fpn, 4 + NC, 1))
        b = self.head[-1].bias
        nn.init.constant_(b[4:], -4.6)  # prior 0.01 for the class scores
        nn.init.constant_(b[:4], 0.0)
        if p2:  # --p2: a stride-4 level from the stem, fused top-down with the stride-8 one
            self.l2, self.m2 = cbr(c2, fpn, 1), cbr(fpn, fpn)
            self.head2 = nn.Sequential(cbr(fpn, fpn), nn.Conv2d(fpn, 4 + NC, 1))
            b2 = self.head2[-1].bias
            nn.init.constant_(b2[4:], -4.6)
            nn.init.constant_(b2[:4], 0.0)
        if p2_block:  # --p2-block: a residual block on the stem's features, stride-4 path only
            self.r2a = cbr(c2, p2_block)  # 3x3 to a narrow width, ReLU
            self.r2b = nn.Sequential(  # 3x3 back to the stem's width, no ReLU (residual)
                nn.Conv2d(p2_block, c2, 3, 1, 1, bias=False), nn.BatchNorm2d(c2)
            )
            # BN scale 0: the block adds nothing at first, so a stride-4 network given with
            # --init computes what it did and learns to use the block from there
            nn.init.zeros_(self.r2b[1].weight)

    def warm_p2(self) -> None:
        """Start the stride-4 level from the trained stride-8 one: m2 and head2 become copies
        of m3 and the shared head (same shapes), only l2 (stem -> FPN width) stays fresh."""
        self.m2.load_state_dict(self.m3.state_dict())
        self.head2.load_state_dict(self.head.state_dict())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        p3 = self.s3(x)
        p4 = self.s4(p3)
        p5 = self.s5(p4)
        f5 = self.l5(p5)
        f4 = self.m4(self.l4(p4) + F.interpolate(f5, scale_factor=2.0, mode="nearest"))
        f3 = self.m3(self.l3(p3) + F.interpolate(f4, scale_factor=2.0, mode="nearest"))
        out = [self.head(f).flatten(2) for f in (f3, f4, f5)]  # each [B, 4+C, n]
        if self.p2:
            if self.p2_block:
                x = x + self.r2b(self.r2a(x))
            f2 = self.m2(self.l2(x) + F.interpolate(f3, scale_factor=2.0, mode="nearest"))
            out.insert(0, self.head2(f2).flatten(2))  # strides 4, 8, 16, 32
        return out


def grid(w: int = W, h: int = H) -> tuple[torch.Tensor, torch.Tensor]:
    """Point centres (N, 2) in input pixels and their strides (N,)."""
    pts, ss = [], []
    for s in STRIDES:
        gy, gx = torch.meshgrid(
            torch.arange(h // s, dtype=torch.float32),
            torch.arange(w // s, dtype=torch.float32),
            indexing="ij",
        )
        pts.append(torch.stack([(gx.flatten() + 0.5) * s, (gy.flatten() + 0.5) * s], 1))
        ss.append(torch.full((gx.numel(),), float(s)))
    return torch.cat(pts), torch.cat(ss)


def decode(raw: torch.Tensor, pts: torch.Tensor, ss: torch.Tensor) -> torch.Tensor:
    """raw [B, 4, N] -> cx, cy, w, h [B, 4, N] in input pixels."""
    cxy = pts.t()[None] + raw[:, :2] * ss[None, None]
    wh = torch.exp(raw[:, 2:4].clamp(-6.0, 6.0)) * ss[None, None]
    return torch.cat([cxy, wh], 1)


class Export(nn.Module):
    """[B, 3, H, W] -> [B, 4+C, N] (YOLOv8 layout), scores after a sigmoid."""

    def __init__(self, net: Net) -> None:
        super().__init__()
        self.net = net
        pts, ss = grid(W, H)
        self.register_buffer("pts", pts)
        self.register_buffer("ss", ss)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = torch.cat(self.net(x), 2)
        return torch.cat([decode(raw[:, :4], self.pts, self.ss), torch.sigmoid(raw[:, 4:])], 1)


# --------------------------------------------------------------------------- data


def letterbox(img: np.ndarray, w: int = W, h: int = H) -> tuple[np.ndarray, float, float, float]:
    """BGR frame -> (h, w, 3) letterboxed, padded with 114; scale, pad_x, pad_y."""
    ih, iw = img.shape[:2]
    s = min(w / iw, h / ih)
    nw, nh = round(iw * s), round(ih * s)
    px, py = (w - nw) // 2, (h - nh) // 2
    out = np.full((h, w, 3), 114, np.uint8)
    out[py : py + nh, px : px + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    return out, s, px, py


def load_split(roots: list[Path], split: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """All images of a split as (n, H, W, 3) RGB uint8 and per image (k, 5) class x0 y0 x1 y1."""
    files = sorted(p for r in roots for p in (r / "images" / split).glob("*.jpg"))
    imgs = np.empty((len(files), H, W, 3), np.uint8)
    boxes = []
    for i, f in enumerate(files):
        bgr = cv2.imread(str(f))
        lb, s, px, py = letterbox(bgr, W, H)
        imgs[i] = lb[:, :, ::-1]
        lab = f.parent.parent.parent / "labels" / split / (f.stem + ".txt")
        text = lab.read_text().split()
        a = np.array(text, dtype=np.float32).reshape(-1, 5)
        ih, iw = bgr.shape[:2]
        cx, cy, bw, bh = a[:, 1] * iw, a[:, 2] * ih, a[:, 3] * iw, a[:, 4] * ih
        b = np.stack(
            [
                a[:, 0],
                (cx - bw / 2) * s + px,
                (cy - bh / 2) * s + py,
                (cx + bw / 2) * s + px,
                (cy + bh / 2) * s + py,
            ],
            1,
        )
        boxes.append(b.astype(np.float32))
    return imgs, boxes


def make_batch(
    imgs: np.ndarray, boxes: list[np.ndarray], idx: np.ndarray, rng: np.random.Generator, aug: bool
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    x = torch.from_numpy(imgs[idx]).permute(0, 3, 1, 2).float().div_(255.0)  # channels_last
    out = []
    for j, i in enumerate(idx):
        b = boxes[i].copy()
        if aug:
            if rng.random() < 0.5:
                x[j] = x[j].flip(-1)
                b[:, [1, 3]] = W - b[:, [3, 1]]
            gain = rng.uniform(0.6, 1.4)
            bias = rng.uniform(-0.1, 0.1)
            x[j] = ((x[j] - 0.5) * rng.uniform(0.7, 1.3) + 0.5) * gain + bias
            x[j] = x[j].clamp_(0, 1)
        out.append(torch.from_numpy(b))
    return x, out


def image_weights(
    boxes: list[np.ndarray], power: float, boost: dict[str, float] | None = None
) -> np.ndarray:
    """Sampling probability per image: the mean over its boxes of (freq_max / freq_class)^power
    (times the class's --class-boost factor, 1 unless given), so that images holding rare or
    weak classes (motorcycles, bicycles) are drawn more often; images without boxes get the
    weight of the most common class."""
    counts = np.bincount(
        np.concatenate([b[:, 0].astype(int) for b in boxes] + [np.zeros(0, int)]), minlength=NC
    ).astype(np.float64)
    rare = (counts.max() / np.maximum(counts, 1.0)) ** power
    for name, f in (boost or {}).items():
        rare[CLASSES.index(name)] *= f
    w = np.array([rare[b[:, 0].astype(int)].mean() if len(b) else 1.0 for b in boxes])
    return w / w.sum()


class Ema:
    """Exponential moving average of the weights (and a copy of the BN statistics)."""

    def __init__(self, net: nn.Module, decay: float = 0.999) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in net.state_dict().items()}

    @torch.no_grad()
    def update(self, net: nn.Module, step: int) -> None:
        d = self.decay * (1.0 - math.exp(-step / 1000.0))
        for k, v in net.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                self.shadow[k].copy_(v)


# --------------------------------------------------------------------------- loss


def giou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """a, b (n, 4) xyxy -> (iou, giou) (n,)."""
    ix0, iy0 = torch.max(a[:, 0], b[:, 0]), torch.max(a[:, 1], b[:, 1])
    ix1, iy1 = torch.min(a[:, 2], b[:, 2]), torch.min(a[:, 3], b[:, 3])
    inter = (ix1 - ix0).clamp(0) * (iy1 - iy0).clamp(0)
    aa = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    ab = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = aa + ab - inter + 1e-7
    iou = inter / union
    cw = torch.max(a[:, 2], b[:, 2]) - torch.min(a[:, 0], b[:, 0])
    ch = torch.max(a[:, 3], b[:, 3]) - torch.min(a[:, 1], b[:, 1])
    c = cw * ch + 1e-7
    return iou, iou - (c - union) / c


def assign(gt: torch.Tensor, pts: torch.Tensor, ss: torch.Tensor) -> torch.Tensor:
    """gt (k, 5) -> index of the truth box per point (N,), -1 for background."""
    n = pts.shape[0]
    if len(gt) == 0:
        return torch.full((n,), -1, dtype=torch.long)
    x0, y0, x1, y1 = gt[:, 1], gt[:, 2], gt[:, 3], gt[:, 4]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = torch.max(x1 - x0, y1 - y0)
    px, py, s = pts[:, :1], pts[:, 1:], ss[:, None]  # (N, 1)
    near = ((px - cx).abs() <= 1.5 * s) & ((py - cy).abs() <= 1.5 * s)
    inside = (px >= x0 - s / 2) & (px <= x1 + s / 2) & (py >= y0 - s / 2) & (py <= y1 + s / 2)
    lo = torch.tensor([r[0] for r in RANGES])
    hi = torch.tensor([r[1] for r in RANGES])
    lvl = torch.bucketize(s[:, 0], torch.tensor(STRIDES, dtype=torch.float32))  # level index
    ok = (side[None] >= lo[lvl][:, None]) & (side[None] <= hi[lvl][:, None])
    m = near & inside & ok  # (N, k)
    area = ((x1 - x0) * (y1 - y0))[None].expand(n, -1)
    cost = torch.where(m, area, torch.full_like(area, float("inf")))
    best = cost.argmin(1)
    return torch.where(m.any(1), best, torch.full_like(best, -1))


def loss_fn(
    outs: list[torch.Tensor],
    gts: list[torch.Tensor],
    pts: torch.Tensor,
    ss: torch.Tensor,
    iou_aware: bool = True,
) -> tuple[torch.Tensor, float, float]:
    raw = torch.cat(outs, 2)  # [B, 4+C, N]
    box = decode(raw[:, :4], pts, ss)  # cx cy w h
    xyxy = torch.cat([box[:, :2] - box[:, 2:] / 2, box[:, :2] + box[:, 2:] / 2], 1)
    logits = raw[:, 4:]
    target = torch.zeros_like(logits)
    pred_pos, gt_pos = [], []
    for b, gt in enumerate(gts):
        a = assign(gt, pts, ss)
        pos = torch.nonzero(a >= 0)[:, 0]
        if len(pos) == 0:
            continue
        g = gt[a[pos]]
        pb = xyxy[b][:, pos].t()
        if iou_aware:
            q, _ = giou(pb.detach(), g[:, 1:])
            target[b, g[:, 0].long(), pos] = q.clamp(0.0, 1.0)
        else:
            target[b, g[:, 0].long(), pos] = 1.0
        pred_pos.append(pb)
        gt_pos.append(g[:, 1:])
    npos = max(sum(len(p) for p in pred_pos), 1)
    lcls = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / npos
    if pred_pos:
        _, gi = giou(torch.cat(pred_pos), torch.cat(gt_pos))
        lbox = (1.0 - gi).sum() / npos
    else:
        lbox = logits.sum() * 0
    return lcls + 2.0 * lbox, lcls.item(), lbox.item()


# --------------------------------------------------------------------------- main


def export(net: Net, path: Path) -> None:
    net.eval()
    model = Export(net).eval()
    x = torch.zeros(1, 3, H, W)
    torch.onnx.export(
        model,
        (x,),
        str(path),
        opset_version=17,
        input_names=["images"],
        output_names=["output0"],
        dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}},
        dynamo=False,
    )


def load_without(net: Net, sd: dict[str, torch.Tensor], new: tuple[str, ...]) -> int:
    """Loads a state_dict that lacks only the tensors of ``net``'s new parts (names starting
    with one of ``new``); returns how many those are. Anything else missing or left over is an
    error naming it."""
    missing, unexpected = net.load_state_dict(sd, strict=False)
    if unexpected or any(not k.startswith(new) for k in missing):
        raise SystemExit(f"--init: unexpected {unexpected}, missing {missing}")
    return len(missing)


def use_p2(max_side: float) -> None:
    """Four levels: stride 4 for boxes whose longer side is up to max_side px (they stay on the
    stride-8 level too, so that level keeps what it learnt)."""
    global STRIDES, RANGES
    STRIDES = (4, 8, 16, 32)
    RANGES = ((0.0, max_side), (0.0, 64.0), (32.0, 160.0), (96.0, 1e9))


def main() -> None:
    global W, H
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/tmp/stdata", help="dataset.py's output folder")
    ap.add_argument("--minutes", type=float, default=25.0, help="wall-clock training budget")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "synthetic-traffic.onnx"))
    ap.add_argument("--checkpoint", default="/tmp/synthetic-traffic.pt", help="state_dict")
    ap.add_argument("--init", help="start from this state_dict (a --checkpoint of a run)")
    ap.add_argument("--sample-power", type=float, default=0.5, help="0: uniform sampling")
    ap.add_argument(
        "--class-boost",
        default="",
        help="extra sampling factor per class, e.g. person=1.5,motorcycle=1.5 (default: none)",
    )
    ap.add_argument("--no-iou-aware", action="store_true", help="class target 1, not the IoU")
    ap.add_argument("--ema", type=float, default=0.999, help="0: no weight averaging")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--log", default=str(HERE / "train_log.json"))
    ap.add_argument("--size", default=f"{W}x{H}", help="input WxH, multiples of 32")
    ap.add_argument(
        "--export-only", action="store_true", help="export --init to --out, no training"
    )
    ap.add_argument(
        "--p2",
        type=float,
        default=0.0,
        metavar="PX",
        help="add a stride-4 level for boxes up to PX px on their longer side (e.g. 24); "
        "default 0: the three levels of the shipped file",
    )
    ap.add_argument(
        "--p2-block",
        type=int,
        default=0,
        metavar="C",
        help="with --p2: a residual block of width C on the stem's features for the stride-4 "
        "level (default 0: none)",
    )
    a = ap.parse_args()
    if a.p2 > 0:
        use_p2(a.p2)
    elif a.p2_block:
        raise SystemExit("--p2-block needs --p2")
    W, H = (int(v) for v in a.size.split("x"))
    if W % 32 or H % 32:
        raise SystemExit(f"--size {a.size}: width and height must be multiples of 32")
    torch.set_num_threads(a.threads)
    if a.export_only:
        net = Net(p2=a.p2 > 0, p2_block=a.p2_block)
        net.load_state_dict(torch.load(a.init, map_location="cpu"))
        export(net, Path(a.out))
        print(f"exported {a.out}", flush=True)
        return
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    roots = [p for p in sorted(Path(a.data).iterdir()) if (p / "images").is_dir()]
    t0 = time.time()
    imgs, boxes = load_split(roots, "train")
    vimgs, vboxes = load_split(roots, "val")
    print(
        f"loaded {len(imgs)} train, {len(vimgs)} val images in {time.time() - t0:.0f} s", flush=True
    )
    net = Net(p2=a.p2 > 0, p2_block=a.p2_block).to(memory_format=torch.channels_last)
    if a.init:
        sd = torch.load(a.init, map_location="cpu")
        if a.p2_block and not any(k.startswith("r2a.") for k in sd):
            # a stride-4 state_dict without the block: the block starts adding nothing
            n = load_without(net, sd, ("r2a.", "r2b."))
            print(f"--p2-block: {n} new tensors, the block adds 0 at first", flush=True)
        elif a.p2 > 0 and not any(k.startswith("l2.") for k in sd):
            # a three-level state_dict: load it, then start the new level from the stride-8 one
            n = load_without(net, sd, ("l2.", "m2.", "head2."))
            net.warm_p2()
            print(f"--p2: {n} new tensors; m2, head2 copied from m3, head", flush=True)
        else:
            net.load_state_dict(sd)
    print(f"parameters: {sum(p.numel() for p in net.parameters())}", flush=True)
    boost = {k: float(v) for k, v in (kv.split("=") for kv in a.class_boost.split(",") if kv)}
    for k in boost:
        if k not in CLASSES:
            raise SystemExit(f"--class-boost: unknown class {k!r}")
    probs = image_weights(boxes, a.sample_power, boost)
    cls_n = np.bincount(np.concatenate([b[:, 0].astype(int) for b in boxes]), minlength=NC)
    seen_n = np.bincount(
        np.concatenate([b[:, 0].astype(int) for b in boxes]),
        weights=np.concatenate(
            [np.full(len(b), pr * len(boxes)) for b, pr in zip(boxes, probs, strict=True)]
        ),
        minlength=NC,
    )
    print(
        "per-epoch exposure vs uniform: "
        + ", ".join(
            f"{c} {v / max(n, 1):.2f}" for c, v, n in zip(CLASSES, seen_n, cls_n, strict=True)
        ),
        flush=True,
    )
    ema = Ema(net, a.ema) if a.ema > 0 else None
    iou_aware = not a.no_iou_aware
    pts, ss = grid(W, H)
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=5e-4)
    budget = a.minutes * 60.0
    log: list[dict[str, float]] = []
    t_start = time.time()
    step, epoch, seen = 0, 0, 0
    run = [0.0, 0.0, 0.0]
    done = False
    while not done:
        # an "epoch" is len(imgs) draws, weighted toward the images with rare classes
        order = rng.choice(len(imgs), size=len(imgs), replace=True, p=probs)
        for k in range(0, len(order) - a.batch + 1, a.batch):
            frac = (time.time() - t_start) / budget
            if frac >= 1.0:
                done = True
                break
            warm = min(1.0, (step + 1) / max(a.warmup, 1))
            lr = a.lr * warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
            for g in opt.param_groups:
                g["lr"] = lr
            net.train()
            x, gts = make_batch(imgs, boxes, order[k : k + a.batch], rng, aug=True)
            loss, lc, lb = loss_fn(net(x), gts, pts, ss, iou_aware)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            opt.step()
            step += 1
            if ema is not None:
                ema.update(net, step)
            seen += len(x)
            run = [r + v for r, v in zip(run, (loss.item(), lc, lb), strict=True)]
            if step % 50 == 0:
                el = time.time() - t_start
                rec = {
                    "step": step,
                    "epoch": seen / len(imgs),
                    "s": round(el, 1),
                    "lr": lr,
                    "loss": run[0] / 50,
                    "cls": run[1] / 50,
                    "box": run[2] / 50,
                }
                log.append(rec)
                print(json.dumps(rec), flush=True)
                if step % 1000 == 0:  # a run cut short still leaves its weights
                    torch.save(ema.shadow if ema else net.state_dict(), a.checkpoint + ".part")
                run = [0.0, 0.0, 0.0]
        epoch += 1
    train_s = time.time() - t_start
    torch.save(net.state_dict(), a.checkpoint + ".raw")
    if ema is not None:
        net.load_state_dict(ema.shadow)
    net.eval()
    with torch.no_grad():
        vl = []
        for k in range(0, len(vimgs), 32):
            x, gts = make_batch(vimgs, vboxes, np.arange(k, min(k + 32, len(vimgs))), rng, False)
            vl.append(loss_fn(net(x), gts, pts, ss, iou_aware)[0].item())
    summary = {
        "args": {k: v for k, v in vars(a).items() if k not in ("out", "checkpoint")},
        "train_images": len(imgs),
        "val_images": len(vimgs),
        "steps": step,
        "epochs": seen / len(imgs),
        "train_s": round(train_s, 1),
        "val_loss": float(np.mean(vl)),
        "log": log,
    }
    print(
        f"trained {step} steps ({seen / len(imgs):.1f} epochs) in {train_s:.0f} s, "
        f"val loss {summary['val_loss']:.3f}",
        flush=True,
    )
    torch.save(net.state_dict(), a.checkpoint)
    Path(a.log).write_text(json.dumps(summary, indent=1) + "\n")
    export(net, Path(a.out))
    print(f"exported {a.out}", flush=True)


if __name__ == "__main__":
    main()
