//! The session-validator example's core (`examples/session_validator/sessions.rs`), run in
//! process at small sizes: every kind of token gets its outcome, malformed input is rejected
//! with a reason and never panics, and a short load on each map keeps every invariant.

#[allow(dead_code)]
#[path = "../examples/session_validator/sessions.rs"]
mod sessions;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use dualmap::DualMap;
use sessions::{
    now_ms, random_secret, Claims, LoadConfig, Malformed, MapKind, Probes, Reject, Rng, Session,
    SessionId, SessionService, SessionStore, TokenSigner, SWEEP_GRACE_MS, TOKEN_LEN, TOKEN_VERSION,
};
use std::time::Duration;

type Service = SessionService<DualMap<SessionId, Session>>;

fn service() -> Service {
    SessionService::new(
        TokenSigner::new(&random_secret()),
        DualMap::new(),
        DualMap::new(),
    )
}

const HOUR: u64 = 3_600_000;

#[test]
fn a_fresh_token_is_accepted_for_its_user_and_is_88_url_safe_bytes() {
    let service = service();
    let now = now_ms();
    let (id, token) = service.login(42, now + HOUR);
    assert_eq!(token.len(), TOKEN_LEN);
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'));
    let accepted = service.validate(&token, now).unwrap();
    assert_eq!((accepted.session, accepted.user), (id, 42));
    let claims = service.signer().verify(&token).unwrap();
    assert_eq!(
        claims,
        Claims {
            version: TOKEN_VERSION,
            session: id,
            user: 42,
            expires_ms: now + HOUR
        }
    );
}

#[test]
fn a_token_signed_with_another_key_is_rejected_as_a_bad_signature() {
    let service = service();
    let now = now_ms();
    let (id, _) = service.login(7, now + HOUR);
    let forger = TokenSigner::new(b"not the server's secret");
    let forged = forger.issue(Claims {
        version: TOKEN_VERSION,
        session: id,
        user: 7,
        expires_ms: now + HOUR,
    });
    assert_eq!(service.validate(&forged, now), Err(Reject::BadSignature));
}

#[test]
fn tampered_tokens_are_rejected_as_a_bad_signature() {
    let service = service();
    let now = now_ms();
    let (id, token) = service.login(7, now + HOUR);
    let (_, other) = service.login(8, now + HOUR);
    let (payload, tag) = token.split_at(44);
    let claims = service.signer().verify(&token).unwrap();
    let resigned_payload = |claims: Claims| {
        let mut bytes = vec![claims.version];
        bytes.extend(claims.session.0.to_le_bytes());
        bytes.extend(claims.user.to_le_bytes());
        bytes.extend(claims.expires_ms.to_le_bytes());
        URL_SAFE_NO_PAD.encode(bytes) + tag
    };
    let mut flipped_tag = URL_SAFE_NO_PAD.decode(&tag[1..]).unwrap();
    flipped_tag[31] ^= 0x80;
    let tampered = [
        // Another user under this session's signature.
        resigned_payload(Claims { user: 8, ..claims }),
        // A later expiry.
        resigned_payload(Claims {
            expires_ms: u64::MAX,
            ..claims
        }),
        // Another session id.
        resigned_payload(Claims {
            session: SessionId(id.0 ^ 1),
            ..claims
        }),
        // One bit of the signature.
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(&flipped_tag)),
        // Another valid token's signature.
        format!("{payload}{}", &other[44..]),
    ];
    for token in tampered {
        assert_eq!(
            service.validate(&token, now),
            Err(Reject::BadSignature),
            "{token}"
        );
    }
}

#[test]
fn an_expired_token_is_rejected_as_expired_and_the_sweeper_removes_its_session_after_the_grace() {
    let service = service();
    let now = now_ms();
    let (id, token) = service.login(1, now + 10);
    assert_eq!(service.validate(&token, now + 9).unwrap().user, 1);
    assert_eq!(service.validate(&token, now + 10), Err(Reject::Expired));
    assert_eq!(service.sweep(now + 10 + SWEEP_GRACE_MS - 1), 0);
    assert!(service.sessions().lookup(&id).is_some());
    assert_eq!(service.sweep(now + 10 + SWEEP_GRACE_MS), 1);
    assert!(service.sessions().lookup(&id).is_none());
    // Still expired, not unknown: expiry is checked before the session.
    assert_eq!(service.validate(&token, now + 10), Err(Reject::Expired));
}

