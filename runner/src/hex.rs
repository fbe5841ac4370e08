//! Lower-case hex text of digests: the one spelling of a SHA-256 in file names, manifests and
//! keys (judge mode's test-set store, the compile cache).
//!
//! Owns: [`hex`]. Must not: hash (callers do) or parse.

use std::fmt::Write;

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md).
    use super::*;

    #[test]
    fn test_hex_is_lower_case_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
    }
}
