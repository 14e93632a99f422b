//! Paid skills: A2A's x402 extension, standalone flow (`a2a-x402` spec v0.2), settled
//! by the agent's [`x402::X402Seller`].
//!
//! 1. A message for a paid skill gets a task in `TASK_STATE_INPUT_REQUIRED` whose status
//!    message carries `x402.payment.status: "payment-required"` and
//!    `x402.payment.required` (the x402 `PaymentRequired`: price, token, network,
//!    `payTo`). Nothing runs yet; a malformed request is refused before that.
//! 2. The client sends a message on that task (`taskId`) with
//!    `x402.payment.status: "payment-submitted"` and `x402.payment.payload` (a signed
//!    x402 `PaymentPayload`), or `"payment-rejected"` to give up (the task is canceled).
//! 3. The seller verifies the payment and **settles it on chain before the skill runs**
//!    (exactly as `POST /x402/<skill>`: the same store, the same journal, the same
//!    guarantees). The task completes with the result as a data-part artifact and
//!    `x402.payment.status: "payment-completed"` with `x402.payment.receipts`.
//!
//! A payment that does not verify fails the task (`"payment-failed"`,
//! `x402.payment.error` the x402 reason). When the node cannot say whether the payment
//! settled, or the skill failed after it was paid, the task keeps waiting
//! (`"payment-submitted"`, with the receipt when paid): the client sends the *same*
//! payment again, which is never charged twice.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use x402::wire::PaymentPayload;
use x402::{Outcome, X402Seller};

use crate::error::A2aError;
use crate::server::{
    artifact_event, choose, emit, integral, internal, new_id, now_ms, status, status_event,
    A2aAgent, A2aGateway, Entry,
};
use crate::wire::{
    AgentExtension, AgentSkill, Artifact, Message, Part, Role, StreamResponse, Task, TaskState,
};
use crate::SKILL_ID_KEY;

/// The extension's URI, declared in the card.
pub const EXTENSION_URI: &str =
    "https://github.com/google-agentic-commerce/a2a-x402/blob/main/spec/v0.2";
/// Where the payment's state is, in a message's metadata.
pub const STATUS_KEY: &str = "x402.payment.status";
/// The x402 `PaymentRequired`, in the agent's message.
pub const REQUIRED_KEY: &str = "x402.payment.required";
/// The client's signed x402 `PaymentPayload`.
pub const PAYLOAD_KEY: &str = "x402.payment.payload";
/// The settlements, in the agent's last message.
pub const RECEIPTS_KEY: &str = "x402.payment.receipts";
/// Why a payment failed (the x402 reason code).
pub const ERROR_KEY: &str = "x402.payment.error";
/// What the seller attests about a paid result (such as a signed LLM inference), in
/// the artifact's metadata: the JSON that an x402 client gets in the
/// `AGORA-ATTESTATION` header.
pub const ATTESTATION_KEY: &str = "agora.attestation";

/// The card's declaration of the extension.
pub(crate) fn extension() -> AgentExtension {
    AgentExtension {
        uri: EXTENSION_URI.into(),
        description: "Paid skills take x402 payments (exact scheme, EIP-3009) in message \
                      metadata, settled on chain before the skill runs."
            .into(),
        required: false,
        params: None,
    }
}

/// The agent's message about `task`, with `metadata`.
fn say(task: &Task, text: String, metadata: Value) -> Message {
    Message {
        message_id: new_id(),
        context_id: task.context_id.clone(),
        task_id: task.id.clone(),
        role: Role::Agent,
        parts: vec![Part::text(text)],
        metadata: metadata.as_object().cloned(),
        ..Message::default()
    }
}

