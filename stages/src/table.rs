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

/// One AR's block of rows: each channel is its `(81, T)` array, row-major (`k·T + t`).
#[derive(Debug, Clone, PartialEq)]
pub struct ArBlock {
    pub ar: u32,
    pub times: Vec<i64>,
    pub values: [Vec<f64>; 6],
}

impl From<crate::solared::ArSeries> for ArBlock {
    /// Moves an AR's arrays into a block (no copy), in the table's channel order.
    fn from(s: crate::solared::ArSeries) -> ArBlock {
        let [p23, p34, p45, p56] = s.power;
        ArBlock {
            ar: s.ar,
            times: s.times,
            values: [s.ic, s.flux, p23, p34, p45, p56],
        }
    }
}

impl ArBlock {
    pub fn len(&self) -> usize {
        self.times.len()
    }
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    fn frame(self) -> PolarsResult<DataFrame> {
        let n = self.len();
        let rows = TILES * n;
        let ar = vec![self.ar; rows];
        let tile: Vec<u32> = (0..TILES as u32)
            .flat_map(|k| std::iter::repeat_n(k, n))
            .collect();
        let t: Vec<u32> = (0..TILES).flat_map(|_| 0..n as u32).collect();
        let time: Vec<i64> = (0..TILES)
            .flat_map(|_| self.times.iter().copied())
            .collect();
        let time = Int64Chunked::from_vec("time".into(), time)
            .into_datetime(TimeUnit::Microseconds, None)
            .into_column();
        let mut cols = vec![
            Column::new("ar".into(), ar),
            Column::new("tile".into(), tile),
            Column::new("t".into(), t),
            time,
        ];
        for (name, v) in CHANNELS.iter().zip(self.values) {
            cols.push(Column::new((*name).into(), v));
        }
        DataFrame::new(rows, cols)
    }
}

/// A tidy series table in memory, one block per AR in table order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesTable {
    pub blocks: Vec<ArBlock>,
}

impl SeriesTable {
    pub fn rows(&self) -> usize {
        self.blocks.iter().map(|b| TILES * b.len()).sum()
    }

    /// Appends an AR's `(81, T)` row-major arrays, given in [`CHANNELS`] order (moved, not copied).
    pub fn push(&mut self, ar: u32, times: Vec<i64>, values: [Vec<f64>; 6]) {
        debug_assert!(values.iter().all(|v| v.len() == TILES * times.len()));
        self.blocks.push(ArBlock { ar, times, values });
    }

    pub fn block(&self, ar: u32) -> Option<&ArBlock> {
        self.blocks.iter().find(|b| b.ar == ar)
    }

    /// The `(81·T)` slice of one channel of one block.
    pub fn channel<'a>(&self, b: &'a ArBlock, ch: usize) -> &'a [f64] {
        &b.values[ch]
    }

    /// Rebuilds the table from a frame read back from [`SeriesTable::write`], checking its layout.
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
            Ok(c.no_null_iter().collect())
        };
        let ar = u32s("ar")?;
        let tile = u32s("tile")?;
        let t = u32s("t")?;
        let time: Vec<i64> = col("time")?
            .datetime()
            .map_err(|e| format!("column `time`: {e}"))?
            .physical()
            .no_null_iter()
            .collect();
        let mut values: Vec<Vec<f64>> = Vec::with_capacity(CHANNELS.len());
        for name in CHANNELS {
            let c = col(name)?
                .f64()
                .map_err(|e| format!("column `{name}`: {e}"))?;
            // Nulls never occur in what magpipe writes; NaN is how missing samples are kept.
            values.push(c.iter().map(|x| x.unwrap_or(f64::NAN)).collect());
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
                values: std::array::from_fn(|c| values[c][row..row + len].to_vec()),
            });
            row += len;
        }
        Ok(SeriesTable { blocks })
    }

    pub fn write(self, path: &Path) -> Result<(), StageError> {
        use rayon::prelude::*;
        let groups: Vec<EncodedGroup> = self
            .blocks
            .into_par_iter()
            .map(encode_block)
            .collect::<PolarsResult<Vec<_>>>()
            .map_err(|e| StageError::table(path, e))?
            .into_iter()
            .flatten()
            .collect();
        write_series_groups(&groups, path)
    }

    pub fn read(path: &Path) -> Result<SeriesTable, StageError> {
        let df = read_parquet(path)?;
        SeriesTable::from_frame(&df).map_err(|e| StageError::table(path, e))
    }
}

use polars_parquet::write::{CompressedPage, Encoding, SchemaDescriptor, WriteOptions};

/// One row group, encoded and compressed, ready to be written.
pub struct EncodedGroup {
    rows: u64,
    columns: Vec<Vec<CompressedPage>>,
}

/// What every row group of one file is encoded with.
struct Layout {
    arrow: ArrowSchema,
    parquet: SchemaDescriptor,
    encodings: Vec<Vec<Encoding>>,
    options: WriteOptions,
}