#[test]
fn a_revoked_session_is_rejected_as_revoked_until_it_expires() {
    let service = service();
    let now = now_ms();
    let (id, token) = service.login(5, now + 1_000);
    let (_, bystander) = service.login(6, now + 1_000);
    assert!(service.revoke(id));
    assert!(!service.revoke(id), "a second revocation finds nothing");
    assert_eq!(service.validate(&token, now), Err(Reject::Revoked));
    assert_eq!(service.validate(&bystander, now).unwrap().user, 6);
    // The sweeper keeps the revocation while the token could still be presented.
    service.sweep(now + 999);
    assert_eq!(service.validate(&token, now), Err(Reject::Revoked));
    assert_eq!(service.sweep(now + 1_000 + SWEEP_GRACE_MS), 2);
    assert_eq!(service.revoked().len(), 0);
    assert_eq!(service.validate(&token, now + 1_000), Err(Reject::Expired));
}

#[test]
fn unknown_and_logged_out_sessions_are_rejected_as_unknown() {
    let service = service();
    let now = now_ms();
    let never_issued = service.signer().issue(Claims {
        version: TOKEN_VERSION,
        session: SessionId::random(),
        user: 3,
        expires_ms: now + HOUR,
    });
    assert_eq!(service.validate(&never_issued, now), Err(Reject::Unknown));
    let (id, token) = service.login(3, now + HOUR);
    assert!(service.logout(id));
    assert!(!service.logout(id));
    assert_eq!(service.validate(&token, now), Err(Reject::Unknown));
}

#[test]
fn login_never_overwrites_a_session_that_holds_the_id() {
    // `insert_new` is `get_or_insert` on dualmap, the entry API on the peers.
    fn check(store: &impl SessionStore) {
        let id = SessionId(99);
        let first = Session {
            user: 1,
            expires_ms: 10,
        };
        let second = Session {
            user: 2,
            expires_ms: 20,
        };
        assert!(store.insert_new(id, first));
        assert!(!store.insert_new(id, second));
        assert_eq!(store.lookup(&id), Some(first));
        assert_eq!(store.len(), 1);
        assert_eq!(store.count(), 1);
        assert_eq!(store.remove(&id), Some(first));
        assert_eq!(store.remove(&id), None);
    }
    check(&DualMap::<SessionId, Session>::new());
    check(&dashmap::DashMap::<SessionId, Session, _>::with_hasher(
        ahash::RandomState::new(),
    ));
    check(&sessions::LockedMap::new(Default::default()));
}

#[test]
fn malformed_tokens_are_rejected_with_their_reason() {
    let service = service();
    let now = now_ms();
    let (id, good) = service.login(9, now + HOUR);
    let last = *good.as_bytes().last().unwrap();
    let future_version = service.signer().issue(Claims {
        version: 2,
        session: id,
        user: 9,
        expires_ms: now + HOUR,
    });
    let cases: Vec<(String, Malformed)> = vec![
        (String::new(), Malformed::Length),
        ("garbage".into(), Malformed::Length),
        (format!("{good} "), Malformed::Length),
        (good[..TOKEN_LEN - 1].into(), Malformed::Length),
        (format!("{good}{good}"), Malformed::Length),
        ("\0".repeat(1 << 20), Malformed::Length),
        (good.replacen('.', "_", 1), Malformed::Separator),
        (".".repeat(TOKEN_LEN), Malformed::Encoding),
        (format!("/{}", &good[1..]), Malformed::Encoding),
        (format!("{}=", &good[..TOKEN_LEN - 1]), Malformed::Encoding),
        // Not canonical: a non-zero unused bit in the last symbol.
        (
            format!("{}{}", &good[..TOKEN_LEN - 1], char::from(last + 1)),
            Malformed::Encoding,
        ),
        // A multi-byte character where the separator belongs (a `str` slice there panics).
        (format!("a{}a", "é".repeat(43)), Malformed::Separator),
        (
            format!("{}ü{}", &good[..50], &good[52..]),
            Malformed::Encoding,
        ),
        (future_version, Malformed::Version),
    ];
    for (token, why) in cases {
        let shown: String = token.chars().take(90).collect();
        assert_eq!(
            service.validate(&token, now),
            Err(Reject::Malformed(why)),
            "{shown:?}"
        );
    }
}

