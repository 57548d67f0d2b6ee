"""The pytorch/examples mnist loop (DataLoader, train() and test() per epoch, a log every few batches),
with what a user adds to watch gradients: each layer's gradient norm at every log step."""
import time

import torch
import torch.nn.functional as F
from common import args, data, model, report
from torch.utils.data import DataLoader, TensorDataset


def train(net, device, loader, optimizer, log, every):
    net.train()
    for batch_idx, (x, target) in enumerate(loader):
        x, target = x.to(device), target.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(net(x), target)
        loss.backward()
        if batch_idx % every == 0:
            log.append((loss.item(), {n: p.grad.norm().item() for n, p in net.named_parameters()}))
        optimizer.step()
    return len(loader)


def test(net, device, loader):
    net.eval()
    correct = 0
    with torch.no_grad():
        for x, target in loader:
            x, target = x.to(device), target.to(device)
            correct += net(x).argmax(dim=1).eq(target).sum().item()
    return correct / len(loader.dataset)


a = args()
(x, y), (xt, yt) = data()
torch.manual_seed(0)
net = model(a.depth, a.width).to(a.device)
optimizer = torch.optim.SGD(net.parameters(), lr=a.lr, momentum=0.9)
train_loader = DataLoader(TensorDataset(x, y), batch_size=a.batch_size, shuffle=True, drop_last=True)
test_loader = DataLoader(TensorDataset(xt, yt), batch_size=1000)
steps, log, t0 = 0, [], time.perf_counter()
for _epoch in range(1, a.epochs + 1):
    steps += train(net, a.device, train_loader, optimizer, log, a.log_every)
    test(net, a.device, test_loader)
report(steps, time.perf_counter() - t0)