/// Step 1: a task that waits for payment of `card`'s skill, asked with `input`.
pub(crate) async fn offer(
    gw: &A2aGateway,
    agent: &A2aAgent,
    seller: &X402Seller,
    card: &AgentSkill,
    mut message: Message,
    input: &Value,
    events: &Option<mpsc::Sender<StreamResponse>>,
) -> Result<Task, A2aError> {
    let body = serde_json::to_vec(input).map_err(|e| A2aError::Internal(e.to_string()))?;
    seller
        .check_request(&card.id, &body)
        .map_err(A2aError::InvalidParams)?;
    let required = match seller.answer(&card.id, gw.host(), None, &body).await {
        Outcome::PaymentRequired { required, .. } => required,
        Outcome::Refused { message, .. } => return Err(A2aError::Internal(message)),
        _ => {
            return Err(A2aError::Internal(
                "the seller served a request without payment".into(),
            ))
        }
    };
    let now = now_ms();
    let mut task = Task {
        id: new_id(),
        context_id: if message.context_id.is_empty() {
            new_id()
        } else {
            message.context_id.clone()
        },
        metadata: Some(Map::from_iter([(
            SKILL_ID_KEY.to_owned(),
            Value::String(card.id.clone()),
        )])),
        ..Task::default()
    };
    message.task_id = task.id.clone();
    message.context_id = task.context_id.clone();
    task.history.push(message);
    let ask = required.accepts.first().map_or_else(String::new, |o| {
        format!(
            ": {} base units of {} on {} to {}",
            o.amount, o.asset, o.network, o.pay_to
        )
    });
    let text = format!(
        "Payment required{ask}. Send a signed x402 PaymentPayload on this task in the message \
         metadata {PAYLOAD_KEY}, with {STATUS_KEY} \"payment-submitted\"."
    );
    let mut waiting = status(TaskState::InputRequired, None, &task, now);
    waiting.message = Some(say(
        &task,
        text,
        json!({STATUS_KEY: "payment-required", REQUIRED_KEY: required}),
    ));
    task.status = waiting;
    let stored = gw
        .store
        .create(agent.address(), task, now)
        .map_err(internal)?;
    gw.store.flush().await.map_err(internal)?;
    emit(events, StreamResponse::Task(stored.task.clone())).await;
    Ok(stored.task)
}

