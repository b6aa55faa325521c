//! The core of the session-token validator: signed tokens, the session store, validation, and
//! the load that drives them. `main.rs` adds the flags, the progress bar and the printout; the
//! integration test `tests/session_validator.rs` runs this same file at small sizes.
//!
//! A token is `base64url(payload) "." base64url(HMAC-SHA-256(secret, payload))`, with the
//! URL-safe alphabet and no padding, where the payload is 33 bytes: a format version, the
//! 128-bit session id, the user id and the expiry (milliseconds since the Unix epoch), all
//! little-endian. Every token is exactly 88 bytes long.
//!
//! Validation checks, in order: the length, the separator, the encoding of both parts, the
//! signature (in constant time), the version, the expiry, then the session: present means
//! accepted, otherwise a revoked session is told apart from an unknown one (never issued,
//! logged out, or swept after expiring).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use dualmap::{DualMap, GetOrInsert, Stats};
use hdrhistogram::Histogram;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type HmacSha256 = Hmac<Sha256>;

/// The payload format this validator issues and accepts.
pub const TOKEN_VERSION: u8 = 1;
const PAYLOAD_LEN: usize = 1 + 16 + 8 + 8;
const TAG_LEN: usize = 32;
/// Encoded lengths: 33 bytes are 44 base64 symbols, 32 bytes are 43 (no padding).
const PAYLOAD_B64: usize = 44;
const TAG_B64: usize = 43;
/// The length of every well-formed token.
pub const TOKEN_LEN: usize = PAYLOAD_B64 + 1 + TAG_B64;
/// How long after its expiry the sweeper keeps a session (or a revocation): a validator that
/// read the clock up to this long ago still tells "expired" and "revoked" apart from "unknown".
pub const SWEEP_GRACE_MS: u64 = 1_000;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64
}

/// 32 bytes from the operating system's random source: a signing secret.
pub fn random_secret() -> [u8; 32] {
    let mut secret = [0; 32];
    getrandom::fill(&mut secret).expect("the OS random source works");
    secret
}

/// A session id: 128 bits from the operating system's random source.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SessionId(pub u128);

impl SessionId {
    /// A fresh random id.
    pub fn random() -> Self {
        let mut bytes = [0; 16];
        getrandom::fill(&mut bytes).expect("the OS random source works");
        SessionId(u128::from_le_bytes(bytes))
    }
}

/// What the server keeps per session.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Session {
    pub user: u64,
    pub expires_ms: u64,
}

/// What a token says, once its signature is verified.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Claims {
    pub version: u8,
    pub session: SessionId,
    pub user: u64,
    pub expires_ms: u64,
}

impl Claims {
    fn to_bytes(self) -> [u8; PAYLOAD_LEN] {
        let mut bytes = [0; PAYLOAD_LEN];
        bytes[0] = self.version;
        bytes[1..17].copy_from_slice(&self.session.0.to_le_bytes());
        bytes[17..25].copy_from_slice(&self.user.to_le_bytes());
        bytes[25..33].copy_from_slice(&self.expires_ms.to_le_bytes());
        bytes
    }

    fn from_bytes(bytes: &[u8; PAYLOAD_LEN]) -> Self {
        let field = |range: std::ops::Range<usize>| -> [u8; 8] { bytes[range].try_into().unwrap() };
        Claims {
            version: bytes[0],
            session: SessionId(u128::from_le_bytes(bytes[1..17].try_into().unwrap())),
            user: u64::from_le_bytes(field(17..25)),
            expires_ms: u64::from_le_bytes(field(25..33)),
        }
    }
}

/// Why a token is not well formed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Malformed {
    /// Not exactly [`TOKEN_LEN`] bytes.
    Length,
    /// No `.` between the payload and the signature.
    Separator,
    /// A part is not canonical URL-safe unpadded base64.
    Encoding,
    /// Correctly signed, but in a payload format this validator does not know.
    Version,
}

/// Why a token was rejected.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Reject {
    Malformed(Malformed),
    /// The signature does not match: forged (another key) or tampered with.
    BadSignature,
    Expired,
    Revoked,
    /// No such session: never issued, logged out, or swept after expiring.
    Unknown,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::Malformed(Malformed::Length) => f.write_str("malformed: wrong length"),
            Reject::Malformed(Malformed::Separator) => f.write_str("malformed: no separator"),
            Reject::Malformed(Malformed::Encoding) => f.write_str("malformed: bad base64"),
            Reject::Malformed(Malformed::Version) => f.write_str("malformed: unknown version"),
            Reject::BadSignature => f.write_str("bad signature"),
            Reject::Expired => f.write_str("expired"),
            Reject::Revoked => f.write_str("revoked"),
            Reject::Unknown => f.write_str("unknown session"),
        }
    }
}

impl std::error::Error for Reject {}

/// The outcomes a report counts, in the order it prints them.
pub const OUTCOMES: [&str; 9] = [
    "accepted",
    "malformed: wrong length",
    "malformed: no separator",
    "malformed: bad base64",
    "malformed: unknown version",
    "bad signature",
    "expired",
    "revoked",
    "unknown session",
];

