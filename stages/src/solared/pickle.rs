//! A strict decoder (and, for fixtures, encoder) of the pickled numpy object arrays of
//! `datetime.datetime` that hold the SolARED timestamps.
//!
//! This is not a general unpickler: it runs only the opcodes that pickles of such an array use
//! (numpy 1.x writes protocol 3, the SolARED files' form documented in docs/src/semantics.md §1.2; numpy
//! 2.x writes protocol 4 with frames, `SHORT_BINUNICODE`, `MEMOIZE` and `STACK_GLOBAL`) and
//! resolves only the five globals such an array names, so a hostile or foreign pickle is
//! rejected, never executed. Widening it means adding opcodes, never globals.

use std::collections::HashMap;

use super::time::Civil;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PickleError {
    #[error("pickle truncated at byte {0}")]
    Truncated(usize),
    #[error("pickle opcode 0x{op:02x} at byte {at} is not allowed in a timestamp array")]
    Opcode { op: u8, at: usize },
    #[error("pickle refers to global {0:?}, which a timestamp array never uses")]
    Global(String),
    #[error("pickle is malformed at byte {at}: {msg}")]
    Malformed { at: usize, msg: String },
    #[error("pickle does not hold a numpy object array of datetimes: {0}")]
    Structure(String),
    #[error("timestamp {index} is not a valid date/time: {msg}")]
    BadDatetime { index: usize, msg: String },
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Mark,
    Global(&'static str),
    Int(i64),
    Str(String),
    Bytes(Vec<u8>),
    None,
    Bool(bool),
    Tuple(Vec<Val>),
    List(Vec<Val>),
    Reduce(Box<Val>, Box<Val>),
    Build(Box<Val>, Box<Val>),
}

const ALLOWED_GLOBALS: [(&str, &str, &str); 5] = [
    ("numpy.core.multiarray", "_reconstruct", "reconstruct"),
    ("numpy._core.multiarray", "_reconstruct", "reconstruct"),
    ("numpy", "ndarray", "ndarray"),
    ("numpy", "dtype", "dtype"),
    ("datetime", "datetime", "datetime"),
];

struct Vm<'a> {
    b: &'a [u8],
    at: usize,
    stack: Vec<Val>,
    memo: HashMap<u32, Val>,
    /// Containers built so far: bounds nesting depth (and so the recursion of drop and clone).
    containers: usize,
    /// Values copied out of the memo: bounds "billion laughs" growth.
    copied: usize,
}

/// A real SolARED timestamp pickle builds about three containers per timestamp and copies only
/// small values out of its memo; these limits are far above that and far below harm.
const MAX_CONTAINERS: usize = 20_000;
const MAX_COPIED: usize = 1_000_000;
const MAX_STACK: usize = 1_000_000;

impl Val {
    /// Number of values in this tree (the work a clone of it does).
    fn weight(&self) -> usize {
        match self {
            Val::Tuple(v) | Val::List(v) => 1 + v.iter().map(Val::weight).sum::<usize>(),
            Val::Reduce(a, b) | Val::Build(a, b) => 1 + a.weight() + b.weight(),
            _ => 1,
        }
    }
}

