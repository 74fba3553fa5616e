"""The study's test protocol for a model written in Python, so a command stage's predictions are
scored exactly like `predict`'s: the same test windows, the same per-tile recalibration, the same
tables (contracts magpipe.predictions/1 and magpipe.summary/1, documented by `magpipe kinds`).

A model only maps windows to forecasts: `x` of shape (N, W, 5), features [p23, p34, p45, p56, ic]
in scaled units, to (N, P) scaled flux for the next P hours. This module does the rest.
"""

import json
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.numpy import load_file

CHANNELS = ["ic", "flux", "p23", "p34", "p45", "p56"]
FEATURES = ["p23", "p34", "p45", "p56", "ic"]


def stage():
    """What magpipe hands the command: params, input and output paths, threads, seed, device."""
    with open(os.environ["MAGPIPE_STAGE"]) as f:
        return json.load(f)


def progress(done, total, unit):
    """Moves the stage's progress bar."""
    print(f"magpipe: progress {done}/{total} {unit}", file=sys.stderr, flush=True)


def read_windows(path):
    """magpipe.windows/1 → (x, y) as float32 arrays."""
    t = load_file(path)
    return t["x"], t["y"]


def read_json(path):
    with open(path) as f:
        return json.load(f)


def read_series(path):
    """magpipe.series/1 → AR → (times int64 µs [T], values {channel: float64 [tiles, T]})."""
    table = pq.read_table(path)
    ar = table["ar"].to_numpy()
    tile = table["tile"].to_numpy()
    t = table["t"].to_numpy()
    time = table["time"].cast(pa.int64()).to_numpy()
    out = {}
    for a in np.unique(ar):
        rows = np.flatnonzero(ar == a)
        tiles = int(tile[rows].max()) + 1
        n = int(t[rows].max()) + 1
        if len(rows) != tiles * n:
            raise ValueError(f"{path}: AR{a} has {len(rows)} rows, not {tiles} × {n}")
        order = rows[np.lexsort((t[rows], tile[rows]))]
        values = {
            c: table[c].to_numpy()[order].reshape(tiles, n).astype(np.float64) for c in CHANNELS
        }
        times = time[order][:n]
        out[int(a)] = (times, values)
    return out


def test_inputs(series, g, k):
    """The test windows of tile k of AR g: (windows, W, 5) float32, as `predict` cuts them."""
    _, values = series[g["ar"]]
    feats = np.stack([values[c][k] for c in FEATURES], axis=-1).astype(np.float32)
    w = g["input"]
    return np.stack([feats[j : j + w] for j in range(g["windows"])])


def _observed_index(g, q):
    lk, h = g["last_known"], g["history"]
    return lk - h + q if q < h else lk + 1 + (q - h)


def write_predictor(outputs, protocol, series, scaler, label, forecast, summary):
    """Runs `forecast` ((N, W, 5) → (N, P)) over every protocol AR and scored tile and writes
    `outputs["predictions"]` and `outputs["summary"]`; `summary` gives the fields the model
    knows (kind, model, loss, val_rmse, zero_slope_rmse, collapsed, params, param_count,
    epochs_run)."""
    fmin, fmax = scaler["pairs"]["flux"]["min"], scaler["pairs"]["flux"]["max"]

    def gauss(v):
        return v * (fmax - fmin) + fmin

    cols = {c: [] for c in ["ar", "k", "tile", "q", "time", "observed", "predicted",
                            "predicted_raw", "observed_gauss", "predicted_gauss", "in_span",
                            "in_metric"]}
    mean_rmse = {}
    step = protocol["output_step"]
    hours = protocol["metric_hours"]
    for g in protocol["ars"]:
        times, values = series[g["ar"]]
        rmses = []
        for k in g["tiles"]:
            phi = values["flux"][k]
            yhat = np.asarray(forecast(test_inputs(series, g, k)), dtype=np.float32)[:, step]
            yhat = yhat.astype(np.float64)
            offset = phi[g["last_known"]] - yhat[0] if protocol["recalibrate"] else 0.0
            pred = yhat + offset
            h = g["history"]
            for q in range(g["axis_len"]):
                o = phi[_observed_index(g, q)]
                p = pred[q - h] if q >= h else None
                cols["ar"].append(g["ar"])
                cols["k"].append(k)
                cols["tile"].append(k + 1)
                cols["q"].append(q)
                cols["time"].append(times[g["last_known"] - h + q])
                cols["observed"].append(o)
                cols["predicted"].append(p)
                cols["predicted_raw"].append(yhat[q - h] if q >= h else None)
                cols["observed_gauss"].append(gauss(o))
                cols["predicted_gauss"].append(None if p is None else gauss(p))
                cols["in_span"].append(q < h + g["span"])
                cols["in_metric"].append(g["metric_start"] <= q < g["metric_start"] + hours)
            r = range(g["metric_start"], g["metric_start"] + hours)
            o = np.array([gauss(phi[_observed_index(g, q)]) for q in r])
            p = np.array([gauss(pred[q - h]) for q in r])
            rmses.append(float(np.sqrt(np.mean((o - p) ** 2))))
        mean_rmse[f"AR{g['ar']}"] = float(np.mean(rmses))
    n = len(cols["ar"])
    u32, f64 = pa.uint32(), pa.float64()
    table = pa.table({
        "predictor": pa.array([label] * n, pa.string()),
        "ar": pa.array(cols["ar"], u32),
        "k": pa.array(cols["k"], u32),
        "tile": pa.array(cols["tile"], u32),
        "q": pa.array(cols["q"], u32),
        "time": pa.array(np.array(cols["time"], dtype="datetime64[us]"), pa.timestamp("us")),
        "observed": pa.array(cols["observed"], f64),
        "predicted": pa.array(cols["predicted"], f64),
        "predicted_raw": pa.array(cols["predicted_raw"], f64),
        "observed_gauss": pa.array(cols["observed_gauss"], f64),
        "predicted_gauss": pa.array(cols["predicted_gauss"], f64),
        "in_span": pa.array(cols["in_span"], pa.bool_()),
        "in_metric": pa.array(cols["in_metric"], pa.bool_()),
    })
    pq.write_table(table, outputs["predictions"])
    full = {"predictor": label, "loss": "", "param_count": None, "epochs_run": None}
    full.update(summary)
    full["mean_rmse_gauss"] = mean_rmse
    with open(outputs["summary"], "w") as f:
        json.dump(full, f, indent=2, sort_keys=True)
        f.write("\n")
    return mean_rmse


def derivative_rmse(pred, target):
    """The study's validation metric: RMSE of forward differences over the horizon."""
    e = np.diff(pred.astype(np.float64), axis=1) - np.diff(target.astype(np.float64), axis=1)
    return float(np.sqrt(np.mean(e * e)))