fn outcome_index(outcome: &Result<Accepted, Reject>) -> usize {
    match outcome {
        Ok(_) => 0,
        Err(Reject::Malformed(Malformed::Length)) => 1,
        Err(Reject::Malformed(Malformed::Separator)) => 2,
        Err(Reject::Malformed(Malformed::Encoding)) => 3,
        Err(Reject::Malformed(Malformed::Version)) => 4,
        Err(Reject::BadSignature) => 5,
        Err(Reject::Expired) => 6,
        Err(Reject::Revoked) => 7,
        Err(Reject::Unknown) => 8,
    }
}

/// Issues and verifies tokens with one HMAC-SHA-256 secret.
#[derive(Clone)]
pub struct TokenSigner {
    /// The MAC already keyed with the secret: cloning it skips re-hashing the key per token.
    keyed: HmacSha256,
}

impl TokenSigner {
    pub fn new(secret: &[u8]) -> Self {
        TokenSigner {
            keyed: HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length"),
        }
    }

    /// The token for `claims`.
    pub fn issue(&self, claims: Claims) -> String {
        let payload = claims.to_bytes();
        let mut mac = self.keyed.clone();
        mac.update(&payload);
        let tag = mac.finalize().into_bytes();
        let mut token = String::with_capacity(TOKEN_LEN);
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(tag, &mut token);
        token
    }

    /// The claims of `token` if it is well formed and signed with this signer's secret.
    /// Checks neither expiry nor the session. Never panics, whatever the input.
    pub fn verify(&self, token: &str) -> Result<Claims, Reject> {
        // Bytes, not `str` slicing: a multi-byte character may straddle any position.
        let bytes = token.as_bytes();
        if bytes.len() != TOKEN_LEN {
            return Err(Reject::Malformed(Malformed::Length));
        }
        let (payload_b64, rest) = bytes.split_at(PAYLOAD_B64);
        let (separator, tag_b64) = rest.split_at(1);
        if separator != b"." {
            return Err(Reject::Malformed(Malformed::Separator));
        }
        let mut payload = [0; PAYLOAD_LEN];
        let mut tag = [0; TAG_LEN];
        let encoding = Reject::Malformed(Malformed::Encoding);
        match URL_SAFE_NO_PAD.decode_slice(payload_b64, &mut payload) {
            Ok(PAYLOAD_LEN) => {}
            _ => return Err(encoding),
        }
        match URL_SAFE_NO_PAD.decode_slice(tag_b64, &mut tag) {
            Ok(TAG_LEN) => {}
            _ => return Err(encoding),
        }
        let mut mac = self.keyed.clone();
        mac.update(&payload);
        // Constant-time comparison of the tags.
        mac.verify_slice(&tag).map_err(|_| Reject::BadSignature)?;
        let claims = Claims::from_bytes(&payload);
        if claims.version != TOKEN_VERSION {
            return Err(Reject::Malformed(Malformed::Version));
        }
        Ok(claims)
    }
}

/// A validation that passed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Accepted {
    pub session: SessionId,
    pub user: u64,
}

/// How one validator thread looks sessions up: dualmap's per-thread [`dualmap::Reader`], or
/// the shared map itself for the peers.
pub trait SessionLookup {
    fn lookup(&mut self, id: &SessionId) -> Option<Session>;
}

impl<S: SessionStore> SessionLookup for &S {
    fn lookup(&mut self, id: &SessionId) -> Option<Session> {
        SessionStore::lookup(*self, id)
    }
}

impl SessionLookup for dualmap::Reader<'_, SessionId, Session> {
    fn lookup(&mut self, id: &SessionId) -> Option<Session> {
        self.get(id).copied()
    }
}

/// The maps a [`SessionService`] can keep its sessions in: dualmap and two peers, so the same
/// load runs on each. Each method is one map operation.
pub trait SessionStore: Send + Sync {
    /// What a validator thread looks sessions up with.
    type Lookup<'a>: SessionLookup
    where
        Self: 'a;
    /// A lookup handle for one thread.
    fn lookup_handle(&self) -> Self::Lookup<'_>;
    /// Inserts if the id is free; false if it is taken (nothing changes then).
    fn insert_new(&self, id: SessionId, session: Session) -> bool;
    fn lookup(&self, id: &SessionId) -> Option<Session>;
    fn remove(&self, id: &SessionId) -> Option<Session>;
    /// Removes every session for which `keep` is false; returns how many it removed.
    fn retain_sessions(&self, keep: &mut dyn FnMut(&Session) -> bool) -> usize;
    fn len(&self) -> usize;
    /// The number of sessions an iteration visits (to check against `len`).
    fn count(&self) -> usize;
    /// The map's own counters, where it has them.
    fn stats(&self) -> Option<Stats> {
        None
    }
}

impl SessionStore for DualMap<SessionId, Session> {
    /// Validators read through a `Reader`: a hit needs no guard at all.
    type Lookup<'a> = dualmap::Reader<'a, SessionId, Session>;

