"""A Lightning Trainer as its docs show it, with a callback that records every layer's gradient norm
at every log step (lightning.pytorch.utilities.grad_norm). Prints n/a when Lightning is not installed."""
import json
import logging
import time

try:
    import lightning as L
    from lightning.pytorch.utilities import grad_norm
except ImportError:
    print(json.dumps({"na": "lightning is not installed (pip install -e '.[bench]')"}))
    raise SystemExit(0) from None
import torch
import torch.nn.functional as F
from common import args, data, model, report
from torch.utils.data import DataLoader, TensorDataset

a = args()
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
(x, y), (xt, yt) = data()


class Module(L.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = model(a.depth, a.width)

    def training_step(self, batch, idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch, idx):
        x, y = batch
        self.log("test_acc", (self.net(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=a.lr, momentum=0.9)


class GradNorms(L.Callback):
    def __init__(self):
        self.rows, self.t0, self.t1 = [], None, None

    def on_train_start(self, trainer, module):  # the loop's own time, as skipexp's train_seconds
        self.t0 = time.perf_counter()

    def on_train_end(self, trainer, module):
        self.t1 = time.perf_counter()

    def on_before_optimizer_step(self, trainer, module, optimizer):
        if trainer.global_step % a.log_every == 0:
            self.rows.append({k: v.item() for k, v in grad_norm(module, norm_type=2).items()})


trainer = L.Trainer(max_epochs=a.epochs, accelerator="gpu" if a.device.startswith("cuda") else "cpu", devices=1,
                    logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, callbacks=[grad_norms := GradNorms()], num_sanity_val_steps=0)
train_loader = DataLoader(TensorDataset(x, y), batch_size=a.batch_size, shuffle=True, drop_last=True)
test_loader = DataLoader(TensorDataset(xt, yt), batch_size=1000)
trainer.fit(Module(), train_loader, test_loader)
report(trainer.global_step, grad_norms.t1 - grad_norms.t0)
