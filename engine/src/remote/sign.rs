//! Signing keys (ed25519, as Nix's binary caches use): who pushed a record, and whether a remote
//! trusts them. A key pair lives in the user's config folder, never in a project; its public half
//! is written `name:base64`, the form a remote's `trusted_keys` lists.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use super::RemoteError;

/// What is signed: a domain tag, then the record's exact bytes, so a signature over anything
/// else (another format, another tool's message) never verifies as a record's.
fn message(record: &[u8]) -> Vec<u8> {
    let mut m = b"magpipe remote record v1\n".to_vec();
    m.extend_from_slice(record);
    m
}

/// magpipe's per-user folder: `$MAGPIPE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/magpipe`, else
/// `~/.config/magpipe`.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("MAGPIPE_CONFIG_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("magpipe"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config").join("magpipe"))
}

fn key_file(dir: &Path) -> PathBuf {
    dir.join("signing-key.json")
}

#[derive(serde::Serialize, serde::Deserialize)]
struct KeyFile {
    name: String,
    /// PKCS#8 v2, base64.
    pkcs8: String,
}

pub struct Signer {
    name: String,
    pair: Ed25519KeyPair,
}

impl Signer {
    /// Makes this user's key pair (refusing to replace one unless `force`) and returns it.
    pub fn generate(name: &str, force: bool) -> Result<Signer, RemoteError> {
        if name.is_empty() || name.contains(':') || name.chars().any(char::is_whitespace) {
            return Err(RemoteError::Key(format!(
                "a key name has no `:` or spaces (got `{name}`); for example you@lab"
            )));
        }
        let dir = config_dir().ok_or_else(|| {
            RemoteError::Key("no config folder: set HOME or MAGPIPE_CONFIG_DIR".into())
        })?;
        let path = key_file(&dir);
        if path.exists() && !force {
            return Err(RemoteError::Key(format!(
                "{} already holds a signing key; `magpipe key show` prints it (--force replaces it)",
                path.display()
            )));
        }
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| RemoteError::Key("the system random source failed".into()))?;
        fs::create_dir_all(&dir)
            .map_err(|e| RemoteError::Key(format!("{}: {e}", dir.display())))?;
        let body = serde_json::to_vec_pretty(&KeyFile {
            name: name.to_string(),
            pkcs8: B64.encode(pkcs8.as_ref()),
        })
        .expect("serialises");
        let tmp = dir.join(".signing-key.json.tmp");
        let _ = fs::remove_file(&tmp);
        // Readable by its owner only, from the moment it exists.
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(&body)?;
                f.sync_all()
            })
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| RemoteError::Key(format!("{}: {e}", path.display())))?;
        Self::load()?.ok_or_else(|| RemoteError::Key(format!("{} vanished", path.display())))
    }

    /// This user's key, if one was generated.
    pub fn load() -> Result<Option<Signer>, RemoteError> {
        let Some(dir) = config_dir() else {
            return Ok(None);
        };
        let path = key_file(&dir);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RemoteError::Key(format!("{}: {e}", path.display()))),
        };
        let bad = |why: &str| RemoteError::Key(format!("{}: {why}", path.display()));
        let f: KeyFile = serde_json::from_slice(&bytes).map_err(|e| bad(&e.to_string()))?;
        let der = B64.decode(&f.pkcs8).map_err(|e| bad(&e.to_string()))?;
        let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|_| bad("not an ed25519 key"))?;
        Ok(Some(Signer { name: f.name, pair }))
    }

    /// `name:base64`, what a remote's `trusted_keys` lists.
    pub fn public(&self) -> String {
        format!(
            "{}:{}",
            self.name,
            B64.encode(self.pair.public_key().as_ref())
        )
    }

    pub fn sign(&self, record: &[u8]) -> String {
        B64.encode(self.pair.sign(&message(record)).as_ref())
    }
}

/// Whether `signature` is `public`'s over `record`. `public` is `name:base64`.
pub fn verify(public: &str, record: &[u8], signature: &str) -> bool {
    let Some((_, key)) = public.rsplit_once(':') else {
        return false;
    };
    let (Ok(key), Ok(sig)) = (B64.decode(key), B64.decode(signature)) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, key)
        .verify(&message(record), &sig)
        .is_ok()
}

/// A `name:base64` public key that decodes to 32 bytes.
pub fn check_public(public: &str) -> Result<(), String> {
    let (name, key) = public.rsplit_once(':').ok_or_else(|| {
        format!("`{public}` is not a public key (name:base64, as `magpipe key show` prints)")
    })?;
    match B64.decode(key) {
        Ok(k) if k.len() == 32 && !name.is_empty() => Ok(()),
        _ => Err(format!(
            "`{public}` is not a public key (name:base64 of 32 bytes, as `magpipe key show` prints)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_key_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: the test sets the variable before any thread reads it.
        unsafe { std::env::set_var("MAGPIPE_CONFIG_DIR", dir.path()) };
        let s = Signer::generate("ci@lab", false).unwrap();
        assert!(
            Signer::generate("ci@lab", false).is_err(),
            "replaced without --force"
        );
        let pk = s.public();
        assert!(pk.starts_with("ci@lab:"));
        check_public(&pk).unwrap();
        let sig = s.sign(b"{\"key\":\"abc\"}");
        assert!(verify(&pk, b"{\"key\":\"abc\"}", &sig));
        assert!(!verify(&pk, b"{\"key\":\"abd\"}", &sig));
        let other = Signer::generate("other", true).unwrap();
        assert!(!verify(&other.public(), b"{\"key\":\"abc\"}", &sig));
        assert!(check_public("ci@lab:AAAA").is_err());
    }
}