impl<'a> Vm<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let s = self
            .b
            .get(self.at..self.at.saturating_add(n))
            .ok_or(PickleError::Truncated(self.b.len()))?;
        self.at += n;
        Ok(s)
    }
    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.b[self.at..];
        let end = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or(PickleError::Truncated(self.b.len()))?;
        self.at += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| self.malformed("GLOBAL name is not UTF-8"))
    }
    fn malformed(&self, msg: &str) -> PickleError {
        PickleError::Malformed {
            at: self.at,
            msg: msg.to_string(),
        }
    }
    fn pop(&mut self) -> Result<Val, PickleError> {
        self.stack
            .pop()
            .ok_or_else(|| self.malformed("stack underflow"))
    }
    fn pop_mark(&mut self) -> Result<Vec<Val>, PickleError> {
        let m = self
            .stack
            .iter()
            .rposition(|v| *v == Val::Mark)
            .ok_or_else(|| self.malformed("no MARK"))?;
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        Ok(items)
    }
    /// The next `l` bytes as a UTF-8 string.
    fn str_of(&mut self, l: usize) -> Result<Val, PickleError> {
        let s = self.take(l)?;
        let s = std::str::from_utf8(s).map_err(|_| self.malformed("a string is not UTF-8"))?;
        Ok(Val::Str(s.to_string()))
    }

    /// A copy of memo slot `i`, counted against the copy budget.
    fn get(&mut self, i: u32) -> Result<Val, PickleError> {
        let v = self
            .memo
            .get(&i)
            .ok_or_else(|| self.malformed("BINGET of an unset memo slot"))?;
        self.copied += v.weight();
        if self.copied > MAX_COPIED {
            return Err(self.malformed("excessive memo references (a pickle bomb?)"));
        }
        Ok(v.clone())
    }

    /// Stores a copy of the top of the stack, counted against the same budget as `get`: PUT
    /// repeated on a large value copies it as surely as GET does (found by the pickle fuzz
    /// target, as a 3 KiB input that ran for seconds).
    fn put(&mut self, idx: u32) -> Result<(), PickleError> {
        let top = self
            .stack
            .last()
            .ok_or_else(|| self.malformed("PUT on empty stack"))?;
        self.copied += top.weight();
        if self.copied > MAX_COPIED {
            return Err(self.malformed("excessive memo references (a pickle bomb?)"));
        }
        let v = top.clone();
        self.memo.insert(idx, v);
        Ok(())
    }

    fn run(mut self) -> Result<Val, PickleError> {
        loop {
            let op_at = self.at;
            let op = *self.take(1)?.first().expect("one byte");
            if matches!(
                op,
                b't' | 0x85 | 0x86 | 0x87 | b')' | b']' | b'l' | b'R' | b'b' | b'e' | b'a' | b'('
            ) {
                self.containers += 1;
                if self.containers > MAX_CONTAINERS {
                    return Err(
                        self.malformed("too many nested or built objects for a timestamp array")
                    );
                }
            }
            if self.stack.len() > MAX_STACK {
                return Err(self.malformed("stack grows without bound"));
            }
            match op {
                0x80 => {
                    let proto = self.take(1)?[0];
                    if !(2..=5).contains(&proto) {
                        return Err(self.malformed(&format!("unsupported protocol {proto}")));
                    }
                }
                // FRAME (protocol 4): a length prefix for buffering; the opcodes inside are
                // read as if it were absent, as CPython does once it has the whole frame.
                0x95 => {
                    let l = u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"));
                    if l > (self.b.len() - self.at) as u64 {
                        return Err(PickleError::Truncated(self.b.len()));
                    }
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = global(module, name)?;
                    self.stack.push(g);
                }
                // STACK_GLOBAL (protocol 4): module and name are the two strings on the stack.
                0x93 => {
                    let (Val::Str(name), Val::Str(module)) = (self.pop()?, self.pop()?) else {
                        return Err(self.malformed("STACK_GLOBAL without two strings"));
                    };
                    let g = global(&module, &name)?;
                    self.stack.push(g);
                }
                // MEMOIZE (protocol 4): PUT at the next free index.
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.put(i)?;
                }
                b'j' => {
                    let i = self.take(4)?;
                    let v = self.get(u32::from_le_bytes([i[0], i[1], i[2], i[3]]))?;
                    self.stack.push(v);
                }
                b'M' => {
                    let v = self.take(2)?;
                    self.stack
                        .push(Val::Int(i64::from(u16::from_le_bytes([v[0], v[1]]))));
                }
                0x8c => {
                    let l = usize::from(self.take(1)?[0]);
                    let s = self.str_of(l)?;
                    self.stack.push(s);
                }
                0x8d => {
                    let l = u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"));
                    let l = usize::try_from(l).map_err(|_| PickleError::Truncated(self.b.len()))?;
                    let s = self.str_of(l)?;
                    self.stack.push(s);
                }
                b'B' => {
                    let l = self.take(4)?;
                    let l = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
                    let s = self.take(l)?.to_vec();
                    self.stack.push(Val::Bytes(s));
                }
                0x8e => {
                    let l = u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"));
                    let l = usize::try_from(l).map_err(|_| PickleError::Truncated(self.b.len()))?;
                    let s = self.take(l)?.to_vec();
                    self.stack.push(Val::Bytes(s));
                }
                b')' => self.stack.push(Val::Tuple(vec![])),
                0x86 => {
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.stack.push(Val::Tuple(vec![a, b]));
                }
                // APPEND: pickle writes a list of one element (or a last batch of one) this way.
                b'a' => {
                    let v = self.pop()?;
                    match self.stack.last_mut() {
                        Some(Val::List(l)) => l.push(v),
                        _ => return Err(self.malformed("APPEND without a list")),
                    }
                }
                b'q' => {
                    let i = self.take(1)?[0];
                    self.put(u32::from(i))?;
                }
                b'r' => {
                    let i = self.take(4)?;
                    self.put(u32::from_le_bytes([i[0], i[1], i[2], i[3]]))?;
                }
                b'h' => {
                    let i = u32::from(self.take(1)?[0]);
                    let v = self.get(i)?;
                    self.stack.push(v);
                }
                b'K' => {
                    let v = self.take(1)?[0];
                    self.stack.push(Val::Int(i64::from(v)));
                }
                b'J' => {
                    let v = self.take(4)?;
                    self.stack.push(Val::Int(i64::from(i32::from_le_bytes([
                        v[0], v[1], v[2], v[3],
                    ]))));
                }
                b'X' => {
                    let l = self.take(4)?;
                    let l = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
                    let s = self.str_of(l)?;
                    self.stack.push(s);
                }
                b'C' => {
                    let l = usize::from(self.take(1)?[0]);
                    let s = self.take(l)?.to_vec();
                    self.stack.push(Val::Bytes(s));
                }
                b'(' => self.stack.push(Val::Mark),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Val::Tuple(items));
                }
                0x85 => {
                    let a = self.pop()?;
                    self.stack.push(Val::Tuple(vec![a]));
                }
                0x87 => {
                    let c = self.pop()?;
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.stack.push(Val::Tuple(vec![a, b, c]));
                }
                b'N' => self.stack.push(Val::None),
                0x88 => self.stack.push(Val::Bool(true)),
                0x89 => self.stack.push(Val::Bool(false)),
                b']' => self.stack.push(Val::List(Vec::new())),
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.stack.last_mut() {
                        Some(Val::List(l)) => l.extend(items),
                        _ => return Err(self.malformed("APPENDS without a list")),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    self.stack.push(Val::Reduce(Box::new(func), Box::new(args)));
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.pop()?;
                    self.stack.push(Val::Build(Box::new(obj), Box::new(state)));
                }
                b'.' => {
                    let v = self.pop()?;
                    if !self.stack.is_empty() {
                        return Err(self.malformed("values left on the stack at STOP"));
                    }
                    if self.at != self.b.len() {
                        return Err(self.malformed("trailing bytes after STOP"));
                    }
                    return Ok(v);
                }
                op => return Err(PickleError::Opcode { op, at: op_at }),
            }
        }
    }
}

