//! Names that appear in URLs, tool prefixes and the CLI.

/// Why a name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// Empty or longer than 63 characters.
    #[error("must be 1 to 63 characters long")]
    Length,
    /// A character outside `[a-z0-9-]`, or a leading/trailing/double hyphen.
    #[error("may contain only lowercase letters, digits and single hyphens, and must start with a letter or digit")]
    Charset,
}

/// Validates a tenant, server, key or user name: `[a-z0-9]` with single
/// inner hyphens, 1..=63 chars.
///
/// Server names become tool prefixes (`<server>__<tool>`) and resource URI
/// prefixes (`<server>+<uri>`); excluding `_` and `+` keeps both splits
/// unambiguous.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > 63 {
        return Err(NameError::Length);
    }
    let bytes = name.as_bytes();
    let ok_char = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-';
    if !bytes.iter().all(|&c| ok_char(c))
        || bytes.first() == Some(&b'-')
        || bytes.last() == Some(&b'-')
        || name.contains("--")
    {
        return Err(NameError::Charset);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_simple_names() {
        for n in ["a", "everything", "my-server-2", "0abc"] {
            assert_eq!(validate_name(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn refuses_separators_and_bad_shapes() {
        for n in ["", "A", "a_b", "a__b", "a+b", "-a", "a-", "a--b", "a b", "é"] {
            assert!(validate_name(n).is_err(), "{n}");
        }
        assert_eq!(validate_name(&"a".repeat(64)), Err(NameError::Length));
    }
}
