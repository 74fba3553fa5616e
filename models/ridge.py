"""Ridge regression from the five input features of each window to its 12-hour flux target:
the question the paper never asks, whether the LSTM beats a linear model of the same acoustic
inputs. numpy only, closed form; `seed` draws the `subsample` of training windows.

Regressors per window, each of the five features [p23, p34, p45, p56, ic]: its last value, its
mean over the last `mean_hours` hours and its change over the last `slope_hours` hours (15 in
all, standardised on the training windows), plus an intercept. Targets: the P = 12 hourly flux
values, one ridge solution per step (alpha on the standardised regressors).
"""

import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import magpipe_study as ms  # noqa: E402


def regressors(x, mean_hours, slope_hours):
    last = x[:, -1, :]
    mean = x[:, -mean_hours:, :].mean(axis=1)
    slope = x[:, -1, :] - x[:, -1 - slope_hours, :]
    return np.concatenate([last, mean, slope], axis=1).astype(np.float64)


def main():
    st = ms.stage()
    p = st["params"]
    alpha = float(p.get("alpha", 1.0))
    mean_hours = int(p.get("mean_hours", 12))
    slope_hours = int(p.get("slope_hours", 6))
    subsample = float(p.get("subsample", 1.0))
    rng = np.random.default_rng(p.get("seed", 0))

    x, y = ms.read_windows(st["inputs"]["train"])
    if subsample < 1.0:
        keep = np.sort(rng.choice(len(x), size=max(1, int(len(x) * subsample)), replace=False))
        x, y = x[keep], y[keep]
    ms.progress(1, 3, "steps")
    f = regressors(x, mean_hours, slope_hours)
    mu, sd = f.mean(axis=0), f.std(axis=0)
    sd[sd == 0] = 1.0
    z = np.concatenate([(f - mu) / sd, np.ones((len(f), 1))], axis=1)
    reg = alpha * np.eye(z.shape[1])
    reg[-1, -1] = 0.0  # the intercept is not shrunk
    coef = np.linalg.solve(z.T @ z + reg, z.T @ y.astype(np.float64))

    def forecast(xs):
        fs = regressors(xs, mean_hours, slope_hours)
        zs = np.concatenate([(fs - mu) / sd, np.ones((len(fs), 1))], axis=1)
        return (zs @ coef).astype(np.float32)

    xv, yv = ms.read_windows(st["inputs"]["val"])
    val_pred = forecast(xv)
    val_rmse = ms.derivative_rmse(val_pred, yv)
    zero = ms.derivative_rmse(np.zeros_like(yv), yv)
    ms.progress(2, 3, "steps")

    model_dir = st["outputs"]["model"]
    os.makedirs(model_dir, exist_ok=True)
    save_file({"coef": coef, "mean": mu, "std": sd}, os.path.join(model_dir, "ridge.safetensors"))
    with open(os.path.join(model_dir, "model.json"), "w") as fh:
        json.dump({"alpha": alpha, "mean_hours": mean_hours, "slope_hours": slope_hours,
                   "train_windows": int(len(x)), "val_rmse": val_rmse}, fh, indent=2)
        fh.write("\n")

    protocol = ms.read_json(st["inputs"]["protocol"])
    series = ms.read_series(st["inputs"]["test"])
    scaler = ms.read_json(st["inputs"]["scaler"])
    rmse = ms.write_predictor(
        st["outputs"], protocol, series, scaler, "Ridge (acoustic inputs)", forecast,
        {"kind": "model", "model": "Ridge", "val_rmse": val_rmse, "zero_slope_rmse": zero,
         "collapsed": bool(val_rmse >= zero), "params": p, "param_count": int(coef.size)},
    )
    ms.progress(3, 3, "steps")
    print("ridge: val derivative RMSE %.4e (zero slope %.4e); test mean RMSE %s"
          % (val_rmse, zero, ", ".join(f"{a} {v:.1f} G" for a, v in rmse.items())))


if __name__ == "__main__":
    main()