/// Steps 2 and 3: a message on a task that waits for payment.
pub(crate) async fn continue_task(
    gw: &Arc<A2aGateway>,
    agent: &A2aAgent,
    mut message: Message,
    events: &Option<mpsc::Sender<StreamResponse>>,
) -> Result<Task, A2aError> {
    let id = message.task_id.clone();
    let stored = gw
        .store
        .get(agent.address(), &id)
        .map_err(internal)?
        .ok_or_else(|| A2aError::TaskNotFound(format!("no task {id:?}")))?;
    let state = stored.task.status.state;
    if state != TaskState::InputRequired {
        return Err(A2aError::UnsupportedOperation(format!(
            "task {id} is {}: it takes no more messages",
            serde_json::to_value(state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        )));
    }
    let skill_id = stored
        .task
        .metadata
        .as_ref()
        .and_then(|m| m.get(SKILL_ID_KEY))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(Entry::Paid { seller, card }) = agent
        .skills
        .iter()
        .find(|s| s.card().id == skill_id)
        .cloned()
    else {
        return Err(A2aError::UnsupportedOperation(format!(
            "task {id} waits for nothing this agent can take"
        )));
    };
    let metadata = message.metadata.clone().unwrap_or_default();
    let said = metadata.get(STATUS_KEY).and_then(Value::as_str);
    message.context_id = stored.task.context_id.clone();
    match said {
        Some("payment-submitted") => {}
        Some("payment-rejected") => {
            let text = "The client rejected the payment; nothing was paid.".to_owned();
            let md = json!({STATUS_KEY: "payment-rejected"});
            return finish(
                gw,
                agent,
                &id,
                message,
                TaskState::Canceled,
                text,
                md,
                None,
                events,
            )
            .await;
        }
        other => {
            return Err(A2aError::InvalidParams(format!(
                "task {id} waits for payment: send message.metadata.{STATUS_KEY} \
                 \"payment-submitted\" with {PAYLOAD_KEY}, or \"payment-rejected\" (got {other:?})"
            )))
        }
    }
    let payload: PaymentPayload = metadata
        .get(PAYLOAD_KEY)
        .cloned()
        .ok_or_else(|| {
            A2aError::InvalidParams(format!("message.metadata.{PAYLOAD_KEY} is missing"))
        })
        .and_then(|p| {
            serde_json::from_value(integral(p)).map_err(|e| {
                A2aError::InvalidParams(format!(
                    "message.metadata.{PAYLOAD_KEY} is not an x402 PaymentPayload: {e}"
                ))
            })
        })?;
    // One task, one payment: the first authorization sent on a task is the only one it
    // takes (sent again after a lost answer or a 503, it is never charged twice; a
    // second, different one could be).
    let authorization = payload
        .exact_evm()
        .map(|e| format!("{}:{}", e.authorization.from, e.authorization.nonce).to_lowercase())
        .map_err(|e| A2aError::InvalidParams(format!("message.metadata.{PAYLOAD_KEY}: {e}")))?;
    let _paying = Paying::enter(gw, agent.address(), &id)?;
    bind(gw, agent, &id, &authorization).await?;
    // The request is the one the task was opened with.
    let first = stored.task.history.first().cloned().unwrap_or_default();
    let (_, input) = choose(agent, &first)?;
    let body = serde_json::to_vec(&input).map_err(|e| A2aError::Internal(e.to_string()))?;

    match seller
        .answer(&card.id, gw.host(), Some(&payload), &body)
        .await
    {
        Outcome::Served {
            body,
            settled,
            attestation,
        } => {
            let result: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
            // What the seller attests about the result rides in the artifact's
            // metadata, under the x402 response header's name.
            let metadata = attestation.map(|a| {
                let mut m = serde_json::Map::new();
                m.insert(ATTESTATION_KEY.to_owned(), a);
                m
            });
            let artifact = Artifact {
                artifact_id: new_id(),
                name: card.id.clone(),
                parts: vec![Part::data(result)],
                metadata,
                ..Artifact::default()
            };
            let text = format!("Paid (transaction {}) and done.", settled.transaction);
            let md = json!({STATUS_KEY: "payment-completed", RECEIPTS_KEY: [settled]});
            finish(
                gw,
                agent,
                &id,
                message,
                TaskState::Completed,
                text,
                md,
                Some(artifact),
                events,
            )
            .await
        }
        Outcome::PaymentRequired { required, invalid } => {
            let (code, why) = invalid.map_or_else(
                || {
                    (
                        "invalid_payment".to_owned(),
                        "the payment was refused".to_owned(),
                    )
                },
                |i| (i.reason.as_str().to_owned(), i.message),
            );
            let md = json!({STATUS_KEY: "payment-failed", ERROR_KEY: code, REQUIRED_KEY: required});
            let text = format!("The payment was refused ({code}): {why}; nothing was paid.");
            finish(
                gw,
                agent,
                &id,
                message,
                TaskState::Failed,
                text,
                md,
                None,
                events,
            )
            .await
        }
        Outcome::Refused {
            status: 502 | 503,
            error,
            message: why,
            settled,
        } => {
            let md = json!({STATUS_KEY: "payment-submitted", ERROR_KEY: error,
                            RECEIPTS_KEY: settled.into_iter().collect::<Vec<_>>()});
            let text = format!("{why}; send the same payment on this task again.");
            finish(
                gw,
                agent,
                &id,
                message,
                TaskState::InputRequired,
                text,
                md,
                None,
                events,
            )
            .await
        }
        Outcome::Refused {
            error,
            message: why,
            settled,
            ..
        } => {
            let md = json!({STATUS_KEY: "payment-failed", ERROR_KEY: error,
                            RECEIPTS_KEY: settled.into_iter().collect::<Vec<_>>()});
            finish(
                gw,
                agent,
                &id,
                message,
                TaskState::Failed,
                why,
                md,
                None,
                events,
            )
            .await
        }
        _ => Err(A2aError::Internal(
            "an outcome this gateway does not know".into(),
        )),
    }
}

/// The task metadata key of the authorization (`from:nonce`) a task is paid with.
const BOUND_KEY: &str = "x402Authorization";

/// Binds task `id` to `authorization`, or refuses another one.
async fn bind(
    gw: &A2aGateway,
    agent: &A2aAgent,
    id: &str,
    authorization: &str,
) -> Result<(), A2aError> {
    let _turn = gw.transitions.lock().await;
    let mut stored = gw
        .store
        .get(agent.address(), id)
        .map_err(internal)?
        .ok_or_else(|| A2aError::TaskNotFound(format!("no task {id:?}")))?;
    if stored.task.status.state != TaskState::InputRequired {
        return Err(A2aError::UnsupportedOperation(format!(
            "task {id} no longer waits for payment"
        )));
    }
    let metadata = stored.task.metadata.get_or_insert_with(Map::new);
    match metadata.get(BOUND_KEY).and_then(Value::as_str) {
        Some(bound) if bound == authorization => Ok(()),
        Some(bound) => Err(A2aError::InvalidParams(format!(
            "task {id} is paid with authorization {bound}; send that payment again, not \
             another (it may have been settled already)"
        ))),
        None => {
            metadata.insert(BOUND_KEY.into(), Value::String(authorization.to_owned()));
            gw.store.put(agent.address(), &stored).map_err(internal)?;
            gw.store.flush().await.map_err(internal)
        }
    }
}

/// A task whose payment is being handled: one at a time.
struct Paying<'a> {
    gw: &'a A2aGateway,
    key: (wallets::Address, String),
}