    fn lookup_handle(&self) -> Self::Lookup<'_> {
        self.reader()
    }

    fn insert_new(&self, id: SessionId, session: Session) -> bool {
        // Login: `get_or_insert` never overwrites a session that holds the id already.
        matches!(self.get_or_insert(id, session), GetOrInsert::Inserted(_))
    }

    fn lookup(&self, id: &SessionId) -> Option<Session> {
        self.get(id).map(|session| *session)
    }

    fn remove(&self, id: &SessionId) -> Option<Session> {
        DualMap::remove(self, id).map(|session| *session)
    }

    fn retain_sessions(&self, keep: &mut dyn FnMut(&Session) -> bool) -> usize {
        let mut removed = 0;
        self.retain(|_, session| {
            let kept = keep(session);
            removed += usize::from(!kept);
            kept
        });
        removed
    }

    fn len(&self) -> usize {
        DualMap::len(self)
    }

    fn count(&self) -> usize {
        self.keys().count()
    }

    fn stats(&self) -> Option<Stats> {
        Some(DualMap::stats(self))
    }
}

impl SessionStore for dashmap::DashMap<SessionId, Session, ahash::RandomState> {
    type Lookup<'a> = &'a Self;

    fn lookup_handle(&self) -> &Self {
        self
    }

    fn insert_new(&self, id: SessionId, session: Session) -> bool {
        match self.entry(id) {
            dashmap::Entry::Occupied(_) => false,
            dashmap::Entry::Vacant(vacant) => {
                vacant.insert(session);
                true
            }
        }
    }

    fn lookup(&self, id: &SessionId) -> Option<Session> {
        self.get(id).map(|session| *session)
    }

    fn remove(&self, id: &SessionId) -> Option<Session> {
        dashmap::DashMap::remove(self, id).map(|(_, session)| session)
    }

    fn retain_sessions(&self, keep: &mut dyn FnMut(&Session) -> bool) -> usize {
        let mut removed = 0;
        self.retain(|_, session| {
            let kept = keep(session);
            removed += usize::from(!kept);
            kept
        });
        removed
    }

    fn len(&self) -> usize {
        dashmap::DashMap::len(self)
    }

    fn count(&self) -> usize {
        self.iter().count()
    }
}

/// The plain baseline: one reader-writer lock around a `HashMap`.
pub type LockedMap = parking_lot::RwLock<HashMap<SessionId, Session, ahash::RandomState>>;

impl SessionStore for LockedMap {
    type Lookup<'a> = &'a Self;

    fn lookup_handle(&self) -> &Self {
        self
    }

    fn insert_new(&self, id: SessionId, session: Session) -> bool {
        match self.write().entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(vacant) => {
                vacant.insert(session);
                true
            }
        }
    }

    fn lookup(&self, id: &SessionId) -> Option<Session> {
        self.read().get(id).copied()
    }

    fn remove(&self, id: &SessionId) -> Option<Session> {
        self.write().remove(id)
    }

    fn retain_sessions(&self, keep: &mut dyn FnMut(&Session) -> bool) -> usize {
        let mut map = self.write();
        let before = map.len();
        map.retain(|_, session| keep(session));
        before - map.len()
    }

    fn len(&self) -> usize {
        self.read().len()
    }

    fn count(&self) -> usize {
        self.read().iter().count()
    }
}

/// Which map holds the sessions.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum MapKind {
    Dualmap,
    Dashmap,
    Rwlock,
}

impl fmt::Display for MapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MapKind::Dualmap => "dualmap",
            MapKind::Dashmap => "dashmap",
            MapKind::Rwlock => "RwLock<HashMap>",
        })
    }
}

/// Logs users in and out, revokes sessions, sweeps expired ones and validates tokens.
pub struct SessionService<S> {
    signer: TokenSigner,
    /// Session id → session, for every session that may be used.
    sessions: S,
    /// Revoked session id → the session it was, until it expires: tells "revoked" from
    /// "unknown".
    revoked: S,
}

impl<S: SessionStore> SessionService<S> {
    pub fn new(signer: TokenSigner, sessions: S, revoked: S) -> Self {
        SessionService {
            signer,
            sessions,
            revoked,
        }
    }

    pub fn signer(&self) -> &TokenSigner {
        &self.signer
    }

    pub fn sessions(&self) -> &S {
        &self.sessions
    }

    pub fn revoked(&self) -> &S {
        &self.revoked
    }

    /// Starts a session for `user` that expires at `expires_ms`; returns its id and token.
    pub fn login(&self, user: u64, expires_ms: u64) -> (SessionId, String) {
        let session = Session { user, expires_ms };
        loop {
            let id = SessionId::random();
            // A taken id (one chance in 2^128 per live session) just draws another.
            if self.sessions.insert_new(id, session) {
                let token = self.signer.issue(Claims {
                    version: TOKEN_VERSION,
                    session: id,
                    user,
                    expires_ms,
                });
                return (id, token);
            }
        }
    }

