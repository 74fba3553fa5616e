//! Records on a remote: one per key and signer, so no pusher's record can block another's.
//!
//! ```text
//! ac/<key>/<name>-<id>.json   the record signed by the key `name:base64` (id: 16 hex digits of
//!                             the blake3 of the whole public key, so two keys that claim one
//!                             name still have a record each)
//! ac/<key>/unsigned.json      the record pushed without a key
//! ac/<key>.json               the layout before records per signer: read as one more record
//!                             of the key, never written
//! ```
//!
//! Each name is create-only. A pull picks, among the records of a key, the first one signed by a
//! key of `trusted_keys`, in that list's order; a remote that trusts anyone gives the earliest
//! pushed. A record filed under another signer's name than the one that signed it is damaged.

use serde::{Deserialize, Serialize};

use super::{Miss, Remote, RemoteError, Signed, sign};
use crate::store::Record;

pub(super) const ENVELOPE_FORMAT: &str = "magpipe.remote-record/1";

/// A record as a remote holds it: its exact bytes, so the signature covers what is read.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Envelope {
    pub format: String,
    pub record: String,
    #[serde(default)]
    pub signer: Option<String>,
    #[serde(default)]
    pub signature: Option<String>,
    pub pushed_unix: f64,
    pub pushed_from: String,
}

/// The file name a signer's records have: readable, and unique per key.
pub fn signer_id(public: &str) -> String {
    let name = public.rsplit_once(':').map_or(public, |(n, _)| n);
    let id = blake3::hash(public.as_bytes()).to_hex();
    format!("{}-{}", crate::fsutil::file_safe(name), &id[..16])
}

/// Where the record of `key` signed by `signer` (or unsigned) is kept.
pub(super) fn record_name(key: &str, signer: Option<&str>) -> String {
    match signer {
        Some(k) => format!("ac/{key}/{}.json", signer_id(k)),
        None => format!("ac/{key}/unsigned.json"),
    }
}

/// The one record per key of the layout before records per signer.
pub(super) fn legacy_name(key: &str) -> String {
    format!("ac/{key}.json")
}

/// A name under `ac/`: its key, and the signer id it is filed under (`None`: the old layout,
/// which says nothing of its signer). `Err` for a name that is no record's.
pub(super) fn parse_name(name: &str) -> Result<(&str, Option<&str>), ()> {
    let rest = name.strip_prefix("ac/").ok_or(())?;
    let rest = rest.strip_suffix(".json").ok_or(())?;
    match rest.split_once('/') {
        None => Ok((rest, None)),
        Some((key, id)) if !id.contains('/') && !key.is_empty() && !id.is_empty() => {
            Ok((key, Some(id)))
        }
        Some(_) => Err(()),
    }
}

/// One record a remote holds for a key, as read and judged.
#[derive(Debug, Clone)]
pub struct Holding {
    /// Its name on the remote.
    pub name: String,
    /// The public key that signed it (`None`: unsigned, or unreadable).
    pub signer: Option<String>,
    pub pushed_unix: f64,
    pub pushed_from: String,
    /// `Ok` when a pull would take it (its objects aside); else why not.
    pub verdict: Result<(), Miss>,
}

impl Holding {
    /// `alice@lab:… (pushed from HOST at TIME)`, for listings.
    pub fn who(&self) -> String {
        let who = self
            .signer
            .as_deref()
            .map_or("unsigned".to_string(), |k| format!("signed by {k}"));
        if self.pushed_from.is_empty() {
            who
        } else {
            format!(
                "{who}, pushed from {} at {}",
                self.pushed_from,
                crate::time::utc(self.pushed_unix)
            )
        }
    }
}

/// A record a pull may take, with its verified signature.
pub(super) type Candidate = (Record, Option<Signed>);

/// What [`Remote::judged`] says of a key: the signer of the record a pull would take (`None`:
/// unsigned), else why none; and every record held for it.
pub type Judged = (Result<Option<String>, Miss>, Vec<Holding>);

/// A record read and checked (not yet for trust): the record, its verified signature, and what
/// its envelope says of where it came from.
pub(super) struct Read {
    pub record: Record,
    pub signed: Option<Signed>,
    pub pushed_unix: f64,
    pub pushed_from: String,
}

