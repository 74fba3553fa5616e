//! The properties the fuzz targets (`fuzz/`) check, kept here so the ordinary test suite replays
//! the seeds and every input the fuzzers ever found (`fuzz/regressions/`) without a fuzz build.
//! Each function must return normally for any input: a panic is the bug.

use std::path::Path;

use super::{TILES, npy, pickle, zip};

/// A whole npz file through the reader `ingest` uses; the first byte picks how many data members
/// it is read as (1 like mean_int and mean_mag, up to 4 like mean_pmdop).
///
/// What it accepts must read the same from the local headers alone, front to back, as a
/// streaming reader would read it: an archive whose directory says one thing and whose headers
/// another is exactly the kind two readers disagree on, and must have been refused.
pub fn npz(data: &[u8]) {
    let Some((&n, bytes)) = data.split_first() else {
        return;
    };
    let arrays = 1 + usize::from(n % 4);
    match super::read_npz_bytes(Path::new("fuzz.npz"), bytes.to_vec(), arrays) {
        Ok(f) => {
            assert_eq!(f.arrays.len(), arrays);
            for a in &f.arrays {
                assert_eq!(a.len(), TILES * f.times.len());
            }
            let by_directory = zip::entries(bytes).expect("accepted, so listed");
            let streamed = streamed_members(bytes);
            for e in &by_directory {
                let s = streamed
                    .iter()
                    .find(|s| s.0 == e.name)
                    .unwrap_or_else(|| panic!("{} is not where its local header is", e.name));
                assert_eq!(
                    (s.1, s.2, s.3),
                    (e.local_header_offset, e.method, e.crc32),
                    "{}",
                    e.name
                );
                assert_eq!(s.4, e.compressed_size, "{}", e.name);
            }
        }
        Err(e) => {
            let m = e.to_string();
            assert!(!m.contains('\n'), "a multi-line error: {m:?}");
            assert!(
                m.starts_with("fuzz.npz: "),
                "an error without its file: {m:?}"
            );
        }
    }
}

/// One npy member: the header parser and the float64 reader, with and without an expected shape.
pub fn npy(data: &[u8]) {
    if let Ok(h) = npy::parse_header(data) {
        assert!(h.data_offset <= data.len());
    }
    if let Ok((shape, v)) = npy::read_f64(data, None) {
        let n = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        assert_eq!(n, Some(v.len()), "shape {shape:?}");
    }
    let _ = npy::read_f64(data, Some(&[TILES, 4]));
}

/// The timestamp pickle decoder: whatever it accepts encodes back to a pickle that decodes to the
/// same stamps.
pub fn pickle(data: &[u8]) {
    if let Ok(times) = pickle::decode_datetime_array(data) {
        let again = pickle::decode_datetime_array(&pickle::encode_datetime_array(&times))
            .expect("a re-encoded array decodes");
        assert_eq!(again, times);
    }
}

