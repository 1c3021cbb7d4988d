//! The local key provider's KEK file.

use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox};
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File name of the KEK inside the data dir.
pub const KEK_FILE: &str = "kek.key";
const KEK_LEN: usize = 32;

/// Why the KEK could not be created or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KekError {
    /// The file's permissions let someone other than the owner read it.
    #[error("refusing key file {path}: its mode is {mode:o}; it must be readable by its owner only (chmod 600)")]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its current permission bits.
        mode: u32,
    },
    /// The file is not 32 bytes.
    #[error("key file {0} is corrupt (expected {KEK_LEN} bytes)")]
    Corrupt(PathBuf),
    /// The file does not exist.
    #[error("key file {0} does not exist")]
    Missing(PathBuf),
    /// An I/O error.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The system RNG failed.
    #[error("random number generator failure")]
    Random,
}

/// The local KEK. Its bytes live only in a zeroizing secret box.
pub struct LocalKek {
    key: SecretBox<[u8; KEK_LEN]>,
    path: PathBuf,
}

impl std::fmt::Debug for LocalKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKek").field("path", &self.path).finish_non_exhaustive()
    }
}

impl LocalKek {
    /// Path of the KEK file in a data dir.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join(KEK_FILE)
    }

    /// Creates a new KEK file (mode 0600, never overwriting one).
    pub fn create(data_dir: &Path) -> Result<Self, KekError> {
        let path = Self::path_in(data_dir);
        let key = create_key_file(&path)?;
        sync_dir(data_dir)?;
        Ok(Self { key, path })
    }

    /// Loads the KEK, refusing a file readable or writable by group/others.
    pub fn load(data_dir: &Path) -> Result<Self, KekError> {
        let path = Self::path_in(data_dir);
        let key = read_key_file(&path)?;
        Ok(Self { key, path })
    }

    /// Loads the KEK, creating it when the file does not exist yet.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, KekError> {
        match Self::load(data_dir) {
            Err(KekError::Missing(_)) => Self::create(data_dir),
            other => other,
        }
    }

    /// Where the key lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the key file is still present with safe permissions (readiness).
    pub fn check(&self) -> Result<(), KekError> {
        check_key_file(&self.path)
    }

    /// The key bytes, for the envelope-encryption code of this crate.
    #[allow(dead_code)]
    pub(crate) fn secret(&self) -> &SecretBox<[u8; KEK_LEN]> {
        &self.key
    }
}

/// Creates a key file with 32 fresh random bytes: mode 0600, `create_new` (never overwrites), synced.
pub(crate) fn create_key_file(path: &Path) -> Result<SecretBox<[u8; KEK_LEN]>, KekError> {
    let io = |source| KekError::Io { path: path.to_path_buf(), source };
    let mut key = Box::new([0u8; KEK_LEN]);
    aws_lc_rs::rand::fill(key.as_mut()).map_err(|_| KekError::Random)?;
    let key = SecretBox::new(key);
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
    file.write_all(key.expose_secret()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(key)
}

/// Reads a key file, refusing one that group or others may read or write, or that is not 32 bytes.
pub(crate) fn read_key_file(path: &Path) -> Result<SecretBox<[u8; KEK_LEN]>, KekError> {
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(KekError::Missing(path.to_path_buf())),
        Err(source) => return Err(KekError::Io { path: path.to_path_buf(), source }),
    };
    // Checked on the open handle, so the file we read is the file we checked.
    let meta = file.metadata().map_err(|source| KekError::Io { path: path.to_path_buf(), source })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KekError::Permissions { path: path.to_path_buf(), mode });
    }
    let mut key = SecretBox::new(Box::new([0u8; KEK_LEN]));
    let mut extra = [0u8; 1];
    let ok = file.read_exact(key.expose_secret_mut()).is_ok() && matches!(file.read(&mut extra), Ok(0));
    if !ok {
        return Err(KekError::Corrupt(path.to_path_buf()));
    }
    Ok(key)
}

/// Checks a key file is present with owner-only permissions.
pub(crate) fn check_key_file(path: &Path) -> Result<(), KekError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(KekError::Missing(path.to_path_buf())),
        Err(source) => return Err(KekError::Io { path: path.to_path_buf(), source }),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KekError::Permissions { path: path.to_path_buf(), mode });
    }
    Ok(())
}

/// Makes a directory's entries (created, linked, renamed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), KekError> {
    let io = |source| KekError::Io { path: dir.to_path_buf(), source };
    fs::File::open(dir).map_err(io)?.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_0600_key_and_loads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let k = LocalKek::create(dir.path()).unwrap();
        let mode = fs::metadata(k.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = LocalKek::load(dir.path()).unwrap();
        assert_eq!(k.secret().expose_secret(), again.secret().expose_secret());
        assert!(LocalKek::create(dir.path()).is_err(), "never overwrites");
        assert!(!format!("{k:?}").contains("key:"));
    }

    #[test]
    fn refuses_wider_permissions_and_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        let k = LocalKek::create(dir.path()).unwrap();
        fs::set_permissions(k.path(), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(LocalKek::load(dir.path()), Err(KekError::Permissions { .. })));
        assert!(k.check().is_err());
        fs::set_permissions(k.path(), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(k.path(), b"short").unwrap();
        assert!(matches!(LocalKek::load(dir.path()), Err(KekError::Corrupt(_))));
    }

    #[test]
    fn load_or_create_creates_once() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(LocalKek::load(dir.path()), Err(KekError::Missing(_))));
        let a = LocalKek::load_or_create(dir.path()).unwrap();
        let b = LocalKek::load_or_create(dir.path()).unwrap();
        assert_eq!(a.secret().expose_secret(), b.secret().expose_secret());
    }
}
