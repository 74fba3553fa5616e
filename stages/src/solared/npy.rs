//! The `.npy` array format: header parsing, f64 payloads and (for fixtures) writing.

use super::NpzError;

/// A parsed `.npy` member: its header fields and where the payload starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Byte offset of the payload inside the member.
    pub data_offset: usize,
}

const MAGIC: &[u8] = b"\x93NUMPY";

pub fn parse_header(member: &[u8]) -> Result<Header, NpzError> {
    let bad = |m: &str| NpzError::Npy(m.to_string());
    if member.len() < 10 || &member[..6] != MAGIC {
        return Err(bad("not an .npy array (bad magic)"));
    }
    let major = member[6];
    let (len, start) = match major {
        1 => (usize::from(u16::from_le_bytes([member[8], member[9]])), 10),
        2 | 3 => {
            if member.len() < 12 {
                return Err(bad("truncated header"));
            }
            let l = u32::from_le_bytes([member[8], member[9], member[10], member[11]]);
            (l as usize, 12)
        }
        v => return Err(bad(&format!("unsupported .npy format version {v}"))),
    };
    let text = member
        .get(start..start + len)
        .ok_or_else(|| bad("truncated header"))?;
    let text = std::str::from_utf8(text).map_err(|_| bad("header is not text"))?;
    let descr = dict_value(text, "descr")
        .and_then(|v| v.strip_prefix('\'')?.split('\'').next().map(str::to_string))
        .ok_or_else(|| bad("header has no 'descr'"))?;
    let fortran_order = match dict_value(text, "fortran_order") {
        Some(v) if v.starts_with("True") => true,
        Some(v) if v.starts_with("False") => false,
        _ => return Err(bad("header has no 'fortran_order'")),
    };
    let shape_text = dict_value(text, "shape")
        .and_then(|v| v.strip_prefix('('))
        .and_then(|v| v.split(')').next())
        .ok_or_else(|| bad("header has no 'shape'"))?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(&format!("bad shape entry {s:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Header {
        descr,
        fortran_order,
        shape,
        data_offset: start + len,
    })
}

/// The text after `'key':` in a Python dict literal.
fn dict_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("'{key}':");
    let at = text.find(&pat)? + pat.len();
    Some(text[at..].trim_start())
}

/// Decodes a C-ordered little-endian f64 array of the expected shape.
pub fn read_f64(
    member: &[u8],
    expect_shape: Option<&[usize]>,
) -> Result<(Vec<usize>, Vec<f64>), NpzError> {
    let h = parse_header(member)?;
    if h.descr != "<f8" {
        return Err(NpzError::Npy(format!(
            "dtype {:?}, expected '<f8' (float64)",
            h.descr
        )));
    }
    if h.fortran_order {
        return Err(NpzError::Npy(
            "Fortran-ordered array; expected C order".into(),
        ));
    }
    if let Some(want) = expect_shape
        && h.shape != want
    {
        return Err(NpzError::Shape {
            got: h.shape.clone(),
            want: want.to_vec(),
        });
    }
    // Checked: a hostile header's shape can multiply past usize and wrap to a size the payload
    // happens to match (found by the npy fuzz target).
    let bytes = h
        .shape
        .iter()
        .try_fold(8usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| NpzError::Npy(format!("shape {:?} is impossibly large", h.shape)))?;
    let payload = &member[h.data_offset..];
    if payload.len() != bytes {
        return Err(NpzError::Npy(format!(
            "payload holds {} bytes, shape {:?} needs {bytes} (truncated?)",
            payload.len(),
            h.shape,
        )));
    }
    let values = payload
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("chunks of 8")))
        .collect();
    Ok((h.shape, values))
}

/// An `.npy` header padded the way numpy pads it (total header a multiple of 64 bytes).
pub fn header_bytes(descr: &str, shape: &[usize]) -> Vec<u8> {
    let shape_text = match shape {
        [n] => format!("({n},)"),
        s => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    let total = 10 + dict.len() + 1;
    let padded = total.div_ceil(64) * 64;
    dict.push_str(&" ".repeat(padded - total));
    dict.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

pub fn write_f64(shape: &[usize], values: &[f64]) -> Vec<u8> {
    let mut out = header_bytes("<f8", shape);
    out.reserve(values.len() * 8);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_matches_numpy_layout() {
        let bytes = write_f64(&[81, 240], &vec![0.5; 81 * 240]);
        let h = parse_header(&bytes).unwrap();
        // numpy pads every v1 header of such arrays to 128 bytes; the real files rely on it.
        assert_eq!(h.data_offset, 128);
        assert_eq!(h.shape, vec![81, 240]);
        let (_, v) = read_f64(&bytes, Some(&[81, 240])).unwrap();
        assert_eq!(v.len(), 81 * 240);
    }

    #[test]
    fn a_shape_whose_size_wraps_around_is_refused() {
        // 2^61 × 8 elements × 8 bytes wraps to 0 in usize: it must not pass as an empty array.
        let m = header_bytes("<f8", &[1 << 61, 8]);
        let e = read_f64(&m, None).unwrap_err().to_string();
        assert!(e.contains("impossibly large"), "{e}");
    }

    #[test]
    fn wrong_shape_and_dtype_are_reported() {
        let bytes = write_f64(&[80, 240], &vec![0.0; 80 * 240]);
        let err = read_f64(&bytes, Some(&[81, 240])).unwrap_err().to_string();
        assert!(
            err.contains("[80, 240]") && err.contains("[81, 240]"),
            "{err}"
        );
        let mut odd = header_bytes("<f4", &[2]);
        odd.extend_from_slice(&[0; 8]);
        assert!(
            read_f64(&odd, None)
                .unwrap_err()
                .to_string()
                .contains("<f4")
        );
    }
}
