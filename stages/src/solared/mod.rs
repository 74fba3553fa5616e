//! The SolARED dataset on disk: one folder `AR{n}/` per active region with three `.npz` files.
//! See docs/src/semantics.md §1 for the layout this module reads and validates.

pub mod fuzzing;
pub mod npy;
pub mod pickle;
pub mod time;
pub mod zip;

use std::path::{Path, PathBuf};

/// Tiles per AR: a 9×9 grid flattened row-major (`k = 9r + c`).
pub const TILES: usize = 81;
/// The 9×9 grid side.
pub const GRID: usize = 9;

/// Errors inside one `.npz` file (the file itself is named by [`SolaredError`]).
#[derive(Debug, thiserror::Error)]
pub enum NpzError {
    #[error("{0}")]
    Container(String),
    #[error("{0}")]
    Npy(String),
    #[error("shape {got:?}, expected {want:?}")]
    Shape { got: Vec<usize>, want: Vec<usize> },
    #[error("member {0} is missing")]
    MissingMember(String),
    #[error("{member}: {source}")]
    Pickle {
        member: String,
        #[source]
        source: pickle::PickleError,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SolaredError {
    #[error(
        "SolARED data folder {dir} {problem}. Point SOLARED_DIR at the folder that holds the AR* \
         folders, or put the data at data/solared. Get the data from the SolARED portal \
         (https://sun.njit.edu/sarportal/) or the public GitHub copy in \
         jonastirona/SAR_EMERGENCE_RESEARCH (folder data/)"
    )]
    DataDir { dir: PathBuf, problem: String },
    #[error("{path}: {what}")]
    Missing { path: PathBuf, what: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: NpzError,
    },
    #[error("AR{ar}: {msg}")]
    Inconsistent { ar: u32, msg: String },
}

impl From<SolaredError> for crate::kind::StageError {
    fn from(e: SolaredError) -> Self {
        crate::kind::StageError::domain(e)
    }
}

/// The raw arrays of one AR, row-major `(81, T)` each: sample (k, t) is at `k·T + t`.
#[derive(Debug, Clone, PartialEq)]
pub struct ArSeries {
    pub ar: u32,
    /// Timestamps, µs since 1970-01-01 (naive).
    pub times: Vec<i64>,
    pub ic: Vec<f64>,
    pub flux: Vec<f64>,
    /// Acoustic power, bands 2–3, 3–4, 4–5, 5–6 mHz.
    pub power: [Vec<f64>; 4],
}

impl ArSeries {
    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The AR as it was after its first `keep` hours.
    pub fn first_hours(&self, keep: usize) -> ArSeries {
        let t = self.len();
        let cut = |a: &Vec<f64>| first_hours(a, t, keep);
        ArSeries {
            ar: self.ar,
            times: self.times[..keep].to_vec(),
            ic: cut(&self.ic),
            flux: cut(&self.flux),
            power: [
                cut(&self.power[0]),
                cut(&self.power[1]),
                cut(&self.power[2]),
                cut(&self.power[3]),
            ],
        }
    }

    /// The six arrays in the tidy table's column order ([`crate::table::CHANNELS`]).
    pub fn channels(&self) -> [&[f64]; 6] {
        let [p23, p34, p45, p56] = &self.power;
        [&self.ic, &self.flux, p23, p34, p45, p56]
    }
}

/// The three files of an AR, in the order int, mag, pmdop.
pub fn ar_files(dir: &Path, ar: u32) -> [PathBuf; 3] {
    ar_files_in(&dir.join(format!("AR{ar}")), ar)
}

/// The three files of AR `ar` inside its own folder `d`.
pub fn ar_files_in(d: &Path, ar: u32) -> [PathBuf; 3] {
    [
        d.join(format!("mean_int{ar}_flat.npz")),
        d.join(format!("mean_mag{ar}_flat.npz")),
        d.join(format!("mean_pmdop{ar}_flat.npz")),
    ]
}

/// Where the real data is for tests and benchmarks run from a checkout: `$SOLARED_DIR` (relative
/// to `repo_root`), else `../shared/solared` beside the repository, as in CI. Panics with the
/// location when the data is not there, since those tests are meaningless without it.
pub fn checkout_data_dir(repo_root: &Path) -> PathBuf {
    let dir = std::env::var_os("SOLARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/solared"));
    let dir = if dir.is_relative() {
        repo_root.join(dir)
    } else {
        dir
    };
    assert!(
        dir.join("AR11130").is_dir(),
        "the real SolARED data is needed at {} (set SOLARED_DIR)",
        dir.display()
    );
    dir
}

