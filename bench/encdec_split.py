"""Where a MagFluxEnc-Dec training step spends its time, in PyTorch eager on the Table 1 best
configuration (h=64, L=4, B=32, W=110): the whole step, the encoder alone and the 12-step
decoder loop alone, forward and backward, milliseconds per step, twice each. A one-off profile
for docs/src/guide/performance.md, not part of `make bench`; run it with the bench venv and, to
match magpipe's allocator, GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296

usage: encdec_split.py [THREADS]"""
import sys
import time

import torch
from torch import nn

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
torch.manual_seed(0)
enc = nn.LSTM(5, 64, num_layers=4, dropout=0.2, batch_first=True)
dec = nn.LSTM(1, 64, num_layers=4, dropout=0.2, batch_first=True)
head = nn.Linear(64, 1)
x, y = torch.randn(32, 110, 5), torch.randn(32, 12)


def decode(h, c):
    inp, outs = torch.zeros(32, 1, 1), []
    for _ in range(12):
        o, (h, c) = dec(inp, (h, c))
        y_hat = head(o[:, 0])
        inp = y_hat.unsqueeze(-1)
        outs.append(y_hat)
    return torch.cat(outs, 1)


def whole():
    _, (h, c) = enc(x)
    return decode(h, c)


def encoder():
    out, _ = enc(x)
    return head(out[:, -1]).expand(32, 12)


def decoder():
    zeros = lambda: torch.zeros(4, 32, 64, requires_grad=True)
    return decode(zeros(), zeros())


for name, f in [("whole step", whole), ("encoder", encoder), ("decoder loop", decoder)] * 2:
    for _ in range(3):
        f().sum().backward()
    t0 = time.perf_counter()
    for _ in range(30):
        f().sum().backward()
    print(f"{name}: {(time.perf_counter() - t0) / 30 * 1000:.1f} ms/step")
