//! The peer protocol's headers: who sent a request (the peer key and the hop marker), and the
//! load report every response carries.
//!
//! Owns: the names `X-Runner-Peer-Key`, `X-Runner-Hop` and `X-Runner-Load`; `PeerKey` (a key
//! checked once, at configuration, and kept as the header value it is sent as); `authenticate`,
//! which reads both peer headers once per request; the load header's text.
//!
//! Must not: do I/O, log or print keys, or accept a peer header without the right key (a runner
//! is never an open relay).

use std::fmt;

use hyper::header::{HeaderMap, HeaderValue};

use crate::dispatch::{Caller, Refused};
use crate::sched::Load;

/// Marks a request forwarded by a peer; such a request is never forwarded again.
pub const HOP_HEADER: &str = "x-runner-hop";
/// The shared peer key.
pub const KEY_HEADER: &str = "x-runner-peer-key";
/// On every response: `slots=<n>, free=<n>, queued=<n>`.
pub const LOAD_HEADER: &str = "x-runner-load";

/// A peer key: 8 to 256 visible ASCII characters, held as the header value it is sent as (marked
/// sensitive). Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerKey(HeaderValue);

impl PeerKey {
    /// `key` if it can be a peer key; `None` otherwise.
    pub fn parse(key: &str) -> Option<PeerKey> {
        if key.len() < 8 || key.len() > 256 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let mut v = HeaderValue::from_str(key).ok()?;
        v.set_sensitive(true);
        Some(PeerKey(v))
    }

    /// The key of a peer listed while peer mode is off (no key anywhere): never sent, never
    /// matched (`authenticate` only takes this runner's own key, which `parse` made).
    pub(super) fn empty() -> PeerKey {
        PeerKey(HeaderValue::from_static(""))
    }

    /// The value of `X-Runner-Peer-Key`.
    pub(crate) fn header(&self) -> &HeaderValue {
        &self.0
    }

    /// Whether `sent` is this key, in a time that does not depend on where they differ.
    fn matches(&self, sent: &[u8]) -> bool {
        let key = self.0.as_bytes();
        sent.len() == key.len() && sent.iter().zip(key).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerKey(..)")
    }
}

/// Who sent a request, by its peer headers and `key` (this runner's peer key, if any). A hop
/// marker or a peer key without the right key is refused: a runner never relays for strangers.
pub(super) fn authenticate(key: Option<&PeerKey>, headers: &HeaderMap) -> Result<Caller, Refused> {
    let hop = headers.contains_key(HOP_HEADER);
    match (headers.get(KEY_HEADER), key) {
        (None, _) if !hop => Ok(Caller::Client),
        (Some(sent), Some(k)) if k.matches(sent.as_bytes()) => {
            Ok(if hop { Caller::Forwarded } else { Caller::Peer })
        }
        _ => Err(Refused),
    }
}

/// `slots=1, free=0, queued=3`.
pub(super) fn format_load(l: Load) -> String {
    format!("slots={}, free={}, queued={}", l.slots, l.free, l.queued)
}

/// Parses [`format_load`]'s output; unknown parts are ignored.
pub(super) fn parse_load(s: &str) -> Option<Load> {
    let mut l = Load::default();
    let mut seen = 0;
    for part in s.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        let v: usize = v.trim().parse().ok()?;
        match k.trim() {
            "slots" => l.slots = v,
            "free" => l.free = v,
            "queued" => l.queued = v,
            _ => continue,
        }
        seen += 1;
    }
    (seen == 3).then_some(l)
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The load header's text and the key checks.
    use super::*;

    fn key(k: &str) -> PeerKey {
        PeerKey::parse(k).expect("a valid key")
    }

    #[test]
    fn test_load_header_round_trip() {
        let l = Load {
            slots: 4,
            free: 1,
            queued: 7,
        };
        assert_eq!(format_load(l), "slots=4, free=1, queued=7");
        assert_eq!(parse_load(&format_load(l)), Some(l));
        assert_eq!(parse_load("slots=1"), None);
        assert_eq!(parse_load("slots=x, free=1, queued=1"), None);
    }

    #[test]
    fn test_authenticate() {
        let k = key("k1234567");
        let mut h = HeaderMap::new();
        assert_eq!(authenticate(None, &h), Ok(Caller::Client));
        assert_eq!(authenticate(Some(&k), &h), Ok(Caller::Client));
        h.insert(HOP_HEADER, HeaderValue::from_static("1"));
        assert_eq!(authenticate(Some(&k), &h), Err(Refused), "hop without key");
        h.insert(KEY_HEADER, HeaderValue::from_static("k1234567"));
        assert_eq!(authenticate(Some(&k), &h), Ok(Caller::Forwarded));
        assert_eq!(authenticate(None, &h), Err(Refused), "no key configured");
        h.remove(HOP_HEADER);
        assert_eq!(authenticate(Some(&k), &h), Ok(Caller::Peer), "key alone");
        h.insert(KEY_HEADER, HeaderValue::from_static("wrongkey"));
        assert_eq!(authenticate(Some(&k), &h), Err(Refused), "wrong key alone");
        h.insert(KEY_HEADER, HeaderValue::from_static("k123456"));
        assert_eq!(authenticate(Some(&k), &h), Err(Refused), "a prefix");
        h.insert(HOP_HEADER, HeaderValue::from_static("1"));
        assert_eq!(authenticate(Some(&k), &h), Err(Refused), "hop, wrong key");
    }

    #[test]
    fn test_peer_key_parse_and_debug() {
        for bad in [
            "short",
            "has space1",
            "tab\tinside",
            &"x".repeat(257),
            "naïve-key",
        ] {
            assert!(PeerKey::parse(bad).is_none(), "{bad:?}");
        }
        let k = key("sharedsecret");
        assert_eq!(k.header().as_bytes(), b"sharedsecret");
        assert!(k.header().is_sensitive());
        assert_eq!(format!("{k:?}"), "PeerKey(..)");
    }
}
