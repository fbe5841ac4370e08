//! Messages: what a delivery says (a submission, or a bad message and why), and where and how its
//! result and events are published (docs/queue.md, "Messages"). Pure: no broker here.
//!
//! Owns: reading a delivery's body and properties into a [`Decoded`], the IE result of a bad
//! message, the reply route of a result, and the properties of published results and events.
//! Must not: talk to the broker, judge, or panic on anything a message holds.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use serde_json::Value;

use crate::judge::submission::is_valid_id;
use crate::judge::{Event, Status, SubmissionRequest, SubmissionResult, Summary, Verdict};

use super::config::Names;

/// The JSON content type of every message queue mode publishes.
pub const CONTENT_TYPE: &str = "application/json";
/// AMQP delivery mode of a message the broker keeps on disk.
const PERSISTENT: u8 = 2;
/// AMQP delivery mode of a message the broker may keep in memory only.
const TRANSIENT: u8 = 1;

/// Where a result goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The message's `reply_to` queue (through the default exchange), with its `correlation_id`.
    Queue {
        queue: String,
        correlation_id: Option<String>,
    },
    /// The results exchange, with the language as routing key.
    Results { routing_key: String },
}

/// What a delivery holds, as far as queue mode reads it before judging.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming<'a> {
    pub body: &'a [u8],
    /// The language of the queue the delivery came from.
    pub queue_language: &'a str,
    pub message_id: Option<&'a str>,
    pub reply_to: Option<&'a str>,
    pub correlation_id: Option<&'a str>,
}

/// A submission to judge.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub id: String,
    pub request: SubmissionRequest,
    pub reply: Reply,
}

/// A message that can never be judged: it is dead-lettered, and answered with an IE result when
/// its id can be read.
#[derive(Debug, Clone, PartialEq)]
pub struct BadMessage {
    pub reason: String,
    /// The IE result and where it goes, when the message has a readable id.
    pub result: Option<Box<(SubmissionResult, Reply)>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Submission(Box<Submission>),
    Bad(BadMessage),
}

/// Reads a delivery. `max_bytes`: the largest body accepted.
pub fn decode(m: &Incoming<'_>, max_bytes: u64) -> Decoded {
    let reply = reply_of(m, None);
    if m.body.len() as u64 > max_bytes {
        return bad(
            m,
            None,
            format!("body: larger than queue.max_message_bytes ({max_bytes} bytes)"),
        );
    }
    let obj = match serde_json::from_slice::<Value>(m.body) {
        Ok(Value::Object(obj)) => obj,
        Ok(_) => return bad(m, None, "body: must be a JSON object".into()),
        Err(e) => return bad(m, None, format!("body: not valid JSON ({e})")),
    };
    let request = match SubmissionRequest::from_object(&obj) {
        Ok(r) => r,
        Err(e) => return bad(m, Some(&obj), e.to_string()),
    };
    let id = match (&request.id, m.message_id) {
        (Some(id), _) => id.clone(),
        (None, Some(mid)) if is_valid_id(mid) => mid.to_owned(),
        (None, Some(_)) => {
            return bad(
                m,
                Some(&obj),
                "id: absent, and the message_id property is not 1-64 characters of \
                 [A-Za-z0-9._-]"
                    .into(),
            );
        }
        (None, None) => {
            return bad(
                m,
                Some(&obj),
                "id: is required in queue mode (in the body, or as the message_id property)".into(),
            );
        }
    };
    if request.language_id != m.queue_language {
        return bad(
            m,
            Some(&obj),
            format!(
                "language_id: {:?} does not match the queue's language {} (publish with routing \
                 key = language_id)",
                cut(&request.language_id, 64),
                m.queue_language
            ),
        );
    }
    let reply = match reply {
        Reply::Results { .. } => Reply::Results {
            routing_key: request.language_id.clone(),
        },
        r => r,
    };
    Decoded::Submission(Box::new(Submission { id, request, reply }))
}

/// At most `max` bytes of `s`, on a character boundary (client text quoted in a reason).
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn reply_of(m: &Incoming<'_>, language: Option<&str>) -> Reply {
    match m.reply_to.filter(|q| !q.is_empty()) {
        Some(queue) => Reply::Queue {
            queue: queue.to_owned(),
            correlation_id: m.correlation_id.map(str::to_owned),
        },
        None => Reply::Results {
            routing_key: language.unwrap_or(m.queue_language).to_owned(),
        },
    }
}