    /// Ends a session; false if there was none.
    pub fn logout(&self, id: SessionId) -> bool {
        self.sessions.remove(&id).is_some()
    }

    /// Revokes a session; false if there was none. The revocation is recorded before the
    /// session is removed, so no validator sees it as unknown in between.
    pub fn revoke(&self, id: SessionId) -> bool {
        let Some(session) = self.sessions.lookup(&id) else {
            return false;
        };
        self.revoked.insert_new(id, session);
        self.sessions.remove(&id).is_some()
    }

    /// Removes sessions and revocations that expired more than [`SWEEP_GRACE_MS`] before
    /// `now_ms`; returns how many it removed.
    pub fn sweep(&self, now_ms: u64) -> usize {
        let mut live = |session: &Session| session.expires_ms + SWEEP_GRACE_MS > now_ms;
        self.sessions.retain_sessions(&mut live) + self.revoked.retain_sessions(&mut live)
    }

    /// Validates `token` at time `now_ms`, looking the session up with the map's own lookup
    /// (dualmap's `get`): for a thread that validates now and then, such as the writer
    /// checking its own logins. A validator thread keeps a handle instead
    /// ([`validate_with`](Self::validate_with)).
    pub fn validate(&self, token: &str, now_ms: u64) -> Result<Accepted, Reject> {
        self.validate_with(&mut &self.sessions, token, now_ms)
    }

    /// Validates `token` at time `now_ms`, looking the session up through this thread's
    /// `lookup` handle (see [`SessionStore::lookup_handle`]).
    pub fn validate_with(
        &self,
        lookup: &mut impl SessionLookup,
        token: &str,
        now_ms: u64,
    ) -> Result<Accepted, Reject> {
        let claims = self.signer.verify(token)?;
        if now_ms >= claims.expires_ms {
            return Err(Reject::Expired);
        }
        match lookup.lookup(&claims.session) {
            Some(session) => Ok(Accepted {
                session: claims.session,
                user: session.user,
            }),
            None if self.revoked.lookup(&claims.session).is_some() => Err(Reject::Revoked),
            None => Err(Reject::Unknown),
        }
    }
}

/// A small, fast, non-cryptographic generator (SplitMix64) for choosing what to do next.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// The kinds of token the load sends.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum TokenKind {
    Valid,
    Forged,
    Tampered,
    Expired,
    Revoked,
    Unknown,
    Malformed,
}

/// The bad kinds, drawn uniformly for the bad share of validations.
pub const BAD_KINDS: [TokenKind; 6] = [
    TokenKind::Forged,
    TokenKind::Tampered,
    TokenKind::Expired,
    TokenKind::Revoked,
    TokenKind::Unknown,
    TokenKind::Malformed,
];

/// A token and the one outcome its validation may have.
#[derive(Clone, Debug)]
pub struct Probe {
    pub kind: TokenKind,
    pub token: String,
    pub expect: Result<u64, Reject>,
}

/// Tokens of every kind, with their expected outcomes, against the state `build` left the
/// service in. Valid and revoked sessions last an hour, so nothing changes their outcome
/// during a run.
pub struct Probes {
    pub valid: Vec<Probe>,
    /// One pool per entry of [`BAD_KINDS`].
    pub bad: Vec<Vec<Probe>>,
}

impl Probes {
    /// Logs in `sessions` sessions and prepares `bad_each` tokens of each bad kind (revoking,
    /// logging out and expiring sessions as needed).
    pub fn build<S: SessionStore>(
        service: &SessionService<S>,
        sessions: usize,
        bad_each: usize,
        rng: &mut Rng,
    ) -> Probes {
        let now = now_ms();
        let hour = now + 3_600_000;
        let signer = service.signer();
        let attacker = TokenSigner::new(&random_secret());
        let valid: Vec<Probe> = (0..sessions)
            .map(|_| {
                let user = rng.next_u64();
                let (_, token) = service.login(user, hour);
                Probe {
                    kind: TokenKind::Valid,
                    token,
                    expect: Ok(user),
                }
            })
            .collect();
        let probe = |kind, token, expect| Probe {
            kind,
            token,
            expect: Err(expect),
        };
        let mut bad = Vec::new();
        for kind in BAD_KINDS {
            let pool: Vec<Probe> = (0..bad_each)
                .map(|i| {
                    let user = rng.next_u64();
                    let claims = |session, expires_ms| Claims {
                        version: TOKEN_VERSION,
                        session,
                        user,
                        expires_ms,
                    };
                    match kind {
                        TokenKind::Forged => {
                            // A real session id, signed with a key that is not ours.
                            let (id, _) = service.login(user, hour);
                            let token = attacker.issue(claims(id, hour));
                            probe(kind, token, Reject::BadSignature)
                        }
                        TokenKind::Tampered => {
                            probe(kind, tamper(service, user, hour, i), Reject::BadSignature)
                        }
                        TokenKind::Expired => {
                            // Expired a minute ago; the first sweep removes the session.
                            let (_, token) = service.login(user, now - 60_000);
                            probe(kind, token, Reject::Expired)
                        }
                        TokenKind::Revoked => {
                            let (id, token) = service.login(user, hour);
                            assert!(service.revoke(id));
                            probe(kind, token, Reject::Revoked)
                        }
                        TokenKind::Unknown if i % 2 == 0 => {
                            // Correctly signed, but never logged in.
                            let token = signer.issue(claims(SessionId::random(), hour));
                            probe(kind, token, Reject::Unknown)
                        }
                        TokenKind::Unknown => {
                            let (id, token) = service.login(user, hour);
                            assert!(service.logout(id));
                            probe(kind, token, Reject::Unknown)
                        }
                        TokenKind::Malformed => {
                            let (token, why) =
                                malformed(signer, i, claims(SessionId::random(), hour));
                            probe(kind, token, Reject::Malformed(why))
                        }
                        TokenKind::Valid => unreachable!("not a bad kind"),
                    }
                })
                .collect();
            bad.push(pool);
        }
        Probes { valid, bad }
    }

