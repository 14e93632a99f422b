//! Typed messages and the payloads that carry them.
//!
//! A message type implements [`Request`]: a stable `KIND`, a serde and schemars
//! type, and the type of its [`Request::Response`]. Inside one process a payload
//! travels as the Rust value itself (no serialization); between hosts as JSON in a
//! signed [`Envelope`](crate::envelope::Envelope).

use std::any::Any;
use std::fmt;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result, SkillError};

/// A typed message another agent can handle.
pub trait Request: Serialize + DeserializeOwned + JsonSchema + Send + 'static {
    /// The message kind on the wire, e.g. `weather.Forecast`. Stable and unique.
    const KIND: &'static str;
    /// What the handler answers.
    type Response: Serialize + DeserializeOwned + JsonSchema + Send + 'static;
}

/// A message body: a JSON value (from the wire) or a Rust value (in process).
pub enum Payload {
    /// Parsed from an envelope.
    Json(Value),
    /// Handed over inside the process.
    Local(Box<dyn Any + Send>),
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(v) => f.debug_tuple("Json").field(v).finish(),
            Self::Local(_) => f.write_str("Local(..)"),
        }
    }
}

impl Payload {
    /// Wraps a Rust value for local delivery.
    pub fn local<T: Send + 'static>(value: T) -> Self {
        Self::Local(Box::new(value))
    }

    /// The value as `T`: downcast when local, deserialized when JSON.
    ///
    /// # Errors
    /// [`Error::Payload`] naming `kind` when the payload is not a `T`.
    pub fn into_typed<T: DeserializeOwned + 'static>(self, kind: &str) -> Result<T> {
        match self {
            Self::Local(any) => any.downcast::<T>().map(|b| *b).map_err(|_| Error::Payload {
                kind: kind.to_owned(),
                reason: format!("expected a {}", std::any::type_name::<T>()),
            }),
            Self::Json(v) => serde_json::from_value(v).map_err(|e| Error::Payload {
                kind: kind.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// The JSON form; a local payload needs `to_json` to know its type.
    ///
    /// # Errors
    /// [`Error::Payload`] when a local value is not a `T` or does not serialize.
    pub fn into_json<T: Serialize + 'static>(self, kind: &str) -> Result<Value> {
        match self {
            Self::Json(v) => Ok(v),
            Self::Local(any) => {
                let value = any.downcast::<T>().map_err(|_| Error::Payload {
                    kind: kind.to_owned(),
                    reason: format!("expected a {}", std::any::type_name::<T>()),
                })?;
                serde_json::to_value(*value).map_err(|e| Error::Payload {
                    kind: kind.to_owned(),
                    reason: e.to_string(),
                })
            }
        }
    }
}

/// How a message body is meant, encoded in the envelope's `kind`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `ask/<kind>`: a request that wants a reply.
    Ask(String),
    /// `tell/<kind>`: a one-way request.
    Tell(String),
    /// `reply`: the answer to an ask in the same dialogue.
    Reply,
}

impl Kind {
    /// The wire string.
    pub fn to_wire(&self) -> String {
        match self {
            Self::Ask(k) => format!("ask/{k}"),
            Self::Tell(k) => format!("tell/{k}"),
            Self::Reply => "reply".into(),
        }
    }

    /// Parses the wire string.
    ///
    /// # Errors
    /// A message naming the unknown form.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "reply" {
            return Ok(Self::Reply);
        }
        match s.split_once('/') {
            Some(("ask", k)) if !k.is_empty() => Ok(Self::Ask(k.to_owned())),
            Some(("tell", k)) if !k.is_empty() => Ok(Self::Tell(k.to_owned())),
            _ => Err(format!(
                "kind {s:?} is none of ask/<kind>, tell/<kind>, reply"
            )),
        }
    }
}

/// The JSON payload of a `reply` envelope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyWire {
    /// The sequence of the ask this answers.
    pub re: u64,
    /// The answer, when the skill succeeded (`null` for a `()` answer: present).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub ok: Option<Value>,
    /// The error, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<SkillError>,
}

/// A field that is there, even as `null`, is `Some` (a missing one is `None` by
/// `#[serde(default)]`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a skill answering `()` replied `{"re": n, "ok": null}`, which read
    /// back as neither ok nor err, so the reply was dropped and the ask timed out.
    #[test]
    fn a_unit_reply_survives_the_wire() {
        let wire = ReplyWire {
            re: 7,
            ok: Some(Value::Null),
            err: None,
        };
        let json = serde_json::to_value(&wire).unwrap();
        assert_eq!(json, serde_json::json!({"re": 7, "ok": null}));
        assert_eq!(serde_json::from_value::<ReplyWire>(json).unwrap(), wire);
        let failed: ReplyWire = serde_json::from_value(
            serde_json::json!({"re": 7, "err": {"code": "x", "message": "y"}}),
        )
        .unwrap();
        assert_eq!(failed.ok, None);
    }

    #[test]
    fn kinds_round_trip_and_reject_unknown_forms() {
        for k in [
            Kind::Ask("weather.Forecast".into()),
            Kind::Tell("x".into()),
            Kind::Reply,
        ] {
            assert_eq!(Kind::parse(&k.to_wire()).unwrap(), k);
        }
        for bad in ["", "ask/", "weather.Forecast", "shout/x"] {
            assert!(Kind::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn payloads_downcast_or_deserialize() {
        let p = Payload::local(7u32);
        assert_eq!(p.into_typed::<u32>("n").unwrap(), 7);
        let p = Payload::Json(serde_json::json!(7));
        assert_eq!(p.into_typed::<u32>("n").unwrap(), 7);
        let err = Payload::local("seven").into_typed::<u32>("n").unwrap_err();
        assert!(err.to_string().contains("kind n"), "{err}");
        let json = Payload::local(7u32).into_json::<u32>("n").unwrap();
        assert_eq!(json, serde_json::json!(7));
    }
}
