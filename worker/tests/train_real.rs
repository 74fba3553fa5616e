//! A small training run on real SolARED windows: the loss goes down, the metric is finite, and a
//! fixed seed on one thread gives bit-identical weights.

use std::path::PathBuf;

use magpipe_stages::scale::{self, ScaleParams};
use magpipe_stages::solared;
use magpipe_stages::table::SeriesTable;
use magpipe_stages::window::{self, WindowParams};
use magpipe_worker::model::{Arch, ModelConfig};
use magpipe_worker::train::{EarlyStop, Loss, TrainConfig, Trainer, Windows};
use tch::{Device, Tensor};

/// libtorch's generator (init, dropout) is global to the process: tests that train take turns.
static TORCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn data() -> PathBuf {
    solared::checkout_data_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
}

fn windows(ars: &[u32], fit: &[u32], p: &WindowParams) -> Windows {
    let mut t = SeriesTable::default();
    let mut wanted: Vec<u32> = ars.iter().chain(fit).copied().collect();
    wanted.sort_unstable();
    wanted.dedup();
    for ar in wanted {
        t.blocks.push(solared::load_ar(&data(), ar).unwrap().into());
    }
    let scaler = scale::fit(&t, fit, &ScaleParams::default()).unwrap();
    let w = window::make(&scale::apply(&t, ars, &scaler).unwrap(), p);
    let n = w.index.len() as i64;
    Windows {
        x: Tensor::from_slice(&w.x).view([n, p.input as i64, 5]),
        y: Tensor::from_slice(&w.y).view([n, p.horizon as i64]),
    }
}

fn config(seed: u64) -> TrainConfig {
    TrainConfig {
        model: ModelConfig {
            arch: Arch::Lstm,
            input: 5,
            hidden: 16,
            layers: 2,
            dropout: 0.1,
            horizon: 12,
            bf16: false,
            kernels: magpipe_stages::train::Kernels::Native,
        },
        batch_size: 64,
        shuffle: true,
        lr: 7e-3,
        weight_decay: 1.4e-6,
        loss: Loss::Hybrid { alpha: 0.7 },
        loss_scale: 100.0,
        teacher_forcing_ratio: 0.0,
        epochs: 2,
        early_stop: EarlyStop::None,
        seed,
    }
}

#[test]
fn small_real_run_learns_and_is_reproducible() {
    let _turn = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    let p = WindowParams {
        input: 48,
        ..Default::default()
    };
    let fit = [11130, 11149, 11158];
    let train = windows(&fit, &fit, &p);
    let val = windows(&[11462], &fit, &p);
    assert_eq!(train.len(), 3 * 9 * (240 - 48 - 12 + 2));

    let run = |seed| {
        let mut t = Trainer::new(config(seed), Device::Cpu);
        let before = t
            .loss(&t.model.forward(&train.x, false, None), &train.y)
            .double_value(&[]);
        let epochs: Vec<_> = (1..=2)
            .map(|_| t.epoch(&train, &val, &mut |_, _, _| {}))
            .collect();
        let after = t
            .loss(&t.model.forward(&train.x, false, None), &train.y)
            .double_value(&[]);
        let weights: Vec<Tensor> = t.vs.trainable_variables();
        (before, after, epochs, weights, t.zero_slope(&val))
    };
    let (before, after, epochs, w1, zero) = run(3);
    assert!(after < before, "training loss {before} → {after}");
    assert!(
        epochs
            .iter()
            .all(|e| e.val_rmse.is_finite() && e.val_rmse > 0.0)
    );
    assert!(zero > 0.0);
    let (_, _, epochs2, w2, _) = run(3);
    // Timings differ from run to run; everything computed must not.
    let computed = |e: &[magpipe_worker::train::Epoch]| -> Vec<(f64, f64, f64)> {
        e.iter().map(|e| (e.train_loss, e.val_rmse, e.lr)).collect()
    };
    assert_eq!(computed(&epochs), computed(&epochs2));
    assert!(
        w1.iter().zip(&w2).all(|(a, b)| a.equal(b)),
        "same seed, one thread: identical weights"
    );
    let (_, _, _, w3, _) = run(4);
    assert!(
        !w1.iter().zip(&w3).all(|(a, b)| a.equal(b)),
        "another seed gives other weights"
    );
}

#[test]
fn a_run_resumed_from_its_checkpoint_ends_bit_identical() {
    let _turn = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    let p = WindowParams {
        input: 40,
        ..Default::default()
    };
    let fit = [11162, 11199];
    let train = windows(&fit, &fit, &p);
    let val = windows(&[11521], &fit, &p);
    let mut cfg = config(11);
    cfg.model.arch = Arch::EncDec;
    cfg.teacher_forcing_ratio = 0.5;
    cfg.epochs = 3;

    let mut whole = Trainer::new(cfg.clone(), Device::Cpu);
    while !whole.done() {
        whole.epoch(&train, &val, &mut |_, _, _| {});
    }

    let dir = tempfile::tempdir().unwrap();
    let mut first = Trainer::new(cfg.clone(), Device::Cpu);
    first.epoch(&train, &val, &mut |_, _, _| {});
    first.save_checkpoint(dir.path()).unwrap();
    drop(first);
    // A new process would start here: fresh trainer, then the checkpoint.
    let mut resumed = Trainer::new(cfg, Device::Cpu);
    assert!(resumed.load_checkpoint(dir.path()).unwrap());
    assert_eq!(resumed.progress.history.len(), 1);
    while !resumed.done() {
        resumed.epoch(&train, &val, &mut |_, _, _| {});
    }
    for (a, b) in whole
        .vs
        .trainable_variables()
        .iter()
        .zip(resumed.vs.trainable_variables())
    {
        assert!(a.equal(&b));
    }
    let metric = |t: &Trainer| {
        t.progress
            .history
            .iter()
            .map(|e| e.val_rmse)
            .collect::<Vec<_>>()
    };
    assert_eq!(metric(&whole), metric(&resumed));
}
