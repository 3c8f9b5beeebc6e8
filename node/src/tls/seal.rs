//! Sealing key material under a key derived from the cluster secret: the CA's
//! signing key travels in the replicated state (and its snapshots, on disk and in
//! PostgreSQL) only sealed, so a copy of the state alone does not give it away.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::config::Secret;

/// What a sealed value is for: part of the derived key, so a value sealed for
/// one purpose never opens as another.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    CaKey,
    /// The token signing key in snapshots exported to PostgreSQL.
    TokenKey,
}

impl Purpose {
    fn context(self) -> &'static str {
        match self {
            Purpose::CaKey => "bcm 2026-12 cluster CA signing key seal",
            Purpose::TokenKey => "bcm 2026-12 exported token key seal",
        }
    }
}

/// What a sealed token key starts with in an exported state (a real key is 32
/// random bytes, never this).
const SEALED_TOKEN_KEY: &[u8] = b"bcm-sealed-token-key-v1:";

/// The token key as an export carries it: sealed under the cluster secret.
pub fn seal_token_key(secret: &Secret, key: &[u8]) -> Vec<u8> {
    let mut out = SEALED_TOKEN_KEY.to_vec();
    out.extend(seal(secret, Purpose::TokenKey, key));
    out
}

/// The token key of an exported state: opened with one of `secrets` when it
/// was sealed (exports of earlier versions carry it in the clear).
pub fn open_token_key(secrets: &[&Secret], stored: &[u8]) -> Result<Vec<u8>, SealError> {
    let Some(sealed) = stored.strip_prefix(SEALED_TOKEN_KEY) else {
        return Ok(stored.to_vec());
    };
    secrets
        .iter()
        .find_map(|s| open(s, Purpose::TokenKey, sealed).ok())
        .ok_or(SealError)
}

fn key(secret: &Secret, purpose: Purpose) -> LessSafeKey {
    let k = blake3::derive_key(purpose.context(), secret.expose().as_bytes());
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &k).expect("a 32-byte key"))
}

/// `plain` sealed: a random nonce, then the ciphertext with its tag.
pub fn seal(secret: &Secret, purpose: Purpose, plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .expect("the system's random source");
    let mut out = plain.to_vec();
    key(secret, purpose)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut out)
        .expect("sealing fits in memory");
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&out);
    sealed
}

/// The value [`seal`] sealed, if `secret` is the one it was sealed with.
pub fn open(secret: &Secret, purpose: Purpose, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    if sealed.len() < NONCE_LEN {
        return Err(SealError);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError)?;
    let mut buf = body.to_vec();
    let plain = key(secret, purpose)
        .open_in_place(nonce, Aad::empty(), &mut buf)
        .map_err(|_| SealError)?;
    Ok(plain.to_vec())
}

#[derive(Debug, thiserror::Error)]
#[error("the sealed key does not open with this cluster secret (was cluster.secret changed?)")]
pub struct SealError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_with_the_same_secret_only_and_detects_tampering() {
        let a = Secret::new("a-secret-of-16-chars");
        let b = Secret::new("another-secret-16ch");
        let sealed = seal(&a, Purpose::CaKey, b"the key");
        assert_eq!(open(&a, Purpose::CaKey, &sealed).unwrap(), b"the key");
        assert!(open(&b, Purpose::CaKey, &sealed).is_err());
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(open(&a, Purpose::CaKey, &bad).is_err());
        assert!(!sealed.windows(7).any(|w| w == b"the key"));
    }

    #[test]
    fn an_exported_token_key_is_sealed_and_opens_with_the_old_or_new_secret() {
        let old = Secret::new("a-secret-of-16-chars");
        let new = Secret::new("another-secret-16ch");
        let key = [9u8; 32];
        let stored = seal_token_key(&old, &key);
        assert!(!stored.windows(32).any(|w| w == key));
        assert_eq!(open_token_key(&[&new, &old], &stored).unwrap(), key);
        assert!(open_token_key(&[&new], &stored).is_err());
        // An export of an earlier version: in the clear, taken as it is.
        assert_eq!(open_token_key(&[&new], &key).unwrap(), key);
    }
}
