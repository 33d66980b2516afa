"""Recover a trainable state_dict from the exported ONNX file, to continue training it.

Only the ONNX file is kept in the repository. Its export folded each BatchNorm into the
convolution before it (weight and a bias). This maps the folded convolutions back onto train.Net
in execution order and rebuilds each BatchNorm so that the network computes the same function in
eval mode AND sees batch statistics close to its running ones in train mode: one pass over some
training images measures each convolution's output mean m and deviation s per channel, then
BN(running_mean=m, running_var=s^2, weight=s, bias=m+b) (so (x-m)/s*s + m + b = x + b).

    .venv/bin/python models/synthetic-traffic/from_onnx.py --data /tmp/stdata --out /tmp/init.pt
    .venv/bin/python models/synthetic-traffic/train.py --data /tmp/stdata --size 640x384 \\
        --init /tmp/init.pt --lr 1e-3 --warmup 100 --minutes 60
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import train  # noqa: E402

#: train.Net's convolution+BN blocks in the order the forward pass runs them (the ONNX order)
ORDER = ("stem", "s3.0", "s3.1", "s4.0", "s4.1", "s5.0", "s5.1", "l5", "l4", "m4", "l3", "m3",
         "head.0")  # fmt: skip
#: the same with train.py --p2 (the stride-4 level runs after the three shared-head calls)
ORDER_P2 = ORDER + ("l2", "m2", "head2.0")
#: the same with train.py --p2-block (the residual block runs just before l2)
ORDER_P2_BLOCK = ORDER + ("r2a", "r2b", "l2", "m2", "head2.0")


def tensors(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The initializers by name, and the names that Identity nodes give them (the exporter
    shares equal constants that way, e.g. a new level still equal to the one it was copied
    from)."""
    out = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in out:
            out[node.output[0]] = out[node.input[0]]
    return out


def folded_convs(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """The folded conv+BN weights in execution order: every Conv node but the heads' 1x1
    convolutions and the second and third calls of the shared head (node names ending _1, _2)."""
    model = onnx.load(str(path))
    inits = tensors(model)
    out = []
    for node in model.graph.node:
        if node.op_type != "Conv" or re.search(r"_\d+/Conv$", node.name):
            continue
        if node.input[1] in inits and not re.search(r"/head2?\.1/Conv$", node.name):
            out.append((inits[node.input[1]], inits[node.input[2]]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--onnx", default=str(HERE / "synthetic-traffic.onnx"))
    ap.add_argument("--data", required=True, help="dataset.py output (train split used)")
    ap.add_argument("--size", default="640x384")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    inits = tensors(onnx.load(a.onnx))
    p2 = "net.head2.1.weight" in inits  # a file made with train.py --p2
    convs = folded_convs(Path(a.onnx))
    order = ORDER_P2 if p2 else ORDER
    block = 0
    if p2 and len(convs) == len(ORDER_P2_BLOCK):  # a file made with --p2-block
        order = ORDER_P2_BLOCK
        block = convs[len(ORDER)][0].shape[0]
    net = train.Net(p2=p2, p2_block=block)
    blocks = dict(net.named_modules())
    if len(convs) != len(order):
        raise SystemExit(
            f"{len(convs)} folded convolutions in the ONNX file, {len(order)} expected"
        )
    for hname in ("head", "head2") if p2 else ("head",):
        head = blocks[f"{hname}.1"]
        assert isinstance(head, nn.Conv2d)
        head.weight.data = torch.from_numpy(inits[f"net.{hname}.1.weight"].copy())
        head.bias.data = torch.from_numpy(inits[f"net.{hname}.1.bias"].copy())
    bns: list[tuple[nn.BatchNorm2d, torch.Tensor]] = []
    for name, (wt, b) in zip(order, convs, strict=True):
        seq = blocks[name]
        conv, bn = seq[0], seq[1]
        if tuple(conv.weight.shape) != wt.shape:
            raise SystemExit(f"{name}: shape {tuple(conv.weight.shape)} vs ONNX {wt.shape}")
        conv.weight.data = torch.from_numpy(wt.copy())
        bias = torch.from_numpy(b.copy())
        bn.weight.data.fill_(1.0)
        bn.bias.data = bias.clone()
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
        bns.append((bn, bias))
    # measure each convolution's output on training images (eval mode: the ONNX function)
    stats: dict[int, list[torch.Tensor]] = {}
    hooks = []
    for i, name in enumerate(order):
        conv = blocks[name][0]

        def hook(_m: nn.Module, _i: object, out: torch.Tensor, i: int = i) -> None:
            stats.setdefault(i, []).append(out.detach().transpose(0, 1).reshape(out.shape[1], -1))

        hooks.append(conv.register_forward_hook(hook))
    files = sorted((Path(a.data) / "images" / "train").glob("*.jpg"))
    if not files:
        raise SystemExit(f"no images under {a.data}/images/train")
    pick = np.random.default_rng(0).choice(
        len(files), size=min(a.images, len(files)), replace=False
    )
    net.eval()
    with torch.no_grad():
        for k in range(0, len(pick), 8):
            batch = []
            for j in pick[k : k + 8]:
                lb, *_ = train.letterbox(cv2.imread(str(files[j])), w, h)
                batch.append(torch.from_numpy(lb[:, :, ::-1].copy()).permute(2, 0, 1))
            net(torch.stack(batch).float() / 255.0)
    for hk in hooks:
        hk.remove()
    for i, (bn, bias) in enumerate(bns):
        x = torch.cat(stats[i], 1)
        m, s = x.mean(1), x.std(1).clamp_min(1e-3)
        bn.running_mean.copy_(m)
        bn.running_var.copy_(s * s - bn.eps)
        bn.weight.data = s.clone()
        bn.bias.data = m + bias
    torch.save(net.state_dict(), a.out)
    print(f"{a.out}: {len(order)} conv+BN blocks and the head(s) restored from {a.onnx}")
    if block:
        print(f"continue it with train.py --p2 PX --p2-block {block}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
