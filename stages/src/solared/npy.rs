//! The `.npy` array format: header parsing, numeric payloads and (for fixtures) writing.
//!
//! The header is read the way `numpy.lib.format` reads it: format versions 1.0, 2.0 and 3.0, a
//! Python dict literal with exactly the keys `descr`, `fortran_order` and `shape`. Payloads of
//! any byte order, float or integer width and either memory order are converted to row-major
//! f64 with the values `np.load(...).astype(float)` gives; what cannot be converted exactly (a
//! 64-bit integer beyond 2^53, complex or structured dtypes) is refused, never rounded.

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

/// numpy itself caps headers at 10,000 bytes unless pickles are allowed; a SolARED header is
/// 118 bytes. Far above both, far below harm.
const MAX_HEADER: usize = 1 << 20;

pub fn parse_header(member: &[u8]) -> Result<Header, NpzError> {
    let bad = |m: &str| NpzError::Npy(m.to_string());
    if member.len() < 10 || &member[..6] != MAGIC {
        return Err(bad("not an .npy array (bad magic)"));
    }
    let (major, minor) = (member[6], member[7]);
    if !matches!((major, minor), (1, 0) | (2, 0) | (3, 0)) {
        return Err(bad(&format!(
            "unsupported .npy format version {major}.{minor} (numpy writes 1.0, 2.0 and 3.0)"
        )));
    }
    let (len, start) = match major {
        1 => (usize::from(u16::from_le_bytes([member[8], member[9]])), 10),
        _ => {
            if member.len() < 12 {
                return Err(bad("truncated header"));
            }
            let l = u32::from_le_bytes([member[8], member[9], member[10], member[11]]);
            (l as usize, 12)
        }
    };
    if len > MAX_HEADER {
        return Err(bad(&format!(
            "header declares {len} bytes, over the {MAX_HEADER} an array header can need"
        )));
    }
    let raw = member
        .get(start..start + len)
        .ok_or_else(|| bad("truncated header"))?;
    // Versions 1.0 and 2.0 store the header in latin-1, 3.0 in UTF-8 (NEP 1).
    let text: String = if major == 3 {
        std::str::from_utf8(raw)
            .map_err(|_| bad("version 3.0 header is not UTF-8"))?
            .to_string()
    } else {
        raw.iter().map(|&b| char::from(b)).collect()
    };
    let dict = match literal::parse(&text) {
        Ok(literal::Lit::Dict(d)) => d,
        Ok(_) => return Err(bad("header is not a Python dict")),
        Err(e) => return Err(bad(&format!("header is not a Python literal: {e}"))),
    };
    let mut keys: Vec<&str> = dict.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    if keys != ["descr", "fortran_order", "shape"] {
        return Err(bad(&format!(
            "header keys are {keys:?}; numpy requires exactly descr, fortran_order and shape"
        )));
    }
    let get = |k: &str| &dict.iter().find(|(n, _)| n == k).expect("checked above").1;
    let descr = match get("descr") {
        literal::Lit::Str(s) => s.clone(),
        _ => {
            return Err(bad(
                "structured dtypes are not supported (descr is not a string)",
            ));
        }
    };
    let fortran_order = match get("fortran_order") {
        literal::Lit::Bool(b) => *b,
        _ => return Err(bad("'fortran_order' is not True or False")),
    };
    let shape = match get("shape") {
        literal::Lit::Tuple(items) => items
            .iter()
            .map(|v| match v {
                literal::Lit::Int(n) => {
                    usize::try_from(*n).map_err(|_| bad(&format!("bad shape entry {n} (negative)")))
                }
                other => Err(bad(&format!("bad shape entry {other:?}"))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(bad("'shape' is not a tuple of integers")),
    };
    Ok(Header {
        descr,
        fortran_order,
        shape,
        data_offset: start + len,
    })
}

/// The element types magpipe converts to f64 without changing a value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Elem {
    F16,
    F32,
    F64,
    Int { bytes: usize, signed: bool },
}

/// `(element type, big-endian)` of a numpy type string such as `<f8`, `>f4` or `|u1`.
fn dtype(descr: &str) -> Result<(Elem, bool), NpzError> {
    let refuse = |why: &str| {
        NpzError::Npy(format!(
            "dtype {descr:?}{why}; expected a float or integer array such as '<f8' (float64)"
        ))
    };
    let mut chars = descr.chars();
    let order = chars.next().ok_or_else(|| refuse(""))?;
    let rest = chars.as_str();
    let big = match order {
        '<' => false,
        '>' => true,
        '=' => cfg!(target_endian = "big"),
        '|' => false,
        _ => return Err(refuse(" has no byte order")),
    };
    let elem = match rest {
        "f2" => Elem::F16,
        "f4" => Elem::F32,
        "f8" => Elem::F64,
        // By characters: a hostile descr need not be ASCII (found by the npy fuzz target).
        _ => match (
            rest.chars().next(),
            rest.chars().skip(1).collect::<String>().parse::<usize>(),
        ) {
            (Some('i'), Ok(n @ (1 | 2 | 4 | 8))) => Elem::Int {
                bytes: n,
                signed: true,
            },
            (Some('u'), Ok(n @ (1 | 2 | 4 | 8))) => Elem::Int {
                bytes: n,
                signed: false,
            },
            _ => return Err(refuse("")),
        },
    };
    let width = match elem {
        Elem::F16 => 2,
        Elem::F32 => 4,
        Elem::F64 => 8,
        Elem::Int { bytes, .. } => bytes,
    };
    if order == '|' && width > 1 {
        return Err(refuse(" ('|' is for one-byte types)"));
    }
    Ok((elem, big))
}

/// IEEE binary16 → f64, exactly.
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1F);
    let frac = f64::from(h & 0x3FF);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        0x1F if frac == 0.0 => sign * f64::INFINITY,
        0x1F => f64::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Integers beyond ±2^53 have no exact f64.
const EXACT_INT: u64 = 1 << 53;

fn decode(elem: Elem, big: bool, c: &[u8]) -> Result<f64, ()> {
    let mut b = [0u8; 8];
    let n = c.len();
    // Normalise to little-endian, then widen.
    if big {
        for (i, x) in c.iter().rev().enumerate() {
            b[i] = *x;
        }
    } else {
        b[..n].copy_from_slice(c);
    }
    Ok(match elem {
        Elem::F16 => f16_to_f64(u16::from_le_bytes([b[0], b[1]])),
        Elem::F32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        Elem::F64 => f64::from_le_bytes(b),
        Elem::Int { bytes, signed } => {
            if signed && b[bytes - 1] & 0x80 != 0 {
                for x in &mut b[bytes..] {
                    *x = 0xFF;
                }
            }
            if signed {
                let v = i64::from_le_bytes(b);
                if v.unsigned_abs() > EXACT_INT {
                    return Err(());
                }
                v as f64
            } else {
                let v = u64::from_le_bytes(b);
                if v > EXACT_INT {
                    return Err(());
                }
                v as f64
            }
        }
    })
}

/// Decodes a numeric array of the expected shape into row-major f64, whatever its byte order,
/// width or memory order.
pub fn read_f64(
    member: &[u8],
    expect_shape: Option<&[usize]>,
) -> Result<(Vec<usize>, Vec<f64>), NpzError> {
    let h = parse_header(member)?;
    let (elem, big) = dtype(&h.descr)?;
    if let Some(want) = expect_shape
        && h.shape != want
    {
        return Err(NpzError::Shape {
            got: h.shape.clone(),
            want: want.to_vec(),
        });
    }
    let width = match elem {
        Elem::F16 => 2,
        Elem::F32 => 4,
        Elem::F64 => 8,
        Elem::Int { bytes, .. } => bytes,
    };
    // Checked: a hostile header's shape can multiply past usize and wrap to a size the payload
    // happens to match (found by the npy fuzz target).
    let bytes = h
        .shape
        .iter()
        .try_fold(width, |n, &d| n.checked_mul(d))
        .ok_or_else(|| NpzError::Npy(format!("shape {:?} is impossibly large", h.shape)))?;
    let payload = &member[h.data_offset..];
    if payload.len() != bytes {
        return Err(NpzError::Npy(format!(
            "payload holds {} bytes, shape {:?} of {} needs {bytes} (truncated?)",
            payload.len(),
            h.shape,
            h.descr,
        )));
    }
    let stored: Vec<f64> = if elem == Elem::F64 && !big {
        payload
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("chunks of 8")))
            .collect()
    } else {
        payload
            .chunks_exact(width)
            .enumerate()
            .map(|(i, c)| {
                decode(elem, big, c).map_err(|()| {
                    NpzError::Npy(format!(
                        "element {i} of the {} array has no exact float64 value",
                        h.descr
                    ))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let values = if h.fortran_order && h.shape.len() > 1 {
        c_order(&h.shape, &stored)
    } else {
        stored
    };
    Ok((h.shape, values))
}

/// A column-major (Fortran) array's elements in row-major order.
fn c_order(shape: &[usize], f: &[f64]) -> Vec<f64> {
    // Fortran strides: the first axis varies fastest.
    let mut strides = vec![1usize; shape.len()];
    for a in 1..shape.len() {
        strides[a] = strides[a - 1] * shape[a - 1];
    }
    let mut out = Vec::with_capacity(f.len());
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..f.len() {
        out.push(f[idx.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>()]);
        for a in (0..shape.len()).rev() {
            idx[a] += 1;
            if idx[a] < shape[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    out
}

/// The subset of Python literals an `.npy` header can hold (what `ast.literal_eval` would
/// accept of it): dicts, tuples, lists, strings, booleans, None and integers.
mod literal {
    #[derive(Debug, Clone, PartialEq)]
    pub enum Lit {
        Dict(Vec<(String, Lit)>),
        Tuple(Vec<Lit>),
        List(Vec<Lit>),
        Str(String),
        Bool(bool),
        None,
        Int(i128),
    }

    /// Nesting a header never needs, bounding recursion on hostile input.
    const MAX_DEPTH: usize = 32;

    struct P<'a> {
        s: &'a [char],
        at: usize,
    }

    pub fn parse(text: &str) -> Result<Lit, String> {
        let chars: Vec<char> = text.chars().collect();
        let mut p = P { s: &chars, at: 0 };
        let v = p.value(0)?;
        p.ws();
        if p.at != chars.len() {
            return Err(format!("unexpected {:?} after the dict", chars[p.at]));
        }
        Ok(v)
    }

    impl P<'_> {
        fn ws(&mut self) {
            while self
                .s
                .get(self.at)
                .is_some_and(|c| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c'))
            {
                self.at += 1;
            }
        }
        fn peek(&mut self) -> Option<char> {
            self.ws();
            self.s.get(self.at).copied()
        }
        fn eat(&mut self, c: char) -> bool {
            if self.peek() == Some(c) {
                self.at += 1;
                true
            } else {
                false
            }
        }
        /// Items up to `close`, comma-separated, a trailing comma allowed; also says whether any
        /// comma was seen (`(1)` is an int, `(1,)` a tuple).
        fn items(&mut self, close: char, depth: usize) -> Result<(Vec<Lit>, bool), String> {
            let mut out = vec![];
            let mut comma = false;
            loop {
                if self.eat(close) {
                    return Ok((out, comma));
                }
                out.push(self.value(depth + 1)?);
                if self.eat(',') {
                    comma = true;
                } else if self.eat(close) {
                    return Ok((out, comma));
                } else {
                    return Err(format!("expected ',' or {close:?}"));
                }
            }
        }
        fn value(&mut self, depth: usize) -> Result<Lit, String> {
            if depth > MAX_DEPTH {
                return Err("nested too deeply".into());
            }
            let c = self.peek().ok_or("unexpected end")?;
            match c {
                '{' => {
                    self.at += 1;
                    let mut out: Vec<(String, Lit)> = vec![];
                    loop {
                        if self.eat('}') {
                            return Ok(Lit::Dict(out));
                        }
                        let Lit::Str(k) = self.value(depth + 1)? else {
                            return Err("a dict key is not a string".into());
                        };
                        if !self.eat(':') {
                            return Err("expected ':'".into());
                        }
                        let v = self.value(depth + 1)?;
                        // Python keeps the last of a repeated key; a header never repeats one.
                        if out.iter().any(|(n, _)| *n == k) {
                            return Err(format!("key {k:?} appears twice"));
                        }
                        out.push((k, v));
                        if !self.eat(',') && self.peek() != Some('}') {
                            return Err("expected ',' or '}'".into());
                        }
                    }
                }
                '(' => {
                    self.at += 1;
                    let (mut items, comma) = self.items(')', depth)?;
                    Ok(if items.len() == 1 && !comma {
                        items.remove(0)
                    } else {
                        Lit::Tuple(items)
                    })
                }
                '[' => {
                    self.at += 1;
                    Ok(Lit::List(self.items(']', depth)?.0))
                }
                '\'' | '"' => self.string(c),
                '-' | '+' | '0'..='9' => self.int(),
                _ => {
                    let start = self.at;
                    while self
                        .s
                        .get(self.at)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                    {
                        self.at += 1;
                    }
                    let word: String = self.s[start..self.at].iter().collect();
                    match word.as_str() {
                        "True" => Ok(Lit::Bool(true)),
                        "False" => Ok(Lit::Bool(false)),
                        "None" => Ok(Lit::None),
                        "" => Err(format!("unexpected {c:?}")),
                        w => Err(format!("{w:?} is not a literal")),
                    }
                }
            }
        }
        fn int(&mut self) -> Result<Lit, String> {
            let neg = self.peek() == Some('-');
            if matches!(self.peek(), Some('-' | '+')) {
                self.at += 1;
            }
            let start = self.at;
            let mut digits = String::new();
            while let Some(&c) = self.s.get(self.at) {
                match c {
                    '0'..='9' => digits.push(c),
                    // Python allows one underscore between digits.
                    '_' if self.s.get(self.at + 1).is_some_and(char::is_ascii_digit)
                        && self.at > start => {}
                    _ => break,
                }
                self.at += 1;
            }
            if digits.is_empty() {
                return Err("expected a number".into());
            }
            if let Some(&c) = self.s.get(self.at)
                && (c == '.' || c.is_ascii_alphanumeric())
            {
                return Err("only integer numbers belong in an array header".into());
            }
            if digits.len() > 1 && digits.starts_with('0') && digits.chars().any(|d| d != '0') {
                return Err("leading zeros in an integer".into());
            }
            let v: i128 = digits.parse().map_err(|_| "an integer out of range")?;
            Ok(Lit::Int(if neg { -v } else { v }))
        }
        fn string(&mut self, q: char) -> Result<Lit, String> {
            self.at += 1;
            let mut out = String::new();
            loop {
                let c = *self.s.get(self.at).ok_or("unterminated string")?;
                self.at += 1;
                match c {
                    '\n' => return Err("newline in a string".into()),
                    c if c == q => return Ok(Lit::Str(out)),
                    '\\' => {
                        let e = *self.s.get(self.at).ok_or("unterminated string")?;
                        self.at += 1;
                        match e {
                            '\\' | '\'' | '"' => out.push(e),
                            'n' => out.push('\n'),
                            't' => out.push('\t'),
                            'r' => out.push('\r'),
                            '0' => out.push('\0'),
                            'x' | 'u' => {
                                let n = if e == 'x' { 2 } else { 4 };
                                let hex: String = self
                                    .s
                                    .get(self.at..self.at + n)
                                    .ok_or("truncated escape")?
                                    .iter()
                                    .collect();
                                self.at += n;
                                let v = u32::from_str_radix(&hex, 16)
                                    .map_err(|_| "bad escape".to_string())?;
                                out.push(char::from_u32(v).ok_or("bad escape")?);
                            }
                            _ => return Err(format!("unsupported escape \\{e}")),
                        }
                    }
                    c => out.push(c),
                }
            }
        }
    }
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
        let mut odd = header_bytes("<c16", &[2]);
        odd.extend_from_slice(&[0; 32]);
        assert!(
            read_f64(&odd, None)
                .unwrap_err()
                .to_string()
                .contains("<c16")
        );
    }

    /// A member with this header text (any version) and payload.
    fn member(version: u8, dict: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(dict.as_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn every_byte_order_width_and_memory_order_gives_numpys_values() {
        // [[1, 2, 3], [4, 5, 6]] as numpy lays it out in each dtype and order.
        let want = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let f_order = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
        let enc = |descr: &str, vals: &[f64]| -> Vec<u8> {
            vals.iter()
                .flat_map(|&v| {
                    let le: Vec<u8> = match &descr[1..] {
                        "f8" => v.to_le_bytes().to_vec(),
                        "f4" => (v as f32).to_le_bytes().to_vec(),
                        "i2" => (v as i16).to_le_bytes().to_vec(),
                        "u4" => (v as u32).to_le_bytes().to_vec(),
                        "i8" => (v as i64).to_le_bytes().to_vec(),
                        // 1.0 … 6.0 in binary16: exponent 15 + ⌊log2 v⌋, 10-bit fraction.
                        "f2" => {
                            let e = (v.log2().floor()) as u16;
                            let frac = ((v / 2f64.powi(i32::from(e)) - 1.0) * 1024.0) as u16;
                            (((15 + e) << 10) | frac).to_le_bytes().to_vec()
                        }
                        "u1" => vec![v as u8],
                        other => panic!("{other}"),
                    };
                    if descr.starts_with('>') {
                        le.into_iter().rev().collect()
                    } else {
                        le
                    }
                })
                .collect()
        };
        for descr in [
            "<f8", ">f8", "<f4", ">f4", ">f2", "<i2", ">u4", "<i8", "|u1",
        ] {
            for (fortran, stored) in [("False", &want[..]), ("True", &f_order[..])] {
                for version in [1, 2, 3] {
                    let dict = format!(
                        "{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': (2, 3), }}\n"
                    );
                    let m = member(version, &dict, &enc(descr, stored));
                    let (shape, v) = read_f64(&m, Some(&[2, 3]))
                        .unwrap_or_else(|e| panic!("{descr} {fortran} v{version}: {e}"));
                    assert_eq!((shape, v), (vec![2, 3], want.clone()), "{descr} {fortran}");
                }
            }
        }
    }

    #[test]
    fn headers_numpy_refuses_are_refused() {
        let ok = "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }";
        assert!(read_f64(&member(1, ok, &[0; 8]), None).is_ok());
        for (dict, needle) in [
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'x': 1}",
                "keys",
            ),
            ("{'descr': '<f8', 'shape': (1,)}", "keys"),
            (
                "{'descr': '<f8', 'fortran_order': 0, 'shape': (1,)}",
                "fortran_order",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': [1]}",
                "tuple",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1.0,)}",
                "integer",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}",
                "negative",
            ),
            (
                "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,)}",
                "structured",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1,)} junk",
                "literal",
            ),
            (
                "{'descr': '<f8' 'fortran_order': False, 'shape': (1,)}",
                "literal",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'fortran_order': False, 'shape': (1,)}",
                "twice",
            ),
        ] {
            let e = read_f64(&member(1, dict, &[0; 8]), None)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{dict}: {e}");
        }
        let mut v4 = member(1, ok, &[0; 8]);
        v4[6] = 4;
        assert!(parse_header(&v4).unwrap_err().to_string().contains("4.0"));
        let mut v11 = member(1, ok, &[0; 8]);
        v11[7] = 1;
        assert!(parse_header(&v11).unwrap_err().to_string().contains("1.1"));
    }

    #[test]
    fn a_64_bit_integer_without_an_exact_float_is_refused() {
        let dict = "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }";
        let mut payload = 7i64.to_le_bytes().to_vec();
        payload.extend(((1i64 << 53) + 1).to_le_bytes());
        let e = read_f64(&member(1, dict, &payload), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("element 1") && e.contains("exact"), "{e}");
    }

    #[test]
    fn a_descr_that_is_not_ascii_is_refused() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/npy");
        let b = std::fs::read(root.join("descr-not-ascii")).unwrap();
        let e = read_f64(&b, None).unwrap_err().to_string();
        assert!(e.contains("dtype"), "{e}");
    }

    #[test]
    fn half_floats_convert_exactly() {
        assert_eq!(f16_to_f64(0x3C00), 1.0);
        assert_eq!(f16_to_f64(0xC000), -2.0);
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert_eq!(f16_to_f64(0x7BFF), 65504.0);
        assert!(f16_to_f64(0x7E00).is_nan());
        assert_eq!(f16_to_f64(0xFC00), f64::NEG_INFINITY);
    }
}
