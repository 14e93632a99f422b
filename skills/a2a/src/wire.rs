//! The A2A 1.0 objects as they travel: ProtoJSON of `a2a.proto` (camelCase keys, enums
//! as their names, fields at their default left out), as the real SDKs (PyPI `a2a-sdk`,
//! npm `@a2a-js/sdk` 1.3) write and read them.
//!
//! Requests are read leniently, as the SDKs' own servers read them: unknown fields are
//! ignored, a missing field takes its default. A field of the wrong type is an error
//! that names it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: &str = "1.0";
/// The header a client names its protocol version in.
pub const VERSION_HEADER: &str = "A2A-Version";
/// The JSON-RPC protocol binding's name in an [`AgentInterface`].
pub const BINDING_JSONRPC: &str = "JSONRPC";
/// The HTTP+JSON (REST) protocol binding's name in an [`AgentInterface`].
pub const BINDING_HTTP_JSON: &str = "HTTP+JSON";
/// Where a card is served, below an agent's base URL.
pub const CARD_PATH: &str = ".well-known/agent-card.json";

/// An agent's card: who it is, where and how to reach it, what it can do.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AgentCard {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Where it is served, one entry per protocol binding.
    pub supported_interfaces: Vec<AgentInterface>,
    /// Who runs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<AgentProvider>,
    /// The agent's version.
    pub version: String,
    /// Its documentation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documentation_url: Option<String>,
    /// What the server supports.
    pub capabilities: AgentCapabilities,
    /// Security schemes by name.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub security_schemes: Map<String, Value>,
    /// Which schemes a request needs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_requirements: Vec<Value>,
    /// Media types it reads by default.
    pub default_input_modes: Vec<String>,
    /// Media types it answers in by default.
    pub default_output_modes: Vec<String>,
    /// Its skills.
    pub skills: Vec<AgentSkill>,
    /// An icon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
}

/// Where and how an agent is served.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AgentInterface {
    /// Its URL.
    pub url: String,
    /// [`BINDING_JSONRPC`] or [`BINDING_HTTP_JSON`].
    pub protocol_binding: String,
    /// A tenant, where a URL serves several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// [`PROTOCOL_VERSION`].
    pub protocol_version: String,
}

/// Who runs an agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AgentProvider {
    /// Its site.
    pub url: String,
    /// Its name.
    pub organization: String,
}

/// What an agent's server supports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AgentCapabilities {
    /// `SendStreamingMessage` (server-sent events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streaming: Option<bool>,
    /// Push notifications.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_notifications: Option<bool>,
    /// Protocol extensions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<AgentExtension>,
    /// An extended card for authenticated clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extended_agent_card: Option<bool>,
}

/// A protocol extension an agent supports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AgentExtension {
    /// Its URI.
    pub uri: String,
    /// What it is for.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Whether a client must support it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// Its parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<Map<String, Value>>,
}

/// One thing an agent can do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AgentSkill {
    /// Its id (for Agora agents, the request kind, `weather.forecast`).
    pub id: String,
    /// A short name.
    pub name: String,
    /// What it does and what it takes.
    pub description: String,
    /// Keywords.
    pub tags: Vec<String>,
    /// Example requests.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    /// Media types it reads.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub input_modes: Vec<String>,
    /// Media types it answers in.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output_modes: Vec<String>,
}

/// Who sent a message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Not set.
    #[default]
    #[serde(rename = "ROLE_UNSPECIFIED")]
    Unspecified,
    /// The client.
    #[serde(rename = "ROLE_USER")]
    User,
    /// The agent.
    #[serde(rename = "ROLE_AGENT")]
    Agent,
}

/// A message between a client and an agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Message {
    /// Its id, chosen by its sender.
    pub message_id: String,
    /// The conversation.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub context_id: String,
    /// The task it belongs to.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub task_id: String,
    /// Who sent it.
    pub role: Role,
    /// What it says.
    pub parts: Vec<Part>,
    /// Anything else.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Extensions it uses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
    /// Tasks it refers to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reference_task_ids: Vec<String>,
}

