"""ResNet-20 (He et al. 2016: 16/32/64 channels, option A shortcuts, batch norm) on Fashion-MNIST, by hand:
whole tensors, a shuffled index per epoch, a test evaluation at each epoch's end, torch's defaults.

The model skipexp builds from ``model.block: conv, depth: 9, width: 16, norm: batchnorm``, written the way
the widely used CIFAR reimplementations write it. Reads the IDX files from /usr/share/datasets/fashion-mnist
(Debian's dataset-fashion-mnist) or --data.
"""
import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def read_idx(path: Path) -> np.ndarray:
    raw = gzip.open(path).read()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(root: Path, split: str, n: int, device: str):
    prefix = "train" if split == "train" else "t10k"
    x = torch.from_numpy(read_idx(root / f"{prefix}-images-idx3-ubyte.gz")[:n].astype(np.float32) / 255.0)
    y = torch.from_numpy(read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")[:n].astype(np.int64))
    return ((x.unsqueeze(1) - 0.2860) / 0.3530).to(device), y.to(device)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.pad = c_out - c_in

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.pad:   # option A: subsample, zero channels appended
            x = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, self.pad))
        return F.relu(out + x)


class ResNet(nn.Module):
    def __init__(self, blocks_per_stage: int = 3, width: int = 16, classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        layers, c = [], width
        for stage in range(3):
            for b in range(blocks_per_stage):
                out = width * 2 ** stage
                layers.append(BasicBlock(c, out, 2 if stage and not b else 1))
                c = out
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        h = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(h.mean((2, 3)))


ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=100)
ap.add_argument("--train-size", type=int, default=6400)
ap.add_argument("--test-size", type=int, default=2000)
ap.add_argument("--batch-size", type=int, default=128)
ap.add_argument("--device", default="cpu")
ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
a = ap.parse_args()
x, y = load(Path(a.data), "train", a.train_size, a.device)
xt, yt = load(Path(a.data), "test", a.test_size, a.device)
torch.manual_seed(0)
net = ResNet().to(a.device)
opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
per_epoch = len(y) // a.batch_size
steps, t0 = 0, time.perf_counter()
while steps < a.steps:
    order = torch.randperm(len(y), device=a.device)
    net.train()
    for i in range(per_epoch):
        idx = order[i * a.batch_size:(i + 1) * a.batch_size]
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
        if steps == a.steps:
            break
    net.eval()
    with torch.no_grad():
        test_acc = (net(xt).argmax(1) == yt).float().mean().item()
if a.device.startswith("cuda"):
    torch.cuda.synchronize()
seconds = time.perf_counter() - t0
print(json.dumps({"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds, "test_acc": test_acc}))