/// The members found by walking local headers from the start of the archive: (name, offset,
/// method, CRC, compressed size), as a reader without the central directory would see them.
fn streamed_members(b: &[u8]) -> Vec<(String, u64, u16, u32, u64)> {
    let u16_at = |at: usize| b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let u32_at = |at: usize| {
        b.get(at..at + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    let u64_at = |at: usize| {
        b.get(at..at + 8)
            .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
    };
    let mut out = vec![];
    let mut at = 0usize;
    while u32_at(at) == Some(0x0403_4b50) {
        let (Some(method), Some(crc), Some(mut csize), Some(n), Some(x)) = (
            u16_at(at + 8),
            u32_at(at + 14),
            u32_at(at + 18).map(u64::from),
            u16_at(at + 26).map(usize::from),
            u16_at(at + 28).map(usize::from),
        ) else {
            break;
        };
        let name = String::from_utf8_lossy(b.get(at + 30..at + 30 + n).unwrap_or_default());
        // The Zip64 extra, when the 32-bit size is saturated: uncompressed, then compressed.
        let mut e = at + 30 + n;
        while e + 4 <= at + 30 + n + x {
            let (Some(id), Some(len)) = (u16_at(e), u16_at(e + 2)) else {
                break;
            };
            if id == 1 && csize == 0xFFFF_FFFF {
                csize = u64_at(e + 12).unwrap_or(csize);
            }
            e += 4 + usize::from(len);
        }
        out.push((name.into_owned(), at as u64, method, crc, csize));
        let Some(next) = usize::try_from(csize)
            .ok()
            .and_then(|c| (at + 30 + n + x).checked_add(c))
        else {
            break;
        };
        at = next;
    }
    out
}

/// A structure-aware mutation of a ZIP archive, for the npz fuzz target's custom mutator: the
/// byte-level mutations libFuzzer makes almost never keep an archive readable while making its
/// directory and local headers disagree, which is what these do. `choice` picks the mutation and
/// its operands; the archive is left unchanged when it has no directory to work on.
pub fn mutate_zip(data: &mut Vec<u8>, choice: u64) {
    // The first byte is the target's member count, not archive.
    if data.len() < 2 {
        return;
    }
    let b = &mut data[1..];
    let Some(eocd) = (0..b.len().saturating_sub(21))
        .rev()
        .find(|&i| b[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
    else {
        return;
    };
    let cd_offset = u32::from_le_bytes(b[eocd + 16..eocd + 20].try_into().expect("4")) as usize;
    // Only entries whose fixed 46-byte header is whole: the mutations below read its fields.
    let cds: Vec<usize> = (cd_offset.min(eocd)..eocd)
        .filter(|&i| i + 46 <= b.len() && b.get(i..i + 4) == Some(&[0x50, 0x4b, 0x01, 0x02][..]))
        .collect();
    if cds.is_empty() {
        return;
    }
    let pick = |k: u64| cds[(k as usize) % cds.len()];
    let (a, z) = (pick(choice >> 8), pick(choice >> 24));
    let copy4 = |b: &mut [u8], from: usize, to: usize| {
        if from + 4 <= b.len() && to + 4 <= b.len() {
            let v: [u8; 4] = b[from..from + 4].try_into().expect("4");
            b[to..to + 4].copy_from_slice(&v);
        }
    };
    let local = |b: &[u8], cd: usize| -> Option<usize> {
        let off = u32::from_le_bytes(b.get(cd + 42..cd + 46)?.try_into().ok()?) as usize;
        // A whole 30-byte local header, whose fields the mutations read.
        (off.checked_add(30).is_some_and(|end| end <= b.len())
            && b.get(off..off + 4) == Some(&[0x50, 0x4b, 0x03, 0x04][..]))
        .then_some(off)
    };
    match choice % 6 {
        // One directory entry pointing at another member's local header.
        0 => copy4(b, a + 42, z + 42),
        // One member's directory name given to another (a duplicate name).
        1 => {
            let n = |b: &[u8], cd: usize| usize::from(u16::from_le_bytes([b[cd + 28], b[cd + 29]]));
            let (na, nz) = (n(b, a), n(b, z));
            if na == nz && a != z && a + 46 + na <= b.len() && z + 46 + nz <= b.len() {
                let name = b[a + 46..a + 46 + na].to_vec();
                b[z + 46..z + 46 + nz].copy_from_slice(&name);
            }
        }
        // A local header's CRC, method or sizes changed, its directory entry not.
        2 => {
            if let Some(lh) = local(b, a) {
                let field = [8usize, 14, 18, 22][(choice >> 40) as usize % 4];
                if let Some(x) = b.get_mut(lh + field) {
                    *x ^= 1 << ((choice >> 48) % 8);
                }
            }
        }
        // A directory entry's compressed size grown into the next member.
        3 => {
            let c = u32::from_le_bytes(b[a + 20..a + 24].try_into().expect("4"));
            let grown = c.wrapping_add(((choice >> 40) % 256) as u32 + 1);
            b[a + 20..a + 24].copy_from_slice(&grown.to_le_bytes());
            if let Some(lh) = local(b, a) {
                b[lh + 18..lh + 22].copy_from_slice(&grown.to_le_bytes());
            }
        }
        // The local header's name changed, the directory's not.
        4 => {
            if let Some(lh) = local(b, a)
                && let Some(x) = b.get_mut(lh + 30)
            {
                *x ^= 0x20;
            }
        }
        // A whole member appended again under its own name, the directory extended to list it.
        _ => {
            let Some(lh) = local(b, a) else {
                return;
            };
            let (Some(ln), Some(lx)) = (b.get(lh + 26..lh + 28), b.get(lh + 28..lh + 30)) else {
                return;
            };
            let csize = u32::from_le_bytes(b[a + 20..a + 24].try_into().expect("4")) as usize;
            let end = lh
                + 30
                + usize::from(u16::from_le_bytes([ln[0], ln[1]]))
                + usize::from(u16::from_le_bytes([lx[0], lx[1]]))
                + csize;
            let Some(member) = b.get(lh..end.min(cd_offset)).map(<[u8]>::to_vec) else {
                return;
            };
            let cd_entry_len = {
                let n = usize::from(u16::from_le_bytes([b[a + 28], b[a + 29]]));
                let x = usize::from(u16::from_le_bytes([b[a + 30], b[a + 31]]));
                let c = usize::from(u16::from_le_bytes([b[a + 32], b[a + 33]]));
                46 + n + x + c
            };
            let Some(entry) = b.get(a..a + cd_entry_len).map(<[u8]>::to_vec) else {
                return;
            };
            let mut out = b[..cd_offset.min(b.len())].to_vec();
            let new_lh = out.len() as u32;
            out.extend_from_slice(&member);
            let new_cd = out.len();
            out.extend_from_slice(&b[cd_offset.min(eocd)..eocd]);
            let mut e = entry;
            e[42..46].copy_from_slice(&new_lh.to_le_bytes());
            out.extend_from_slice(&e);
            let cd_size = (out.len() - new_cd) as u32;
            let mut end = b[eocd..].to_vec();
            let count = u16::from_le_bytes([end[10], end[11]]).wrapping_add(1);
            end[8..10].copy_from_slice(&count.to_le_bytes());
            end[10..12].copy_from_slice(&count.to_le_bytes());
            end[12..16].copy_from_slice(&cd_size.to_le_bytes());
            end[16..20].copy_from_slice(&(new_cd as u32).to_le_bytes());
            out.extend_from_slice(&end);
            data.truncate(1);
            data.extend_from_slice(&out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SolARED-shaped two-member file as the fuzz target sees it (member-count byte first).
    fn seed() -> Vec<u8> {
        let times: Vec<i64> = (0..4)
            .map(|h| 1_300_000_000_000_000 + h * 3_600_000_000)
            .collect();
        let mut stamps = npy::header_bytes("|O", &[4]);
        stamps.extend(pickle::encode_datetime_array(&times));
        let mut out = vec![0u8];
        out.extend(zip::write_stored(&[
            (
                "arr_0.npy".into(),
                npy::write_f64(&[TILES, 4], &[0.5; TILES * 4]),
            ),
            ("arr_1.npy".into(), stamps),
        ]));
        out
    }

    #[test]
    fn every_structural_mutation_is_refused_and_passes_the_fuzz_check() {
        let original = seed();
        assert!(super::super::read_npz_bytes(Path::new("x"), original[1..].to_vec(), 1).is_ok());
        let mut kinds = std::collections::BTreeSet::new();
        for k in 0..6u64 {
            for operands in 0..64u64 {
                // Mutation k, with operands spread over the bits the mutator reads.
                let choice = k
                    | (operands << 8)
                    | (operands.rotate_left(17) << 24)
                    | (operands << 40)
                    | ((operands * 7) << 48);
                let mut m = original.clone();
                mutate_zip(&mut m, choice);
                npz(&m);
                if m != original {
                    kinds.insert(k);
                    assert!(
                        super::super::read_npz_bytes(Path::new("x"), m[1..].to_vec(), 1).is_err(),
                        "mutation {k} (choice {choice:#x}) was accepted"
                    );
                }
            }
        }
        assert_eq!(
            kinds.len(),
            6,
            "mutations that never changed the seed: {kinds:?}"
        );
    }

    #[test]
    fn the_mutator_takes_any_archive_cut_short_or_bitten_without_panicking() {
        // libFuzzer hands the mutator whatever its other mutations made: a directory entry or a
        // local header cut off by the end of the data among them (a CI run's smoke test found
        // one indexed past the end).
        let original = seed();
        let mut tiny = vec![0u8];
        tiny.extend_from_slice(&[0x50, 0x4b, 0x01, 0x02]);
        tiny.extend_from_slice(&[0x50, 0x4b, 0x05, 0x06]);
        tiny.extend_from_slice(&[0; 18]);
        let mut inputs = vec![tiny];
        let eocd = original.len() - 22;
        for cut in (2..original.len()).step_by(5) {
            // The archive's first `cut` bytes, with its end record kept so the directory is found.
            let mut m = original[..cut.min(eocd)].to_vec();
            m.extend_from_slice(&original[eocd..]);
            inputs.push(m);
        }
        for input in inputs {
            for k in 0..6u64 {
                for operands in [0u64, 1, 7, 0xFFFF_FFFF] {
                    let mut m = input.clone();
                    mutate_zip(
                        &mut m,
                        k | (operands << 8) | (operands << 24) | (operands << 40),
                    );
                }
            }
        }
    }

    #[test]
    fn accepted_archives_stream_to_the_directorys_members() {
        let s = seed();
        let listed = zip::entries(&s[1..]).unwrap();
        let streamed = streamed_members(&s[1..]);
        assert_eq!(
            listed.iter().map(|e| &e.name).collect::<Vec<_>>(),
            streamed.iter().map(|s| &s.0).collect::<Vec<_>>()
        );
    }
}
