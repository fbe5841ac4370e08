//! Routing: one `match (Method, segments)` over Jobe's routes (docs/jobe-api.md §1.1, §1.7).
//!
//! Base `/jobe/index.php/restapi/`; empty segments are ignored, so a double slash (from a
//! `jobe_host` with a trailing `/`) and a trailing slash both work. Everything not routed is
//! 404 `""`, as in Jobe (not 405).
//!
//! Not Jobe: `GET`/`HEAD /metrics` and `/health` at the root, outside Jobe's base path, and
//! judge mode under `/judge/v1/` (docs/judge.md, "HTTP API"; names in its paths are checked by
//! the handler, so that a bad one gets a 400 naming it).
//!
//! Must not: read bodies or touch state; this is pure and unit-tested.

use hyper::Method;

use super::error::ApiError;
use crate::cache::is_valid_id;

const BASE: [&str; 3] = ["jobe", "index.php", "restapi"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Languages,
    Runs,
    PutFile(String),
    HeadFile(String),
    /// A CORS preflight: 204, no body.
    Preflight,
    /// `GET /metrics` (Prometheus text format). Not Jobe.
    Metrics,
    /// `GET /health` (ready / draining). Not Jobe.
    Health,
    /// `GET /peer/status` (capacity and local languages, for peers). Not Jobe.
    PeerStatus,
    /// Judge mode (`/judge/v1/...`). Not Jobe.
    Judge(JudgeRoute),
}

/// The routes of judge mode's API. Names are as written in the path (checked by the handler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JudgeRoute {
    /// `PUT /judge/v1/problems/{problem}/testsets/{version}`
    PutTestset(String, String),
    /// `GET` (or `HEAD`) of the same path.
    GetTestset(String, String),
    /// `DELETE` of the same path.
    DeleteTestset(String, String),
    /// `POST /judge/v1/submissions`
    Submit,
    /// `GET /judge/v1/submissions/{id}`
    GetSubmission(String),
    /// `GET /judge/v1/submissions/{id}/events` (Server-Sent Events)
    Events(String),
    /// `DELETE /judge/v1/submissions/{id}`
    Cancel(String),
}

impl JudgeRoute {
    fn label(&self) -> &'static str {
        match self {
            JudgeRoute::PutTestset(..) => "judge_put_testset",
            JudgeRoute::GetTestset(..) => "judge_get_testset",
            JudgeRoute::DeleteTestset(..) => "judge_delete_testset",
            JudgeRoute::Submit => "judge_submit",
            JudgeRoute::GetSubmission(_) => "judge_get_submission",
            JudgeRoute::Events(_) => "judge_events",
            JudgeRoute::Cancel(_) => "judge_cancel",
        }
    }
}

/// Judge mode's base path.
pub(crate) const JUDGE_BASE: [&str; 2] = ["judge", "v1"];

impl Route {
    /// The fixed name used as the `route` label of `runner_http_requests_total`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Route::Languages => "languages",
            Route::Runs => "runs",
            Route::PutFile(_) => "put_file",
            Route::HeadFile(_) => "head_file",
            Route::Preflight => "preflight",
            Route::Metrics => "metrics",
            Route::Health => "health",
            Route::PeerStatus => "peer_status",
            Route::Judge(j) => j.label(),
        }
    }
}

/// The `route` label of a request that matched no route (or had a bad URI).
pub(crate) const UNROUTED: &str = "unrouted";

/// Jobe's `permittedURIChars` (`a-z 0-9~%.:_\-`, case-insensitive) plus the separator `/`.
fn is_permitted_uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'~' | b'%' | b'.' | b':' | b'_' | b'-' | b'/')
}

