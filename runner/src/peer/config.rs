//! The `[peer]` section of the config file (`RawPeer`, serde) and its validation into
//! `PeerConfig`. Lives here rather than in `config` so that peer mode stays in its own files;
//! `config` (the assembler of every section) calls it and wraps [`InvalidPeerSetting`] into its
//! own error.
//!
//! Owns: `[peer]`'s shape, defaults and limits, one error naming the setting.
//! Must not: import `config` (edges point from the assembler to the sections, never back).

use std::time::Duration;

use hyper::Uri;
use serde::Deserialize;

use super::auth::PeerKey;

/// A `[peer]` setting that is not valid, naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting `{setting}`: {reason}")]
pub struct InvalidPeerSetting {
    /// The setting's path, e.g. `peer.peers.url`.
    pub setting: &'static str,
    pub reason: String,
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> InvalidPeerSetting {
    InvalidPeerSetting {
        setting,
        reason: reason.into(),
    }
}

/// `[peer]` as written. Every field is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    /// Forward overflow to the peers below. Default false.
    pub enabled: Option<bool>,
    /// The shared key: sent to peers in `X-Runner-Peer-Key`, and the only key accepted from
    /// them. A runner with a key but `enabled = false` accepts forwarded runs but forwards none.
    pub key: Option<String>,
    /// Forward only when the expected local queue wait exceeds this (0: as soon as every local
    /// slot is busy). Default 0.
    pub forward_queue_wait_ms: Option<u64>,
    /// Active health probes (`GET /peer/status`): every `probe_interval_ms` (default 1000),
    /// each bounded by `probe_timeout_ms` (default 500).
    pub probe_interval_ms: Option<u64>,
    pub probe_timeout_ms: Option<u64>,
    /// Successful probes in a row to bring a down peer back (default 2).
    pub rise: Option<u32>,
    /// Failed probes in a row to take an up peer out (default 3).
    pub fall: Option<u32>,
    /// After a failed forward the peer is ejected for this long, then re-probed (default 5000).
    pub cooldown_ms: Option<u64>,
    /// Forward attempts per run (each on another peer) before it runs locally (default 3).
    pub max_attempts: Option<u32>,
    /// Longest wait for a forwarded run's response (default 150 s: above the largest cputime).
    pub request_timeout_secs: Option<f64>,
    /// How long a run forwarded *to us* may wait for a free slot before outcome 21, so that
    /// the sender fails over instead of queueing behind us (default 1000).
    pub forwarded_queue_wait_ms: Option<u64>,
    /// Static peers.
    #[serde(default)]
    pub peers: Vec<RawPeerEntry>,
    /// Peers found by resolving names (A/AAAA records).
    #[serde(default)]
    pub dns: Vec<RawPeerDns>,
}

/// `[[peer.peers]]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeerEntry {
    /// `http://host:port` (optionally with a path prefix before `/jobe/...`).
    pub url: String,
    /// Relative share of forwarded runs (1..=1000, default 1).
    pub weight: Option<u32>,
    /// The key this peer accepts, if not `peer.key`.
    pub key: Option<String>,
}

/// `[[peer.dns]]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeerDns {
    /// A host name; every A/AAAA address becomes a peer `http://<addr>:<port>`.
    pub name: String,
    pub port: u16,
    pub weight: Option<u32>,
    pub key: Option<String>,
    /// Re-resolve every this many seconds (default 30).
    pub refresh_secs: Option<f64>,
}

/// One static peer, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEntry {
    /// Base URL without a trailing `/`.
    pub url: String,
    pub weight: u32,
    /// The key this peer accepts.
    pub key: PeerKey,
}

/// One DNS name, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsEntry {
    pub name: String,
    pub port: u16,
    pub weight: u32,
    /// The key the peers behind this name accept.
    pub key: PeerKey,
    pub refresh: Duration,
}

/// The validated `[peer]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerConfig {
    pub enabled: bool,
    /// `None`: no key; hop-marked requests are refused and nothing is forwarded.
    pub key: Option<PeerKey>,
    pub forward_queue_wait: Duration,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub cooldown: Duration,
    pub max_attempts: u32,
    pub request_timeout: Duration,
    pub forwarded_queue_wait: Duration,
    pub peers: Vec<PeerEntry>,
    pub dns: Vec<DnsEntry>,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            enabled: false,
            key: None,
            forward_queue_wait: Duration::ZERO,
            probe_interval: Duration::from_millis(1000),
            probe_timeout: Duration::from_millis(500),
            rise: 2,
            fall: 3,
            cooldown: Duration::from_millis(5000),
            max_attempts: 3,
            request_timeout: Duration::from_secs(150),
            forwarded_queue_wait: Duration::from_millis(1000),
            peers: Vec::new(),
            dns: Vec::new(),
        }
    }
}

/// A key goes into an HTTP header: visible ASCII, 8..=256 characters.
fn check_key(setting: &'static str, key: &str) -> Result<PeerKey, InvalidPeerSetting> {
    PeerKey::parse(key).ok_or_else(|| {
        invalid(
            setting,
            "must be 8 to 256 visible ASCII characters (no spaces)",
        )
    })
}

