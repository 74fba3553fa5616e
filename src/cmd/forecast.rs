//! `magpipe forecast`: a trained model's forecast of an AR folder, or `--replay` of ARs hour by
//! hour.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use magpipe_engine::error::RunError;
use magpipe_stages::commands::forecast as fc;
use magpipe_stages::solared::{GRID, TILES};

use super::Ctx;

/// An engine error stays one (a usage error exits 2), a forecast's own is a plain message.
fn plain(e: fc::Error) -> anyhow::Error {
    match e {
        fc::Error::Engine(e) => e.into(),
        other => other.into(),
    }
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum ForecastFormat {
    Text,
    Json,
    Md,
}

#[derive(clap::Args)]
pub struct Args {
    /// The train stage, optionally `@VARIANT` (default: the model of Table 2).
    #[arg(long, value_name = "STAGE[@VARIANT]")]
    model: Option<String>,
    /// The AR folder (SolARED layout, possibly still growing).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "replay",
        conflicts_with = "replay",
        value_parser = super::cli_path
    )]
    ar: Option<PathBuf>,
    /// Use only the hours up to TIME (`YYYY-MM-DD HH:MM[:SS]`, which covers that minute or
    /// second): the forecast as it was at that moment.
    #[arg(long, value_name = "TIME", requires = "ar")]
    at: Option<String>,
    /// Replay these ARs hour by hour (AR numbers in the pipeline's data folder, or AR
    /// folders; none: the model's test ARs) and write the alarm timeline.
    #[arg(long, value_name = "AR", num_args = 0..)]
    replay: Option<Vec<String>>,
    /// Paper tile numbers (k + 1) to forecast: `37-45` or `41,42` (default: the study's
    /// test tiles of the AR, else the model's training row).
    #[arg(long, value_name = "TILES", conflicts_with = "rows")]
    tiles: Option<String>,
    /// Grid rows 0–8 whose nine tiles to forecast: `4` or `3,4,5`.
    #[arg(long, value_name = "ROWS", value_delimiter = ',')]
    rows: Option<Vec<usize>>,
    /// Input hours per window (default: the study's for the AR, else the training input).
    #[arg(long, value_name = "HOURS")]
    input: Option<usize>,
    /// libtorch threads of the model run.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long, value_enum, default_value_t = ForecastFormat::Text)]
    format: ForecastFormat,
    /// Where a replay writes its files (default: `forecasts/<stage>/replay/` in the store).
    #[arg(short, long, value_name = "DIR", value_parser = super::cli_path)]
    out: Option<PathBuf>,
}

/// `37-45` or `41,42` (paper tile numbers) → flat indices k.
fn parse_tiles(s: &str) -> Result<Vec<usize>, RunError> {
    let bad = || {
        RunError::Usage(format!(
            "--tiles {s}: expected paper tile numbers 1–{TILES} like `37-45` or `41,42`"
        ))
    };
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let (a, b) = part.split_once(['-', '–']).unwrap_or((part, part));
        let (a, b): (usize, usize) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if a == 0 || b > TILES || a > b {
            return Err(bad());
        }
        out.extend(a - 1..b);
    }
    Ok(out)
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    let Args {
        model,
        ar,
        at,
        replay,
        tiles,
        rows,
        input,
        threads,
        format,
        out,
    } = a;
    let spec = ctx.spec()?;
    let store = &ctx.store;
    let res = fc::resolve(&spec, &ctx.registry, store, model.as_deref()).map_err(plain)?;
    if let Some(note) = &res.stale {
        eprintln!("note: {note}");
    }
    if let Some(r) = rows.as_deref()
        && let Some(bad) = r.iter().find(|&&r| r >= GRID)
    {
        return Err(RunError::Usage(format!(
            "--rows: row {bad} is outside the {GRID}×{GRID} grid (0–{})",
            GRID - 1
        ))
        .into());
    }
    let choice = magpipe_stages::forecast::Choice {
        tiles: tiles.as_deref().map(parse_tiles).transpose()?,
        rows: rows.clone(),
        input: *input,
    };
    let sink = &ctx.sink;
    if let Some(list) = replay {
        let dirs: Vec<PathBuf> = if list.is_empty() {
            let ars: Vec<u32> = res
                .frame
                .protocol
                .as_ref()
                .map(|p| p.ars.iter().map(|a| a.ar).collect())
                .unwrap_or_default();
            if ars.is_empty() {
                return Err(RunError::Usage(
                    "--replay: the model's pipeline has no test protocol; name the ARs to replay"
                        .into(),
                )
                .into());
            }
            ars.iter()
                .map(|a| fc::ar_folder(&a.to_string(), res.data_dir.as_deref()))
                .collect::<Result<_, _>>()
                .map_err(plain)?
        } else {
            list.iter()
                .map(|a| fc::ar_folder(a, res.data_dir.as_deref()))
                .collect::<Result<_, _>>()
                .map_err(plain)?
        };
        let out_dir = out
            .clone()
            .unwrap_or_else(|| fc::default_out(store, &res.info));
        let run =
            fc::replay(&res, &dirs, &choice, *threads, &out_dir, sink.as_ref()).map_err(plain)?;
        match format {
            ForecastFormat::Json => {
                println!("{}", serde_json::to_string_pretty(&run.report)?)
            }
            f => {
                print!(
                    "{}",
                    magpipe_stages::forecast::replay_text(&run.report, *f == ForecastFormat::Md)
                );
                println!("\nwritten to {}:", run.out_dir.display());
                for (name, path) in &run.report.files {
                    println!("  {name}\t{path}");
                }
                for a in &run.report.ars {
                    for (name, path) in &a.files {
                        println!("  AR{} {name}\t{path}", a.ar);
                    }
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let dir = ar.clone().expect("clap requires --ar without --replay");
    let until = at
        .as_deref()
        .map(|t| {
            magpipe_stages::solared::time::parse_until(t).ok_or_else(|| {
                RunError::Usage(format!("--at {t}: expected a time like `2013-03-12 04:59`"))
            })
        })
        .transpose()?;
    let r = fc::forecast(&res, &dir, until, &choice, *threads, sink.as_ref()).map_err(plain)?;
    match format {
        ForecastFormat::Json => println!("{}", serde_json::to_string_pretty(&r)?),
        f => print!(
            "{}",
            magpipe_stages::forecast::forecast_text(&r, *f == ForecastFormat::Md)
        ),
    }
    Ok(ExitCode::SUCCESS)
}
