//! `PUT /files/{id}` and `HEAD /files/{id}` (docs/jobe-api.md §1.5).
//!
//! Must not: log file contents.

use std::sync::Arc;

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;

use super::AppState;
use super::error::ApiError;

/// Standard alphabet; padding optional (PHP's strict `base64_decode` accepts unpadded input).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes the PUT body to the file contents, with Jobe's messages.
pub(crate) fn decode_put_body(id: &str, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("put: request body is not valid JSON: {e}")))?;
    let contents = match value.get("file_contents") {
        None | Some(Value::Null) => {
            return Err(ApiError::BadRequest(
                "put: missing file_contents parameter".to_owned(),
            ));
        }
        Some(v) => v,
    };
    let invalid =
        || ApiError::BadRequest(format!("put: contents of file {id} are not valid base-64"));
    let Value::String(s) = contents else {
        return Err(invalid());
    };
    // Tolerate line-wrapped base64 (MIME style); other characters are refused, as PHP's strict mode.
    let compact: Vec<u8> = s
        .bytes()
        .filter(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
        .collect();
    B64.decode(&compact).map_err(|_| invalid())
}

pub(crate) async fn put_file(
    state: &Arc<AppState>,
    id: String,
    body: &[u8],
) -> Result<(), ApiError> {
    let data = decode_put_body(&id, body)?;
    let cache = state.cache.clone();
    let id2 = id.clone();
    let res = tokio::task::spawn_blocking(move || cache.put(&id2, &data)).await;
    match res {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::error!(error = %e, source = ?std::error::Error::source(&e), file_id = %id, "cache write failed");
            Err(ApiError::InternalWith(format!(
                "put: failed to write file {id} to cache"
            )))
        }
        Err(e) => {
            tracing::error!(error = %e, "cache write task failed");
            Err(ApiError::InternalWith(format!(
                "put: failed to write file {id} to cache"
            )))
        }
    }
}

pub(crate) async fn head_file(state: &Arc<AppState>, id: String) -> bool {
    let cache = state.cache.clone();
    tokio::task::spawn_blocking(move || cache.contains(&id))
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Decoding PUT bodies with Jobe's messages.
    use base64::engine::general_purpose;

    use super::*;

    fn err(body: &str) -> String {
        match decode_put_body("abcdefgh", body.as_bytes()) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn test_decode_put_body() {
        let ok = |b: &str| decode_put_body("x", b.as_bytes()).unwrap();
        assert_eq!(ok(r#"{"file_contents":"aGVsbG8="}"#), b"hello");
        assert_eq!(ok(r#"{"file_contents":"aGVsbG8"}"#), b"hello");
        assert_eq!(ok(r#"{"file_contents":""}"#), b"");
        assert_eq!(ok(r#"{"file_contents":"aGVs\nbG8="}"#), b"hello");
        assert_eq!(
            ok(&format!(
                r#"{{"file_contents":"{}"}}"#,
                general_purpose::STANDARD.encode([0u8, 255, 1])
            )),
            [0u8, 255, 1]
        );
        assert_eq!(err("{}"), "put: missing file_contents parameter");
        assert_eq!(
            err(r#"{"file_contents":null}"#),
            "put: missing file_contents parameter"
        );
        assert_eq!(err("[1]"), "put: missing file_contents parameter");
        let bad = "put: contents of file abcdefgh are not valid base-64";
        assert_eq!(err(r#"{"file_contents":"!!!"}"#), bad);
        assert_eq!(err(r#"{"file_contents":"aGVsbG8=x"}"#), bad);
        assert_eq!(err(r#"{"file_contents":5}"#), bad);
        assert!(err("{nope").starts_with("put: request body is not valid JSON"));
        assert!(err("").starts_with("put: request body is not valid JSON"));
    }
}
