//! The scanners, one module per category.

pub mod abuse;
pub mod destructive;
pub mod exfil;
pub mod injection;
pub mod pii;
pub mod secrets;
pub mod unicode;
pub mod urls;