/// Maps a request line to a route. `preflight` is whether `Access-Control-Request-Method` is set.
pub(crate) fn route(method: &Method, path: &str, preflight: bool) -> Result<Route, ApiError> {
    if !path.bytes().all(is_permitted_uri_char) {
        return Err(ApiError::BadUri);
    }
    if method == Method::OPTIONS {
        return if preflight {
            Ok(Route::Preflight)
        } else {
            Err(ApiError::NoRoute)
        };
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get_or_head = method == Method::GET || method == Method::HEAD;
    match segments.as_slice() {
        ["metrics"] if get_or_head => return Ok(Route::Metrics),
        ["health"] if get_or_head => return Ok(Route::Health),
        ["peer", "status"] if get_or_head => return Ok(Route::PeerStatus),
        _ => {}
    }
    if let Some(rest) = segments.strip_prefix(&JUDGE_BASE[..]) {
        return judge_route(method, rest).map(Route::Judge);
    }
    let Some(rest) = segments.strip_prefix(&BASE[..]) else {
        return Err(ApiError::NoRoute);
    };
    match (method, rest) {
        (&Method::GET, ["languages"]) => Ok(Route::Languages),
        (&Method::POST, ["runs"]) => Ok(Route::Runs),
        (&Method::PUT, ["files", id]) if is_valid_id(id) => Ok(Route::PutFile((*id).to_owned())),
        (&Method::HEAD, ["files", id]) if is_valid_id(id) => Ok(Route::HeadFile((*id).to_owned())),
        _ => Err(ApiError::NoRoute),
    }
}

/// Whether `path` is under judge mode's base path (its errors then take that API's form, also
/// for a path or method it does not serve).
pub(crate) fn is_judge_path(path: &str) -> bool {
    path.split('/')
        .filter(|s| !s.is_empty())
        .take(JUDGE_BASE.len())
        .eq(JUDGE_BASE)
}

fn judge_route(method: &Method, rest: &[&str]) -> Result<JudgeRoute, ApiError> {
    let s = |x: &&str| (*x).to_owned();
    match (method, rest) {
        (&Method::PUT, ["problems", p, "testsets", v]) => Ok(JudgeRoute::PutTestset(s(p), s(v))),
        (&Method::GET | &Method::HEAD, ["problems", p, "testsets", v]) => {
            Ok(JudgeRoute::GetTestset(s(p), s(v)))
        }
        (&Method::DELETE, ["problems", p, "testsets", v]) => {
            Ok(JudgeRoute::DeleteTestset(s(p), s(v)))
        }
        (&Method::POST, ["submissions"]) => Ok(JudgeRoute::Submit),
        (&Method::GET | &Method::HEAD, ["submissions", id]) => Ok(JudgeRoute::GetSubmission(s(id))),
        (&Method::GET, ["submissions", id, "events"]) => Ok(JudgeRoute::Events(s(id))),
        (&Method::DELETE, ["submissions", id]) => Ok(JudgeRoute::Cancel(s(id))),
        _ => Err(ApiError::NoRoute),
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Every route, 404s and bad URI characters.
    use super::*;

    const B: &str = "/jobe/index.php/restapi";

    fn r(m: Method, p: &str) -> Result<Route, ApiError> {
        route(&m, p, false)
    }

    #[test]
    fn test_judge_paths() {
        for p in [
            "/judge/v1",
            "/judge/v1/",
            "//judge/v1/submissions",
            "/judge/v1/nope/x",
        ] {
            assert!(is_judge_path(p), "{p}");
        }
        for p in [
            "/judge",
            "/judge/v2/submissions",
            "/judgev1",
            "/x/judge/v1",
            B,
        ] {
            assert!(!is_judge_path(p), "{p}");
        }
    }

    #[test]
    fn test_routes() {
        assert_eq!(
            r(Method::GET, &format!("{B}/languages")),
            Ok(Route::Languages)
        );
        assert_eq!(
            r(Method::GET, &format!("{B}/languages/")),
            Ok(Route::Languages)
        );
        assert_eq!(r(Method::POST, &format!("{B}/runs")), Ok(Route::Runs));
        assert_eq!(r(Method::POST, &format!("{B}/runs/")), Ok(Route::Runs));
        assert_eq!(r(Method::POST, &format!("/{B}/runs")), Ok(Route::Runs));
        assert_eq!(
            r(Method::POST, "/jobe//index.php/restapi//runs"),
            Ok(Route::Runs)
        );
        assert_eq!(
            r(Method::PUT, &format!("{B}/files/ab")),
            Ok(Route::PutFile("ab".into()))
        );
        assert_eq!(
            r(Method::HEAD, &format!("{B}/files/Abc123")),
            Ok(Route::HeadFile("Abc123".into()))
        );
    }

    /// The paths other modules build (peers call them) are the ones routed here.
    #[test]
    fn test_shared_paths_route() {
        assert_eq!(format!("/{}", BASE.join("/")), crate::job::wire::BASE_PATH);
        assert_eq!(
            r(Method::GET, crate::dispatch::STATUS_PATH),
            Ok(Route::PeerStatus)
        );
    }

    #[test]
    fn test_judge_routes() {
        let j = |m: Method, p: &str| r(m, p);
        let t = || ("sum".to_owned(), "v1".to_owned());
        assert_eq!(
            j(Method::PUT, "/judge/v1/problems/sum/testsets/v1"),
            Ok(Route::Judge(JudgeRoute::PutTestset(t().0, t().1)))
        );
        assert_eq!(
            j(Method::GET, "/judge/v1/problems/sum/testsets/v1/"),
            Ok(Route::Judge(JudgeRoute::GetTestset(t().0, t().1)))
        );
        assert_eq!(
            j(Method::DELETE, "/judge/v1/problems/sum/testsets/v1"),
            Ok(Route::Judge(JudgeRoute::DeleteTestset(t().0, t().1)))
        );
        assert_eq!(
            j(Method::POST, "/judge/v1/submissions"),
            Ok(Route::Judge(JudgeRoute::Submit))
        );
        assert_eq!(
            j(Method::GET, "/judge/v1/submissions/a-1"),
            Ok(Route::Judge(JudgeRoute::GetSubmission("a-1".into())))
        );
        assert_eq!(
            j(Method::GET, "/judge/v1/submissions/a-1/events"),
            Ok(Route::Judge(JudgeRoute::Events("a-1".into())))
        );
        assert_eq!(
            j(Method::DELETE, "/judge/v1/submissions/a-1"),
            Ok(Route::Judge(JudgeRoute::Cancel("a-1".into())))
        );
        for (m, p) in [
            (Method::POST, "/judge/v1/problems/sum/testsets/v1"),
            (Method::GET, "/judge/v1/submissions"),
            (Method::PUT, "/judge/v1/submissions/a"),
            (Method::GET, "/judge/v2/submissions/a"),
            (Method::GET, "/judge/v1/problems/sum"),
        ] {
            assert_eq!(j(m.clone(), p), Err(ApiError::NoRoute), "{m} {p}");
        }
    }

    #[test]
    fn test_root_metrics_and_health() {
        for m in [Method::GET, Method::HEAD] {
            assert_eq!(r(m.clone(), "/metrics"), Ok(Route::Metrics));
            assert_eq!(r(m.clone(), "/health/"), Ok(Route::Health));
            assert_eq!(r(m.clone(), "/peer/status"), Ok(Route::PeerStatus));
        }
        assert_eq!(Route::Metrics.label(), "metrics");
        assert_eq!(Route::PutFile("a".into()).label(), "put_file");
    }

    /// Every route's label (and the unrouted one) is in the operator's reference.
    #[test]
    fn test_route_labels_are_documented() {
        let e = String::new;
        let all = [
            Route::Languages,
            Route::Runs,
            Route::PutFile(String::new()),
            Route::HeadFile(String::new()),
            Route::Preflight,
            Route::Metrics,
            Route::Health,
            Route::PeerStatus,
            Route::Judge(JudgeRoute::PutTestset(e(), e())),
            Route::Judge(JudgeRoute::GetTestset(e(), e())),
            Route::Judge(JudgeRoute::DeleteTestset(e(), e())),
            Route::Judge(JudgeRoute::Submit),
            Route::Judge(JudgeRoute::GetSubmission(e())),
            Route::Judge(JudgeRoute::Events(e())),
            Route::Judge(JudgeRoute::Cancel(e())),
        ];
        // Exhaustive on purpose: a new variant breaks this match, a reminder to list it above.
        for r in &all {
            match r {
                Route::Languages
                | Route::Runs
                | Route::PutFile(_)
                | Route::HeadFile(_)
                | Route::Preflight
                | Route::Metrics
                | Route::Health
                | Route::PeerStatus => {}
                Route::Judge(j) => match j {
                    JudgeRoute::PutTestset(..)
                    | JudgeRoute::GetTestset(..)
                    | JudgeRoute::DeleteTestset(..)
                    | JudgeRoute::Submit
                    | JudgeRoute::GetSubmission(_)
                    | JudgeRoute::Events(_)
                    | JudgeRoute::Cancel(_) => {}
                },
            }
        }
        let doc = include_str!("../../../docs/operations.md");
        for label in all.iter().map(Route::label).chain([UNROUTED]) {
            let label = format!("`{label}`");
            assert!(doc.contains(&label), "{label} is not in docs/operations.md");
        }
    }

    #[test]
    fn test_unrouted_is_404() {
        for (m, p) in [
            (Method::GET, format!("{B}/runs/1")),
            (Method::GET, format!("{B}/runs")),
            (Method::GET, format!("{B}/runresults/1")),
            (Method::POST, format!("{B}/files")),
            (Method::GET, format!("{B}/files/abcdefgh")),
            (Method::DELETE, format!("{B}/files/abcdefgh")),
            (Method::PUT, format!("{B}/languages")),
            (Method::PUT, format!("{B}/files/abc-def")),
            (Method::PUT, format!("{B}/files/")),
            (Method::PUT, format!("{B}/files/a/b")),
            (Method::GET, "/jobe/index.php".to_owned()),
            (Method::GET, "/jobe/index.php/restapi".to_owned()),
            (Method::GET, "/jobe/restapi/languages".to_owned()),
            (Method::GET, "/".to_owned()),
            (Method::POST, "/metrics".to_owned()),
            (Method::PUT, "/health".to_owned()),
            (Method::GET, format!("{B}/metrics")),
            (Method::GET, "/metrics/x".to_owned()),
        ] {
            assert_eq!(r(m.clone(), &p), Err(ApiError::NoRoute), "{m} {p}");
        }
    }

    #[test]
    fn test_bad_uri_chars_and_options() {
        assert_eq!(
            r(Method::GET, &format!("{B}/languages!")),
            Err(ApiError::BadUri)
        );
        assert_eq!(
            r(Method::GET, &format!("{B}/lang uages")),
            Err(ApiError::BadUri)
        );
        assert_eq!(
            r(Method::GET, &format!("{B}/files/a%41b")),
            Err(ApiError::NoRoute)
        );
        assert_eq!(
            route(&Method::OPTIONS, &format!("{B}/runs"), true),
            Ok(Route::Preflight)
        );
        assert_eq!(
            route(&Method::OPTIONS, "/anything", false),
            Err(ApiError::NoRoute)
        );
        assert_eq!(route(&Method::OPTIONS, "/x!", true), Err(ApiError::BadUri));
    }
}