impl Remote {
    /// Whether a record signed by `signer` (or unsigned) is one this remote's configuration lets
    /// a pull take.
    pub(super) fn trusts(&self, signer: Option<&str>) -> Result<(), Miss> {
        if self.trusted.is_empty() {
            return Ok(());
        }
        match signer {
            Some(k) if self.trusted.iter().any(|t| t == k) => Ok(()),
            Some(k) => Err(Miss::Untrusted(k.to_string())),
            None => Err(Miss::Unsigned),
        }
    }

    /// The record named `name`, filed for `key`, read and checked: its envelope, its signature,
    /// that it is filed under its signer's name, its paths, and its key against its pre-image.
    /// Trust is not checked here. `Ok(Err(Miss::Absent))` when there is no such file.
    pub(super) fn read_at(&self, name: &str, key: &str) -> Result<Result<Read, Miss>, RemoteError> {
        let Some(bytes) = self.backend.get_bytes(name).map_err(|e| self.err(e))? else {
            return Ok(Err(Miss::Absent));
        };
        Ok(check_envelope(&bytes, name, key))
    }

    /// Every record the remote holds for `key`, each judged as a pull would judge it; the
    /// earliest pushed first.
    pub fn holdings(&self, key: &str) -> Result<Vec<Holding>, RemoteError> {
        Ok(self.held(key)?.into_iter().map(|(h, _)| h).collect())
    }

    /// [`Remote::holdings`], each with the record as read when it is sound, so a caller that
    /// takes one does not read it again.
    fn held(&self, key: &str) -> Result<Vec<(Holding, Option<Read>)>, RemoteError> {
        let mut names = self
            .backend
            .list(&format!("ac/{key}"))
            .map_err(|e| self.err(e))?;
        names.push(legacy_name(key));
        let mut out = Vec::new();
        for name in names {
            let h = match self.read_at(&name, key)? {
                Err(Miss::Absent) => continue,
                Err(m) => (
                    Holding {
                        name,
                        signer: None,
                        pushed_unix: 0.0,
                        pushed_from: String::new(),
                        verdict: Err(m),
                    },
                    None,
                ),
                Ok(r) => {
                    let signer = r.signed.as_ref().map(|(k, _)| k.clone());
                    let h = Holding {
                        verdict: self.trusts(signer.as_deref()),
                        name,
                        signer,
                        pushed_unix: r.pushed_unix,
                        pushed_from: r.pushed_from.clone(),
                    };
                    (h, Some(r))
                }
            };
            out.push(h);
        }
        out.sort_by(|a, b| a.0.pushed_unix.total_cmp(&b.0.pushed_unix));
        Ok(out)
    }

    /// The records of `key` a pull may take, best first: those signed by `trusted_keys` in that
    /// list's order (then a record of the old layout that such a key signed), or, on a remote
    /// that trusts anyone, every sound record, the earliest pushed first. `Ok(Err(miss))` says
    /// why none: not there, or what is wrong with each that is.
    pub(super) fn candidates(
        &self,
        key: &str,
    ) -> Result<Result<Vec<Candidate>, Miss>, RemoteError> {
        if !self.trusted.is_empty() {
            // Straight to the trusted signers' names: one request when the first has it.
            let mut names: Vec<String> = self
                .trusted
                .iter()
                .map(|k| record_name(key, Some(k)))
                .collect();
            names.push(legacy_name(key));
            let mut found = Vec::new();
            for name in &names {
                if let Ok(r) = self.read_at(name, key)?
                    && self
                        .trusts(r.signed.as_ref().map(|(k, _)| k.as_str()))
                        .is_ok()
                {
                    found.push((r.record, r.signed));
                }
            }
            if !found.is_empty() {
                return Ok(Ok(found));
            }
        }
        Ok(self.in_pull_order(self.held(key)?).map(|found| {
            found
                .into_iter()
                .map(|(_, r)| (r.record, r.signed))
                .collect()
        }))
    }

    /// Every record the remote holds for `key`, judged (as [`Remote::holdings`]), and the signer
    /// of the one a pull would take (as [`Remote::takable`]), from one reading of the remote.
    pub fn judged(&self, key: &str) -> Result<Judged, RemoteError> {
        let held = self.held(key)?;
        let holdings = held.iter().map(|(h, _)| h.clone()).collect();
        let taken = self
            .in_pull_order(held)
            .map(|found| found.into_iter().next().and_then(|(h, _)| h.signer));
        Ok((taken, holdings))
    }

