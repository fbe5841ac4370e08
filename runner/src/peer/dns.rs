//! Peers found by resolving names: every A/AAAA address of a `[[peer.dns]]` name is a peer
//! `http://<addr>:<port>`, re-resolved every `refresh`; new addresses join (down until probed),
//! gone ones leave. SRV records are not supported (docs/peers.md).
//!
//! Owns: the DNS tasks and the list updates they make.
//! Must not: drop the last answer on a failed lookup, or touch peers that did not come from DNS.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::config::DnsEntry;
use super::{Peer, Shared};
use crate::sync::write;

/// Resolves `e.name` (A/AAAA) every `e.refresh`; adds new addresses as peers, removes gone ones.
pub(super) async fn dns_loop(sh: Arc<Shared>, e: DnsEntry) {
    loop {
        match tokio::net::lookup_host((e.name.as_str(), e.port)).await {
            Ok(addrs) => {
                let urls: BTreeSet<String> = addrs.map(|a| format!("http://{a}")).collect();
                update_dns(&sh, &e, &urls);
            }
            Err(err) => tracing::warn!(
                name = %e.name,
                error = %err,
                "peer DNS lookup failed; keeping the last answer"
            ),
        }
        tokio::time::sleep(e.refresh).await;
    }
}

/// Makes the peers that came from `e.name` exactly `urls`.
fn update_dns(sh: &Shared, e: &DnsEntry, urls: &BTreeSet<String>) {
    let mut list = write(&sh.list);
    list.retain(|p| {
        let keep = p.origin.as_deref() != Some(e.name.as_str()) || urls.contains(&p.url);
        if !keep {
            tracing::info!(peer = %p.url, name = %e.name, "peer gone from DNS");
            sh.metrics.forget(&p.url);
            p.down.notify_waiters();
        }
        keep
    });
    for u in urls {
        if list.iter().any(|p| &p.url == u) {
            continue;
        }
        tracing::info!(peer = %u, name = %e.name, "peer found in DNS");
        list.push(Peer::new(
            u.clone(),
            e.weight,
            e.key.clone(),
            Some(e.name.clone()),
        ));
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). DNS list updates.
    use std::time::Duration;

    use super::super::{PeerConfig, PeerKey, Peers};
    use super::*;
    use crate::sync::read;

    #[tokio::test]
    async fn test_dns_update_adds_and_removes() {
        let cfg = PeerConfig::default();
        let peers = Peers::start(cfg, Duration::from_secs(1), 10);
        let e = DnsEntry {
            name: "runners.test".into(),
            port: 4000,
            weight: 2,
            key: PeerKey::parse("k1234567").unwrap(),
            refresh: Duration::from_secs(1),
        };
        let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
        update_dns(
            &peers.shared,
            &e,
            &set(&["http://10.0.0.1:4000", "http://10.0.0.2:4000"]),
        );
        update_dns(
            &peers.shared,
            &e,
            &set(&["http://10.0.0.2:4000", "http://[::1]:4000"]),
        );
        let urls: Vec<String> = read(&peers.shared.list)
            .iter()
            .map(|p| p.url.clone())
            .collect();
        assert_eq!(urls, ["http://10.0.0.2:4000", "http://[::1]:4000"]);
        assert!(read(&peers.shared.list).iter().all(|p| p.weight == 2));
    }
}
