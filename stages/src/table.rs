//! The tidy series table shared by ingest, scale and window: one row per (AR, tile, hour) with
//! columns `ar, tile, t, time, ic, flux, p23, p34, p45, p56`, rows ordered by AR (in the order
//! the table lists them), tile, hour. Stored as Parquet through polars.

use std::path::Path;

use polars::prelude::*;

use crate::kind::StageError;
use crate::solared::TILES;

/// The value channels, in the column order of the table.
pub const CHANNELS: [&str; 6] = ["ic", "flux", "p23", "p34", "p45", "p56"];
/// Index of each channel in [`CHANNELS`].
pub const IC: usize = 0;
pub const FLUX: usize = 1;
/// The four acoustic power bands (2–3, 3–4, 4–5, 5–6 mHz).
pub const POWER: [usize; 4] = [2, 3, 4, 5];
/// Model input features per time step, in the study's order: the four bands, then Ic.
pub const FEATURES: [usize; 5] = [2, 3, 4, 5, 0];

/// One AR's block of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ArBlock {
    pub ar: u32,
    pub times: Vec<i64>,
    /// Row of this block's first sample in the table.
    pub offset: usize,
}

impl ArBlock {
    pub fn len(&self) -> usize {
        self.times.len()
    }
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }
    /// Row of sample (tile k, hour t).
    pub fn row(&self, k: usize, t: usize) -> usize {
        self.offset + k * self.len() + t
    }
}

/// A tidy series table in memory: per-channel columns over all rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesTable {
    pub blocks: Vec<ArBlock>,
    pub values: [Vec<f64>; 6],
}

impl SeriesTable {
    pub fn rows(&self) -> usize {
        self.values[0].len()
    }

    /// Appends an AR's `(81, T)` row-major arrays, given in [`CHANNELS`] order.
    pub fn push(&mut self, ar: u32, times: Vec<i64>, channels: [&[f64]; 6]) {
        let offset = self.rows();
        for (col, src) in self.values.iter_mut().zip(channels) {
            debug_assert_eq!(src.len(), TILES * times.len());
            col.extend_from_slice(src);
        }
        self.blocks.push(ArBlock { ar, times, offset });
    }

    pub fn block(&self, ar: u32) -> Option<&ArBlock> {
        self.blocks.iter().find(|b| b.ar == ar)
    }

    /// The `(81·T)` slice of one channel of one block.
    pub fn channel(&self, b: &ArBlock, ch: usize) -> &[f64] {
        &self.values[ch][b.offset..b.offset + TILES * b.len()]
    }

    pub fn to_frame(&self) -> PolarsResult<DataFrame> {
        let n = self.rows();
        let mut ar = Vec::with_capacity(n);
        let mut tile = Vec::with_capacity(n);
        let mut t = Vec::with_capacity(n);
        let mut time = Vec::with_capacity(n);
        for b in &self.blocks {
            for k in 0..TILES as u32 {
                ar.extend(std::iter::repeat_n(b.ar, b.len()));
                tile.extend(std::iter::repeat_n(k, b.len()));
                t.extend(0..b.len() as u32);
                time.extend_from_slice(&b.times);
            }
        }
        let time = Int64Chunked::from_vec("time".into(), time)
            .into_datetime(TimeUnit::Microseconds, None)
            .into_column();
        let mut cols = vec![
            Column::new("ar".into(), ar),
            Column::new("tile".into(), tile),
            Column::new("t".into(), t),
            time,
        ];
        for (name, v) in CHANNELS.iter().zip(&self.values) {
            cols.push(Column::new((*name).into(), v.clone()));
        }
        DataFrame::new(n, cols)
    }

    /// Rebuilds the table from a frame written by [`SeriesTable::to_frame`], checking its layout.
    pub fn from_frame(df: &DataFrame) -> Result<SeriesTable, String> {
        let col = |name: &str| {
            df.column(name)
                .map_err(|_| format!("column `{name}` is missing"))
        };
        let u32s = |name: &str| -> Result<Vec<u32>, String> {
            let c = col(name)?
                .u32()
                .map_err(|e| format!("column `{name}`: {e}"))?;
            if c.null_count() > 0 {
                return Err(format!("column `{name}` has nulls"));
            }
            Ok(c.into_no_null_iter().collect())
        };
        let ar = u32s("ar")?;
        let tile = u32s("tile")?;
        let t = u32s("t")?;
        let time: Vec<i64> = col("time")?
            .datetime()
            .map_err(|e| format!("column `time`: {e}"))?
            .physical()
            .into_no_null_iter()
            .collect();
        let mut values: [Vec<f64>; 6] = Default::default();
        for (v, name) in values.iter_mut().zip(CHANNELS) {
            let c = col(name)?
                .f64()
                .map_err(|e| format!("column `{name}`: {e}"))?;
            // Nulls never occur in what magpipe writes; NaN is how missing samples are kept.
            *v = c.iter().map(|x| x.unwrap_or(f64::NAN)).collect();
        }
        let mut blocks = Vec::new();
        let mut row = 0;
        while row < ar.len() {
            let a = ar[row];
            let len = ar[row..].iter().take_while(|&&x| x == a).count();
            if len % TILES != 0 {
                return Err(format!(
                    "AR{a} has {len} rows, not a multiple of {TILES} tiles"
                ));
            }
            let tt = len / TILES;
            for i in 0..len {
                let (k, h) = (i / tt, i % tt);
                if tile[row + i] as usize != k || t[row + i] as usize != h {
                    return Err(format!("AR{a}: rows are not ordered by tile, then hour"));
                }
            }
            blocks.push(ArBlock {
                ar: a,
                times: time[row..row + tt].to_vec(),
                offset: row,
            });
            row += len;
        }
        Ok(SeriesTable { blocks, values })
    }

    pub fn write(&self, path: &Path) -> Result<(), StageError> {
        let mut df = self.to_frame().map_err(|e| StageError::table(path, e))?;
        write_parquet(&mut df, path)
    }

    pub fn read(path: &Path) -> Result<SeriesTable, StageError> {
        let df = read_parquet(path)?;
        SeriesTable::from_frame(&df).map_err(|e| StageError::table(path, e))
    }
}

pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<(), StageError> {
    let file = std::fs::File::create(path).map_err(|e| StageError::io(path, e))?;
    ParquetWriter::new(file)
        .with_compression(ParquetCompression::Zstd(None))
        .with_statistics(StatisticsOptions::empty())
        .finish(df)
        .map_err(|e| StageError::table(path, e))?;
    Ok(())
}

pub fn read_parquet(path: &Path) -> Result<DataFrame, StageError> {
    let file = std::fs::File::open(path).map_err(|e| StageError::io(path, e))?;
    ParquetReader::new(file)
        .finish()
        .map_err(|e| StageError::table(path, e))
}

/// Renders a frame as a GitHub Markdown table (numbers as polars formats them is too lossy for
/// provenance, so callers pass strings).
pub fn markdown(header: &[&str], rows: &[Vec<String>]) -> String {
    let esc = |s: &str| s.replace('|', "\\|");
    let mut out = format!(
        "| {} |\n|{}|\n",
        header
            .iter()
            .map(|h| esc(h))
            .collect::<Vec<_>>()
            .join(" | "),
        header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for r in rows {
        out.push_str(&format!(
            "| {} |\n",
            r.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
        ));
    }
    out
}