/// A bad message; its IE result when an id can be read from the body (even a body that failed
/// validation elsewhere) or from the `message_id` property.
fn bad(m: &Incoming<'_>, obj: Option<&serde_json::Map<String, Value>>, reason: String) -> Decoded {
    let field = |k: &str| {
        obj.and_then(|o| o.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let id = field("id")
        .filter(|id| is_valid_id(id))
        .or_else(|| m.message_id.filter(|id| is_valid_id(id)).map(str::to_owned));
    let result = id.map(|id| {
        let language = field("language_id")
            .map(|l| l.to_lowercase())
            .unwrap_or_else(|| m.queue_language.to_owned());
        let result = ie_result(
            id,
            field("problem").unwrap_or_default(),
            field("version").unwrap_or_default(),
            language,
            &reason,
        );
        // The result goes where the message asked; else by the queue's language (a language
        // read from a bad body is not trusted as a routing key).
        Box::new((result, reply_of(m, None)))
    });
    Decoded::Bad(BadMessage { reason, result })
}

/// The result of a submission that could not be judged: verdict IE, the reason as the compile
/// step's output (the step that never ran), no cases.
pub fn ie_result(
    id: String,
    problem: String,
    version: String,
    language_id: String,
    reason: &str,
) -> SubmissionResult {
    SubmissionResult {
        id,
        problem,
        version,
        testset_sha256: None,
        language_id,
        status: Status::Done,
        verdict: Some(Verdict::Ie),
        compile: Some(crate::judge::CompileResult {
            verdict: Verdict::Ie,
            output: reason.to_owned(),
        }),
        cases: Vec::new(),
        summary: Summary::default(),
    }
}

/// The publish of a result: exchange, routing key, properties.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub exchange: String,
    pub routing_key: String,
    pub properties: BasicProperties,
    pub body: Vec<u8>,
}

/// A result: persistent, JSON, `message_id` = the submission id, to `reply`.
pub fn result_message(names: &Names, result: &SubmissionResult, reply: &Reply) -> Outgoing {
    let body = serde_json::to_vec(result).expect("a result serialises");
    let mut properties = BasicProperties::default()
        .with_content_type(ShortString::from(CONTENT_TYPE))
        .with_delivery_mode(PERSISTENT)
        .with_message_id(ShortString::from(result.id.as_str()))
        .with_type(ShortString::from("result"));
    let (exchange, routing_key) = match reply {
        Reply::Queue {
            queue,
            correlation_id,
        } => {
            if let Some(c) = correlation_id {
                properties = properties.with_correlation_id(ShortString::from(c.as_str()));
            }
            (String::new(), queue.clone())
        }
        Reply::Results { routing_key } => (names.results_exchange.clone(), routing_key.clone()),
    };
    Outgoing {
        exchange,
        routing_key,
        properties,
        body,
    }
}

/// A progress event: transient, JSON, routing key `<id>.<event name>`, `type` = the event name.
pub fn event_message(names: &Names, id: &str, event: &Event) -> Outgoing {
    Outgoing {
        exchange: names.events_exchange.clone(),
        routing_key: format!("{id}.{}", event.name()),
        properties: BasicProperties::default()
            .with_content_type(ShortString::from(CONTENT_TYPE))
            .with_delivery_mode(TRANSIENT)
            .with_message_id(ShortString::from(id))
            .with_type(ShortString::from(event.name())),
        body: event.data().into_bytes(),
    }
}

/// Whether the broker delivered this message before: the `redelivered` flag, or a quorum
/// queue's `x-delivery-count` header above 0.
pub fn was_delivered_before(redelivered: bool, headers: Option<&FieldTable>) -> bool {
    redelivered || delivery_count(headers) > 0
}

/// A quorum queue's `x-delivery-count` (failed deliveries so far; absent: 0).
pub fn delivery_count(headers: Option<&FieldTable>) -> u64 {
    let Some(v) = headers.and_then(|h| h.inner().get("x-delivery-count")) else {
        return 0;
    };
    match v {
        AMQPValue::LongLongInt(n) => u64::try_from(*n).unwrap_or(0),
        AMQPValue::LongInt(n) => u64::try_from(*n).unwrap_or(0),
        AMQPValue::ShortInt(n) => u64::try_from(*n).unwrap_or(0),
        AMQPValue::ShortShortInt(n) => u64::try_from(*n).unwrap_or(0),
        AMQPValue::LongUInt(n) => u64::from(*n),
        AMQPValue::ShortUInt(n) => u64::from(*n),
        AMQPValue::ShortShortUInt(n) => u64::from(*n),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Decoding deliveries (good, bad, hostile) and the shape of
    //! what is published.
    use super::*;

    fn incoming<'a>(body: &'a [u8]) -> Incoming<'a> {
        Incoming {
            body,
            queue_language: "c",
            message_id: None,
            reply_to: None,
            correlation_id: None,
        }
    }

    fn good() -> Value {
        serde_json::json!({"id": "s-1", "problem": "sum", "version": "v1",
            "language_id": "c", "sourcecode": "int main(){}"})
    }

    #[test]
    fn test_submission_and_routes() {
        let body = good().to_string();
        let Decoded::Submission(s) = decode(&incoming(body.as_bytes()), 1 << 20) else {
            panic!("a good message")
        };
        assert_eq!(s.id, "s-1");
        assert_eq!(s.request.testset.problem(), "sum");
        assert_eq!(
            s.reply,
            Reply::Results {
                routing_key: "c".into()
            }
        );
        let mut m = incoming(body.as_bytes());
        m.reply_to = Some("amq.gen-abc");
        m.correlation_id = Some("corr-7");
        let Decoded::Submission(s) = decode(&m, 1 << 20) else {
            panic!("a good message")
        };
        assert_eq!(
            s.reply,
            Reply::Queue {
                queue: "amq.gen-abc".into(),
                correlation_id: Some("corr-7".into())
            }
        );
    }

    #[test]
    fn test_id_from_message_id_property() {
        let mut v = good();
        v.as_object_mut().unwrap().remove("id");
        let body = v.to_string();
        let mut m = incoming(body.as_bytes());
        m.message_id = Some("from-prop");
        let Decoded::Submission(s) = decode(&m, 1 << 20) else {
            panic!("id from message_id")
        };
        assert_eq!(s.id, "from-prop");
        // Neither: bad, and no IE result (nothing to address it to).
        let Decoded::Bad(b) = decode(&incoming(body.as_bytes()), 1 << 20) else {
            panic!("no id")
        };
        assert!(b.reason.starts_with("id:"), "{}", b.reason);
        assert!(b.result.is_none());
        m.message_id = Some("bad/id");
        assert!(matches!(decode(&m, 1 << 20), Decoded::Bad(_)));
    }

    #[test]
    fn test_bad_messages_name_the_field_and_get_ie_when_id_readable() {
        let mut missing = good();
        missing.as_object_mut().unwrap().remove("sourcecode");
        let mut wrong_lang = good();
        wrong_lang["language_id"] = "python3".into();
        let cases: Vec<(Vec<u8>, &str, bool)> = vec![
            (b"not json".to_vec(), "body:", false),
            (b"[1,2]".to_vec(), "body:", false),
            (b"\xff\xfe".to_vec(), "body:", false),
            (missing.to_string().into_bytes(), "sourcecode:", true),
            (wrong_lang.to_string().into_bytes(), "language_id:", true),
            (
                serde_json::json!({"id": "x", "problem": 5})
                    .to_string()
                    .into_bytes(),
                "problem:",
                true,
            ),
            (vec![b' '; 2000], "body: larger", false),
        ];
        for (body, prefix, has_result) in cases {
            let Decoded::Bad(b) = decode(&incoming(&body), 1024) else {
                panic!("{prefix}: expected a bad message")
            };
            assert!(b.reason.starts_with(prefix), "{prefix}: {}", b.reason);
            assert_eq!(b.result.is_some(), has_result, "{prefix}");
            if let Some(x) = b.result {
                let (r, reply) = *x;
                assert_eq!(r.verdict, Some(Verdict::Ie));
                assert_eq!(r.status, Status::Done);
                assert_eq!(r.compile.unwrap().output, b.reason);
                assert_eq!(
                    reply,
                    Reply::Results {
                        routing_key: "c".into()
                    }
                );
            }
        }
        // Not JSON, but the message_id property names it: answered.
        let mut m = incoming(b"{{{");
        m.message_id = Some("m-9");
        let Decoded::Bad(b) = decode(&m, 1024) else {
            panic!()
        };
        assert_eq!(b.result.unwrap().0.id, "m-9");
    }

    #[test]
    fn test_result_and_event_messages() {
        let names = Names::default();
        let r = ie_result("s-1".into(), "p".into(), "v".into(), "c".into(), "why");
        let o = result_message(
            &names,
            &r,
            &Reply::Results {
                routing_key: "c".into(),
            },
        );
        assert_eq!(o.exchange, "runner.results");
        assert_eq!(o.routing_key, "c");
        assert_eq!(o.properties.delivery_mode(), &Some(2));
        assert_eq!(
            o.properties.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        assert_eq!(
            o.properties.message_id().as_ref().map(|s| s.as_str()),
            Some("s-1")
        );
        assert_eq!(o.properties.correlation_id(), &None);
        let back: SubmissionResult = serde_json::from_slice(&o.body).unwrap();
        assert_eq!(back, r);
        let o = result_message(
            &names,
            &r,
            &Reply::Queue {
                queue: "replies".into(),
                correlation_id: Some("c-1".into()),
            },
        );
        assert_eq!(
            (o.exchange.as_str(), o.routing_key.as_str()),
            ("", "replies")
        );
        assert_eq!(
            o.properties.correlation_id().as_ref().map(|s| s.as_str()),
            Some("c-1")
        );
        let e = event_message(&names, "s-1", &Event::Status(Status::Running));
        assert_eq!(e.exchange, "runner.events");
        assert_eq!(e.routing_key, "s-1.status");
        assert_eq!(e.properties.delivery_mode(), &Some(1));
        assert_eq!(e.body, br#"{"status":"running"}"#);
    }

    #[test]
    fn test_delivery_count() {
        let mut h = FieldTable::default();
        assert!(!was_delivered_before(false, Some(&h)));
        assert!(was_delivered_before(true, None));
        h.insert("x-delivery-count".into(), AMQPValue::LongLongInt(2));
        assert_eq!(delivery_count(Some(&h)), 2);
        assert!(was_delivered_before(false, Some(&h)));
        h.insert("x-delivery-count".into(), AMQPValue::LongString("x".into()));
        assert_eq!(delivery_count(Some(&h)), 0);
    }
}
