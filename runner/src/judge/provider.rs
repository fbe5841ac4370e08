//! `Testsets`: the async front of the test-set store that the HTTP API and the judging of
//! submissions call. It adds the origin: a version that is not stored is fetched, checked and
//! stored once, however many submissions need it at the same moment (single flight).
//!
//! Owns: single flight (one in-flight fetch per version; callers that arrive meanwhile wait for
//! it and share its result, success or error; after it ends, nothing is remembered, so the next
//! miss after a failure tries again), running the blocking store work off the async threads,
//! and the counters for metrics (hits, fetches, fetch failures, unknown versions).
//!
//! Must not: hold a lock across an `.await`, keep a failed fetch's error for later callers, or
//! read an upload or a fetched archive into memory (both are spooled to a file first).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hyper::body::Body;
use tokio::sync::OnceCell;

use super::origin::{Origin, OriginError, SpoolError, spool_body};
use super::testset::{Lease, Put, Spool, TestsetError, TestsetId, TestsetStore};
use crate::sync::lock;
use crate::telemetry::error_chain;

/// Why `ensure` has no test set to give.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EnsureError {
    /// Not stored and no origin configured (HTTP 404 `unknown test set`).
    #[error("unknown test set {id}")]
    Unknown { id: TestsetId },
    /// The origin failed (the submission ends with IE; the next one tries again).
    #[error("test set {id} could not be fetched from the origin")]
    Origin {
        id: TestsetId,
        #[source]
        source: Arc<OriginError>,
    },
}

impl EnsureError {
    /// What the submission's client is told (the `compile.output` of its IE): the whole chain,
    /// except that a failure of the daemon's own store (whose messages name host paths) is only
    /// said to have happened; the log has the chain.
    pub fn public_message(&self) -> String {
        match self {
            EnsureError::Origin { source, .. } if source.is_internal() => {
                format!("{self}: storing it failed (an internal error of the judge)")
            }
            _ => error_chain(self),
        }
    }
}

/// Why an uploaded archive was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The body: too large (413) or broken off (400).
    #[error("reading the archive failed")]
    Body(#[source] SpoolError),
    /// The archive or the store (see `TestsetError::is_internal`).
    #[error(transparent)]
    Store(#[from] TestsetError),
    #[error("storing the archive failed")]
    Task(#[source] tokio::task::JoinError),
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TestsetCounters {
    /// `ensure` found the version stored.
    pub hits: u64,
    /// Fetches from the origin started (one per single flight).
    pub fetches: u64,
    pub fetch_failures: u64,
    /// `ensure` of a version not stored, without an origin.
    pub unknown: u64,
}

type Flight = Arc<OnceCell<Result<Lease, Arc<OriginError>>>>;

#[derive(Debug)]
struct Inner {
    store: TestsetStore,
    origin: Option<Origin>,
    inflight: Mutex<HashMap<TestsetId, Flight>>,
    hits: AtomicU64,
    fetches: AtomicU64,
    fetch_failures: AtomicU64,
    unknown: AtomicU64,
}

/// The store plus the origin. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Testsets {
    inner: Arc<Inner>,
}

impl Testsets {
    pub fn new(store: TestsetStore, origin: Option<Origin>) -> Testsets {
        Testsets {
            inner: Arc::new(Inner {
                store,
                origin,
                inflight: Mutex::new(HashMap::new()),
                hits: AtomicU64::new(0),
                fetches: AtomicU64::new(0),
                fetch_failures: AtomicU64::new(0),
                unknown: AtomicU64::new(0),
            }),
        }
    }

    /// The store (for `get`, `delete` and `stats`, which are quick and need no origin).
    pub fn store(&self) -> &TestsetStore {
        &self.inner.store
    }

    /// Whether missing versions are fetched from an origin (without one, a missing version is
    /// `unknown test set` at once).
    pub fn has_origin(&self) -> bool {
        self.inner.origin.is_some()
    }

    pub fn counters(&self) -> TestsetCounters {
        let i = &self.inner;
        TestsetCounters {
            hits: i.hits.load(Ordering::Relaxed),
            fetches: i.fetches.load(Ordering::Relaxed),
            fetch_failures: i.fetch_failures.load(Ordering::Relaxed),
            unknown: i.unknown.load(Ordering::Relaxed),
        }
    }

    /// A lease on `id`: from the store, or else fetched from the origin (single flight).
    pub async fn ensure(&self, id: &TestsetId) -> Result<Lease, EnsureError> {
        let inner = &self.inner;
        if let Some(lease) = inner.store.get(id) {
            inner.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(lease);
        }
        let Some(origin) = &inner.origin else {
            inner.unknown.fetch_add(1, Ordering::Relaxed);
            return Err(EnsureError::Unknown { id: id.clone() });
        };
        let flight = lock(&inner.inflight).entry(id.clone()).or_default().clone();
        // The first caller runs the fetch; the others wait here for its result. Should that
        // caller be dropped mid-way, the next waiter runs it (tokio's OnceCell).
        let result = flight
            .get_or_init(|| async {
                // A flight that ended just before this one began may have stored it.
                if let Some(lease) = inner.store.get(id) {
                    return Ok(lease);
                }
                inner.fetches.fetch_add(1, Ordering::Relaxed);
                let fetched = self.fetch(origin, id).await;
                match &fetched {
                    Ok(_) => tracing::info!(testset = %id, "test set fetched from the origin"),
                    Err(e) => {
                        inner.fetch_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(testset = %id, error = %error_chain(e), "fetching a test set failed");
                    }
                }
                fetched.map_err(Arc::new)
            })
            .await
            .clone();
        // The flight is over: forget it, so that the next miss starts a new one.
        {
            let mut map = lock(&inner.inflight);
            if map.get(id).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                map.remove(id);
            }
        }
        result.map_err(|source| EnsureError::Origin {
            id: id.clone(),
            source,
        })
    }

    /// Stores an uploaded archive (`PUT .../testsets/{version}`): the body goes to a spool
    /// file (at most the archive cap), then into the store.
    pub async fn put_body<B>(&self, id: &TestsetId, body: B) -> Result<Put, PutError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut spool = self.inner.store.spool()?;
        let max = self.inner.store.limits().max_bytes;
        spool_body(body, &mut spool, max)
            .await
            .map_err(PutError::Body)?;
        let (store, id) = (self.inner.store.clone(), id.clone());
        tokio::task::spawn_blocking(move || put_spool(&store, &id, spool))
            .await
            .map_err(PutError::Task)?
            .map_err(PutError::Store)
    }

    async fn fetch(&self, origin: &Origin, id: &TestsetId) -> Result<Lease, OriginError> {
        let store = &self.inner.store;
        let mut spool = store.spool().map_err(OriginError::Store)?;
        origin
            .fetch(id, &mut spool, store.limits().max_bytes)
            .await?;
        let (store, id) = (store.clone(), id.clone());
        let put = tokio::task::spawn_blocking(move || put_spool(&store, &id, spool))
            .await
            .map_err(OriginError::Task)?
            .map_err(OriginError::Store)?;
        Ok(put.lease)
    }
}