fn ms(
    setting: &'static str,
    v: Option<u64>,
    default: Duration,
    min: u64,
    max: u64,
) -> Result<Duration, InvalidPeerSetting> {
    match v {
        None => Ok(default),
        Some(v) if (min..=max).contains(&v) => Ok(Duration::from_millis(v)),
        Some(_) => Err(invalid(
            setting,
            format!("must be between {min} and {max} ms"),
        )),
    }
}

fn weight(setting: &'static str, w: Option<u32>) -> Result<u32, InvalidPeerSetting> {
    match w.unwrap_or(1) {
        w @ 1..=1000 => Ok(w),
        _ => Err(invalid(setting, "must be between 1 and 1000")),
    }
}

/// Checks a peer URL: `http://host[:port][/prefix]`, no query. Returns it without a trailing `/`.
pub(crate) fn check_url(url: &str) -> Result<String, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "{url:?}: https is not supported between peers; use http on a private network"
            ));
        }
        _ => return Err(format!("{url:?} must start with http://")),
    }
    if uri.authority().is_none() {
        return Err(format!("{url:?} has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("{url:?} must not have a query"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// A peer's own key, else the shared one. With neither, peer mode is off (`enabled` needs the
/// shared key), so nothing is ever sent to the peer: an empty key.
fn own_or_shared(
    setting: &'static str,
    own: Option<&str>,
    shared: Option<&PeerKey>,
) -> Result<PeerKey, InvalidPeerSetting> {
    match (own, shared) {
        (Some(k), _) => check_key(setting, k),
        (None, Some(shared)) => Ok(shared.clone()),
        (None, None) => Ok(PeerKey::empty()),
    }
}

/// `[[peer.peers]]`, validated.
fn peer_entries(
    raw: Vec<RawPeerEntry>,
    shared: Option<&PeerKey>,
) -> Result<Vec<PeerEntry>, InvalidPeerSetting> {
    let mut peers = Vec::new();
    for p in raw {
        let url = check_url(&p.url).map_err(|r| invalid("peer.peers.url", r))?;
        let key = own_or_shared("peer.peers.key", p.key.as_deref(), shared)?;
        if peers.iter().any(|q: &PeerEntry| q.url == url) {
            return Err(invalid("peer.peers.url", format!("{url} is listed twice")));
        }
        peers.push(PeerEntry {
            url,
            weight: weight("peer.peers.weight", p.weight)?,
            key,
        });
    }
    Ok(peers)
}

/// `[[peer.dns]]`, validated.
fn dns_entries(
    raw: Vec<RawPeerDns>,
    shared: Option<&PeerKey>,
) -> Result<Vec<DnsEntry>, InvalidPeerSetting> {
    let mut dns = Vec::new();
    for e in raw {
        if e.name.is_empty() || e.name.len() > 253 || e.name.contains(['/', ':', ' ']) {
            return Err(invalid(
                "peer.dns.name",
                format!("{:?} is not a host name", e.name),
            ));
        }
        if e.port == 0 {
            return Err(invalid("peer.dns.port", "must not be 0"));
        }
        let key = own_or_shared("peer.dns.key", e.key.as_deref(), shared)?;
        let refresh = e.refresh_secs.unwrap_or(30.0);
        if !(1.0..=86_400.0).contains(&refresh) {
            return Err(invalid(
                "peer.dns.refresh_secs",
                "must be between 1 and 86400 seconds",
            ));
        }
        dns.push(DnsEntry {
            name: e.name,
            port: e.port,
            weight: weight("peer.dns.weight", e.weight)?,
            key,
            refresh: Duration::from_secs_f64(refresh),
        });
    }
    Ok(dns)
}

impl TryFrom<RawPeer> for PeerConfig {
    type Error = InvalidPeerSetting;

    fn try_from(raw: RawPeer) -> Result<PeerConfig, InvalidPeerSetting> {
        let d = PeerConfig::default();
        let enabled = raw.enabled.unwrap_or(false);
        let key = match &raw.key {
            Some(k) => Some(check_key("peer.key", k)?),
            None => None,
        };
        if enabled && key.is_none() {
            return Err(invalid(
                "peer.key",
                "must be set when peer mode is enabled (peers authenticate with it)",
            ));
        }
        if enabled && raw.peers.is_empty() && raw.dns.is_empty() {
            return Err(invalid(
                "peer.enabled",
                "peer mode needs at least one [[peer.peers]] or [[peer.dns]] entry",
            ));
        }
        let peers = peer_entries(raw.peers, key.as_ref())?;
        let dns = dns_entries(raw.dns, key.as_ref())?;
        let probe_interval = ms(
            "peer.probe_interval_ms",
            raw.probe_interval_ms,
            d.probe_interval,
            50,
            600_000,
        )?;
        let probe_timeout = ms(
            "peer.probe_timeout_ms",
            raw.probe_timeout_ms,
            d.probe_timeout,
            10,
            60_000,
        )?;
        if probe_timeout > probe_interval {
            return Err(invalid(
                "peer.probe_timeout_ms",
                "must not exceed peer.probe_interval_ms",
            ));
        }
        let rise = raw.rise.unwrap_or(d.rise);
        if !(1..=100).contains(&rise) {
            return Err(invalid("peer.rise", "must be between 1 and 100"));
        }
        let fall = raw.fall.unwrap_or(d.fall);
        if !(1..=100).contains(&fall) {
            return Err(invalid("peer.fall", "must be between 1 and 100"));
        }
        let max_attempts = raw.max_attempts.unwrap_or(d.max_attempts);
        if !(1..=10).contains(&max_attempts) {
            return Err(invalid("peer.max_attempts", "must be between 1 and 10"));
        }
        let request_timeout = match raw.request_timeout_secs {
            None => d.request_timeout,
            Some(v) if (0.1..=3600.0).contains(&v) => Duration::from_secs_f64(v),
            Some(_) => {
                return Err(invalid(
                    "peer.request_timeout_secs",
                    "must be between 0.1 and 3600 seconds",
                ));
            }
        };
        Ok(PeerConfig {
            enabled,
            key,
            forward_queue_wait: ms(
                "peer.forward_queue_wait_ms",
                raw.forward_queue_wait_ms,
                d.forward_queue_wait,
                0,
                3_600_000,
            )?,
            probe_interval,
            probe_timeout,
            rise,
            fall,
            cooldown: ms(
                "peer.cooldown_ms",
                raw.cooldown_ms,
                d.cooldown,
                0,
                3_600_000,
            )?,
            max_attempts,
            request_timeout,
            forwarded_queue_wait: ms(
                "peer.forwarded_queue_wait_ms",
                raw.forwarded_queue_wait_ms,
                d.forwarded_queue_wait,
                0,
                3_600_000,
            )?,
            peers,
            dns,
        })
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). `[peer]` defaults and validation messages.
    use super::*;

    fn parse(text: &str) -> Result<PeerConfig, InvalidPeerSetting> {
        PeerConfig::try_from(toml::from_str::<RawPeer>(text).expect("toml"))
    }

    #[test]
    fn test_peer_defaults_and_full_section() {
        assert_eq!(parse("").unwrap(), PeerConfig::default());
        let c = parse(
            "enabled = true\nkey = \"sharedsecret\"\nmax_attempts = 2\n\
             [[peers]]\nurl = \"http://10.0.0.2:4000/\"\nweight = 3\n\
             [[peers]]\nurl = \"http://10.0.0.3:4000\"\nkey = \"otherkey1\"\n\
             [[dns]]\nname = \"runners.example\"\nport = 4000\nrefresh_secs = 10.0\n",
        )
        .unwrap();
        assert!(c.enabled);
        assert_eq!(c.peers[0].url, "http://10.0.0.2:4000");
        let key = |k: &PeerKey| k.header().as_bytes().to_vec();
        assert_eq!(
            (c.peers[0].weight, key(&c.peers[0].key)),
            (3, b"sharedsecret".to_vec())
        );
        assert_eq!(key(&c.peers[1].key), b"otherkey1");
        assert_eq!(key(&c.dns[0].key), b"sharedsecret");
        assert_eq!(c.dns[0].refresh, Duration::from_secs(10));
        assert_eq!(c.max_attempts, 2);
    }

    #[test]
    fn test_peer_invalid_values_name_the_setting() {
        let base = "enabled = true\nkey = \"sharedsecret\"\n";
        let peer = "[[peers]]\nurl = \"http://a:1\"\n";
        for (text, setting) in [
            (
                "enabled = true\n[[peers]]\nurl = \"http://a:1\"\n".to_owned(),
                "peer.key",
            ),
            (base.to_owned(), "peer.enabled"),
            ("key = \"short\"".to_owned(), "peer.key"),
            (
                format!("{base}[[peers]]\nurl = \"https://a:1\"\n"),
                "peer.peers.url",
            ),
            (
                format!("{base}[[peers]]\nurl = \"a:1\"\n"),
                "peer.peers.url",
            ),
            (format!("{base}{peer}{peer}"), "peer.peers.url"),
            (
                format!("{base}[[peers]]\nurl = \"http://a:1\"\nweight = 0\n"),
                "peer.peers.weight",
            ),
            (
                format!("{base}[[dns]]\nname = \"x\"\nport = 0\n"),
                "peer.dns.port",
            ),
            (
                format!("{base}probe_timeout_ms = 2000\n{peer}"),
                "peer.probe_timeout_ms",
            ),
            (format!("{base}fall = 0\n{peer}"), "peer.fall"),
            (
                format!("{base}max_attempts = 11\n{peer}"),
                "peer.max_attempts",
            ),
        ] {
            match parse(&text) {
                Err(InvalidPeerSetting { setting: s, .. }) => assert_eq!(s, setting, "{text}"),
                other => panic!("{text}: expected invalid {setting}, got {other:?}"),
            }
        }
    }
}
