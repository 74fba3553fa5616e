//! A reader and writer for the ZIP container of `.npz` files.
//!
//! The reader follows the central directory (as numpy's own loader does), so the Zip64 extra fields
//! that numpy writes into every local header need no special casing. Stored (method 0) entries are
//! what `np.savez` writes; deflated entries (`np.savez_compressed`) are accepted too.

use std::io::Read;

use super::NpzError;

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
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8).map(|s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
}

/// Lists the members of a ZIP archive held in memory.
pub fn entries(bytes: &[u8]) -> Result<Vec<Entry>, NpzError> {
    let truncated =
        |what: &str| NpzError::Container(format!("truncated or not a ZIP archive ({what})"));
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
    if (count == 0xFFFF || cd_offset == 0xFFFF_FFFF)
        && eocd >= 20
        && u32_at(bytes, eocd - 20) == Some(ZIP64_EOCD_LOCATOR_SIG)
    {
        let z64 = u64_at(bytes, eocd - 12).ok_or_else(|| truncated("zip64 locator"))? as usize;
        count = u64_at(bytes, z64 + 32).ok_or_else(|| truncated("zip64 record"))?;
        cd_size = u64_at(bytes, z64 + 40).ok_or_else(|| truncated("zip64 record"))?;
        cd_offset = u64_at(bytes, z64 + 48).ok_or_else(|| truncated("zip64 record"))?;
    }
    if cd_offset.saturating_add(cd_size) > bytes.len() as u64 {
        return Err(truncated("central directory runs past the end of the file"));
    }
    let mut out = Vec::with_capacity(count as usize);
    let mut at = cd_offset as usize;
    for _ in 0..count {
        if u32_at(bytes, at) != Some(CDIR_SIG) {
            return Err(truncated("bad central directory entry"));
        }
        let field =
            |off: usize| u32_at(bytes, at + off).ok_or_else(|| truncated("central directory"));
        let method = u16_at(bytes, at + 10).ok_or_else(|| truncated("central directory"))?;
        let crc32 = field(16)?;
        let mut compressed_size = u64::from(field(20)?);
        let mut size = u64::from(field(24)?);
        let name_len = usize::from(u16_at(bytes, at + 28).unwrap_or(0));
        let extra_len = usize::from(u16_at(bytes, at + 30).unwrap_or(0));
        let comment_len = usize::from(u16_at(bytes, at + 32).unwrap_or(0));
        let mut local_header_offset = u64::from(field(42)?);
        let name_bytes = bytes
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(|| truncated("entry name"))?;
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        // Zip64 extra: only the fields whose 32-bit slot is saturated are present, in this order.
        let extra = bytes
            .get(at + 46 + name_len..at + 46 + name_len + extra_len)
            .ok_or_else(|| truncated("entry extra field"))?;
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
        out.push(Entry {
            name,
            method,
            crc32,
            compressed_size,
            size,
            local_header_offset,
        });
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(out)
}

/// The largest member magpipe inflates: a SolARED array is 81 tiles × a few hundred hours × 8
/// bytes, a few MiB; anything near this limit is not one.
pub const MAX_MEMBER: u64 = 1 << 30;

/// Returns the uncompressed bytes of one member, checking its size and CRC-32.
pub fn read_entry<'a>(bytes: &'a [u8], e: &Entry) -> Result<std::borrow::Cow<'a, [u8]>, NpzError> {
    let bad = |what: String| NpzError::Container(format!("{}: {what}", e.name));
    let lh = e.local_header_offset as usize;
    if u32_at(bytes, lh) != Some(LOCAL_SIG) {
        return Err(bad("local header missing (truncated file?)".into()));
    }
    let name_len = usize::from(u16_at(bytes, lh + 26).unwrap_or(0));
    let extra_len = usize::from(u16_at(bytes, lh + 28).unwrap_or(0));
    let start = lh + 30 + name_len + extra_len;
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
        m => return Err(bad(format!("unsupported compression method {m}"))),
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

/// Writes a ZIP archive of stored members laid out the way numpy's `np.savez` lays them out:
/// a Zip64 extra field in every local header, none in the central directory.
pub fn write_stored(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in members {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let size = data.len() as u32;
        out.extend_from_slice(&LOCAL_SIG.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.extend_from_slice(&0u16.to_le_bytes()); // method: stored
        out.extend_from_slice(&0u16.to_le_bytes()); // time
        out.extend_from_slice(&0x21u16.to_le_bytes()); // date (1980-01-01)
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        out.extend_from_slice(data);

        central.extend_from_slice(&CDIR_SIG.to_le_bytes());
        central.extend_from_slice(&0x0314u16.to_le_bytes()); // made by
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0x21u16.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes()); // extra
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
        central.extend_from_slice(&(0o100600u32 << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A one-member archive whose member is `payload` deflated, its directory claiming `size`.
    fn deflated(payload: &[u8], size: u32) -> Vec<u8> {
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(payload).unwrap();
        let z = enc.finish().unwrap();
        let mut a = write_stored(&[("arr_0.npy".into(), z)]);
        // Patch the method (local header and central directory) and the declared size.
        a[8..10].copy_from_slice(&8u16.to_le_bytes());
        let cd = (0..a.len() - 4)
            .find(|&i| a[i..i + 4] == CDIR_SIG.to_le_bytes())
            .unwrap();
        a[cd + 10..cd + 12].copy_from_slice(&8u16.to_le_bytes());
        a[cd + 16..cd + 20].copy_from_slice(&crc32(payload).to_le_bytes());
        a[cd + 24..cd + 28].copy_from_slice(&size.to_le_bytes());
        a
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
}