/// Puts the archive in `spool` (blocking), read from its start.
fn put_spool(store: &TestsetStore, id: &TestsetId, mut spool: Spool) -> Result<Put, TestsetError> {
    spool.rewind()?;
    store.put_archive(id, spool.file())
}

#[cfg(test)]
mod tests {
    //! Tier: unit + http (docs/testing.md). Single flight and failures against a real HTTP origin
    //! on 127.0.0.1, served by hyper in the test.
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Response, StatusCode};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::*;
    use crate::judge::archive::ArchiveLimits;
    use crate::judge::archive::tests::{file, gzip, tar};
    use crate::judge::origin::{OriginConfig, Secret, UrlTemplate};
    use crate::judge::testset::{PutStatus, TESTSETS_DIR};

    const TOKEN: &str = "s3cret-origin-token";

    /// The store's own failure reaches the client without its host path; the origin's do whole.
    #[test]
    fn test_public_message_hides_the_store() {
        let id = TestsetId::new("sum", "v1").unwrap();
        let store_failed = EnsureError::Origin {
            id: id.clone(),
            source: Arc::new(OriginError::Store(TestsetError::Io {
                op: "write",
                path: "/var/lib/runner/testsets/tmp/spool-1".into(),
                source: std::io::Error::from_raw_os_error(libc::ENOSPC),
            })),
        };
        let m = store_failed.public_message();
        assert!(!m.contains("/var/lib"), "{m}");
        assert!(m.contains("sum/v1") && m.contains("internal error"), "{m}");
        let refused = EnsureError::Origin {
            id,
            source: Arc::new(OriginError::Status(StatusCode::FORBIDDEN)),
        };
        assert_eq!(
            refused.public_message(),
            "test set sum/v1 could not be fetched from the origin: the origin answered HTTP 403 Forbidden"
        );
    }

    /// What the test origin answers for every request.
    #[derive(Clone)]
    struct Answer {
        status: StatusCode,
        body: Vec<u8>,
        delay: Duration,
    }

    /// Path and `Authorization` header of each request.
    type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

    /// A real HTTP server on 127.0.0.1 that counts requests and records their path and
    /// `Authorization` header.
    struct TestOrigin {
        addr: SocketAddr,
        requests: Arc<AtomicUsize>,
        seen: Seen,
        answer: Arc<Mutex<Answer>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl TestOrigin {
        async fn start(addr: SocketAddr, answer: Answer) -> TestOrigin {
            let listener = TcpListener::bind(addr).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let requests = Arc::new(AtomicUsize::new(0));
            let seen = Arc::new(Mutex::new(Vec::new()));
            let answer = Arc::new(Mutex::new(answer));
            let (r, s, a) = (requests.clone(), seen.clone(), answer.clone());
            let task = tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (r, s, a) = (r.clone(), s.clone(), a.clone());
                    tokio::spawn(async move {
                        let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                            let (r, s, a) = (r.clone(), s.clone(), a.clone());
                            async move {
                                r.fetch_add(1, Ordering::SeqCst);
                                let auth = req
                                    .headers()
                                    .get(hyper::header::AUTHORIZATION)
                                    .map(|v| v.to_str().unwrap().to_owned());
                                lock(&s).push((req.uri().to_string(), auth));
                                let answer = lock(&a).clone();
                                tokio::time::sleep(answer.delay).await;
                                let mut resp = Response::new(Full::new(Bytes::from(answer.body)));
                                *resp.status_mut() = answer.status;
                                Ok::<_, Infallible>(resp)
                            }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
            TestOrigin {
                addr,
                requests,
                seen,
                answer,
                task,
            }
        }

        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }

        fn set(&self, answer: Answer) {
            *lock(&self.answer) = answer;
        }
    }

    impl Drop for TestOrigin {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    fn ok(body: Vec<u8>, delay_ms: u64) -> Answer {
        Answer {
            status: StatusCode::OK,
            body,
            delay: Duration::from_millis(delay_ms),
        }
    }

    fn archive() -> Vec<u8> {
        gzip(&tar(&[
            file("1.in", b"1 2\n"),
            file("1.out", b"3\n"),
            file("2.in", b"5 5\n"),
            file("2.out", b"10\n"),
        ]))
    }

    fn testsets(dir: &std::path::Path, origin: Option<SocketAddr>, timeout: Duration) -> Testsets {
        let store = TestsetStore::open(
            dir.join(TESTSETS_DIR),
            1 << 20,
            ArchiveLimits {
                max_bytes: 64 << 10,
                max_cases: 10,
            },
        )
        .unwrap();
        let origin = origin.map(|addr| {
            Origin::new(OriginConfig {
                url: UrlTemplate::parse(&format!("http://{addr}/ts/{{problem}}/{{version}}.tgz"))
                    .unwrap(),
                token: Some(Secret::new(TOKEN.into())),
                timeout,
            })
        });
        Testsets::new(store, origin)
    }

    fn id(p: &str, v: &str) -> TestsetId {
        TestsetId::new(p, v).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn test_single_flight_twenty_callers_one_fetch() {
        let tmp = tempfile::tempdir().unwrap();
        // The origin takes a while, so all 20 callers arrive during the one fetch.
        let origin = TestOrigin::start("127.0.0.1:0".parse().unwrap(), ok(archive(), 300)).await;
        let ts = testsets(tmp.path(), Some(origin.addr), Duration::from_secs(10));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let ts = ts.clone();
                tokio::spawn(async move { ts.ensure(&id("sum", "v1")).await })
            })
            .collect();
        let mut shas = Vec::new();
        for t in tasks {
            let lease = t.await.unwrap().expect("fetched");
            assert_eq!(lease.manifest().cases.len(), 2);
            shas.push(lease.manifest().sha256.clone());
        }
        assert!(shas.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(origin.requests(), 1, "single flight");
        assert_eq!(
            *lock(&origin.seen),
            [("/ts/sum/v1.tgz".to_owned(), Some(format!("Bearer {TOKEN}")))]
        );
        // Stored now: the next ensure is a hit, no request.
        let lease = ts.ensure(&id("sum", "v1")).await.unwrap();
        let mut input = String::new();
        std::io::Read::read_to_string(&mut lease.open_input(1).unwrap(), &mut input).unwrap();
        assert_eq!(input, "5 5\n");
        assert_eq!(origin.requests(), 1);
        let c = ts.counters();
        assert_eq!((c.fetches, c.fetch_failures, c.unknown), (1, 0, 0));
        assert!(c.hits >= 1);
        assert!(lock(&ts.inner.inflight).is_empty());
        // Another version is another fetch.
        ts.ensure(&id("sum", "v2")).await.unwrap();
        assert_eq!(origin.requests(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn test_origin_down_then_up() {
        let tmp = tempfile::tempdir().unwrap();
        // A port with nothing listening: bound, then closed.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let ts = testsets(tmp.path(), Some(addr), Duration::from_secs(10));
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let ts = ts.clone();
                tokio::spawn(async move { ts.ensure(&id("p", "v")).await })
            })
            .collect();
        for t in tasks {
            match t.await.unwrap() {
                Err(EnsureError::Origin { source, .. }) => {
                    assert!(matches!(*source, OriginError::Connect(_)), "{source:?}")
                }
                other => panic!("expected a connect failure, got {other:?}"),
            }
        }
        assert!(ts.counters().fetch_failures >= 1);
        // No negative caching: once the origin is up, the next call fetches.
        let origin = TestOrigin::start(addr, ok(archive(), 0)).await;
        let lease = ts.ensure(&id("p", "v")).await.expect("fetched once up");
        assert_eq!(lease.manifest().cases.len(), 2);
        assert_eq!(origin.requests(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn test_origin_failures_then_retry() {
        let tmp = tempfile::tempdir().unwrap();
        let origin = TestOrigin::start(
            "127.0.0.1:0".parse().unwrap(),
            Answer {
                status: StatusCode::NOT_FOUND,
                body: Vec::new(),
                delay: Duration::ZERO,
            },
        )
        .await;
        let ts = testsets(tmp.path(), Some(origin.addr), Duration::from_millis(500));
        let v = id("p", "v");
        let origin_error = |r: Result<Lease, EnsureError>| match r {
            Err(EnsureError::Origin { source, .. }) => source,
            other => panic!("expected an origin error, got {other:?}"),
        };
        let e = origin_error(ts.ensure(&v).await);
        assert!(
            matches!(*e, OriginError::Status(StatusCode::NOT_FOUND)),
            "{e:?}"
        );
        // A bad archive is refused, and nothing is stored.
        origin.set(ok(b"<html>not a tar</html>".to_vec(), 0));
        let e = origin_error(ts.ensure(&v).await);
        assert!(
            matches!(&*e, OriginError::Store(s) if !s.is_internal()),
            "{e:?}"
        );
        assert_eq!(
            error_chain(&*e),
            "the origin's archive was not stored: test set p/v: not a readable tar archive: \
             failed to read entire block"
        );
        // More than the archive cap.
        origin.set(ok(vec![0; 100 << 10], 0));
        let e = origin_error(ts.ensure(&v).await);
        assert!(
            matches!(&*e, OriginError::Spool(SpoolError::TooLarge { max }) if *max == 64 << 10),
            "{e:?}"
        );
        // Too slow.
        origin.set(ok(archive(), 2000));
        let e = origin_error(ts.ensure(&v).await);
        assert!(matches!(*e, OriginError::Timeout(_)), "{e:?}");
        assert_eq!(ts.counters().fetch_failures, 4);
        assert_eq!(ts.store().stats().testsets, 0);
        // Each failure was one request, and the next call tries again: now it works.
        origin.set(ok(archive(), 0));
        ts.ensure(&v).await.expect("fetched");
        assert_eq!(origin.requests(), 5);
        let spooled = std::fs::read_dir(tmp.path().join("testsets/tmp"))
            .unwrap()
            .count();
        assert_eq!(spooled, 0, "spool files removed");
    }

    #[tokio::test]
    async fn test_without_origin_unknown() {
        let tmp = tempfile::tempdir().unwrap();
        let ts = testsets(tmp.path(), None, Duration::from_secs(1));
        let e = ts.ensure(&id("p", "v")).await.unwrap_err();
        assert!(matches!(e, EnsureError::Unknown { .. }));
        assert_eq!(e.to_string(), "unknown test set p/v");
        assert_eq!(ts.counters().unknown, 1);
    }

    #[tokio::test]
    async fn test_put_body() {
        let tmp = tempfile::tempdir().unwrap();
        let ts = testsets(tmp.path(), None, Duration::from_secs(1));
        let v = id("p", "v");
        let put = ts
            .put_body(&v, Full::new(Bytes::from(archive())))
            .await
            .unwrap();
        assert_eq!(put.status, PutStatus::Created);
        assert_eq!(put.manifest().cases.len(), 2);
        drop(put);
        let put = ts
            .put_body(&v, Full::new(Bytes::from(archive())))
            .await
            .unwrap();
        assert_eq!(put.status, PutStatus::Unchanged);
        drop(put);
        assert!(ts.ensure(&v).await.is_ok());
        // Over the cap: refused while reading (413), nothing stored.
        let e = ts
            .put_body(
                &id("p", "big"),
                Full::new(Bytes::from(vec![0u8; 100 << 10])),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(e, PutError::Body(SpoolError::TooLarge { .. })),
            "{e:?}"
        );
        let e = ts
            .put_body(&id("p", "bad"), Full::new(Bytes::from_static(b"nope")))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, PutError::Store(s) if !s.is_internal()),
            "{e:?}"
        );
        assert_eq!(ts.store().stats().testsets, 1);
        let spooled = std::fs::read_dir(tmp.path().join("testsets/tmp"))
            .unwrap()
            .count();
        assert_eq!(spooled, 0);
    }
}
