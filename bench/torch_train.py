"""PyTorch eager reference for `make bench`: a Table 1 best configuration, the same model, loss
and step as `magpipe-worker bench-train`: MagFluxLSTM (h=128, L=4, B=64) or MagFluxEnc-Dec (h=64,
L=4, B=32, teacher forcing 0.15), W=110, hybrid loss x100, Adam with coupled weight decay,
gradient clipping at 1.0, on a pool of 4 random batches. Prints training windows/s after 5
warm-up steps.

usage: torch_train.py THREADS STEPS [lstm|encdec]"""
import random
import sys
import time

import torch
from torch import nn

threads, steps = int(sys.argv[1]), int(sys.argv[2])
arch = sys.argv[3] if len(sys.argv) > 3 else "lstm"
torch.set_num_threads(threads)
torch.manual_seed(0)
random.seed(0)


class MagFluxLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 128, num_layers=4, dropout=0.1, batch_first=True)
        self.head = nn.Linear(128, 12)

    def forward(self, x, y):
        out, _ = self.lstm(x)
        return self.head(out[:, -1, :])


class MagFluxEncDec(nn.Module):
    """The published decoder loop: 12 single steps, one teacher-forcing coin per step."""

    def __init__(self, tf=0.15):
        super().__init__()
        self.enc = nn.LSTM(5, 64, num_layers=4, dropout=0.2, batch_first=True)
        self.dec = nn.LSTM(1, 64, num_layers=4, dropout=0.2, batch_first=True)
        self.head = nn.Linear(64, 1)
        self.tf = tf

    def forward(self, x, y):
        _, (h, c) = self.enc(x)
        inp = torch.zeros(x.shape[0], 1, 1)
        outs = []
        for t in range(12):
            o, (h, c) = self.dec(inp, (h, c))
            y_hat = self.head(o[:, 0])
            inp = y[:, t:t + 1].unsqueeze(-1) if random.random() < self.tf else y_hat.unsqueeze(-1)
            outs.append(y_hat)
        return torch.cat(outs, 1)


def hybrid(p, y, alpha):
    mse = ((p - y) ** 2).mean()
    dp, dy = p[:, 1:] - p[:, :-1], y[:, 1:] - y[:, :-1]
    return alpha * mse + (1 - alpha) * ((dp - dy) ** 2).mean()


if arch == "encdec":
    model, batch, alpha = MagFluxEncDec().train(), 32, 0.9
    opt = torch.optim.Adam(model.parameters(), lr=9.7e-3, weight_decay=2.5e-5)
else:
    model, batch, alpha = MagFluxLSTM().train(), 64, 0.7
    opt = torch.optim.Adam(model.parameters(), lr=7e-3, weight_decay=1.4e-6)
batches = [(torch.randn(batch, 110, 5), torch.randn(batch, 12)) for _ in range(4)]


def step(i):
    x, y = batches[i % 4]
    opt.zero_grad()
    (hybrid(model(x, y), y, alpha) * 100).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


for i in range(5):
    step(i)
t0 = time.perf_counter()
for i in range(steps):
    step(i)
print(f"{steps * batch / (time.perf_counter() - t0):.1f}")
