//! Password hashing (argon2id) and bearer tokens (HS256 JWT signed with the
//! replicated token key, so every node verifies every token).

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Why a password could not be hashed or checked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HashError {
    /// Too many are waiting already: try again shortly (503).
    #[error("this node is busy checking passwords ({0} waiting); try again shortly")]
    Busy(usize),
    #[error("{0}")]
    Failed(String),
}

/// Bounds argon2: at most one computation per core at once, and at most
/// `max_waiting` waiting for one. Each takes 19 MiB and a core for tens of
/// milliseconds; unbounded, 300 concurrent logins took 300 of tokio's blocking
/// threads (and 5.7 GiB) and starved everything else there.
pub struct Hashing {
    slots: tokio::sync::Semaphore,
    waiting: std::sync::atomic::AtomicUsize,
    max_waiting: usize,
}

/// At most this many wait for a slot; past it a login is answered 503 at once.
pub const MAX_WAITING_HASHES: usize = 64;

impl Hashing {
    pub fn new(slots: usize, max_waiting: usize) -> Hashing {
        Hashing {
            slots: tokio::sync::Semaphore::new(slots),
            waiting: Default::default(),
            max_waiting,
        }
    }

    /// The process's bounds: one slot per core.
    fn global() -> &'static Hashing {
        static GLOBAL: std::sync::OnceLock<Hashing> = std::sync::OnceLock::new();
        GLOBAL.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            Hashing::new(cores, MAX_WAITING_HASHES)
        })
    }

    /// Runs one computation once a slot is free, or refuses at once when too many
    /// wait already.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        use std::sync::atomic::Ordering;
        let waiting = self.waiting.fetch_add(1, Ordering::AcqRel);
        if waiting >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(HashError::Busy(waiting));
        }
        let slot = self.slots.acquire().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let _slot = slot.map_err(|e| HashError::Failed(e.to_string()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| HashError::Failed(e.to_string()))
    }
}

/// argon2id with the library defaults (m = 19 MiB, t = 2, p = 1: OWASP's minimum).
pub async fn hash_password(password: String) -> Result<String, HashError> {
    Hashing::global()
        .run(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| HashError::Failed(format!("hashing a password: {e}")))
        })
        .await?
}

/// A hash of a random password, verified against when the user does not exist so
/// that an unknown user and a wrong password take the same time.
static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub async fn verify_password(password: String, hash: Option<String>) -> Result<bool, HashError> {
    Hashing::global()
        .run(move || {
            let hash = hash.unwrap_or_else(|| {
                DUMMY_HASH
                    .get_or_init(|| {
                        let salt = SaltString::generate(&mut OsRng);
                        Argon2::default()
                            .hash_password(generate_password().as_bytes(), &salt)
                            .expect("hashing")
                            .to_string()
                    })
                    .clone()
            });
            match PasswordHash::new(&hash) {
                Ok(parsed) => Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
                Err(_) => false,
            }
        })
        .await
}

/// A random password for the first admin: 20 characters from an unambiguous alphabet.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..20)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id (a string, as JWT requires).
    pub sub: String,
    pub name: String,
    /// Cluster id: a token from another cluster is refused.
    pub cid: String,
    /// The user's token generation when issued (see `User::token_generation`).
    #[serde(default)]
    pub gen: u64,
    pub iat: u64,
    pub exp: u64,
    /// A random id: two logins in the same second get different tokens, so that
    /// logging one out (revocation by signature) leaves the other alone.
    #[serde(default)]
    pub jti: String,
}

/// A fresh random token id (128 bits, hex).
pub fn new_token_id() -> String {
    let bytes: [u8; 16] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn issue(key: &[u8], claims: &Claims) -> Result<String, String> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(key),
    )
    .map_err(|e| format!("signing a token: {e}"))
}

/// Seconds of clock difference tolerated on a token's expiry.
const LEEWAY_SECS: u64 = 5;

pub fn verify(key: &[u8], cluster_id: &str, token: &str) -> Result<Claims, String> {
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = LEEWAY_SECS;
    v.set_required_spec_claims(&["exp", "sub"]);
    let data =
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(key), &v).map_err(|e| {
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    "the token has expired; log in again".to_string()
                }
                _ => "the token is not valid".to_string(),
            }
        })?;
    if data.claims.cid != cluster_id {
        return Err("the token was issued by another cluster".into());
    }
    if data.claims.sub.parse::<u64>().is_err() {
        return Err("the token is not valid".into());
    }
    Ok(data.claims)
}

/// A token's id for revocation: its signature (the part after the last dot), unique
/// to the token and no secret (it proves nothing without the rest).
pub fn token_id(token: &str) -> &str {
    token.rsplit('.').next().unwrap_or(token)
}

impl Claims {
    pub fn user_id(&self) -> u64 {
        self.sub.parse().unwrap_or(0)
    }
}

/// What a verified token says, as far as each request needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenOf {
    pub user_id: u64,
    pub generation: u64,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

/// Tokens already verified on this node, so that a client's every request does not
/// pay for decoding and checking the signature again (the hot path of every API
/// call). Entries are only good for the key and cluster they were verified with,
/// and only until the token expires.
#[derive(Default)]
pub struct TokenCache {
    inner: std::sync::Mutex<TokenCacheInner>,
}

