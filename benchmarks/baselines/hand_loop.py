"""The loop a user writes by hand: whole tensors, a shuffled index per epoch, torch's defaults."""
import time

import torch
from common import args, data, model, report
from torch import nn

a = args()
(x, y), (xt, yt) = data(a.device)
torch.manual_seed(0)
net = model(a.depth, a.width).to(a.device)
opt = torch.optim.SGD(net.parameters(), lr=a.lr, momentum=0.9)
steps, t0 = 0, time.perf_counter()
for _epoch in range(a.epochs):
    order = torch.randperm(len(y), device=a.device)
    for i in range(len(y) // a.batch_size):
        idx = order[i * a.batch_size:(i + 1) * a.batch_size]
        loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    with torch.no_grad():
        test_acc = (net(xt).argmax(1) == yt).float().mean().item()
if a.device.startswith("cuda"):
    torch.cuda.synchronize()
report(steps, time.perf_counter() - t0)
