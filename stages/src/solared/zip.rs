//! A reader and writer for the ZIP container of `.npz` files.
//!
//! The reader follows the central directory (as numpy's own loader does), so the Zip64 extra fields
//! that numpy writes into every local header need no special casing. Stored (method 0) entries are
//! what `np.savez` writes; deflated entries (`np.savez_compressed`) are accepted too.

use std::io::Read;

use super::NpzError;
use magpipe_engine::error::printable;

const EOCD_SIG: u32 = 0x0605_4b50;
const CDIR_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
const ZIP64_EOCD_LOCATOR_SIG: u32 = 0x0706_4b50;

/// One archive member, located inside the archive bytes.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub method: u16,
    pub crc32: u32,
    pub compressed_size: u64,
    pub size: u64,
    pub local_header_offset: u64,
    /// Where the member's (compressed) data starts, after its local header.
    pub data_offset: u64,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at.checked_add(2)?)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at.checked_add(8)?).map(|s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
}

const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;

/// The compression methods numpy never writes but ZIP defines, named in the refusal.
fn method_name(m: u16) -> &'static str {
    match m {
        12 => " (bzip2)",
        14 => " (lzma)",
        93 => " (zstd)",
        _ => "",
    }
}

/// Lists the members of a ZIP archive held in memory, refusing every archive whose central
/// directory and local headers disagree, whose members overlap or repeat a name: in such an
/// archive the member a reader gets depends on which of the two records it trusts, so two
/// readers (numpy's and this one) could read different data from the same file.
pub fn entries(bytes: &[u8]) -> Result<Vec<Entry>, NpzError> {
    let truncated =
        |what: &str| NpzError::Container(format!("truncated or not a ZIP archive ({what})"));
    let damaged = |what: String| NpzError::Container(format!("damaged ZIP archive: {what}"));
    if bytes.len() < 22 {
        return Err(truncated("shorter than an end-of-central-directory record"));
    }
    // The EOCD record sits at the end, possibly followed by a comment of up to 64 KiB.
    let lowest = bytes.len().saturating_sub(22 + 65_535);
    let eocd = (lowest..=bytes.len() - 22)
        .rev()
        .find(|&i| u32_at(bytes, i) == Some(EOCD_SIG))
        .ok_or_else(|| truncated("no end-of-central-directory record"))?;
    let mut count = u64::from(u16_at(bytes, eocd + 10).unwrap_or(0));
    let mut cd_size = u64::from(u32_at(bytes, eocd + 12).unwrap_or(0));
    let mut cd_offset = u64::from(u32_at(bytes, eocd + 16).unwrap_or(0));
    // Like Python's zipfile, a Zip64 locator in front of the EOCD means the Zip64 record holds
    // the true figures, whether or not the 32-bit ones are saturated.
    if eocd >= 20 && u32_at(bytes, eocd - 20) == Some(ZIP64_EOCD_LOCATOR_SIG) {
        let z64 = u64_at(bytes, eocd - 12).ok_or_else(|| truncated("zip64 locator"))?;
        let z64 = usize::try_from(z64)
            .ok()
            .filter(|&z| z.checked_add(56).is_some_and(|end| end <= eocd - 20))
            .ok_or_else(|| truncated("zip64 end record out of the file"))?;
        if u32_at(bytes, z64) != Some(ZIP64_EOCD_SIG) {
            return Err(truncated("bad zip64 end record"));
        }
        count = u64_at(bytes, z64 + 32).ok_or_else(|| truncated("zip64 record"))?;
        cd_size = u64_at(bytes, z64 + 40).ok_or_else(|| truncated("zip64 record"))?;
        cd_offset = u64_at(bytes, z64 + 48).ok_or_else(|| truncated("zip64 record"))?;
    }
    if cd_offset.saturating_add(cd_size) > bytes.len() as u64 {
        return Err(truncated("central directory runs past the end of the file"));
    }
    // Each directory entry takes at least 46 bytes, so a count beyond that is a lie, refused
    // before it sizes an allocation.
    if count.saturating_mul(46) > cd_size {
        return Err(damaged(format!(
            "the directory claims {count} members in {cd_size} bytes"
        )));
    }
    let cd_end = (cd_offset + cd_size) as usize;
    let mut out: Vec<Entry> = Vec::with_capacity(count as usize);
    let mut raw_names: Vec<&[u8]> = Vec::with_capacity(count as usize);
    let mut at = cd_offset as usize;
    for _ in 0..count {
        if u32_at(bytes, at) != Some(CDIR_SIG) {
            return Err(truncated("bad central directory entry"));
        }
        let field =
            |off: usize| u32_at(bytes, at + off).ok_or_else(|| truncated("central directory"));
        let half =
            |off: usize| u16_at(bytes, at + off).ok_or_else(|| truncated("central directory"));
        let flags = half(8)?;
        let method = half(10)?;
        let crc32 = field(16)?;
        let mut compressed_size = u64::from(field(20)?);
        let mut size = u64::from(field(24)?);
        let name_len = usize::from(half(28)?);
        let extra_len = usize::from(half(30)?);
        let comment_len = usize::from(half(32)?);
        let mut local_header_offset = u64::from(field(42)?);
        let name_bytes = bytes
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(|| truncated("entry name"))?;
        // Shown with control characters escaped, so a hostile name cannot break the one-line
        // error or reach a terminal raw (found by the npz fuzz target: a name holding a
        // newline). Names that differ only in such characters never match the `arr_N.npy`
        // looked up.
        let name = printable(&String::from_utf8_lossy(name_bytes));
        let extra = bytes
            .get(at + 46 + name_len..at + 46 + name_len + extra_len)
            .ok_or_else(|| truncated("entry extra field"))?;
        // Zip64 extra: only the fields whose 32-bit slot is saturated are present, in this order.
        let mut e = 0;
        while e + 4 <= extra.len() {
            let id = u16_at(extra, e).unwrap_or(0);
            let len = usize::from(u16_at(extra, e + 2).unwrap_or(0));
            if id == 1 {
                let mut p = e + 4;
                for slot in [&mut size, &mut compressed_size, &mut local_header_offset] {
                    if *slot == 0xFFFF_FFFF {
                        *slot = u64_at(extra, p).ok_or_else(|| truncated("zip64 extra"))?;
                        p += 8;
                    }
                }
            }
            e += 4 + len;
        }
        if flags & 1 != 0 {
            return Err(NpzError::Container(format!(
                "{name}: encrypted members are not supported"
            )));
        }
        if raw_names.contains(&name_bytes) {
            return Err(damaged(format!(
                "member {name} appears twice in the directory (numpy would read the last, \
                 other readers the first)"
            )));
        }
        let data_offset = check_local_header(
            bytes,
            &name,
            name_bytes,
            flags,
            method,
            crc32,
            compressed_size,
            size,
            local_header_offset,
        )?;
        raw_names.push(name_bytes);
        out.push(Entry {
            name,
            method,
            crc32,
            compressed_size,
            size,
            local_header_offset,
            data_offset,
        });
        at += 46 + name_len + extra_len + comment_len;
        if at > cd_end {
            return Err(truncated("central directory entry runs past the directory"));
        }
    }
    if at != cd_end {
        return Err(damaged(format!(
            "the directory holds {} bytes beyond its {count} entries",
            cd_end - at
        )));
    }
    // Every member's header and data must lie before the directory and apart from the others:
    // two directory entries sharing bytes are how a member is made to read as another.
    let mut spans: Vec<(u64, u64, &str)> = out
        .iter()
        .map(|e| {
            (
                e.local_header_offset,
                e.data_offset + e.compressed_size,
                e.name.as_str(),
            )
        })
        .collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(damaged(format!(
                "members {} and {} overlap",
                w[0].2, w[1].2
            )));
        }
    }
    if let Some(last) = spans.last()
        && last.1 > cd_offset
    {
        return Err(damaged(format!(
            "member {} runs into the central directory",
            last.2
        )));
    }
    Ok(out)
}

