"""A one-layer GRU in PyTorch from the five input features of each window to its 12-hour flux
target, trained with MSE and Adam: the PyTorch example of docs/src/guide/own-stage.md, which the
test suite runs end to end (tests/pytorch_stage.rs). Its venv needs torch, numpy, pyarrow and
safetensors (models/torch.lock).
"""

import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import magpipe_study as ms  # noqa: E402


class GRU(torch.nn.Module):
    def __init__(self, hidden, horizon):
        super().__init__()
        self.gru = torch.nn.GRU(5, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, horizon)

    def forward(self, x):
        _, h = self.gru(x)
        return self.head(h[-1])


def main():
    st = ms.stage()
    p = st["params"]
    hidden, epochs = int(p.get("hidden", 16)), int(p.get("epochs", 2))
    lr, batch = float(p.get("lr", 3e-3)), int(p.get("batch_size", 256))
    subsample = float(p.get("subsample", 1.0))
    # The seed and thread count magpipe hands over make a rerun give the same bytes.
    torch.manual_seed(st["seed"] or 0)
    torch.set_num_threads(st["threads"])
    torch.use_deterministic_algorithms(True)
    device = torch.device(st["device"])

    x, y = ms.read_windows(st["inputs"]["train"])
    if subsample < 1.0:
        rng = np.random.default_rng(st["seed"] or 0)
        keep = np.sort(rng.choice(len(x), size=max(1, int(len(x) * subsample)), replace=False))
        x, y = x[keep], y[keep]
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    model = GRU(hidden, y.shape[1]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(st["seed"] or 0)
    for epoch in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt), generator=order).split(batch):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        ms.progress(epoch + 1, epochs, "epochs")

    model.eval()

    @torch.no_grad()
    def forecast(w):
        return model(torch.from_numpy(np.ascontiguousarray(w)).to(device)).cpu().numpy()

    xv, yv = ms.read_windows(st["inputs"]["val"])
    val_rmse = ms.derivative_rmse(forecast(xv), yv)
    zero = ms.derivative_rmse(np.zeros_like(yv), yv)

    model_dir = st["outputs"]["model"]
    os.makedirs(model_dir, exist_ok=True)
    save_file({k: v.cpu().contiguous() for k, v in model.state_dict().items()},
              os.path.join(model_dir, "gru.safetensors"))
    param_count = sum(t.numel() for t in model.parameters())
    with open(os.path.join(model_dir, "model.json"), "w") as fh:
        json.dump({"hidden": hidden, "epochs": epochs, "train_windows": int(len(x)),
                   "val_rmse": val_rmse, "torch": torch.__version__}, fh, indent=2)
        fh.write("\n")

    rmse = ms.write_predictor(
        st["outputs"], ms.read_json(st["inputs"]["protocol"]),
        ms.read_series(st["inputs"]["test"]), ms.read_json(st["inputs"]["scaler"]),
        "GRU (PyTorch)", forecast,
        {"kind": "model", "model": "GRU", "loss": "mse", "val_rmse": val_rmse,
         "zero_slope_rmse": zero, "collapsed": bool(val_rmse >= zero), "params": p,
         "param_count": param_count, "epochs_run": epochs},
    )
    print("gru: val derivative RMSE %.4e (zero slope %.4e); test mean RMSE %s"
          % (val_rmse, zero, ", ".join(f"{a} {v:.1f} G" for a, v in rmse.items())))


if __name__ == "__main__":
    main()