#[test]
fn arbitrary_input_is_rejected_with_a_reason_and_never_panics() {
    let service = service();
    let now = now_ms();
    let (_, good) = service.login(11, now + HOUR);
    // Every single-byte change of a valid token.
    let replacements = [b'A', b'a', b'0', b'-', b'_', b'.', b'+', b'=', 0, 0xFF];
    for at in 0..good.len() {
        for with in replacements {
            let mut bytes = good.clone().into_bytes();
            if bytes[at] == with {
                continue;
            }
            bytes[at] = with;
            let token = String::from_utf8_lossy(&bytes);
            let got = service.validate(&token, now);
            assert!(got.is_err(), "{token:?} was accepted");
        }
    }
    // Random strings of random lengths, and random well-shaped ones.
    let alphabet: Vec<char> = "AZaz09-_.+/= é\u{0}ü🦀".chars().collect();
    let url_safe = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = Rng::new(2024);
    for _ in 0..5_000 {
        let len = rng.below(120);
        let token: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        assert!(service.validate(&token, now).is_err(), "{token:?}");
        let mut shaped: Vec<u8> = (0..TOKEN_LEN)
            .map(|_| url_safe[rng.below(url_safe.len())])
            .collect();
        shaped[44] = b'.';
        let shaped = String::from_utf8(shaped).unwrap();
        match service.validate(&shaped, now) {
            Err(Reject::BadSignature | Reject::Malformed(Malformed::Encoding)) => {}
            other => panic!("{shaped}: {other:?}"),
        }
    }
    // And quickcheck's strings.
    quickcheck::quickcheck(quick as fn(String) -> bool);
}

fn quick(token: String) -> bool {
    thread_local! {
        static SERVICE: Service = service();
    }
    SERVICE.with(|service| service.validate(&token, now_ms()).is_err())
}

#[test]
fn every_prepared_token_gets_its_expected_outcome_on_each_map() {
    fn check<S: SessionStore>(service: SessionService<S>) {
        let mut rng = Rng::new(7);
        let probes = Probes::build(&service, 50, 24, &mut rng);
        assert_eq!(probes.valid.len(), 50);
        assert!(probes.bad.iter().all(|pool| pool.len() == 24));
        let now = now_ms();
        for probe in probes.all() {
            let got = service.validate(&probe.token, now).map(|a| a.user);
            assert_eq!(got, probe.expect, "{:?} {:?}", probe.kind, probe.token);
        }
        // Every malformed case occurs, each with its own reason.
        let malformed: std::collections::HashSet<_> =
            probes.bad[5].iter().map(|probe| probe.expect).collect();
        assert_eq!(malformed.len(), 4, "{malformed:?}");
    }
    let signer = || TokenSigner::new(&random_secret());
    check(SessionService::new(
        signer(),
        DualMap::new(),
        DualMap::new(),
    ));
    let dash = || dashmap::DashMap::with_hasher(ahash::RandomState::new());
    check(SessionService::new(signer(), dash(), dash()));
    let locked = || sessions::LockedMap::new(Default::default());
    check(SessionService::new(signer(), locked(), locked()));
}

#[test]
fn a_short_load_keeps_every_invariant_on_each_map() {
    for map in [MapKind::Dualmap, MapKind::Dashmap, MapKind::Rwlock] {
        let config = LoadConfig {
            map,
            threads: 2,
            duration: Duration::from_millis(300),
            sessions: 300,
            // More writes and bad tokens than the defaults, to exercise them in a short run.
            read_share: 0.9,
            bad_share: 0.5,
            sweep_every: Duration::from_millis(20),
        };
        let mut ticks = 0;
        let report = sessions::run_load(&config, &mut |_| ticks += 1);
        assert!(report.ok(), "{map}: {:#?}", report.failures);
        assert!(ticks > 0);
        assert!(report.validations > 0);
        assert_eq!(report.outcomes.iter().sum::<u64>(), report.validations);
        assert_eq!(
            report.sent.iter().map(|(_, n)| n).sum::<u64>(),
            report.validations
        );
        assert_eq!(report.latency.len(), report.validations);
        assert_eq!(report.stats.is_some(), map == MapKind::Dualmap);
    }
}
