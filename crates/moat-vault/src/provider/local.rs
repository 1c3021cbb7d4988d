//! The "local" key provider: a KEK file in the data dir wraps tenant DEKs with AES-256-GCM.
//!
//! Wrapped DEK: `0x01` ‖ 8-byte KEK id ‖ 12-byte nonce ‖ 32-byte ciphertext ‖ 16-byte tag, with
//! AAD = lp("moat-dek-v1") ‖ lp(tenant id) ‖ lp(version). The KEK id is the first 8 bytes of
//! HMAC-SHA256(KEK, "moat-kek-id"), so unwrapping picks the right KEK during a rotation.
//!
//! Rotation and its crash safety:
//!
//! 1. `begin_kek_rotation` writes a new key to `kek.next.key.tmp` (0600, synced) and hard-links it
//!    to `kek.next.key` (atomic, never overwrites), then syncs the dir. `kek.next.key` is therefore
//!    either absent or complete; from then on new wraps and rewraps use it, and `open` loads it.
//! 2. The caller re-wraps every stored DEK; DEKs under either key unwrap meanwhile.
//! 3. `finish_kek_rotation` renames `kek.next.key` over `kek.key` (atomic) and syncs the dir; the
//!    old key is dropped from memory.
//!
//! A crash at any step leaves either {old} (nothing was wrapped under the new key yet), {old, next}
//! or {next as kek.key}, each loadable, and every DEK wrapped so far unwraps.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use secrecy::{ExposeSecret, SecretBox};
use zeroize::Zeroizing;

use super::{KeyContext, KeyProvider, dek_binding};
use crate::crypto::DEK_LEN;
use crate::local::{KEK_FILE, KekError, check_key_file, create_key_file, read_key_file, sync_dir};
use crate::{Dek, VaultError};

/// File name of a pending rotation's new KEK inside the data dir.
pub const KEK_NEXT_FILE: &str = "kek.next.key";
const KEK_NEXT_TMP: &str = "kek.next.key.tmp";
const WRAP_VERSION: u8 = 0x01;
const KEK_ID_LEN: usize = 8;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + KEK_ID_LEN + NONCE_LEN;
const WRAPPED_LEN: usize = HEADER_LEN + DEK_LEN + TAG_LEN;

/// One KEK and its id.
struct Kek {
    key: SecretBox<[u8; 32]>,
    id: [u8; KEK_ID_LEN],
}

impl Kek {
    fn new(key: SecretBox<[u8; 32]>) -> Self {
        let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key.expose_secret()), b"moat-kek-id");
        let mut id = [0u8; KEK_ID_LEN];
        id.copy_from_slice(&mac.as_ref()[..KEK_ID_LEN]);
        Self { key, id }
    }

    fn cipher(&self) -> Result<LessSafeKey, VaultError> {
        let unbound = UnboundKey::new(&AES_256_GCM, self.key.expose_secret())
            .map_err(|_| VaultError::Corrupt("the local KEK was rejected by the cipher".to_owned()))?;
        Ok(LessSafeKey::new(unbound))
    }

    fn wrap(&self, ctx: &KeyContext<'_>, dek: &Dek) -> Result<Vec<u8>, VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| VaultError::Random)?;
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.push(WRAP_VERSION);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(dek.expose());
        let aad = dek_binding(ctx);
        let sealed = self.cipher().and_then(|key| {
            key.seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_slice()),
                &mut out[HEADER_LEN..],
            )
            .map_err(|_| VaultError::Corrupt("wrapping a DEK failed".to_owned()))
        });
        match sealed {
            Ok(tag) => {
                out.extend_from_slice(tag.as_ref());
                Ok(out)
            }
            Err(e) => {
                // The buffer may still hold the DEK in the clear.
                zeroize::Zeroize::zeroize(&mut out);
                Err(e)
            }
        }
    }

    fn unwrap(&self, ctx: &KeyContext<'_>, wrapped: &[u8]) -> Result<Dek, VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&wrapped[1 + KEK_ID_LEN..HEADER_LEN]);
        let aad = dek_binding(ctx);
        let mut buf = Zeroizing::new(wrapped[HEADER_LEN..].to_vec());
        let key = self.cipher()?;
        let plain = key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_slice()), buf.as_mut_slice())
            .map_err(|_| VaultError::Decrypt)?;
        Dek::from_bytes(plain)
    }
}

/// The KEKs held in memory: the current one and, during a rotation, the pending one.
struct Keys {
    current: Kek,
    next: Option<Kek>,
}

impl Keys {
    /// The KEK that wraps: the pending one during a rotation.
    fn active(&self) -> &Kek {
        self.next.as_ref().unwrap_or(&self.current)
    }

    fn by_id(&self, id: &[u8]) -> Option<&Kek> {
        std::iter::once(&self.current).chain(self.next.as_ref()).find(|k| k.id.as_slice() == id)
    }
}

/// The "local" key provider: KEK files `kek.key` (and `kek.next.key` during a rotation) in the data
/// dir, mode 0600 or narrower.
pub struct LocalProvider {
    dir: PathBuf,
    keys: RwLock<Keys>,
    /// Serialises rotation steps (file operations) within this process.
    rotation: Mutex<()>,
}

