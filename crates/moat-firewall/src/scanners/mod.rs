//! The scanners, one module per category.
