//! The nonces of signed requests: issued by `GET /nonce`, each accepted
//! once, within [`NONCE_LIFETIME`] of its issue.
//!
//! # Why stateless until used
//!
//! `/nonce` is open: anyone may ask for nonces, as fast as they like. So
//! issuing one stores nothing. A nonce carries its issue time and serial
//! number, tagged with an HMAC under a secret drawn at start (so a nonce of
//! another daemon sharing the token is not one of ours, and no one can make
//! one up); the daemon checks the tag and the age, then the request's
//! signature, and only then records the nonce as used. Only a request signed
//! with the token can grow the record, and entries leave it when they expire;
//! it holds at most [`USED_CAPACITY`] (beyond that, signed requests are
//! refused until some expire, rather than forgetting one that could then be
//! replayed).
//!
//! Times are read from a monotonic clock, counted from the daemon's start:
//! changing the system's clock neither revives nor kills a nonce.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq as _;

use crate::model::digest::hex;
use crate::present::api::{NONCE_LEN, NONCE_LIFETIME, valid_nonce};

/// The most nonces remembered as used (each for [`NONCE_LIFETIME`]).
pub const USED_CAPACITY: usize = 4096;

/// The bytes of a nonce's tag.
const TAG_LEN: usize = 16;

/// Why a nonce is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// Not one this daemon issued, or issued too long ago.
    #[error("the nonce is not one this daemon issued in the last {} s", NONCE_LIFETIME.as_secs())]
    Unknown,
    /// Accepted once already.
    #[error("the nonce was used already")]
    Used,
    /// Too many signed requests within [`NONCE_LIFETIME`] to remember.
    #[error("too many signed requests in the last {} s: try again shortly", NONCE_LIFETIME.as_secs())]
    Full,
}

/// A nonce whose tag and age were checked, not yet used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fresh {
    serial: u64,
    expires: Instant,
}

/// The nonces of one daemon: issues them and accepts each once.
pub struct Nonces {
    secret: [u8; 32],
    epoch: Instant,
    next_serial: AtomicU64,
    used: Mutex<HashMap<u64, Instant>>,
}

impl Nonces {
    /// Nonces tagged under `secret`, their times counted from `epoch`.
    pub fn new(secret: [u8; 32], epoch: Instant) -> Self {
        Self { secret, epoch, next_serial: AtomicU64::new(0), used: Mutex::new(HashMap::new()) }
    }