/// The one value a whitelisted global stands for; any other global is refused unresolved.
fn global(module: &str, name: &str) -> Result<Val, PickleError> {
    ALLOWED_GLOBALS
        .iter()
        .find(|(m, n, _)| *m == module && *n == name)
        .map(|g| Val::Global(g.2))
        .ok_or_else(|| PickleError::Global(format!("{module}.{name}")))
}

fn structure(msg: &str) -> PickleError {
    PickleError::Structure(msg.to_string())
}

/// Decodes the pickle payload of an `|O` npy member into naive timestamps (µs since 1970-01-01).
pub fn decode_datetime_array(payload: &[u8]) -> Result<Vec<i64>, PickleError> {
    let root = Vm {
        b: payload,
        at: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
        containers: 0,
        copied: 0,
    }
    .run()?;
    let Val::Build(obj, state) = root else {
        return Err(structure("top level is not ndarray.__setstate__"));
    };
    match *obj {
        Val::Reduce(f, args) if *f == Val::Global("reconstruct") => match *args {
            Val::Tuple(a) if a.first() == Some(&Val::Global("ndarray")) => {}
            _ => return Err(structure("_reconstruct is not called on numpy.ndarray")),
        },
        _ => {
            return Err(structure(
                "top level is not numpy.core.multiarray._reconstruct",
            ));
        }
    }
    let Val::Tuple(st) = *state else {
        return Err(structure("array state is not a tuple"));
    };
    let [
        _,
        Val::Tuple(shape),
        dtype,
        Val::Bool(false),
        Val::List(items),
    ] = st.as_slice()
    else {
        return Err(structure(
            "array state is not (version, shape, dtype, False, list)",
        ));
    };
    let is_object_dtype = match dtype {
        Val::Build(d, _) => matches!(d.as_ref(), Val::Reduce(f, a)
            if **f == Val::Global("dtype")
            && matches!(a.as_ref(), Val::Tuple(t) if t.first() == Some(&Val::Str("O8".into())))),
        _ => false,
    };
    if !is_object_dtype {
        return Err(structure("dtype is not object ('O8')"));
    }
    let n = match shape.as_slice() {
        [Val::Int(n)] => *n as usize,
        _ => return Err(structure("shape is not one-dimensional")),
    };
    if items.len() != n {
        return Err(structure(&format!(
            "shape says {n} timestamps, the list holds {}",
            items.len()
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let bad = |msg: &str| PickleError::BadDatetime {
                index,
                msg: msg.to_string(),
            };
            let Val::Reduce(f, args) = item else {
                return Err(bad("element is not a datetime.datetime"));
            };
            if **f != Val::Global("datetime") {
                return Err(bad("element is not a datetime.datetime"));
            }
            match args.as_ref() {
                Val::Tuple(a) => match a.as_slice() {
                    [Val::Bytes(b)] if b.len() == 10 => {
                        decode_datetime_bytes(b).map_err(|m| bad(&m))
                    }
                    [Val::Bytes(_), _] => Err(bad("carries a tzinfo; naive timestamps expected")),
                    _ => Err(bad("state is not 10 bytes")),
                },
                _ => Err(bad("state is not a tuple")),
            }
        })
        .collect()
}

/// Python's `datetime.__reduce__` payload: year (u16 BE), month, day, hour, minute, second,
/// microsecond (u24 BE). The high bit of the month byte is PEP 495's `fold`, which a naive
/// hourly series does not need.
fn decode_datetime_bytes(b: &[u8]) -> Result<i64, String> {
    let year = i64::from(u16::from_be_bytes([b[0], b[1]]));
    let month = u32::from(b[2] & 0x7F);
    let day = u32::from(b[3]);
    let (hour, minute, second) = (u32::from(b[4]), u32::from(b[5]), u32::from(b[6]));
    let micro = (u32::from(b[7]) << 16) | (u32::from(b[8]) << 8) | u32::from(b[9]);
    let c = Civil {
        year,
        month,
        day,
        hour,
        minute,
        second,
        micro,
    };
    if !c.is_valid() {
        return Err(format!("fields {b:02x?} are out of range"));
    }
    Ok(c.to_micros())
}

/// Pickles timestamps exactly as numpy 1.x (protocol 3) pickles an object array of naive
/// `datetime.datetime`, so generated fixtures exercise the same bytes as the real files.
pub fn encode_datetime_array(times: &[i64]) -> Vec<u8> {
    let mut o = vec![0x80, 3];
    let mut memo = 0u32;
    let put = |o: &mut Vec<u8>, memo: &mut u32| {
        if *memo < 256 {
            o.extend_from_slice(&[b'q', *memo as u8]);
        } else {
            o.push(b'r');
            o.extend_from_slice(&memo.to_le_bytes());
        }
        *memo += 1;
    };
    o.extend_from_slice(b"cnumpy.core.multiarray\n_reconstruct\n");
    put(&mut o, &mut memo);
    o.extend_from_slice(b"cnumpy\nndarray\n");
    put(&mut o, &mut memo);
    o.extend_from_slice(&[b'K', 0, 0x85]);
    put(&mut o, &mut memo);
    o.extend_from_slice(&[b'C', 1, b'b']);
    put(&mut o, &mut memo);
    o.push(0x87);
    put(&mut o, &mut memo);
    o.push(b'R');
    put(&mut o, &mut memo);
    o.extend_from_slice(&[b'(', b'K', 1]);
    // BININT1 holds shapes up to 255; larger ones need BININT.
    if times.len() < 256 {
        o.extend_from_slice(&[b'K', times.len() as u8]);
    } else {
        o.push(b'J');
        o.extend_from_slice(&(times.len() as i32).to_le_bytes());
    }
    o.push(0x85);
    put(&mut o, &mut memo);
    o.extend_from_slice(b"cnumpy\ndtype\n");
    put(&mut o, &mut memo);
    o.extend_from_slice(b"X\x02\x00\x00\x00O8");
    put(&mut o, &mut memo);
    o.extend_from_slice(&[0x89, 0x88, 0x87]);
    put(&mut o, &mut memo);
    o.push(b'R');
    put(&mut o, &mut memo);
    o.extend_from_slice(b"(K\x03X\x01\x00\x00\x00|");
    put(&mut o, &mut memo);
    o.extend_from_slice(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x3ft");
    put(&mut o, &mut memo);
    o.push(b'b');
    o.push(0x89);
    o.push(b']');
    put(&mut o, &mut memo);
    o.push(b'(');
    let mut datetime_slot = None;
    for &t in times {
        match datetime_slot {
            None => {
                o.extend_from_slice(b"cdatetime\ndatetime\n");
                datetime_slot = Some(memo);
                put(&mut o, &mut memo);
            }
            Some(slot) => o.extend_from_slice(&[b'h', slot as u8]),
        }
        let c = Civil::from_micros(t);
        let y = (c.year as u16).to_be_bytes();
        let us = c.micro.to_be_bytes();
        o.extend_from_slice(&[
            b'C',
            10,
            y[0],
            y[1],
            c.month as u8,
            c.day as u8,
            c.hour as u8,
            c.minute as u8,
            c.second as u8,
            us[1],
            us[2],
            us[3],
        ]);
        put(&mut o, &mut memo);
        o.push(0x85);
        put(&mut o, &mut memo);
        o.push(b'R');
        put(&mut o, &mut memo);
    }
    o.push(b'e');
    o.push(b't');
    put(&mut o, &mut memo);
    o.push(b'b');
    o.push(b'.');
    o
}

#[cfg(test)]
mod tests {

    #[test]
    fn deep_nesting_is_refused_and_what_is_accepted_drops_safely_on_a_small_stack() {
        let nested = |n: usize| {
            let mut b = b"\x80\x02K\x00".to_vec();
            b.extend(std::iter::repeat_n(0x85u8, n));
            b.push(b'.');
            b
        };
        let e = decode_datetime_array(&nested(30_000))
            .unwrap_err()
            .to_string();
        assert!(e.contains("too many nested"), "{e}");
        // Just under the limit: rejected for its structure, and dropping the 19,999-deep value
        // does not overflow a 2 MiB thread stack (rayon's and std's default).
        let r = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || decode_datetime_array(&nested(MAX_CONTAINERS - 1)).is_err())
            .unwrap()
            .join()
            .unwrap();
        assert!(r);
    }

    #[test]
    fn memo_doubling_is_refused_before_it_grows() {
        // memo0 = 0; then 40 times: memo0 = (memo0, memo0) — 2^40 values if copied naively.
        let mut b = b"\x80\x02K\x00q\x00".to_vec();
        for _ in 0..40 {
            b.extend_from_slice(b"(h\x00h\x00tq\x00");
        }
        b.push(b'.');
        let e = decode_datetime_array(&b).unwrap_err().to_string();
        assert!(e.contains("excessive memo references"), "{e}");
    }

    use super::*;
    use crate::solared::time::parse_timestamp;

    pub(super) fn hourly(n: usize) -> Vec<i64> {
        let t0 = parse_timestamp("2013-03-07 18:59:37.5").unwrap();
        (0..n as i64).map(|h| t0 + h * 3_600_000_000).collect()
    }

    #[test]
    fn round_trips_short_and_long_arrays() {
        for n in [1, 3, 80, 240, 300] {
            let t = hourly(n);
            assert_eq!(
                decode_datetime_array(&encode_datetime_array(&t)).unwrap(),
                t,
                "n={n}"
            );
        }
    }

    #[test]
    fn decodes_the_documented_example_bytes() {
        let b = [0x07, 0xdd, 0x03, 0x07, 0x12, 0x3b, 0x25, 0x07, 0xa1, 0x20];
        let us = decode_datetime_bytes(&b).unwrap();
        assert_eq!(
            crate::solared::time::format_micros(us),
            "2013-03-07 18:59:37.500000"
        );
    }

    #[test]
    fn rejects_foreign_globals_and_opcodes() {
        let evil = b"\x80\x03cos\nsystem\nq\x00.";
        assert_eq!(
            decode_datetime_array(evil),
            Err(PickleError::Global("os.system".into()))
        );
        let mut p = encode_datetime_array(&hourly(4));
        let i = p.iter().rposition(|&c| c == b'e').unwrap();
        p[i] = b'a'; // APPEND instead of APPENDS: the MARK is still on the stack
        assert!(matches!(
            decode_datetime_array(&p),
            Err(PickleError::Malformed { .. })
        ));
        // PERSID, an opcode no timestamp array uses, is refused by opcode.
        let mut q = encode_datetime_array(&hourly(2));
        q.insert(2, b'Q');
        assert!(matches!(
            decode_datetime_array(&q),
            Err(PickleError::Opcode { op: b'Q', .. })
        ));
        // A protocol-4 STACK_GLOBAL naming os.system is refused like GLOBAL is.
        let evil4 = b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93.";
        assert_eq!(
            decode_datetime_array(evil4),
            Err(PickleError::Global("os.system".into()))
        );
    }

    #[test]
    fn rejects_truncation_and_bad_dates() {
        let p = encode_datetime_array(&hourly(5));
        for cut in [1, 10, p.len() / 2, p.len() - 1] {
            assert!(decode_datetime_array(&p[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = p.clone();
        // Month byte of the first datetime: after `cdatetime\ndatetime\n q n C 0a yy yy`.
        let at = bad.windows(10).position(|w| w == b"\ndatetime\n").unwrap() + 10 + 2 + 2 + 2;
        bad[at] = 13;
        assert!(matches!(
            decode_datetime_array(&bad),
            Err(PickleError::BadDatetime { index: 0, .. })
        ));
    }
}

#[cfg(test)]
mod fuzz_found {
    use super::*;

    #[test]
    fn each_put_of_a_large_value_is_charged_to_the_copy_budget() {
        // A 1,000-int list stored 1,000 times: a million values copied by PUTs alone, no GET.
        let mut b = b"\x80\x02](".to_vec();
        for _ in 0..1000 {
            b.extend_from_slice(b"K\x07");
        }
        b.push(b'e');
        for _ in 0..1000 {
            b.extend_from_slice(b"q\x00");
        }
        b.push(b'.');
        let e = decode_datetime_array(&b).unwrap_err().to_string();
        assert!(e.contains("excessive memo references"), "{e}");
    }

    #[test]
    fn the_inputs_the_fuzzer_found_are_refused() {
        let root =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/pickle");
        for name in ["memo-put-copies", "memo-put-copies-2"] {
            let b = std::fs::read(root.join(name)).unwrap();
            let e = decode_datetime_array(&b).unwrap_err().to_string();
            assert!(e.contains("excessive memo references"), "{name}: {e}");
        }
    }

    /// Decodes a hex dump.
    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn decodes_numpy_2_protocol_4_pickles() {
        // `np.save(f, np.array([datetime(2013, 3, 7, 18, 59, 37, 500000) + h hours …],
        // dtype=object), allow_pickle=True)` under NumPy 2.4.6 / Python 3.11, payload after the
        // header: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, and APPEND for one element.
        let one = "800495b2000000000000008c166e756d70792e5f636f72652e6d756c74696172726179948c0c5f7265636f6e7374727563749493948c056e756d7079948c076e6461727261799493944b0085944301629487945294284b014b01859468038c0564747970659493948c024f3894898887945294284b038c017c944e4e4e4affffffff4affffffff4b3f749462895d948c086461746574696d65948c086461746574696d65949394430a07dd0307123b2507a1209485945294617494622e";
        let three = "800495d9000000000000008c166e756d70792e5f636f72652e6d756c74696172726179948c0c5f7265636f6e7374727563749493948c056e756d7079948c076e6461727261799493944b0085944301629487945294284b014b03859468038c0564747970659493948c024f3894898887945294284b038c017c944e4e4e4affffffff4affffffff4b3f749462895d94288c086461746574696d65948c086461746574696d65949394430a07dd0307123b2507a12094859452946815430a07dd0307133b2507a12094859452946815430a07dd0307143b2507a1209485945294657494622e";
        assert_eq!(
            decode_datetime_array(&hex(one)).unwrap(),
            super::tests::hourly(1)
        );
        assert_eq!(
            decode_datetime_array(&hex(three)).unwrap(),
            super::tests::hourly(3)
        );
        // A frame claiming more bytes than follow is a truncated pickle.
        let mut short = hex(three);
        short.truncate(short.len() - 20);
        assert!(matches!(
            decode_datetime_array(&short),
            Err(PickleError::Truncated(_))
        ));
    }
}
