"""PyTorch eager reference for `make bench`: the Table 1 best MagFluxLSTM (h=128, L=4, B=64,
W=110), hybrid loss x100, Adam with coupled weight decay, gradient clipping at 1.0, on a pool of
4 random batches. Prints training windows/s after 5 warm-up steps."""
import sys
import time

import torch
from torch import nn

threads, steps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)


class MagFluxLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 128, num_layers=4, dropout=0.1, batch_first=True)
        self.head = nn.Linear(128, 12)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1, :])


def hybrid(p, y, alpha=0.7):
    mse = ((p - y) ** 2).mean()
    dp, dy = p[:, 1:] - p[:, :-1], y[:, 1:] - y[:, :-1]
    return alpha * mse + (1 - alpha) * ((dp - dy) ** 2).mean()


model = MagFluxLSTM().train()
opt = torch.optim.Adam(model.parameters(), lr=7e-3, weight_decay=1.4e-6)
batches = [(torch.randn(64, 110, 5), torch.randn(64, 12)) for _ in range(4)]


def step(i):
    x, y = batches[i % 4]
    opt.zero_grad()
    (hybrid(model(x), y) * 100).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


for i in range(5):
    step(i)
t0 = time.perf_counter()
for i in range(steps):
    step(i)
print(f"{steps * 64 / (time.perf_counter() - t0):.1f}")