    /// Nonces under a secret drawn from the system's randomness now.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)?;
        Ok(Self::new(secret, Instant::now()))
    }

    /// The tag of the nonce issued at `issued_ms` with `serial`.
    fn tag(&self, issued_ms: u64, serial: u64) -> [u8; TAG_LEN] {
        use hmac::{KeyInit as _, Mac as _};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new(&self.secret_block().into());
        mac.update(b"flagsd-admin nonce v1\n");
        mac.update(&issued_ms.to_be_bytes());
        mac.update(&serial.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// The secret as an HMAC key block (zero-padded, as HMAC pads it).
    fn secret_block(&self) -> [u8; 64] {
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.secret);
        block
    }

    /// Milliseconds from the epoch to `now` (0 before it).
    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// A new nonce, issued at `now`: issue time, serial and tag, in hex.
    pub fn issue(&self, now: Instant) -> String {
        let issued_ms = self.millis(now);
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let mut bytes = Vec::with_capacity(NONCE_LEN / 2);
        bytes.extend_from_slice(&issued_ms.to_be_bytes());
        bytes.extend_from_slice(&serial.to_be_bytes());
        bytes.extend_from_slice(&self.tag(issued_ms, serial));
        hex(&bytes)
    }

    /// Checks that `nonce` is one of ours, issued within [`NONCE_LIFETIME`]
    /// before `now`; stores nothing.
    pub fn check(&self, nonce: &str, now: Instant) -> Result<Fresh, NonceError> {
        if !valid_nonce(nonce) {
            return Err(NonceError::Unknown);
        }
        let mut bytes = [0u8; NONCE_LEN / 2];
        for (byte, pair) in bytes.iter_mut().zip(nonce.as_bytes().chunks_exact(2)) {
            let digits = std::str::from_utf8(pair).map_err(|_| NonceError::Unknown)?;
            *byte = u8::from_str_radix(digits, 16).map_err(|_| NonceError::Unknown)?;
        }
        let (issued, rest) = bytes.split_at(8);
        let (serial, tag) = rest.split_at(8);
        let issued_ms = u64::from_be_bytes(issued.try_into().map_err(|_| NonceError::Unknown)?);
        let serial = u64::from_be_bytes(serial.try_into().map_err(|_| NonceError::Unknown)?);
        if !bool::from(tag.ct_eq(&self.tag(issued_ms, serial))) {
            return Err(NonceError::Unknown);
        }
        let lifetime = u64::try_from(NONCE_LIFETIME.as_millis()).unwrap_or(u64::MAX);
        let now_ms = self.millis(now);
        // Strictly within: a nonce good at `now` expires after `now`, so its
        // record (kept until it expires) is still there to refuse a replay.
        if issued_ms > now_ms || now_ms - issued_ms >= lifetime {
            return Err(NonceError::Unknown);
        }
        let expires = self.epoch + Duration::from_millis(issued_ms) + NONCE_LIFETIME;
        Ok(Fresh { serial, expires })
    }

    /// Records `fresh` as used at `now`: `Err` if it was already, or if
    /// [`USED_CAPACITY`] unexpired nonces are recorded.
    pub fn consume(&self, fresh: Fresh, now: Instant) -> Result<(), NonceError> {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        if used.contains_key(&fresh.serial) {
            return Err(NonceError::Used);
        }
        if used.len() >= USED_CAPACITY {
            used.retain(|_, expires| *expires > now);
            if used.len() >= USED_CAPACITY {
                return Err(NonceError::Full);
            }
        }
        used.insert(fresh.serial, fresh.expires);
        Ok(())
    }

    /// Forgets the used nonces that expired by `now`.
    pub fn prune(&self, now: Instant) {
        self.used.lock().unwrap_or_else(PoisonError::into_inner).retain(|_, expires| *expires > now);
    }

    /// How many used nonces are remembered.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.used.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonces() -> (Nonces, Instant) {
        let epoch = Instant::now();
        (Nonces::new([9; 32], epoch), epoch)
    }

    #[test]
    fn a_nonce_is_accepted_once() {
        let (nonces, start) = nonces();
        let nonce = nonces.issue(start);
        assert!(valid_nonce(&nonce), "{nonce}");
        let fresh = nonces.check(&nonce, start + Duration::from_secs(1)).expect("ours and fresh");
        assert_eq!(nonces.consume(fresh, start), Ok(()));
        assert_eq!(nonces.check(&nonce, start), Ok(fresh), "checking stores nothing");
        assert_eq!(nonces.consume(fresh, start), Err(NonceError::Used));
        let other = nonces.issue(start);
        assert_ne!(other, nonce, "two nonces of the same instant differ");
        assert_eq!(nonces.check(&other, start).and_then(|f| nonces.consume(f, start)), Ok(()));
    }

    #[test]
    fn a_nonce_expires_after_its_lifetime() {
        let (nonces, start) = nonces();
        let issued = start + Duration::from_secs(100);
        let nonce = nonces.issue(issued);
        let last = issued + NONCE_LIFETIME - Duration::from_millis(1);
        let fresh = nonces.check(&nonce, last).expect("still fresh");
        assert!(fresh.expires > last, "its record outlives its last use");
        assert_eq!(nonces.check(&nonce, issued + NONCE_LIFETIME), Err(NonceError::Unknown));
        assert_eq!(
            nonces.check(&nonce, issued - Duration::from_millis(1)),
            Err(NonceError::Unknown),
            "from the future"
        );
    }

    #[test]
    fn only_our_own_nonces_are_accepted() {
        let (nonces, start) = nonces();
        let nonce = nonces.issue(start);
        // Another daemon, even with the same start, has another secret.
        let theirs = Nonces::new([8; 32], start).issue(start);
        assert_eq!(nonces.check(&theirs, start), Err(NonceError::Unknown));
        // Any changed digit breaks the tag: the time, the serial, the tag.
        for at in [0, 15, 16, 31, 32, 63] {
            let mut changed = nonce.clone().into_bytes();
            changed[at] = if changed[at] == b'0' { b'1' } else { b'0' };
            let changed = String::from_utf8(changed).expect("hex");
            assert_eq!(nonces.check(&changed, start), Err(NonceError::Unknown), "digit {at}");
        }
        for bad in ["", "00", &nonce.to_uppercase(), &format!("{nonce}0")] {
            assert_eq!(nonces.check(bad, start), Err(NonceError::Unknown), "{bad}");
        }
    }

    #[test]
    fn the_record_of_used_nonces_is_bounded() {
        let (nonces, start) = nonces();
        for _ in 0..USED_CAPACITY {
            let fresh = nonces.check(&nonces.issue(start), start).expect("fresh");
            nonces.consume(fresh, start).expect("room");
        }
        let one_more = nonces.check(&nonces.issue(start), start).expect("fresh");
        assert_eq!(nonces.consume(one_more, start), Err(NonceError::Full), "full of unexpired nonces: refused");
        assert_eq!(nonces.remembered(), USED_CAPACITY);
        // Once they expire, their room is taken back.
        let later = start + NONCE_LIFETIME + Duration::from_secs(1);
        let fresh = nonces.check(&nonces.issue(later), later).expect("fresh");
        assert_eq!(nonces.consume(fresh, later), Ok(()));
        assert_eq!(nonces.remembered(), 1);
        nonces.prune(later + NONCE_LIFETIME + Duration::from_secs(1));
        assert_eq!(nonces.remembered(), 0);
    }
}
