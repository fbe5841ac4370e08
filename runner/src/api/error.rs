//! `ApiError`: every way a request can fail, and the single mapping to an HTTP status and body
//! (docs/jobe-api.md §1.2, §1.15; differences in docs/jobe-compat.md).
//!
//! Bodies are JSON strings. Framework-style errors (no route, bad URI characters) have the body
//! `""`, as Jobe's. Internal errors never carry their cause to the client: the cause is logged
//! by the caller, the client gets a generic text with the request number to correlate.

use hyper::StatusCode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiError {
    /// 400 with the message verbatim (Jobe's own validation errors, and ours where Jobe gives 500).
    BadRequest(String),
    /// 400 `""`: the URI has characters outside Jobe's `permittedURIChars`.
    BadUri,
    /// 404 `""`: no such route (also OPTIONS without `Access-Control-Request-Method`).
    NoRoute,
    /// 404 from `runs`: a `file_list` file is not in the cache; CodeRunner then PUTs and retries.
    FilesMissing,
    /// 413: the body is larger than `ApiConfig::max_body_bytes`.
    TooLarge(u64),
    /// 403: API keys are required and none was sent.
    MissingKey,
    /// 403: API keys are required and this one is not configured.
    UnknownKey,
    /// 403: peer headers that the dispatcher refused (no peer key, or not this runner's).
    UnknownPeerKey,
    /// 401: the key's hourly run budget is spent (CodeRunner: "submission limit reached").
    RateLimited,
    /// 408: the request body did not arrive within `ApiConfig::body_read_timeout`.
    BodyTimeout,
    /// 500 with this exact client-facing message (Jobe's PUT write failure text).
    InternalWith(String),
    /// 500 with a generic message; the cause has been logged.
    Internal,
}

impl ApiError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::BadUri => StatusCode::BAD_REQUEST,
            ApiError::NoRoute | ApiError::FilesMissing => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MissingKey | ApiError::UnknownKey | ApiError::UnknownPeerKey => {
                StatusCode::FORBIDDEN
            }
            ApiError::RateLimited => StatusCode::UNAUTHORIZED,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::InternalWith(_) | ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message to JSON-encode as the body; `request` is the per-process request number.
    pub(crate) fn message(&self, request: u64) -> String {
        match self {
            ApiError::BadRequest(m) | ApiError::InternalWith(m) => m.clone(),
            ApiError::BadUri | ApiError::NoRoute => String::new(),
            ApiError::FilesMissing => {
                "One or more of the specified files is missing/unavailable".to_owned()
            }
            ApiError::TooLarge(max) => {
                format!("Request body too large (the limit is {max} bytes)")
            }
            ApiError::MissingKey => "Missing API key".to_owned(),
            ApiError::UnknownKey => "Unknown API key".to_owned(),
            ApiError::UnknownPeerKey => "Unknown peer key".to_owned(),
            ApiError::RateLimited => "Max RUN rate for this server exceeded".to_owned(),
            ApiError::BodyTimeout => "Request body not received in time".to_owned(),
            ApiError::Internal => format!("Server exception (internal error, request {request})"),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Status and body of every `ApiError`.
    use super::*;

    #[test]
    fn test_status_mapping() {
        let cases = [
            (ApiError::BadRequest("x".into()), 400, "x"),
            (ApiError::BadUri, 400, ""),
            (ApiError::NoRoute, 404, ""),
            (
                ApiError::FilesMissing,
                404,
                "One or more of the specified files is missing/unavailable",
            ),
            (ApiError::MissingKey, 403, "Missing API key"),
            (ApiError::UnknownKey, 403, "Unknown API key"),
            (ApiError::UnknownPeerKey, 403, "Unknown peer key"),
            (
                ApiError::RateLimited,
                401,
                "Max RUN rate for this server exceeded",
            ),
            (ApiError::InternalWith("put: x".into()), 500, "put: x"),
        ];
        for (e, status, msg) in cases {
            assert_eq!(e.status().as_u16(), status, "{e:?}");
            assert_eq!(e.message(1), msg);
        }
        assert_eq!(ApiError::TooLarge(10).status().as_u16(), 413);
        assert_eq!(ApiError::BodyTimeout.status().as_u16(), 408);
        assert!(ApiError::Internal.message(7).contains("request 7"));
    }
}