/// One piece of a message or an artifact: exactly one of `text`, `raw` (base64),
/// `url` or `data`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Part {
    /// Text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Bytes, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// A link to the content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Structured data (any JSON value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Anything else.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// A file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// The content's media type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

impl Part {
    /// A data part holding `data`.
    pub fn data(data: Value) -> Self {
        Self {
            data: Some(data),
            media_type: Some("application/json".into()),
            ..Self::default()
        }
    }

    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: Some(text.into()),
            ..Self::default()
        }
    }

    /// How many of `text`, `raw`, `url` and `data` it holds (exactly one is valid).
    pub fn contents(&self) -> usize {
        usize::from(self.text.is_some())
            + usize::from(self.raw.is_some())
            + usize::from(self.url.is_some())
            + usize::from(self.data.is_some())
    }
}

/// Where a task stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskState {
    /// Not set.
    #[default]
    #[serde(rename = "TASK_STATE_UNSPECIFIED")]
    Unspecified,
    /// Received, not started.
    #[serde(rename = "TASK_STATE_SUBMITTED")]
    Submitted,
    /// Being worked on.
    #[serde(rename = "TASK_STATE_WORKING")]
    Working,
    /// Done (final).
    #[serde(rename = "TASK_STATE_COMPLETED")]
    Completed,
    /// Failed (final).
    #[serde(rename = "TASK_STATE_FAILED")]
    Failed,
    /// Canceled (final).
    #[serde(rename = "TASK_STATE_CANCELED")]
    Canceled,
    /// Waiting for the client.
    #[serde(rename = "TASK_STATE_INPUT_REQUIRED")]
    InputRequired,
    /// Refused by the agent (final).
    #[serde(rename = "TASK_STATE_REJECTED")]
    Rejected,
    /// Waiting for authentication.
    #[serde(rename = "TASK_STATE_AUTH_REQUIRED")]
    AuthRequired,
}

impl TaskState {
    /// Whether nothing more happens to a task in this state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Canceled | Self::Rejected
        )
    }
}

/// A task's state, with the agent's message about it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TaskStatus {
    /// The state.
    pub state: TaskState,
    /// The agent's message about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    /// When it took this state (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// What a task produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Artifact {
    /// Its id.
    pub artifact_id: String,
    /// Its name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// What it is.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Its content.
    pub parts: Vec<Part>,
    /// Anything else.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Extensions it uses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
}

/// A unit of work an agent does for a client.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Task {
    /// Its id, chosen by the agent.
    pub id: String,
    /// The conversation.
    pub context_id: String,
    /// Where it stands.
    pub status: TaskStatus,
    /// What it produced.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// The messages exchanged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Message>,
    /// Anything else.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// How a client wants a message handled.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SendMessageConfiguration {
    /// Media types the client reads.
    pub accepted_output_modes: Vec<String>,
    /// How many messages of history to return.
    pub history_length: Option<i32>,
    /// Answer at once with the task, not when it is done.
    pub return_immediately: bool,
    /// A push notification target (not supported).
    pub task_push_notification_config: Option<Value>,
}

/// `SendMessage` and `SendStreamingMessage`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SendMessageRequest {
    /// A tenant.
    pub tenant: String,
    /// The message.
    pub message: Option<Message>,
    /// How to handle it.
    pub configuration: Option<SendMessageConfiguration>,
    /// Anything else.
    pub metadata: Option<Map<String, Value>>,
}

/// `SendMessage`'s answer: a task, or a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SendMessageResponse {
    /// The task the message started or continued.
    Task(Task),
    /// A direct answer.
    Message(Message),
}

/// One event of a stream: `SendStreamingMessage`'s answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StreamResponse {
    /// The task as it stands (the first event).
    Task(Task),
    /// A direct answer.
    Message(Message),
    /// The task's state changed.
    StatusUpdate(TaskStatusUpdateEvent),
    /// The task produced (part of) an artifact.
    ArtifactUpdate(TaskArtifactUpdateEvent),
}