impl Layout {
    fn of(schema: &Schema) -> PolarsResult<Layout> {
        use polars_parquet::write::{
            CompressionOptions, StatisticsOptions, Version, to_parquet_schema,
        };
        let arrow = schema.to_arrow(CompatLevel::newest());
        let parquet = to_parquet_schema(&arrow)?;
        // Floats are plain-encoded: measured values never repeat enough for a dictionary, and
        // polars' cardinality estimate that decides it was a tenth of the write time.
        let encodings = polars_io::parquet::write::get_encodings(&arrow)
            .iter()
            .zip(arrow.iter_values())
            .map(|(e, f)| match f.dtype {
                ArrowDataType::Float64 | ArrowDataType::Float32 => vec![Encoding::Plain],
                _ => e.clone(),
            })
            .collect();
        let options = WriteOptions {
            statistics: StatisticsOptions::empty(),
            // LZ4 halves the files for under 10% of the write time; zstd cost three times as much.
            compression: CompressionOptions::Lz4Raw,
            version: Version::V1,
            data_page_size: None,
        };
        Ok(Layout {
            arrow,
            parquet,
            encodings,
            options,
        })
    }

    /// Encodes and compresses every chunk of `df` (one row group each).
    fn encode(&self, df: &DataFrame) -> PolarsResult<Vec<EncodedGroup>> {
        use polars_parquet::write::{array_to_columns, compress};
        df.iter_chunks(CompatLevel::newest(), false)
            .map(|batch| {
                let mut columns = Vec::new();
                for ((array, ty), enc) in batch
                    .columns()
                    .iter()
                    .zip(self.parquet.fields())
                    .zip(&self.encodings)
                {
                    for pages in array_to_columns(array, ty.clone(), self.options, enc)? {
                        columns.push(
                            pages
                                .map(|p| Ok(compress(p?, Vec::new(), self.options.compression)?))
                                .collect::<PolarsResult<Vec<_>>>()?,
                        );
                    }
                }
                Ok(EncodedGroup {
                    rows: batch.len() as u64,
                    columns,
                })
            })
            .collect()
    }

    fn write(self, groups: &[EncodedGroup], path: &Path) -> PolarsResult<()> {
        use polars_parquet::write::{
            DynIter, DynStreamingIterator, FileWriter, fallible_streaming_iterator,
        };
        let file = std::fs::File::create(path)?;
        let mut w = FileWriter::try_new(
            std::io::BufWriter::with_capacity(1 << 20, file),
            self.arrow,
            self.options,
        )?;
        for g in groups {
            let rg = DynIter::new(g.columns.iter().map(|pages| {
                Ok(DynStreamingIterator::new(
                    fallible_streaming_iterator::convert(pages.iter().map(PolarsResult::Ok)),
                ))
            }));
            w.write(g.rows, rg)?;
        }
        w.end(None)?;
        Ok(())
    }
}

/// Writes a frame with one row group per chunk.
///
/// polars' own writer encodes columns in parallel but compresses pages lazily on the writing
/// thread, which made Parquet output most of the ingest stage's time. Here every row group is
/// encoded and compressed on the rayon pool, and only the ordered write is sequential.
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<(), StageError> {
    use rayon::prelude::*;
    let err = |e: PolarsError| StageError::table(path, e);
    df.align_chunks_par();
    let layout = Layout::of(df.schema()).map_err(err)?;
    let chunks: Vec<DataFrame> = df.split_chunks().collect();
    let groups: Vec<EncodedGroup> = chunks
        .par_iter()
        .map(|c| layout.encode(c))
        .collect::<PolarsResult<Vec<_>>>()
        .map_err(err)?
        .into_iter()
        .flatten()
        .collect();
    layout.write(&groups, path).map_err(err)
}

/// Encodes one AR block as a row group of a series table, so callers can do it on the thread that
/// produced the block, while its data is still in cache.
pub fn encode_block(block: ArBlock) -> PolarsResult<Vec<EncodedGroup>> {
    let df = block.frame()?;
    Layout::of(df.schema())?.encode(&df)
}

/// Writes row groups made by [`encode_block`], in order, as one series table.
pub fn write_series_groups(groups: &[EncodedGroup], path: &Path) -> Result<(), StageError> {
    let err = |e: PolarsError| StageError::table(path, e);
    let empty = ArBlock {
        ar: 0,
        times: Vec::new(),
        values: Default::default(),
    }
    .frame()
    .map_err(err)?;
    Layout::of(empty.schema())
        .map_err(err)?
        .write(groups, path)
        .map_err(err)
}

pub fn read_parquet(path: &Path) -> Result<DataFrame, StageError> {
    let file = std::fs::File::open(path).map_err(|e| StageError::io(path, e))?;
    ParquetReader::new(file)
        .finish()
        .map_err(|e| StageError::table(path, e))
}

/// A GitHub Markdown table. Callers format the cells: polars' own display rounds numbers, which
/// is too lossy for provenance.
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

/// Writes named f32 tensors (little-endian, row-major) as one safetensors file: windows for
/// training and for forecasts, and a worker's outputs.
pub fn write_f32(path: &Path, tensors: &[(String, Vec<usize>, &[f32])]) -> std::io::Result<()> {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(std::io::Error::other)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, path).map_err(std::io::Error::other)
}
