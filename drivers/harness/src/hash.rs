//! Short stable names for things derived from their content (cache keys,
//! namespaces): the leading bytes of a SHA-256, in hex.

use sha2::{Digest, Sha256};

/// The first `bytes` bytes of the SHA-256 of `data`, as `2 * bytes` hex
/// digits.
pub fn short_hex(data: &[u8], bytes: usize) -> String {
    let digest = Sha256::digest(data);
    hex(&digest[..bytes.min(digest.len())])
}

/// `bytes` (a digest) as lowercase hex digits.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_digest() {
        // sha256("abc") = ba7816bf…
        assert_eq!(super::short_hex(b"abc", 4), "ba7816bf");
        assert_eq!(super::short_hex(b"abc", 6).len(), 12);
        assert_eq!(super::hex(&[0x0a, 0xff]), "0aff");
    }
}
