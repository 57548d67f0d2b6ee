"""What every baseline shares: the shape of configs/skip.yaml, its data sizes, and a JSON result line.

The data are random tensors of skipexp's synthetic sizes (8192 train, 2048 test, 32 features,
10 classes): a baseline's speed does not depend on what the numbers are.
"""
from __future__ import annotations

import argparse
import json

import torch
from torch import nn


def args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--log-every", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    return ap.parse_args()


class Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(x)))


def model(depth: int, width: int, inputs: int = 32, classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Linear(inputs, width), *[Block(width) for _ in range(depth)], nn.Linear(width, classes))


def data(device: str = "cpu", n_train: int = 8192, n_test: int = 2048, inputs: int = 32, classes: int = 10):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + n_test, inputs, generator=g)
    y = torch.randint(0, classes, (n_train + n_test,), generator=g)
    return (x[:n_train].to(device), y[:n_train].to(device)), (x[n_train:].to(device), y[n_train:].to(device))


def report(steps: int, seconds: float) -> None:
    print(json.dumps({"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds}))
