//! A2A errors: each with its JSON-RPC code, its `google.rpc.ErrorInfo` reason and its
//! HTTP status for the HTTP+JSON binding, as the A2A SDKs map them.

use serde_json::{json, Value};

/// An A2A protocol error, answered to the client; the message says what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum A2aError {
    /// The body is not JSON.
    #[error("{0}")]
    Parse(String),
    /// Not a JSON-RPC 2.0 request, or a body that is too large.
    #[error("{0}")]
    InvalidRequest(String),
    /// No such method.
    #[error("{0}")]
    MethodNotFound(String),
    /// The parameters are not the method's.
    #[error("{0}")]
    InvalidParams(String),
    /// The server failed.
    #[error("{0}")]
    Internal(String),
    /// No such task.
    #[error("{0}")]
    TaskNotFound(String),
    /// The task cannot be canceled (it is done).
    #[error("{0}")]
    TaskNotCancelable(String),
    /// Push notifications are not supported.
    #[error("{0}")]
    PushNotificationNotSupported(String),
    /// The operation is not supported.
    #[error("{0}")]
    UnsupportedOperation(String),
    /// The client's content types cannot be served.
    #[error("{0}")]
    ContentTypeNotSupported(String),
    /// There is no extended card.
    #[error("{0}")]
    ExtendedAgentCardNotConfigured(String),
    /// The client's protocol version is not supported.
    #[error("{0}")]
    VersionNotSupported(String),
}

impl A2aError {
    /// The JSON-RPC error code.
    pub fn code(&self) -> i64 {
        match self {
            Self::Parse(_) => -32700,
            Self::InvalidRequest(_) => -32600,
            Self::MethodNotFound(_) => -32601,
            Self::InvalidParams(_) => -32602,
            Self::Internal(_) => -32603,
            Self::TaskNotFound(_) => -32001,
            Self::TaskNotCancelable(_) => -32002,
            Self::PushNotificationNotSupported(_) => -32003,
            Self::UnsupportedOperation(_) => -32004,
            Self::ContentTypeNotSupported(_) => -32005,
            Self::ExtendedAgentCardNotConfigured(_) => -32007,
            Self::VersionNotSupported(_) => -32009,
        }
    }

    /// The `google.rpc.ErrorInfo` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Parse(_) | Self::InvalidRequest(_) => "INVALID_REQUEST",
            Self::MethodNotFound(_) => "METHOD_NOT_FOUND",
            Self::InvalidParams(_) => "INVALID_PARAMS",
            Self::Internal(_) => "INTERNAL_ERROR",
            Self::TaskNotFound(_) => "TASK_NOT_FOUND",
            Self::TaskNotCancelable(_) => "TASK_NOT_CANCELABLE",
            Self::PushNotificationNotSupported(_) => "PUSH_NOTIFICATION_NOT_SUPPORTED",
            Self::UnsupportedOperation(_) => "UNSUPPORTED_OPERATION",
            Self::ContentTypeNotSupported(_) => "CONTENT_TYPE_NOT_SUPPORTED",
            Self::ExtendedAgentCardNotConfigured(_) => "EXTENDED_AGENT_CARD_NOT_CONFIGURED",
            Self::VersionNotSupported(_) => "VERSION_NOT_SUPPORTED",
        }
    }

    /// The HTTP status and gRPC status name of the HTTP+JSON binding.
    pub fn http_status(&self) -> (u16, &'static str) {
        match self {
            Self::TaskNotFound(_) | Self::MethodNotFound(_) => (404, "NOT_FOUND"),
            Self::Internal(_) => (500, "INTERNAL"),
            Self::Parse(_)
            | Self::InvalidRequest(_)
            | Self::InvalidParams(_)
            | Self::ContentTypeNotSupported(_) => (400, "INVALID_ARGUMENT"),
            Self::TaskNotCancelable(_)
            | Self::PushNotificationNotSupported(_)
            | Self::UnsupportedOperation(_)
            | Self::ExtendedAgentCardNotConfigured(_)
            | Self::VersionNotSupported(_) => (400, "FAILED_PRECONDITION"),
        }
    }

    /// The typed details: one `google.rpc.ErrorInfo` with the reason.
    fn details(&self) -> Value {
        json!([{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": self.reason(),
            "domain": "a2a-protocol.org",
            "metadata": {}
        }])
    }

    /// The JSON-RPC error object.
    pub fn to_jsonrpc(&self) -> Value {
        json!({"code": self.code(), "message": self.to_string(), "data": self.details()})
    }

    /// The HTTP+JSON error body.
    pub fn to_rest(&self) -> Value {
        let (code, status) = self.http_status();
        json!({"error": {
            "code": code, "status": status, "message": self.to_string(), "details": self.details()
        }})
    }
}

/// Errors setting up a gateway (its store, an agent's skills).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The task store could not be opened, read or written.
    #[error("A2A task store {path}: {message}")]
    Store {
        /// Its path.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A configuration that cannot work (two skills with one id, a bad base URL).
    #[error("A2A gateway: {0}")]
    Config(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
