//! Tokens that must be refused: JWT-shaped, but signed with a key the cluster does not know.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::json;

/// base64url without padding (as in JWTs).
pub fn base64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A JWT-shaped HS256 token for `admin` with the given `exp`, signed with a key the
/// cluster does not know.
pub fn forged_token(exp: u64) -> String {
    let header = base64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let payload = base64url(
        json!({"sub": "admin", "name": "admin", "iat": now.min(exp), "exp": exp, "groups": ["admin"]})
            .to_string()
            .as_bytes(),
    );
    let sig: [u8; 32] = rand::thread_rng().gen();
    format!("{header}.{payload}.{}", base64url(&sig))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn base64url_matches_known_vectors() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foob"), "Zm9vYg");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }
}