/// Checks a member's local header against its directory entry, as Python's zipfile checks the
/// name (and more), and returns where its data starts.
#[allow(clippy::too_many_arguments)]
fn check_local_header(
    bytes: &[u8],
    name: &str,
    name_bytes: &[u8],
    flags: u16,
    method: u16,
    crc32: u32,
    compressed_size: u64,
    size: u64,
    offset: u64,
) -> Result<u64, NpzError> {
    let bad = |what: String| NpzError::Container(format!("{name}: {what}"));
    let lh = usize::try_from(offset)
        .ok()
        .filter(|&lh| u32_at(bytes, lh) == Some(LOCAL_SIG))
        .ok_or_else(|| bad("local header missing (truncated file?)".into()))?;
    let trunc = || bad("local header truncated".into());
    let l_flags = u16_at(bytes, lh + 6).ok_or_else(trunc)?;
    let l_method = u16_at(bytes, lh + 8).ok_or_else(trunc)?;
    let l_crc = u32_at(bytes, lh + 14).ok_or_else(trunc)?;
    let mut l_csize = u64::from(u32_at(bytes, lh + 18).ok_or_else(trunc)?);
    let mut l_size = u64::from(u32_at(bytes, lh + 22).ok_or_else(trunc)?);
    let name_len = usize::from(u16_at(bytes, lh + 26).ok_or_else(trunc)?);
    let extra_len = usize::from(u16_at(bytes, lh + 28).ok_or_else(trunc)?);
    let l_name = bytes.get(lh + 30..lh + 30 + name_len).ok_or_else(trunc)?;
    let extra = bytes
        .get(lh + 30 + name_len..lh + 30 + name_len + extra_len)
        .ok_or_else(trunc)?;
    if l_name != name_bytes {
        return Err(bad(format!(
            "the directory's name and the local header's ({:?}) differ",
            String::from_utf8_lossy(l_name)
        )));
    }
    // In a local header's Zip64 extra both sizes are present, uncompressed first; each stands
    // in only for a 32-bit field that is saturated. (Taking the extra's compressed size over an
    // unsaturated field let a header say one size to this reader and another to a streaming
    // one: found by the npz fuzz target.)
    let mut e = 0;
    while e + 4 <= extra.len() {
        let id = u16_at(extra, e).unwrap_or(0);
        let len = usize::from(u16_at(extra, e + 2).unwrap_or(0));
        if id == 1 {
            if l_size == 0xFFFF_FFFF {
                l_size = u64_at(extra, e + 4).ok_or_else(trunc)?;
            }
            if l_csize == 0xFFFF_FFFF {
                l_csize = u64_at(extra, e + 12).ok_or_else(trunc)?;
            }
        }
        e += 4 + len;
    }
    if l_method != method {
        return Err(bad(format!(
            "compression method {l_method} in its local header, {method} in the directory"
        )));
    }
    if method != 0 && method != 8 {
        return Err(bad(format!(
            "unsupported compression method {method}{}; numpy writes stored or deflated members",
            method_name(method)
        )));
    }
    // With a data descriptor (flag bit 3) the local header may leave CRC and sizes as zero.
    let deferred = (flags | l_flags) & 8 != 0 && l_crc == 0 && l_csize == 0 && l_size == 0;
    if !deferred {
        if l_crc != crc32 {
            return Err(bad(format!(
                "CRC-32 {l_crc:08x} in its local header, {crc32:08x} in the directory"
            )));
        }
        if l_csize != compressed_size || l_size != size {
            return Err(bad(format!(
                "sizes {l_csize}/{l_size} in its local header, {compressed_size}/{size} in the \
                 directory"
            )));
        }
    }
    Ok((lh + 30 + name_len + extra_len) as u64)
}