    /// Every probe, good and bad.
    pub fn all(&self) -> impl Iterator<Item = &Probe> {
        self.valid.iter().chain(self.bad.iter().flatten())
    }
}

/// A token of a live session, changed in one of four ways after it was signed.
fn tamper<S: SessionStore>(service: &SessionService<S>, user: u64, hour: u64, i: usize) -> String {
    let (id, token) = service.login(user, hour);
    let (payload, tag) = token.split_at(PAYLOAD_B64);
    let signed = |claims: Claims| URL_SAFE_NO_PAD.encode(claims.to_bytes()) + tag;
    let claims = Claims {
        version: TOKEN_VERSION,
        session: id,
        user,
        expires_ms: hour,
    };
    match i % 4 {
        // Someone else's user id under this session's signature.
        0 => signed(Claims {
            user: user ^ 1,
            ..claims
        }),
        // A later expiry.
        1 => signed(Claims {
            expires_ms: u64::MAX,
            ..claims
        }),
        // One bit of the signature flipped.
        2 => {
            let mut tag = URL_SAFE_NO_PAD.decode(&tag[1..]).expect("our own encoding");
            tag[i % TAG_LEN] ^= 1 << (i % 8);
            format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag))
        }
        // Another valid token's signature.
        _ => {
            let (_, other) = service.login(user, hour);
            format!("{payload}{}", &other[PAYLOAD_B64..])
        }
    }
}

/// The number of cases [`malformed`] cycles through.
pub const MALFORMED_CASES: usize = 11;

/// A malformed token and why: one of a fixed list of cases, by `i`.
fn malformed(signer: &TokenSigner, i: usize, claims: Claims) -> (String, Malformed) {
    let good = signer.issue(claims);
    match i % MALFORMED_CASES {
        0 => (String::new(), Malformed::Length),
        1 => ("garbage".into(), Malformed::Length),
        2 => (format!(" {good}"), Malformed::Length),
        3 => (good[..TOKEN_LEN - 1].into(), Malformed::Length),
        4 => ("x".repeat(4_096), Malformed::Length),
        5 => (good.replacen('.', "!", 1), Malformed::Separator),
        // Standard base64, not URL-safe.
        6 => (format!("+{}", &good[1..]), Malformed::Encoding),
        // A non-zero unused bit in the signature's last symbol: not canonical. 32 bytes leave
        // the two low bits of the 43rd symbol unused, so its index is a multiple of 4 and the
        // next symbol in the alphabet (always the next ASCII character) sets one of them.
        7 => {
            let next = char::from(good.as_bytes()[TOKEN_LEN - 1] + 1);
            let token = format!("{}{next}", &good[..TOKEN_LEN - 1]);
            (token, Malformed::Encoding)
        }
        // A multi-byte character straddling the separator's position (slicing the `str`
        // there would panic).
        8 => (format!("a{}a", "é".repeat(43)), Malformed::Separator),
        9 => {
            let token = format!("{}é{}", &good[..40], &good[42..]);
            (token, Malformed::Encoding)
        }
        // Correctly signed, in a payload format from the future.
        _ => {
            let claims = Claims {
                version: 2,
                ..claims
            };
            (signer.issue(claims), Malformed::Version)
        }
    }
}

/// What a load run does.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub map: MapKind,
    pub threads: usize,
    pub duration: Duration,
    /// Long-lived sessions the validators check.
    pub sessions: usize,
    /// Validations as a share of all operations; the rest are logins, logouts and revokes.
    pub read_share: f64,
    /// The share of validations that use a bad token.
    pub bad_share: f64,
    /// How often the sweeper runs.
    pub sweep_every: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            map: MapKind::Dualmap,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            duration: Duration::from_secs(5),
            sessions: 100_000,
            read_share: 0.99,
            bad_share: 0.10,
            sweep_every: Duration::from_millis(250),
        }
    }
}

/// What the progress callback is told, about every 100 ms.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub elapsed: Duration,
    pub validations: u64,
}