/// The AR number of a folder name `AR<digits>`.
pub fn ar_number(name: &str) -> Option<u32> {
    name.strip_prefix("AR")?.parse::<u32>().ok()
}

/// The AR number of an AR folder: from its name `AR<n>`, else from the `mean_int<n>_flat.npz`
/// it holds.
pub fn folder_ar(folder: &Path) -> Result<u32, SolaredError> {
    if let Some(ar) = folder
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(ar_number)
    {
        return Ok(ar);
    }
    let entries = std::fs::read_dir(folder).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            SolaredError::Missing {
                path: folder.to_path_buf(),
                what: "AR folder does not exist".into(),
            }
        } else {
            SolaredError::Io {
                path: folder.to_path_buf(),
                source,
            }
        }
    })?;
    let mut found: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("mean_int")?
                .strip_suffix("_flat.npz")?
                .parse()
                .ok()
        })
        .collect();
    found.sort_unstable();
    found.dedup();
    match found[..] {
        [ar] => Ok(ar),
        [] => Err(SolaredError::Missing {
            path: folder.to_path_buf(),
            what: "is not an AR folder: it is not named AR<number> and holds no \
                   mean_int<number>_flat.npz"
                .into(),
        }),
        _ => Err(SolaredError::Missing {
            path: folder.to_path_buf(),
            what: format!("holds the files of several ARs ({found:?}); point at one AR's folder"),
        }),
    }
}

/// The AR numbers found in the data folder (folders named `AR<digits>`), ascending.
pub fn list_ars(dir: &Path) -> Result<Vec<u32>, SolaredError> {
    let entries = std::fs::read_dir(dir).map_err(|e| SolaredError::DataDir {
        dir: dir.to_path_buf(),
        problem: if e.kind() == std::io::ErrorKind::NotFound {
            "does not exist".into()
        } else {
            format!("cannot be read ({e})")
        },
    })?;
    let mut found: Vec<(u32, String)> = vec![];
    for e in entries.filter_map(Result::ok) {
        let Some((ar, name)) = e
            .file_name()
            .to_str()
            .and_then(|n| Some((ar_number(n)?, n.to_string())))
        else {
            continue;
        };
        // Followed, so a data folder assembled from symlinks works; a dangling link or a
        // symlink loop is named rather than silently dropping the AR.
        match std::fs::metadata(e.path()) {
            Ok(m) if m.is_dir() => found.push((ar, name)),
            Ok(_) => {}
            Err(source) => {
                return Err(SolaredError::Io {
                    path: e.path(),
                    source,
                });
            }
        }
    }
    found.sort_unstable();
    // `AR011130` and `AR11130` are one AR: reading both would ingest it twice, and reading the
    // one not named `AR<n>` would look for its files under the other's name.
    for w in found.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(SolaredError::Missing {
                path: dir.join(&w[1].1),
                what: format!(
                    "AR{} has two folders, {} and {}; keep one",
                    w[0].0, w[0].1, w[1].1
                ),
            });
        }
    }
    if let Some((ar, name)) = found.iter().find(|(ar, n)| *n != format!("AR{ar}")) {
        return Err(SolaredError::Missing {
            path: dir.join(name),
            what: format!(
                "an AR folder is named AR<number> without leading zeros or signs; rename it AR{ar}"
            ),
        });
    }
    let ars: Vec<u32> = found.into_iter().map(|(ar, _)| ar).collect();
    if ars.is_empty() {
        return Err(SolaredError::DataDir {
            dir: dir.to_path_buf(),
            problem: "holds no AR<number> folders".into(),
        });
    }
    Ok(ars)
}

struct Npz {
    path: PathBuf,
    bytes: Vec<u8>,
    entries: Vec<zip::Entry>,
}