    /// Of `held` (as [`Remote::held`] lists them), those a pull may take, in the order
    /// [`Remote::candidates`] says; else why none.
    fn in_pull_order(
        &self,
        held: Vec<(Holding, Option<Read>)>,
    ) -> Result<Vec<(Holding, Read)>, Miss> {
        let mut found = Vec::new();
        let mut misses = Vec::new();
        for (h, read) in held {
            // A holding is judged `Ok` only when its record was read.
            match (&h.verdict, read) {
                (Ok(()), Some(r)) => found.push((h, r)),
                (Err(m), _) => misses.push(m.clone()),
                (Ok(()), None) => {}
            }
        }
        if !self.trusted.is_empty() {
            // trusted_keys' order, then the old layout's record; a stable sort, so otherwise
            // the earliest pushed first.
            found.sort_by_key(|(h, _)| {
                let legacy = matches!(parse_name(&h.name), Ok((_, None)));
                let rank = self
                    .trusted
                    .iter()
                    .position(|t| Some(t.as_str()) == h.signer.as_deref());
                (legacy, rank)
            });
        }
        if found.is_empty() {
            Err(Miss::all(misses))
        } else {
            Ok(found)
        }
    }
}

/// An envelope's bytes checked as [`Remote::read_at`] says.
fn check_envelope(bytes: &[u8], name: &str, key: &str) -> Result<Read, Miss> {
    let env: Envelope =
        serde_json::from_slice(bytes).map_err(|e| Miss::BadRecord(e.to_string()))?;
    if env.format != ENVELOPE_FORMAT {
        return Err(Miss::BadRecord(format!("unknown format `{}`", env.format)));
    }
    match (&env.signer, &env.signature) {
        (Some(k), Some(sig)) => {
            if !sign::verify(k, env.record.as_bytes(), sig) {
                return Err(Miss::BadSignature(k.clone()));
            }
        }
        (None, None) => {}
        // A signer with no signature (or the reverse) claims what it cannot show.
        _ => {
            return Err(Miss::BadRecord(
                "a signer without a signature, or a signature without a signer".into(),
            ));
        }
    }
    // Filed under another signer's name, a record could stand in for theirs.
    if let Ok((_, Some(id))) = parse_name(name) {
        let expected = env.signer.as_deref().map_or("unsigned".into(), signer_id);
        if id != expected {
            return Err(Miss::BadRecord(format!(
                "filed as {id}.json but {}",
                env.signer
                    .as_deref()
                    .map_or("unsigned".into(), |k| format!("signed by {k}"))
            )));
        }
    }
    let rec: Record =
        serde_json::from_str(&env.record).map_err(|e| Miss::BadRecord(e.to_string()))?;
    rec.check_paths().map_err(Miss::BadRecord)?;
    if rec.key != key || rec.preimage.key() != key {
        return Err(Miss::BadRecord(format!(
            "filed under {} but its pre-image hashes to {}",
            crate::stale::short(key),
            crate::stale::short(&rec.preimage.key())
        )));
    }
    Ok(Read {
        record: rec,
        signed: env.signer.zip(env.signature),
        pushed_unix: env.pushed_unix,
        pushed_from: env.pushed_from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_ids_differ_per_key() {
        let a = "alice@lab:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let b = "alice@lab:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB=";
        assert_ne!(signer_id(a), signer_id(b), "two keys claiming one name");
        assert!(signer_id(a).starts_with("alice@lab-"));
        let n = record_name("k1", Some(a));
        assert_eq!(parse_name(&n), Ok(("k1", Some(signer_id(a).as_str()))));
        assert_eq!(
            parse_name(&record_name("k1", None)),
            Ok(("k1", Some("unsigned")))
        );
        assert_eq!(parse_name(&legacy_name("k1")), Ok(("k1", None)));
        assert!(parse_name("ac/k1/x/y.json").is_err());
        assert!(parse_name("cas/abc").is_err());
        assert!(parse_name("ac/k1.txt").is_err());
    }

    #[test]
    fn a_name_with_a_path_character_is_escaped() {
        let id = signer_id("../../x:AAAA");
        assert!(!id.contains('/'), "{id}");
    }
}