/// The result of a load run.
#[derive(Debug)]
pub struct Report {
    pub config: LoadConfig,
    pub elapsed: Duration,
    pub setup: Duration,
    /// Tokens prepared of each bad kind.
    pub bad_each: usize,
    /// Validations by the validator threads.
    pub validations: u64,
    /// Validations by outcome, indexed like [`OUTCOMES`].
    pub outcomes: [u64; OUTCOMES.len()],
    /// Validations by the kind of token sent.
    pub sent: Vec<(&'static str, u64)>,
    pub logins: u64,
    pub logouts: u64,
    pub revokes: u64,
    /// Sessions and revocations the sweeper removed.
    pub swept: u64,
    /// Checks the writer made of its own logins, logouts and revocations.
    pub writer_checks: u64,
    /// Writer checks whose session the sweeper removed while the writer held an old clock
    /// reading (only possible if a thread stalls for longer than [`SWEEP_GRACE_MS`]).
    pub sweeper_races: u64,
    /// Validation latency in nanoseconds.
    pub latency: Histogram<u64>,
    /// Sessions in the map at the end.
    pub final_len: usize,
    pub stats: Option<Stats>,
    /// Every broken invariant (the first few of each thread, then a count).
    pub failures: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// Validations of the validators, plus session writes: the share that were validations.
    pub fn read_share(&self) -> f64 {
        let writes = self.logins + self.logouts + self.revokes;
        self.validations as f64 / (self.validations + writes).max(1) as f64
    }
}

/// A counter on its own cache line: each validator publishes its count in one.
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

const FAILURES_KEPT: usize = 5;

/// Records a broken invariant: keeps the first few, counts the rest.
struct Failures {
    kept: Vec<String>,
    more: u64,
}

impl Failures {
    fn new() -> Self {
        Failures {
            kept: Vec::new(),
            more: 0,
        }
    }

    fn push(&mut self, failure: String) {
        if self.kept.len() < FAILURES_KEPT {
            self.kept.push(failure);
        } else {
            self.more += 1;
        }
    }

    fn into_vec(mut self, who: &str) -> Vec<String> {
        if self.more > 0 {
            self.kept
                .push(format!("{who}: {} more failures", self.more));
        }
        self.kept
    }
}

fn describe(probe: &Probe, got: &Result<Accepted, Reject>) -> String {
    let expected = match probe.expect {
        Ok(user) => format!("accepted for user {user}"),
        Err(why) => why.to_string(),
    };
    let got = match got {
        Ok(accepted) => format!("accepted for user {}", accepted.user),
        Err(why) => why.to_string(),
    };
    let shown: String = probe.token.chars().take(100).collect();
    format!(
        "{:?} token {shown:?}: expected {expected}, got {got}",
        probe.kind
    )
}

fn matches(probe: &Probe, got: &Result<Accepted, Reject>) -> bool {
    got.map(|accepted| accepted.user) == probe.expect
}

/// Runs the load on the map `config.map` names.
pub fn run_load(config: &LoadConfig, progress: &mut dyn FnMut(Progress)) -> Report {
    // Every map hashes with ahash, dualmap's default.
    let hasher = ahash::RandomState::new;
    match config.map {
        MapKind::Dualmap => run_on(config, DualMap::new(), DualMap::new(), progress),
        MapKind::Dashmap => run_on(
            config,
            dashmap::DashMap::with_hasher(hasher()),
            dashmap::DashMap::with_hasher(hasher()),
            progress,
        ),
        MapKind::Rwlock => run_on(
            config,
            LockedMap::new(HashMap::with_hasher(hasher())),
            LockedMap::new(HashMap::with_hasher(hasher())),
            progress,
        ),
    }
}

/// What a validator thread hands back.
struct ValidatorResult {
    validations: u64,
    outcomes: [u64; OUTCOMES.len()],
    sent: [u64; 1 + BAD_KINDS.len()],
    latency: Histogram<u64>,
    failures: Vec<String>,
}

/// What the writer thread hands back.
struct WriterResult {
    logins: u64,
    logouts: u64,
    revokes: u64,
    checks: u64,
    races: u64,
    /// Sessions it ended (logged out or revoked): none may be valid at the end.
    ended: Vec<(String, Reject, u64)>,
    /// Sessions it left logged in, with their expiry.
    live: Vec<(String, u64, u64)>,
    failures: Vec<String>,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

fn run_on<S: SessionStore>(
    config: &LoadConfig,
    sessions: S,
    revoked: S,
    progress: &mut dyn FnMut(Progress),
) -> Report {
    let setup_started = Instant::now();
    let service = SessionService::new(TokenSigner::new(&random_secret()), sessions, revoked);
    let mut rng = Rng::new(now_ms() ^ 0x5E55_1011);
    let bad_each = config.sessions.clamp(16, 5_000);
    let probes = Probes::build(&service, config.sessions.max(1), bad_each, &mut rng);
    let setup = setup_started.elapsed();

    let read_share = config.read_share.clamp(0.01, 1.0);
    let writes_per_read = (1.0 - read_share) / read_share;
    let stop = AtomicBool::new(false);
    let counts: Vec<Padded> = (0..config.threads.max(1))
        .map(|_| Padded::default())
        .collect();
    let swept = AtomicU64::new(0);
    let started = Instant::now();

    let (validators, writer) = std::thread::scope(|scope| {
        let validators: Vec<_> = counts
            .iter()
            .enumerate()
            .map(|(thread, count)| {
                let (service, probes, stop) = (&service, &probes, &stop);
                let seed = rng.next_u64() ^ thread as u64;
                let bad_share = config.bad_share;
                scope.spawn(move || validate_loop(service, probes, stop, count, seed, bad_share))
            })
            .collect();
        let writer = {
            let (service, stop, counts) = (&service, &stop, &counts);
            let seed = rng.next_u64();
            scope.spawn(move || write_loop(service, stop, counts, writes_per_read, seed))
        };
        scope.spawn(|| {
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
                if last.elapsed() >= config.sweep_every {
                    last = Instant::now();
                    let removed = service.sweep(now_ms());
                    swept.fetch_add(removed as u64, Ordering::Relaxed);
                }
            }
        });
        loop {
            let elapsed = started.elapsed();
            let validations = counts.iter().map(|c| c.0.load(Ordering::Relaxed)).sum();
            progress(Progress {
                elapsed,
                validations,
            });
            if elapsed >= config.duration {
                break;
            }
            std::thread::sleep((config.duration - elapsed).min(Duration::from_millis(100)));
        }
        stop.store(true, Ordering::Relaxed);
        let validators: Vec<ValidatorResult> = validators
            .into_iter()
            .map(|v| v.join().expect("validator thread"))
            .collect();
        (validators, writer.join().expect("writer thread"))
    });
    let elapsed = started.elapsed();