/// The largest member magpipe inflates: a SolARED array is 81 tiles × a few hundred hours × 8
/// bytes, a few MiB; anything near this limit is not one.
pub const MAX_MEMBER: u64 = 1 << 30;

/// Returns the uncompressed bytes of one member, checking its size and CRC-32.
pub fn read_entry<'a>(bytes: &'a [u8], e: &Entry) -> Result<std::borrow::Cow<'a, [u8]>, NpzError> {
    let bad = |what: String| NpzError::Container(format!("{}: {what}", e.name));
    let start = e.data_offset as usize;
    let end = start
        .checked_add(e.compressed_size as usize)
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| {
            bad(format!(
                "data runs past the end of the file (truncated: needs {} bytes, file has {})",
                start as u64 + e.compressed_size,
                bytes.len()
            ))
        })?;
    let raw = &bytes[start..end];
    if e.size > MAX_MEMBER {
        return Err(bad(format!(
            "declares {} bytes uncompressed, over the {} MiB a SolARED array can need (a zip bomb?)",
            e.size,
            MAX_MEMBER >> 20
        )));
    }
    let data: std::borrow::Cow<'a, [u8]> = match e.method {
        0 => std::borrow::Cow::Borrowed(raw),
        8 => {
            let mut out = Vec::with_capacity(e.size as usize);
            // Inflate at most one byte past the declared size: a member that expands beyond
            // what its directory entry says is cut off and rejected below, not inflated whole.
            flate2::read::DeflateDecoder::new(raw)
                .take(e.size + 1)
                .read_to_end(&mut out)
                .map_err(|err| bad(format!("cannot inflate: {err}")))?;
            std::borrow::Cow::Owned(out)
        }
        m => {
            return Err(bad(format!(
                "unsupported compression method {m}{}",
                method_name(m)
            )));
        }
    };
    if data.len() as u64 != e.size {
        return Err(bad(format!(
            "holds {} bytes, the directory says {}",
            data.len(),
            e.size
        )));
    }
    if crc32(&data) != e.crc32 {
        return Err(bad("CRC-32 mismatch (corrupted file)".into()));
    }
    Ok(data)
}