impl Npz {
    fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Npz, SolaredError> {
        let entries = zip::entries(&bytes).map_err(|source| SolaredError::File {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Npz {
            path: path.to_path_buf(),
            bytes,
            entries,
        })
    }

    fn open(path: &Path) -> Result<Npz, SolaredError> {
        let bytes = std::fs::read(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                SolaredError::Missing {
                    path: path.to_path_buf(),
                    what: "file is missing".into(),
                }
            } else {
                SolaredError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        Npz::from_bytes(path, bytes)
    }

    fn err(&self, source: NpzError) -> SolaredError {
        SolaredError::File {
            path: self.path.clone(),
            source,
        }
    }

    fn member(&self, name: &str) -> Result<std::borrow::Cow<'_, [u8]>, SolaredError> {
        let file = format!("{name}.npy");
        let e = self
            .entries
            .iter()
            .find(|e| e.name == file)
            .ok_or_else(|| self.err(NpzError::MissingMember(file.clone())))?;
        zip::read_entry(&self.bytes, e).map_err(|e| self.err(e))
    }

    fn f64_array(&self, name: &str, t: Option<usize>) -> Result<(usize, Vec<f64>), SolaredError> {
        let m = self.member(name)?;
        let head = npy::parse_header(&m).map_err(|e| self.err(prefix(name, e)))?;
        let expect = [TILES, t.unwrap_or(*head.shape.get(1).unwrap_or(&0))];
        let (shape, v) = npy::read_f64(&m, Some(&expect)).map_err(|e| self.err(prefix(name, e)))?;
        Ok((shape[1], v))
    }

    fn timestamps(&self, name: &str) -> Result<Vec<i64>, SolaredError> {
        let m = self.member(name)?;
        let head = npy::parse_header(&m).map_err(|e| self.err(prefix(name, e)))?;
        if head.descr != "|O" || head.shape.len() != 1 {
            return Err(self.err(NpzError::Npy(format!(
                "{name}: expected a 1-D object array of timestamps, found dtype {:?} shape {:?}",
                head.descr, head.shape
            ))));
        }
        let times = pickle::decode_datetime_array(&m[head.data_offset..]).map_err(|source| {
            self.err(NpzError::Pickle {
                member: format!("{name}.npy"),
                source,
            })
        })?;
        if times.len() != head.shape[0] {
            return Err(self.err(NpzError::Npy(format!(
                "{name}: header shape {:?} but {} timestamps",
                head.shape,
                times.len()
            ))));
        }
        Ok(times)
    }
}

fn prefix(member: &str, e: NpzError) -> NpzError {
    match e {
        NpzError::Shape { got, want } => {
            NpzError::Npy(format!("{member}: shape {got:?}, expected {want:?}"))
        }
        NpzError::Npy(m) => NpzError::Npy(format!("{member}: {m}")),
        other => other,
    }
}

/// One SolARED npz file as the reader sees it: `arr_0 … arr_{n-1}` as (81, T) float64 arrays and
/// `arr_n` as the T timestamps.
pub struct NpzFile {
    pub times: Vec<i64>,
    pub arrays: Vec<Vec<f64>>,
}

/// The first `keep` hours of a row-major (81, T) array.
pub fn first_hours(a: &[f64], t: usize, keep: usize) -> Vec<f64> {
    (0..TILES)
        .flat_map(|k| a[k * t..k * t + keep].iter().copied())
        .collect()
}

impl NpzFile {
    /// The leading hours whose timestamps are at or before `until`; each (81, T) array is cut
    /// row by row.
    fn until(self, until: i64) -> NpzFile {
        let t = self.times.len();
        let keep = self.times.iter().take_while(|&&u| u <= until).count();
        if keep == t {
            return self;
        }
        let arrays = self
            .arrays
            .iter()
            .map(|a| first_hours(a, t, keep))
            .collect();
        NpzFile {
            times: self.times[..keep].to_vec(),
            arrays,
        }
    }
}

fn read_npz(npz: &Npz, arrays: usize) -> Result<NpzFile, SolaredError> {
    let times = npz.timestamps(&format!("arr_{arrays}"))?;
    let t = Some(times.len());
    let arrays = (0..arrays)
        .map(|i| Ok(npz.f64_array(&format!("arr_{i}"), t)?.1))
        .collect::<Result<_, SolaredError>>()?;
    Ok(NpzFile { times, arrays })
}

/// Reads the bytes of one npz file with `arrays` data members, exactly as [`load_ar`] reads each
/// file; `path` only names it in errors. The fuzz targets drive the reader through here.
pub fn read_npz_bytes(path: &Path, bytes: Vec<u8>, arrays: usize) -> Result<NpzFile, SolaredError> {
    read_npz(&Npz::from_bytes(path, bytes)?, arrays)
}

/// Reads and cross-checks the three files of one AR.
pub fn load_ar(dir: &Path, ar: u32) -> Result<ArSeries, SolaredError> {
    load_ar_folder(&dir.join(format!("AR{ar}")), ar, None)
}

/// [`load_ar`] on the AR's own folder, whatever it is called, and with `until` (µs, inclusive)
/// on the hours up to then only: each file is cut at its first timestamp after `until` before
/// anything else is looked at, so what lies beyond (hours a growing file gained later, or
/// anything else) can neither change the result nor fail it.
pub fn load_ar_folder(
    folder: &Path,
    ar: u32,
    until: Option<i64>,
) -> Result<ArSeries, SolaredError> {
    let [f_int, f_mag, f_pmdop] = ar_files_in(folder, ar);
    let read = |path: &Path, arrays: usize| -> Result<NpzFile, SolaredError> {
        let f = read_npz(&Npz::open(path)?, arrays)?;
        // An AR without hours has no timestamps to place anything at; later stages would have
        // to invent them.
        if f.times.is_empty() {
            return Err(SolaredError::File {
                path: path.to_path_buf(),
                source: NpzError::Npy(format!(
                    "holds no hours: its arrays have shape ({TILES}, 0) and no timestamps"
                )),
            });
        }
        Ok(match until {
            Some(u) => f.until(u),
            None => f,
        })
    };
    let NpzFile {
        times,
        arrays: mut int,
    } = read(&f_int, 1)?;
    let t = times.len();
    let ic = int.remove(0);
    let NpzFile {
        times: mag_times,
        arrays: mut mag,
    } = read(&f_mag, 1)?;
    let flux = mag.remove(0);
    let NpzFile {
        times: pm_times,
        arrays: pm,
    } = read(&f_pmdop, 4)?;
    let power: [Vec<f64>; 4] = pm.try_into().expect("four power arrays were read");
    for (what, other) in [("mean_mag", &mag_times), ("mean_pmdop", &pm_times)] {
        if let Some(i) = (0..t.max(other.len())).find(|&i| times.get(i) != other.get(i)) {
            return Err(SolaredError::Inconsistent {
                ar,
                msg: format!(
                    "timestamps of {what}{ar}_flat.npz differ from mean_int{ar}_flat.npz at index {i} ({} vs {})",
                    other
                        .get(i)
                        .map_or("none".into(), |&u| time::format_micros(u)),
                    times
                        .get(i)
                        .map_or("none".into(), |&u| time::format_micros(u)),
                ),
            });
        }
    }
    if let Some(i) = times.windows(2).position(|w| w[1] <= w[0]) {
        return Err(SolaredError::Inconsistent {
            ar,
            msg: format!("timestamps are not increasing at index {}", i + 1),
        });
    }
    for (name, v) in [("Ic", &ic), ("|B|", &flux)].into_iter().chain(
        power
            .iter()
            .enumerate()
            .map(|(i, p)| (["P2-3", "P3-4", "P4-5", "P5-6"][i], p)),
    ) {
        // Scattered NaNs are real (they are filled at scaling); a tile with no value at all in
        // a channel is a broken file, and filling it would feed the model a made-up constant.
        if let Some(tile) =
            (0..TILES).find(|k| t > 0 && v[k * t..(k + 1) * t].iter().all(|x| x.is_nan()))
        {
            return Err(SolaredError::Inconsistent {
                ar,
                msg: format!("{name} is NaN at every hour of tile {tile}: the tile holds no data"),
            });
        }
        if let Some(i) = v.iter().position(|x| x.is_infinite()) {
            return Err(SolaredError::Inconsistent {
                ar,
                msg: format!(
                    "{name} holds an infinite value at tile {} hour {}",
                    i / t,
                    i % t
                ),
            });
        }
    }
    Ok(ArSeries {
        ar,
        times,
        ic,
        flux,
        power,
    })
}

/// Writes an AR's three files in the exact SolARED npz layout (used to build test fixtures and
/// to export subsets).
pub fn write_ar(dir: &Path, s: &ArSeries) -> std::io::Result<()> {
    let t = s.len();
    let [f_int, f_mag, f_pmdop] = ar_files(dir, s.ar);
    std::fs::create_dir_all(f_int.parent().expect("AR folder"))?;
    let stamps = || {
        let mut m = npy::header_bytes("|O", &[t]);
        m.extend_from_slice(&pickle::encode_datetime_array(&s.times));
        m
    };
    let shape = [TILES, t];
    std::fs::write(
        f_int,
        zip::write_stored(&[
            ("arr_0.npy".into(), npy::write_f64(&shape, &s.ic)),
            ("arr_1.npy".into(), stamps()),
        ]),
    )?;
    std::fs::write(
        f_mag,
        zip::write_stored(&[
            ("arr_0.npy".into(), npy::write_f64(&shape, &s.flux)),
            ("arr_1.npy".into(), stamps()),
        ]),
    )?;
    let mut members: Vec<(String, Vec<u8>)> = s
        .power
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("arr_{i}.npy"), npy::write_f64(&shape, p)))
        .collect();
    members.push(("arr_4.npy".into(), stamps()));
    std::fs::write(f_pmdop, zip::write_stored(&members))
}