    let mut failures = Vec::new();
    let mut latency = new_histogram();
    let mut outcomes = [0; OUTCOMES.len()];
    let mut sent_by_kind = [0; 1 + BAD_KINDS.len()];
    let mut validations = 0;
    for result in validators {
        validations += result.validations;
        latency.add(&result.latency).expect("same bounds");
        for (total, n) in outcomes.iter_mut().zip(result.outcomes) {
            *total += n;
        }
        for (total, n) in sent_by_kind.iter_mut().zip(result.sent) {
            *total += n;
        }
        failures.extend(result.failures);
    }
    failures.extend(writer.failures.iter().cloned());
    failures.extend(final_checks(&service, &probes, &writer));
    let kinds = std::iter::once(TokenKind::Valid).chain(BAD_KINDS);
    let sent = kinds
        .zip(sent_by_kind)
        .map(|(kind, n)| (kind_name(kind), n))
        .collect();

    Report {
        config: config.clone(),
        elapsed,
        setup,
        bad_each,
        validations,
        outcomes,
        sent,
        logins: writer.logins,
        logouts: writer.logouts,
        revokes: writer.revokes,
        swept: swept.into_inner(),
        writer_checks: writer.checks,
        sweeper_races: writer.races,
        latency,
        final_len: service.sessions().len(),
        stats: service.sessions().stats(),
        failures,
    }
}

pub fn kind_name(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Valid => "valid",
        TokenKind::Forged => "forged",
        TokenKind::Tampered => "tampered",
        TokenKind::Expired => "expired",
        TokenKind::Revoked => "revoked",
        TokenKind::Unknown => "unknown",
        TokenKind::Malformed => "malformed",
    }
}

fn validate_loop<S: SessionStore>(
    service: &SessionService<S>,
    probes: &Probes,
    stop: &AtomicBool,
    count: &Padded,
    seed: u64,
    bad_share: f64,
) -> ValidatorResult {
    let mut rng = Rng::new(seed);
    let mut result = ValidatorResult {
        validations: 0,
        outcomes: [0; OUTCOMES.len()],
        sent: [0; 1 + BAD_KINDS.len()],
        latency: new_histogram(),
        failures: Vec::new(),
    };
    let mut failures = Failures::new();
    let mut lookup = service.sessions().lookup_handle();
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..256 {
            let (slot, pool) = if rng.chance(bad_share) {
                let kind = rng.below(BAD_KINDS.len());
                (1 + kind, &probes.bad[kind])
            } else {
                (0, &probes.valid)
            };
            let probe = &pool[rng.below(pool.len())];
            let start = Instant::now();
            let now = now_ms();
            let got = service.validate_with(&mut lookup, &probe.token, now);
            let took = start.elapsed();
            result.latency.saturating_record(took.as_nanos() as u64);
            result.outcomes[outcome_index(&got)] += 1;
            result.sent[slot] += 1;
            if !matches(probe, &got) {
                failures.push(describe(probe, &got));
            }
        }
        result.validations += 256;
        count.0.store(result.validations, Ordering::Relaxed);
    }
    result.failures = failures.into_vec("validator");
    result
}