/// CRC-32 (IEEE), as ZIP uses it.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// One member as it is to be written: its bytes as stored (compressed or not) and what the
/// headers say of it.
pub struct RawMember<'a> {
    pub name: &'a str,
    pub method: u16,
    pub crc32: u32,
    /// The uncompressed size the headers declare.
    pub size: u64,
    pub data: &'a [u8],
}

/// Writes a ZIP archive of stored members laid out the way numpy's `np.savez` lays them out:
/// a Zip64 extra field in every local header, none in the central directory.
pub fn write_stored(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let raw: Vec<RawMember> = members
        .iter()
        .map(|(name, data)| RawMember {
            name,
            method: 0,
            crc32: crc32(data),
            size: data.len() as u64,
            data,
        })
        .collect();
    write_raw(&raw)
}

/// Writes members exactly as given, in `np.savez`'s layout: the headers say what `RawMember`
/// says, true or not, so tests can build archives that lie about a member consistently.
pub fn write_raw(members: &[RawMember]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for m in members {
        let offset = out.len() as u32;
        let csize = m.data.len() as u32;
        let size = m.size as u32;
        out.extend_from_slice(&LOCAL_SIG.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.extend_from_slice(&m.method.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // time
        out.extend_from_slice(&0x21u16.to_le_bytes()); // date (1980-01-01)
        out.extend_from_slice(&m.crc32.to_le_bytes());
        out.extend_from_slice(&csize.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&(m.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(m.name.as_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(&m.size.to_le_bytes());
        out.extend_from_slice(&(m.data.len() as u64).to_le_bytes());
        out.extend_from_slice(m.data);

        central.extend_from_slice(&CDIR_SIG.to_le_bytes());
        central.extend_from_slice(&0x0314u16.to_le_bytes()); // made by
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&m.method.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0x21u16.to_le_bytes());
        central.extend_from_slice(&m.crc32.to_le_bytes());
        central.extend_from_slice(&csize.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&(m.name.len() as u16).to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes()); // extra
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
        central.extend_from_slice(&(0o100600u32 << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(m.name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    let cd_size = central.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&EOCD_SIG.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A one-member archive whose member is `payload` deflated, its headers declaring `size`
/// uncompressed bytes and the payload's CRC.
pub fn write_deflated(name: &str, payload: &[u8], size: u64) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(payload).expect("writing to memory");
    let z = enc.finish().expect("writing to memory");
    write_raw(&[RawMember {
        name,
        method: 8,
        crc32: crc32(payload),
        size,
        data: &z,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deflated(payload: &[u8], size: u32) -> Vec<u8> {
        write_deflated("arr_0.npy", payload, u64::from(size))
    }

    #[test]
    fn a_deflated_member_round_trips() {
        let payload = vec![7u8; 1000];
        let a = deflated(&payload, 1000);
        let e = &entries(&a).unwrap()[0];
        assert_eq!(read_entry(&a, e).unwrap().as_ref(), &payload[..]);
    }

    #[test]
    fn a_member_that_inflates_past_its_size_is_cut_off_and_rejected() {
        // 64 MiB of zeros deflate to about 64 KiB; the directory says 100 bytes.
        let a = deflated(&vec![0u8; 64 << 20], 100);
        let e = &entries(&a).unwrap()[0];
        let err = read_entry(&a, e).unwrap_err().to_string();
        assert!(
            err.contains("holds 101 bytes, the directory says 100"),
            "{err}"
        );
    }

    #[test]
    fn a_member_declaring_gigabytes_is_refused_before_any_allocation() {
        let a = deflated(&[0u8; 10], u32::MAX - 1);
        let e = &entries(&a).unwrap()[0];
        let err = read_entry(&a, e).unwrap_err().to_string();
        assert!(err.contains("zip bomb"), "{err}");
    }

    fn two_members() -> Vec<u8> {
        write_stored(&[
            ("arr_0.npy".into(), vec![1u8; 100]),
            ("arr_1.npy".into(), vec![2u8; 100]),
        ])
    }

    /// The offset of the n-th central directory entry.
    fn cd_entry(a: &[u8], n: usize) -> usize {
        (0..a.len() - 4)
            .filter(|&i| a[i..i + 4] == CDIR_SIG.to_le_bytes())
            .nth(n)
            .unwrap()
    }

    #[test]
    fn a_directory_entry_pointing_at_another_members_header_is_refused() {
        let mut a = two_members();
        let cd1 = cd_entry(&a, 1);
        a[cd1 + 42..cd1 + 46].copy_from_slice(&0u32.to_le_bytes());
        let e = entries(&a).unwrap_err().to_string();
        assert!(e.contains("arr_1.npy") && e.contains("differ"), "{e}");
    }

    #[test]
    fn a_repeated_member_name_is_refused() {
        let a = write_stored(&[
            ("arr_0.npy".into(), vec![1u8; 10]),
            ("arr_0.npy".into(), vec![2u8; 10]),
        ]);
        let e = entries(&a).unwrap_err().to_string();
        assert!(e.contains("arr_0.npy appears twice"), "{e}");
    }

    #[test]
    fn local_headers_disagreeing_with_the_directory_are_refused() {
        for (off, needle) in [
            (8usize, "compression method"),
            (14, "CRC-32"),
            (22, "sizes"),
        ] {
            let mut a = two_members();
            // The second member's local header starts after the first's 30 + 9 + 20 + 100 bytes.
            let lh = 159;
            assert_eq!(u32_at(&a, lh), Some(LOCAL_SIG));
            a[lh + off] ^= 0x01;
            let e = entries(&a).unwrap_err().to_string();
            assert!(e.contains("arr_1.npy") && e.contains(needle), "{off}: {e}");
        }
    }

    #[test]
    fn overlapping_members_are_refused() {
        // Member 1's entry claims a compressed size reaching into member 2's header; both
        // headers agree with it, so only the overlap check sees it.
        let mut a = two_members();
        let cd0 = cd_entry(&a, 0);
        a[cd0 + 20..cd0 + 24].copy_from_slice(&150u32.to_le_bytes());
        a[18..22].copy_from_slice(&150u32.to_le_bytes());
        // The local Zip64 extra's compressed size, after signature…name (39 bytes) and 4+8.
        a[30 + 9 + 12..30 + 9 + 20].copy_from_slice(&150u64.to_le_bytes());
        let e = entries(&a).unwrap_err().to_string();
        assert!(e.contains("overlap"), "{e}");
    }

    #[test]
    fn bzip2_and_lzma_members_are_named_and_refused() {
        for (m, name) in [(12u16, "bzip2"), (14, "lzma")] {
            let a = write_raw(&[RawMember {
                name: "arr_0.npy",
                method: m,
                crc32: 0,
                size: 3,
                data: b"abc",
            }]);
            let e = entries(&a).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains("unsupported"), "{e}");
        }
    }

    #[test]
    fn a_zip64_extra_stands_in_only_for_saturated_sizes() {
        // Found by the npz fuzz target: arr_1's local header has a saturated uncompressed size
        // and an unsaturated (wrong) compressed one; the Zip64 extra holds the directory's
        // figures. Reading the extra over the unsaturated field accepted the file, though a
        // streaming reader would take the header's compressed size.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/npz");
        let b = std::fs::read(root.join("zip64-extra-over-unsaturated-size")).unwrap();
        let e = entries(&b[1..]).unwrap_err().to_string();
        assert!(e.contains("arr_1.npy") && e.contains("sizes"), "{e}");
    }

    #[test]
    fn a_member_name_with_a_newline_gives_a_one_line_error() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/npz");
        let b = std::fs::read(root.join("newline-in-member-name")).unwrap();
        let e = entries(&b[1..]).unwrap_err().to_string();
        assert!(!e.contains('\n') && e.contains("\\n"), "{e}");
    }
}