#[derive(Default)]
struct TokenCacheInner {
    key: Vec<u8>,
    cluster_id: String,
    tokens: std::collections::HashMap<String, TokenOf>,
}

/// Verified tokens kept at most; the cache starts over when it is full.
const TOKEN_CACHE_MAX: usize = 10_000;

fn now_secs() -> u64 {
    crate::cluster::now_ms() / 1000
}

impl TokenCache {
    /// The token, if it was verified with this key and cluster and has not expired.
    pub fn get(&self, key: &[u8], cluster_id: &str, token: &str) -> Option<TokenOf> {
        let inner = self.inner.lock().expect("token cache lock");
        if inner.key != key || inner.cluster_id != cluster_id {
            return None;
        }
        let t = *inner.tokens.get(token)?;
        (now_secs() <= t.exp.saturating_add(LEEWAY_SECS)).then_some(t)
    }

    /// Remembers a token `verify` accepted with this key and cluster.
    pub fn insert(&self, key: &[u8], cluster_id: &str, token: &str, claims: &Claims) -> TokenOf {
        let t = TokenOf {
            user_id: claims.user_id(),
            generation: claims.gen,
            exp: claims.exp,
        };
        let mut inner = self.inner.lock().expect("token cache lock");
        if inner.key != key || inner.cluster_id != cluster_id {
            inner.key = key.to_vec();
            inner.cluster_id = cluster_id.to_string();
            inner.tokens.clear();
        }
        if inner.tokens.len() >= TOKEN_CACHE_MAX {
            inner.tokens.clear();
        }
        inner.tokens.insert(token.to_string(), t);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash_password("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(
            verify_password("correct horse battery".into(), Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(!verify_password("wrong".into(), Some(h)).await.unwrap());
        assert!(!verify_password("anything".into(), None).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashing_is_bounded_and_a_full_queue_answers_busy_at_once() {
        let hashing = Hashing::new(2, 8);
        let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let all = (0..20).map(|_| {
            let (running, most) = (running.clone(), most.clone());
            hashing.run(move || {
                use std::sync::atomic::Ordering;
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(20));
                running.fetch_sub(1, Ordering::SeqCst);
            })
        });
        let results = futures_util::future::join_all(all).await;
        let busy = results
            .iter()
            .filter(|r| matches!(r, Err(HashError::Busy(_))))
            .count();
        // 2 run at once, 8 wait, the other 10 are refused without running.
        assert_eq!(busy, 10, "{results:?}");
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 2);
        // Once they are done, there is room again.
        assert!(hashing.run(|| ()).await.is_ok());
    }

    #[test]
    fn tokens_are_bound_to_key_cluster_and_time() {
        let key = [1u8; 32];
        let now = 1_900_000_000;
        let c = Claims {
            sub: "1".into(),
            name: "admin".into(),
            cid: "c1".into(),
            gen: 0,
            iat: now - 10,
            exp: now + 3600,
            jti: new_token_id(),
        };
        let mut c_valid = c.clone();
        let real_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        c_valid.iat = real_now;
        c_valid.exp = real_now + 60;
        let t = issue(&key, &c_valid).unwrap();
        assert_eq!(verify(&key, "c1", &t).unwrap().sub, "1");
        assert!(verify(&[2u8; 32], "c1", &t).is_err());
        assert!(verify(&key, "c2", &t).is_err());
        let mut expired = c_valid.clone();
        expired.exp = real_now - 60;
        let t = issue(&key, &expired).unwrap();
        assert!(verify(&key, "c1", &t).unwrap_err().contains("expired"));
        assert!(verify(&key, "c1", "garbage").is_err());
    }

    #[test]
    fn two_logins_in_one_second_get_two_tokens() {
        let now = now_secs();
        let claims = || Claims {
            sub: "1".into(),
            name: "admin".into(),
            cid: "c1".into(),
            gen: 0,
            iat: now,
            exp: now + 60,
            jti: new_token_id(),
        };
        let (a, b) = (
            issue(&[1; 32], &claims()).unwrap(),
            issue(&[1; 32], &claims()).unwrap(),
        );
        assert_ne!(token_id(&a), token_id(&b));
    }

    #[test]
    fn a_cached_token_is_good_only_for_its_key_and_cluster_and_until_it_expires() {
        let cache = TokenCache::default();
        let now = now_secs();
        let claims = |exp| Claims {
            sub: "7".into(),
            name: "alice".into(),
            cid: "c1".into(),
            gen: 3,
            iat: now,
            exp,
            jti: String::new(),
        };
        let t = cache.insert(b"k1", "c1", "tok", &claims(now + 60));
        assert_eq!((t.user_id, t.generation), (7, 3));
        assert_eq!(cache.get(b"k1", "c1", "tok"), Some(t));
        assert_eq!(cache.get(b"k1", "c1", "other"), None);
        assert_eq!(cache.get(b"k2", "c1", "tok"), None, "another key");
        assert_eq!(cache.get(b"k1", "c2", "tok"), None, "another cluster");
        cache.insert(b"k1", "c1", "old", &claims(now - LEEWAY_SECS - 1));
        assert_eq!(cache.get(b"k1", "c1", "old"), None, "expired");
        // A new key empties the cache.
        cache.insert(b"k2", "c1", "tok2", &claims(now + 60));
        assert_eq!(cache.get(b"k1", "c1", "tok"), None);
    }
}