impl std::fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rotating = self.keys.read().unwrap_or_else(PoisonError::into_inner).next.is_some();
        f.debug_struct("LocalProvider").field("dir", &self.dir).field("rotating", &rotating).finish_non_exhaustive()
    }
}

impl LocalProvider {
    /// Opens the provider on a data dir: loads `kek.key` (which must exist: see
    /// [`crate::LocalKek::load_or_create`]) and, when present, `kek.next.key` (a pending rotation).
    /// Key files readable or writable by group or others are refused.
    pub fn open(data_dir: &Path) -> Result<Self, VaultError> {
        let current = Kek::new(read_key_file(&data_dir.join(KEK_FILE))?);
        let next = match read_key_file(&data_dir.join(KEK_NEXT_FILE)) {
            Ok(key) => Some(Kek::new(key)),
            Err(KekError::Missing(_)) => None,
            Err(e) => return Err(e.into()),
        };
        Ok(Self { dir: data_dir.to_path_buf(), keys: RwLock::new(Keys { current, next }), rotation: Mutex::new(()) })
    }

    /// Whether a KEK rotation is pending (begun, not finished).
    pub fn rotation_pending(&self) -> bool {
        self.read().next.is_some()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        // The lock guards plain values replaced whole: a panic elsewhere cannot leave them half-written.
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Keys> {
        self.keys.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn unwrap_sync(&self, ctx: &KeyContext<'_>, wrapped: &[u8]) -> Result<Dek, VaultError> {
        if wrapped.len() != WRAPPED_LEN || wrapped[0] != WRAP_VERSION {
            return Err(VaultError::Decrypt);
        }
        let keys = self.read();
        // An unknown KEK id is a DEK wrapped under a retired or foreign key: it cannot be decrypted.
        let kek = keys.by_id(&wrapped[1..1 + KEK_ID_LEN]).ok_or(VaultError::Decrypt)?;
        kek.unwrap(ctx, wrapped)
    }

    fn begin_sync(&self) -> Result<(), VaultError> {
        let _serial = self.rotation.lock().unwrap_or_else(PoisonError::into_inner);
        if self.read().next.is_some() {
            return Ok(());
        }
        let next_path = self.dir.join(KEK_NEXT_FILE);
        // A pending key on disk (another process began) is adopted, never replaced.
        match read_key_file(&next_path) {
            Ok(key) => {
                self.write().next = Some(Kek::new(key));
                return Ok(());
            }
            Err(KekError::Missing(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let tmp = self.dir.join(KEK_NEXT_TMP);
        // A leftover from a crash before the link: never used, so safe to discard.
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(KekError::Io { path: tmp, source }.into()),
        }
        let key = create_key_file(&tmp)?;
        let linked = std::fs::hard_link(&tmp, &next_path);
        let _ = std::fs::remove_file(&tmp);
        let key = match linked {
            Ok(()) => key,
            // Raced with another process: take its key.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key_file(&next_path)?,
            Err(source) => return Err(KekError::Io { path: next_path, source }.into()),
        };
        sync_dir(&self.dir)?;
        self.write().next = Some(Kek::new(key));
        Ok(())
    }

    fn finish_sync(&self) -> Result<(), VaultError> {
        let _serial = self.rotation.lock().unwrap_or_else(PoisonError::into_inner);
        if self.read().next.is_none() {
            return Ok(());
        }
        let next_path = self.dir.join(KEK_NEXT_FILE);
        std::fs::rename(&next_path, self.dir.join(KEK_FILE))
            .map_err(|source| KekError::Io { path: next_path, source })?;
        sync_dir(&self.dir)?;
        let mut keys = self.write();
        if let Some(next) = keys.next.take() {
            // The old KEK is dropped (and zeroized) here.
            keys.current = next;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl KeyProvider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn generate_dek(&self, ctx: &KeyContext<'_>) -> Result<(Dek, Vec<u8>), VaultError> {
        let dek = Dek::generate()?;
        let wrapped = self.read().active().wrap(ctx, &dek)?;
        Ok((dek, wrapped))
    }

    async fn unwrap_dek(&self, ctx: &KeyContext<'_>, wrapped: &[u8]) -> Result<Dek, VaultError> {
        self.unwrap_sync(ctx, wrapped)
    }

    async fn rewrap_dek(&self, ctx: &KeyContext<'_>, wrapped: &[u8]) -> Result<Vec<u8>, VaultError> {
        let dek = self.unwrap_sync(ctx, wrapped)?;
        self.read().active().wrap(ctx, &dek)
    }

    async fn check(&self) -> Result<(), VaultError> {
        check_key_file(&self.dir.join(KEK_FILE))?;
        if self.read().next.is_some() {
            check_key_file(&self.dir.join(KEK_NEXT_FILE))?;
        }
        Ok(())
    }

    async fn begin_kek_rotation(&self) -> Result<(), VaultError> {
        self.begin_sync()
    }

    async fn finish_kek_rotation(&self) -> Result<(), VaultError> {
        self.finish_sync()
    }
}

#[cfg(test)]
mod tests;