/// A task's state changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TaskStatusUpdateEvent {
    /// The task.
    pub task_id: String,
    /// Its conversation.
    pub context_id: String,
    /// The new status.
    pub status: TaskStatus,
    /// Anything else.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// A task produced (part of) an artifact.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TaskArtifactUpdateEvent {
    /// The task.
    pub task_id: String,
    /// Its conversation.
    pub context_id: String,
    /// The artifact.
    pub artifact: Artifact,
    /// Appended to an artifact sent before.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub append: bool,
    /// The artifact's last piece.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub last_chunk: bool,
    /// Anything else.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// `GetTask`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GetTaskRequest {
    /// A tenant.
    pub tenant: String,
    /// The task.
    pub id: String,
    /// How many messages of history to return.
    pub history_length: Option<i32>,
}

/// `ListTasks`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ListTasksRequest {
    /// A tenant.
    pub tenant: String,
    /// Only this conversation's tasks.
    pub context_id: String,
    /// Only tasks in this state.
    pub status: TaskState,
    /// At most this many (default 50, at most 100).
    pub page_size: Option<i32>,
    /// Where the previous page ended.
    pub page_token: String,
    /// How many messages of history to return per task.
    pub history_length: Option<i32>,
    /// Only tasks whose status changed after this time (RFC 3339).
    pub status_timestamp_after: Option<String>,
    /// Include the artifacts.
    pub include_artifacts: bool,
}

/// `ListTasks`' answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ListTasksResponse {
    /// The page's tasks, most recent first.
    pub tasks: Vec<Task>,
    /// The token of the next page; empty on the last.
    pub next_page_token: String,
    /// The page size used.
    pub page_size: i32,
    /// How many tasks match in all.
    pub total_size: i32,
}

/// `CancelTask` (and the id-only requests: `SubscribeToTask`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CancelTaskRequest {
    /// A tenant.
    pub tenant: String,
    /// The task.
    pub id: String,
    /// Anything else.
    pub metadata: Option<Map<String, Value>>,
}

/// The current time as ProtoJSON writes a `Timestamp`: RFC 3339 in UTC.
pub fn now_timestamp(unix_ms: u64) -> String {
    let secs = i64::try_from(unix_ms / 1000).unwrap_or(i64::MAX);
    let nanos = u32::try_from((unix_ms % 1000) * 1_000_000).unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, nanos)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_task_is_written_as_protojson() {
        let task = Task {
            id: "t1".into(),
            context_id: "c1".into(),
            status: TaskStatus {
                state: TaskState::Completed,
                message: None,
                timestamp: Some(now_timestamp(1_796_000_000_123)),
            },
            artifacts: vec![Artifact {
                artifact_id: "a1".into(),
                name: "weather.forecast".into(),
                parts: vec![Part::data(json!({"highC": "21.5"}))],
                ..Artifact::default()
            }],
            history: vec![Message {
                message_id: "m1".into(),
                role: Role::User,
                parts: vec![Part::text("hi")],
                ..Message::default()
            }],
            metadata: None,
        };
        assert_eq!(
            serde_json::to_value(SendMessageResponse::Task(task)).unwrap(),
            json!({"task": {
                "id": "t1", "contextId": "c1",
                "status": {"state": "TASK_STATE_COMPLETED", "timestamp": "2026-11-30T00:53:20.123Z"},
                "artifacts": [{"artifactId": "a1", "name": "weather.forecast",
                    "parts": [{"data": {"highC": "21.5"}, "mediaType": "application/json"}]}],
                "history": [{"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}]
            }})
        );
    }

    #[test]
    fn requests_are_read_leniently_but_wrong_types_are_named() {
        let r: SendMessageRequest = serde_json::from_value(json!({
            "message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"data": {"city": "Lisbon"}}],
                        "futureField": 1},
            "configuration": {"returnImmediately": true}
        }))
        .unwrap();
        let m = r.message.unwrap();
        assert_eq!(m.parts[0].data, Some(json!({"city": "Lisbon"})));
        assert!(r.configuration.unwrap().return_immediately);

        let err = serde_json::from_value::<SendMessageRequest>(json!({"message": {"parts": "x"}}))
            .unwrap_err();
        assert!(err.to_string().contains("expected a sequence"), "{err}");
        let err =
            serde_json::from_value::<ListTasksRequest>(json!({"status": "DONE"})).unwrap_err();
        assert!(err.to_string().contains("unknown variant `DONE`"), "{err}");
    }
}