/// Logins, logouts and revocations, paced to `writes_per_read` of the validations so far.
/// Checks each of its own operations with a validation at once.
fn write_loop<S: SessionStore>(
    service: &SessionService<S>,
    stop: &AtomicBool,
    counts: &[Padded],
    writes_per_read: f64,
    seed: u64,
) -> WriterResult {
    let mut rng = Rng::new(seed);
    let mut result = WriterResult {
        logins: 0,
        logouts: 0,
        revokes: 0,
        checks: 0,
        races: 0,
        ended: Vec::new(),
        live: Vec::new(),
        failures: Vec::new(),
    };
    let mut failures = Failures::new();
    // (session, token, user, expiry) of the sessions this thread logged in and has not ended.
    let mut live: Vec<(SessionId, String, u64, u64)> = Vec::new();
    let mut writes = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let reads: u64 = counts.iter().map(|c| c.0.load(Ordering::Relaxed)).sum();
        if writes as f64 >= reads as f64 * writes_per_read {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        writes += 1;
        let now = now_ms();
        let (token, expires_ms, expect) = if live.len() < 64 || rng.chance(0.5) {
            // Short sessions, so some expire during the run and the sweeper removes them.
            let user = rng.next_u64();
            let expires_ms = now + 1_000 + rng.below(2_000) as u64;
            let (id, token) = service.login(user, expires_ms);
            result.logins += 1;
            live.push((id, token.clone(), user, expires_ms));
            (token, expires_ms, Ok(user))
        } else {
            let (id, token, _, expires_ms) = live.swap_remove(rng.below(live.len()));
            let why = if rng.chance(0.5) {
                service.logout(id);
                result.logouts += 1;
                Reject::Unknown
            } else {
                service.revoke(id);
                result.revokes += 1;
                Reject::Revoked
            };
            result.ended.push((token.clone(), why, expires_ms));
            (token, expires_ms, Err(why))
        };
        let now = now_ms();
        let expect = if now >= expires_ms {
            Err(Reject::Expired)
        } else {
            expect
        };
        let got = service.validate(&token, now);
        result.checks += 1;
        if got.map(|accepted| accepted.user) != expect {
            let stale = now_ms() >= expires_ms + SWEEP_GRACE_MS;
            if stale && matches!(got, Err(Reject::Unknown)) {
                result.races += 1;
            } else {
                let kind = match expect {
                    Ok(_) => TokenKind::Valid,
                    Err(Reject::Revoked) => TokenKind::Revoked,
                    Err(Reject::Expired) => TokenKind::Expired,
                    Err(_) => TokenKind::Unknown,
                };
                let probe = Probe {
                    kind,
                    token,
                    expect,
                };
                failures.push(format!("writer: {}", describe(&probe, &got)));
            }
        }
    }
    result.live = live
        .into_iter()
        .map(|(_, token, user, expires_ms)| (token, user, expires_ms))
        .collect();
    result.failures = failures.into_vec("writer");
    result
}

/// After the run, with every thread stopped: validates every probe once more, checks the
/// writer's ended and live sessions, and that the map's length matches an iteration of it.
fn final_checks<S: SessionStore>(
    service: &SessionService<S>,
    probes: &Probes,
    writer: &WriterResult,
) -> Vec<String> {
    let mut failures = Failures::new();
    let now = now_ms();
    for probe in probes.all() {
        let got = service.validate(&probe.token, now);
        if !matches(probe, &got) {
            failures.push(format!("final pass: {}", describe(probe, &got)));
        }
    }
    // Exact, now that the sweeper has stopped: it removed only what had expired before `now`
    // by more than the grace period, and expiry is checked before the session.
    let expired_or = |expires_ms: u64, otherwise| {
        if now >= expires_ms {
            Err(Reject::Expired)
        } else {
            otherwise
        }
    };
    for (token, why, expires_ms) in &writer.ended {
        let probe = Probe {
            kind: match why {
                Reject::Revoked => TokenKind::Revoked,
                _ => TokenKind::Unknown,
            },
            token: token.clone(),
            expect: expired_or(*expires_ms, Err(*why)),
        };
        let got = service.validate(token, now);
        if !matches(&probe, &got) {
            failures.push(format!(
                "final pass, ended session: {}",
                describe(&probe, &got)
            ));
        }
    }
    for (token, user, expires_ms) in &writer.live {
        let probe = Probe {
            kind: TokenKind::Valid,
            token: token.clone(),
            expect: expired_or(*expires_ms, Ok(*user)),
        };
        let got = service.validate(token, now);
        if !matches(&probe, &got) {
            failures.push(format!(
                "final pass, live session: {}",
                describe(&probe, &got)
            ));
        }
    }
    for (name, store) in [
        ("sessions", service.sessions()),
        ("revoked", service.revoked()),
    ] {
        let (len, count) = (store.len(), store.count());
        if len != count {
            failures.push(format!(
                "{name}: len() is {len} but iteration visits {count}"
            ));
        }
    }
    failures.into_vec("final pass")
}
