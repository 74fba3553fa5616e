//! safetensors files of named tensors: the model file a portable training writes (the names and
//! shapes of libtorch's VarStore, so either engine loads either's weights) and the tensors of a
//! trainer's checkpoint. f32 values are stored little-endian, as the format says.

use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};

use crate::model::{Model, Param};

/// What reading or writing a tensor file refuses.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {msg}", path.display())]
    Format { path: PathBuf, msg: String },
    #[error("{}: {source}", path.display())]
    Kernels { path: PathBuf, source: crate::Error },
}

impl FileError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> FileError {
        FileError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn format(path: &Path, msg: impl Into<String>) -> FileError {
        FileError::Format {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
}

/// A tensor to write: its name, shape and little-endian bytes.
pub(crate) struct Entry {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl Entry {
    pub fn f32(name: String, shape: &[usize], data: &[f32]) -> Entry {
        Entry {
            name,
            dtype: Dtype::F32,
            shape: shape.to_vec(),
            bytes: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    pub fn i64(name: String, value: i64) -> Entry {
        Entry {
            name,
            dtype: Dtype::I64,
            shape: vec![1],
            bytes: value.to_le_bytes().to_vec(),
        }
    }
}

/// Writes `entries` as one safetensors file at `path` (safetensors orders them itself, so the
/// bytes depend on the tensors alone).
pub(crate) fn write(path: &Path, entries: &[Entry]) -> Result<(), FileError> {
    let views = entries
        .iter()
        .map(|e| {
            TensorView::new(e.dtype, e.shape.clone(), &e.bytes)
                .map(|v| (e.name.clone(), v))
                .map_err(|err| FileError::format(path, format!("{}: {err}", e.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bytes =
        safetensors::serialize(views, None).map_err(|e| FileError::format(path, e.to_string()))?;
    std::fs::write(path, bytes).map_err(|e| FileError::io(path, e))
}

/// A file's bytes, to be read with [`Tensors::parse`].
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|e| FileError::io(path, e))
}

/// The tensors of one file.
pub(crate) struct Tensors<'a> {
    path: &'a Path,
    st: safetensors::SafeTensors<'a>,
}

impl<'a> Tensors<'a> {
    pub fn parse(path: &'a Path, bytes: &'a [u8]) -> Result<Tensors<'a>, FileError> {
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| FileError::format(path, format!("not a safetensors file: {e}")))?;
        Ok(Tensors { path, st })
    }

    pub fn names(&self) -> Vec<&str> {
        self.st.names()
    }

    /// The f32 tensor `name`, which must have `shape`.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, FileError> {
        let (got, values) = self.f32_any(name)?;
        if got != shape {
            return Err(FileError::format(
                self.path,
                format!("`{name}` has shape {got:?}, expected {shape:?}"),
            ));
        }
        Ok(values)
    }

    /// The f32 tensor `name` with its shape.
    pub fn f32_any(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), FileError> {
        let t = self
            .st
            .tensor(name)
            .map_err(|_| FileError::format(self.path, format!("no tensor `{name}`")))?;
        if t.dtype() != Dtype::F32 {
            return Err(FileError::format(
                self.path,
                format!("`{name}` is {}, expected F32", t.dtype()),
            ));
        }
        let values = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        Ok((t.shape().to_vec(), values))
    }

    /// The one-element i64 tensor `name`.
    pub fn i64(&self, name: &str) -> Result<i64, FileError> {
        let t = self
            .st
            .tensor(name)
            .map_err(|_| FileError::format(self.path, format!("no tensor `{name}`")))?;
        match (t.dtype(), t.data().try_into()) {
            (Dtype::I64, Ok(b)) => Ok(i64::from_le_bytes(b)),
            _ => Err(FileError::format(
                self.path,
                format!("`{name}` is not one I64 value"),
            )),
        }
    }
}

/// Writes a model's parameters under their own names (`encoder.weight_ih_l0`, …, `head.bias`):
/// the file `train` outputs as `model.safetensors`.
pub fn save(path: &Path, params: &[Param]) -> Result<(), FileError> {
    let entries: Vec<Entry> = params
        .iter()
        .map(|p| Entry::f32(p.name.clone(), &p.shape, &p.data))
        .collect();
    write(path, &entries)
}

/// Loads every parameter of `model` from a file written by [`save`] (or by libtorch's VarStore,
/// which uses the same names and shapes). A missing, misshapen or non-finite tensor is an
/// error, and so is a tensor the model does not have (the file is of another architecture).
pub fn load(model: &mut Model, path: &Path) -> Result<(), FileError> {
    let bytes = read(path)?;
    let file = Tensors::parse(path, &bytes)?;
    let wanted: Vec<(String, Vec<usize>)> = model
        .params()
        .iter()
        .map(|p| (p.name.clone(), p.shape.clone()))
        .collect();
    if let Some(extra) = file
        .names()
        .into_iter()
        .find(|n| !wanted.iter().any(|(w, _)| w == n))
    {
        return Err(FileError::format(
            path,
            format!("`{extra}` is not a parameter of this model's architecture"),
        ));
    }
    for (name, shape) in &wanted {
        let values = file.f32(name, shape)?;
        model
            .set_param(name, &values)
            .map_err(|source| FileError::Kernels {
                path: path.to_path_buf(),
                source,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Arch, ModelConfig};

    fn config(arch: Arch) -> ModelConfig {
        ModelConfig {
            arch,
            input: 5,
            hidden: 4,
            layers: 2,
            dropout: 0.0,
            horizon: 3,
        }
    }

    #[test]
    fn a_saved_model_loads_back_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        for arch in [Arch::Lstm, Arch::EncDec] {
            let path = dir.path().join("model.safetensors");
            let a = Model::new(&config(arch), 1).unwrap();
            save(&path, a.params()).unwrap();
            let mut b = Model::new(&config(arch), 2).unwrap();
            assert_ne!(a.params(), b.params());
            load(&mut b, &path).unwrap();
            assert_eq!(a.params(), b.params());
            // The same parameters, the same bytes.
            let first = std::fs::read(&path).unwrap();
            save(&path, b.params()).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), first);
        }
    }

    #[test]
    fn another_architecture_or_a_bad_value_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        save(
            &path,
            Model::new(&config(Arch::EncDec), 1).unwrap().params(),
        )
        .unwrap();
        let mut lstm = Model::new(&config(Arch::Lstm), 1).unwrap();
        let e = load(&mut lstm, &path).unwrap_err().to_string();
        assert!(
            e.contains("is not a parameter") || e.contains("shape"),
            "{e}"
        );
        let mut m = Model::new(&config(Arch::Lstm), 1).unwrap();
        let mut params = m.params().to_vec();
        params[2].data[1] = f32::NAN;
        save(&path, &params).unwrap();
        let e = load(&mut m, &path).unwrap_err().to_string();
        assert!(e.contains("bias_ih_l0") && e.contains("NaN"), "{e}");
        std::fs::write(&path, b"not a tensor file").unwrap();
        let e = load(&mut m, &path).unwrap_err().to_string();
        assert!(e.contains("not a safetensors file"), "{e}");
    }
}