impl<'a> Paying<'a> {
    fn enter(gw: &'a A2aGateway, agent: wallets::Address, id: &str) -> Result<Self, A2aError> {
        let key = (agent, id.to_owned());
        let fresh = gw
            .paying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.clone());
        if fresh {
            Ok(Self { gw, key })
        } else {
            Err(A2aError::UnsupportedOperation(format!(
                "a payment for task {id} is being handled; GetTask shows how it ends"
            )))
        }
    }
}

impl Drop for Paying<'_> {
    fn drop(&mut self) {
        self.gw
            .paying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.key);
    }
}

/// Records the client's `message` and the task's new state, unless it ended meanwhile.
#[allow(clippy::too_many_arguments)]
async fn finish(
    gw: &A2aGateway,
    agent: &A2aAgent,
    id: &str,
    message: Message,
    state: TaskState,
    text: String,
    metadata: Value,
    artifact: Option<Artifact>,
    events: &Option<mpsc::Sender<StreamResponse>>,
) -> Result<Task, A2aError> {
    let _turn = gw.transitions.lock().await;
    let mut stored = gw
        .store
        .get(agent.address(), id)
        .map_err(internal)?
        .ok_or_else(|| A2aError::TaskNotFound(format!("no task {id:?}")))?;
    if stored.task.status.state.is_terminal() {
        return Ok(stored.task);
    }
    let now = now_ms();
    stored.task.history.push(message);
    if let Some(a) = &artifact {
        stored.task.artifacts.push(a.clone());
    }
    let mut next = status(state, None, &stored.task, now);
    next.message = Some(say(&stored.task, text, metadata));
    stored.task.status = next;
    stored.updated_ms = now;
    gw.store.put(agent.address(), &stored).map_err(internal)?;
    gw.store.flush().await.map_err(internal)?;
    emit(events, StreamResponse::Task(stored.task.clone())).await;
    if let Some(artifact) = artifact {
        emit(events, artifact_event(&stored.task, artifact)).await;
    }
    emit(events, status_event(&stored.task)).await;
    Ok(stored.task)
}
