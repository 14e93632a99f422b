//! Hiring an outside A2A agent: [`A2aClient::hire`] resolves the agent's card, sends
//! the request as a data part over JSON-RPC, follows the task to its end, and pays a
//! skill that asks for it (A2A's x402 extension) through the agent's spending policy,
//! with an [`x402::X402Buyer`].
//!
//! ```no_run
//! # async fn demo(buyer: std::sync::Arc<x402::X402Buyer>) -> Result<(), a2a::client::HireError> {
//! use a2a::client::{A2aClient, Hire};
//!
//! let client = A2aClient::new().with_buyer(buyer);
//! let hired = client
//!     .hire(Hire::new("http://127.0.0.1:7411", serde_json::json!({"city": "Lisbon"}))
//!         .skill("weather.forecast")
//!         .id("trip-42-forecast-lisbon"))
//!     .await?;
//! println!("{} (paid: {:?})", hired.result, hired.paid.map(|p| p.payment.payment.amount()));
//! # Ok(())
//! # }
//! ```
//!
//! A payment goes only through the buyer's policy (its token pins and limits); a
//! server cannot widen them. The payment is stored and journaled before it is sent and
//! keyed by the hire's id, so a hire retried with the same id sends the same payment,
//! never a second one.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use wallets::{Amount, SignedPayment};
use x402::buyer::{BuyError, Method, Purchase};
use x402::wire::{PaymentRequired, SettleResponse};
use x402::X402Buyer;

use crate::paid::{PAYLOAD_KEY, RECEIPTS_KEY, REQUIRED_KEY, STATUS_KEY};
use crate::wire::{
    AgentCard, Message, Part, Role, Task, TaskState, BINDING_JSONRPC, CARD_PATH, VERSION_HEADER,
};

/// One hire: where, what, for which skill, under which id.
#[derive(Clone, Debug)]
pub struct Hire {
    url: String,
    request: Value,
    skill: Option<String>,
    id: Option<String>,
    max_price: Option<Amount>,
    timeout: Duration,
}

impl Hire {
    /// `request` (a data part) to the agent whose card is at `url` (its base URL, the
    /// card at `<url>/.well-known/agent-card.json`).
    pub fn new(url: impl Into<String>, request: Value) -> Self {
        Self {
            url: url.into().trim_end_matches('/').to_owned(),
            request,
            skill: None,
            id: None,
            max_price: None,
            timeout: Duration::from_secs(120),
        }
    }

    /// Names the skill (`message.metadata.skillId`).
    pub fn skill(mut self, skill: impl Into<String>) -> Self {
        self.skill = Some(skill.into());
        self
    }

    /// The hire's id (16 to 128 letters, digits, `-`, `_`): its payment's, so that the
    /// same hire retried pays once. Without one, a fresh id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The most the hire may cost: a skill asking for more is not paid (on top of
    /// what the spending policy's limits refuse).
    pub fn max_price(mut self, max: Amount) -> Self {
        self.max_price = Some(max);
        self
    }

    /// The agent's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How long to follow the task (default two minutes).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// What a hire got.
#[derive(Clone, Debug)]
pub struct Hired {
    /// The task, completed.
    pub task: Task,
    /// The result: the first data part of its artifacts (or its text).
    pub result: Value,
    /// The payment, if the skill asked for one.
    pub paid: Option<HirePayment>,
}

/// A hire's payment.
#[derive(Clone, Debug)]
pub struct HirePayment {
    /// The signed authorization sent.
    pub payment: SignedPayment,
    /// The agent's receipts.
    pub receipts: Vec<SettleResponse>,
}

/// An agent's first answer to a hire, before anything is paid: its task, and its
/// price when the skill asks for payment. [`A2aClient::accept`] goes on with it;
/// [`A2aClient::decline`] cancels the task.
#[derive(Clone, Debug)]
pub struct Quote {
    /// The task the agent opened.
    pub task: Task,
    /// What this client would pay: the cheapest offer it can pay within the hire's
    /// [`Hire::max_price`]; `None` when the skill asks for nothing.
    pub price: Option<Amount>,
    /// Whom that offer pays (its `payTo`); `None` when the skill asks for nothing.
    pub payee: Option<wallets::Address>,
    /// The JSON-RPC endpoint from the agent's card.
    endpoint: String,
}

/// Why a hire failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HireError {
    /// The agent could not be reached, or answered something that is not A2A.
    #[error("A2A agent {url}: {reason}")]
    Agent {
        /// Its URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The agent answered with an A2A error.
    #[error("A2A agent {url}: {method} failed with {code}: {message}")]
    Protocol {
        /// Its URL.
        url: String,
        /// The method.
        method: &'static str,
        /// The A2A error code.
        code: i64,
        /// Its message.
        message: String,
    },
    /// The task ended without a result.
    #[error("A2A agent {url}: task {task} ended {state:?}: {message}")]
    Ended {
        /// Its URL.
        url: String,
        /// The task.
        task: String,
        /// How it ended.
        state: TaskState,
        /// The agent's message.
        message: String,
    },
    /// The skill asks for payment and this client has no buyer.
    #[error("A2A agent {url}: the skill asks for payment and this client pays nothing")]
    PaymentRequired {
        /// Its URL.
        url: String,
    },
    /// The payment could not be made (the policy refused it, no offer can be paid).
    #[error(transparent)]
    Payment(#[from] Box<BuyError>),
    /// The task did not end in time.
    #[error("A2A agent {url}: task {task} still {state:?} after {after:?}")]
    Timeout {
        /// Its URL.
        url: String,
        /// The task.
        task: String,
        /// Where it stood.
        state: TaskState,
        /// How long it was followed.
        after: Duration,
    },
}

/// A client of outside A2A agents; see the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct A2aClient {
    http: reqwest::Client,
    buyer: Option<Arc<X402Buyer>>,
}

impl A2aClient {
    /// A client that pays for nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pays the skills that ask for it through `buyer` (the agent's spending policy).
    pub fn with_buyer(mut self, buyer: Arc<X402Buyer>) -> Self {
        self.buyer = Some(buyer);
        self
    }

    /// The card at `<url>/.well-known/agent-card.json`.
    ///
    /// # Errors
    /// [`HireError::Agent`] when it cannot be fetched or is not an A2A card.
    pub async fn card(&self, url: &str) -> Result<AgentCard, HireError> {
        let url = url.trim_end_matches('/');
        let agent = |reason: String| HireError::Agent {
            url: url.to_owned(),
            reason,
        };
        let r = self
            .http
            .get(format!("{url}/{CARD_PATH}"))
            .send()
            .await
            .map_err(|e| agent(format!("fetching the card: {e}")))?;
        if !r.status().is_success() {
            return Err(agent(format!("the card answered {}", r.status())));
        }
        r.json()
            .await
            .map_err(|e| agent(format!("the card is not an A2A card: {e}")))
    }

    /// Sends `hire` and follows its task to the end, paying when asked:
    /// [`A2aClient::quote`], then [`A2aClient::accept`].
    ///
    /// # Errors
    /// A [`HireError`] that says where it stopped.
    pub async fn hire(&self, hire: Hire) -> Result<Hired, HireError> {
        let quote = self.quote(&hire).await?;
        self.accept(hire, quote).await
    }

    /// Resolves the agent's card and sends the request, and says what the skill asks:
    /// its price, when it asks for payment (the cheapest offer the buyer's pinned
    /// tokens can pay within [`Hire::max_price`]). Nothing is signed.
    ///
    /// # Errors
    /// [`HireError::Agent`] and [`HireError::Protocol`] when the agent cannot be
    /// reached or answers amiss; [`HireError::PaymentRequired`] when the skill asks for
    /// payment and this client has no buyer; [`HireError::Payment`] when no offer can
    /// be paid (another token, or dearer than the most).
    pub async fn quote(&self, hire: &Hire) -> Result<Quote, HireError> {
        let card = self.card(&hire.url).await?;
        let endpoint = card
            .supported_interfaces
            .iter()
            .find(|i| i.protocol_binding == BINDING_JSONRPC && i.protocol_version.starts_with("1."))
            .map(|i| i.url.clone())
            .ok_or_else(|| HireError::Agent {
                url: hire.url.clone(),
                reason: "its card lists no JSON-RPC interface of A2A 1.x".into(),
            })?;
        let call = Call {
            http: &self.http,
            url: &hire.url,
            endpoint: &endpoint,
        };
        let mut metadata = Map::new();
        if let Some(skill) = &hire.skill {
            metadata.insert(crate::SKILL_ID_KEY.into(), Value::String(skill.clone()));
        }
        let message = Message {
            message_id: crate::server::new_id(),
            role: Role::User,
            parts: vec![Part::data(hire.request.clone())],
            metadata: (!metadata.is_empty()).then_some(metadata),
            ..Message::default()
        };
        let task = call.send(message).await?;
        let offer = match payment_required(&task) {
            Some(required) if task.status.state == TaskState::InputRequired => {
                let buyer = self
                    .buyer
                    .as_ref()
                    .ok_or_else(|| HireError::PaymentRequired {
                        url: hire.url.clone(),
                    })?;
                let purchase = purchase_of(hire, &endpoint, &task);
                Some(buyer.price(&purchase, &required).map_err(Box::new)?)
            }
            _ => None,
        };
        Ok(Quote {
            task,
            price: offer.map(|(price, _)| price),
            payee: offer.map(|(_, payee)| payee),
            endpoint,
        })
    }

    /// Cancels a quoted task that will not be paid (best effort: an agent that does
    /// not answer keeps it until it expires there; nothing was paid either way).
    pub async fn decline(&self, hire: &Hire, quote: &Quote) {
        let call = Call {
            http: &self.http,
            url: &hire.url,
            endpoint: &quote.endpoint,
        };
        if let Err(e) = call.rpc("CancelTask", json!({"id": quote.task.id})).await {
            tracing::debug!(target: "agora::a2a", url = %hire.url, task = %quote.task.id,
                error = %e, "declined task not canceled");
        }
    }

    /// Follows a quoted hire's task to the end, paying when asked (through the buyer's
    /// spending policy, within [`Hire::max_price`]).
    ///
    /// # Errors
    /// A [`HireError`] that says where it stopped.
    pub async fn accept(&self, hire: Hire, quote: Quote) -> Result<Hired, HireError> {
        let Quote {
            mut task, endpoint, ..
        } = quote;
        let call = Call {
            http: &self.http,
            url: &hire.url,
            endpoint: &endpoint,
        };
        let deadline = tokio::time::Instant::now() + hire.timeout;
        let mut paid: Option<(Purchase, SignedPayment, Value)> = None;
        let mut polls = 0u32;
        loop {
            let state = task.status.state;
            match state {
                TaskState::Completed => break,
                TaskState::Failed
                | TaskState::Canceled
                | TaskState::Rejected
                | TaskState::AuthRequired
                | TaskState::Unspecified => {
                    if let Some((purchase, _, _)) = &paid {
                        self.record(purchase, 402, &task).await?;
                    }
                    return Err(HireError::Ended {
                        url: hire.url.clone(),
                        task: task.id.clone(),
                        state,
                        message: status_text(&task),
                    });
                }
                TaskState::InputRequired => {
                    let payload = match &paid {
                        // The agent asks again (the node could not say, the skill
                        // failed after payment): the same payment, never a new one.
                        Some((_, _, payload)) => {
                            polls += 1;
                            tokio::time::sleep(Duration::from_millis(100 << polls.min(4))).await;
                            payload.clone()
                        }
                        None => {
                            let required =
                                payment_required(&task).ok_or_else(|| HireError::Ended {
                                    url: hire.url.clone(),
                                    task: task.id.clone(),
                                    state,
                                    message: format!("it waits for input: {}", status_text(&task)),
                                })?;
                            let buyer =
                                self.buyer
                                    .as_ref()
                                    .ok_or_else(|| HireError::PaymentRequired {
                                        url: hire.url.clone(),
                                    })?;
                            let purchase = purchase_of(&hire, &endpoint, &task);
                            let (payload, signed) = buyer
                                .authorize(&purchase, &required)
                                .await
                                .map_err(Box::new)?;
                            let payload = serde_json::to_value(payload).unwrap_or(Value::Null);
                            paid = Some((purchase, signed, payload.clone()));
                            payload
                        }
                    };
                    if tokio::time::Instant::now() >= deadline {
                        return Err(timeout(&hire, &task));
                    }
                    let mut md = Map::new();
                    md.insert(STATUS_KEY.into(), json!("payment-submitted"));
                    md.insert(PAYLOAD_KEY.into(), payload);
                    let message = Message {
                        message_id: crate::server::new_id(),
                        task_id: task.id.clone(),
                        context_id: task.context_id.clone(),
                        role: Role::User,
                        parts: vec![Part::text("Here is the payment.")],
                        metadata: Some(md),
                        ..Message::default()
                    };
                    task = call.send(message).await?;
                }
                TaskState::Submitted | TaskState::Working => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(timeout(&hire, &task));
                    }
                    polls += 1;
                    tokio::time::sleep(Duration::from_millis(100 << polls.min(4))).await;
                    task = call.get(&task.id).await?;
                }
            }
        }
        let result = result_of(&task);
        let paid = match paid {
            Some((purchase, payment, _)) => {
                self.record(&purchase, 200, &task).await?;
                Some(HirePayment {
                    payment,
                    receipts: receipts(&task),
                })
            }
            None => None,
        };
        Ok(Hired { task, result, paid })
    }

    /// Journals what came of a payment.
    async fn record(&self, purchase: &Purchase, status: u16, task: &Task) -> Result<(), HireError> {
        let Some(buyer) = &self.buyer else {
            return Ok(());
        };
        let receipt = receipts(task).into_iter().next();
        let body = serde_json::to_vec(&result_of(task)).unwrap_or_default();
        buyer
            .answered(purchase, status, receipt.as_ref(), &body)
            .await
            .map_err(|e| HireError::Payment(Box::new(e)))
    }
}

/// JSON-RPC calls to one agent.
struct Call<'a> {
    http: &'a reqwest::Client,
    url: &'a str,
    endpoint: &'a str,
}

impl Call<'_> {
    async fn rpc(&self, method: &'static str, params: Value) -> Result<Value, HireError> {
        let agent = |reason: String| HireError::Agent {
            url: self.url.to_owned(),
            reason,
        };
        let body = json!({"jsonrpc": "2.0", "id": crate::server::new_id(), "method": method, "params": params});
        let r = self
            .http
            .post(self.endpoint)
            .header(VERSION_HEADER, crate::wire::PROTOCOL_VERSION)
            .json(&body)
            .send()
            .await
            .map_err(|e| agent(format!("{method}: {e}")))?;
        let mut answer: Value = r
            .json()
            .await
            .map_err(|e| agent(format!("{method}: the answer is not JSON: {e}")))?;
        if let Some(e) = answer.get("error") {
            return Err(HireError::Protocol {
                url: self.url.to_owned(),
                method,
                code: e.get("code").and_then(Value::as_i64).unwrap_or_default(),
                message: e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        answer
            .get_mut("result")
            .map(Value::take)
            .ok_or_else(|| agent(format!("{method}: the answer has no result")))
    }

    async fn send(&self, message: Message) -> Result<Task, HireError> {
        let mut result = self.rpc("SendMessage", json!({"message": message})).await?;
        let task = result
            .get_mut("task")
            .map(Value::take)
            .ok_or_else(|| HireError::Agent {
                url: self.url.to_owned(),
                reason: "SendMessage answered a message, not a task".into(),
            })?;
        self.task(task)
    }

    async fn get(&self, id: &str) -> Result<Task, HireError> {
        let task = self.rpc("GetTask", json!({"id": id})).await?;
        self.task(task)
    }

    fn task(&self, value: Value) -> Result<Task, HireError> {
        serde_json::from_value(crate::server::integral(value)).map_err(|e| HireError::Agent {
            url: self.url.to_owned(),
            reason: format!("not an A2A task: {e}"),
        })
    }
}

/// The x402 purchase a hire's payment is: the request to the endpoint, under the
/// hire's id (else one named after the task), within its most.
fn purchase_of(hire: &Hire, endpoint: &str, task: &Task) -> Purchase {
    let id = hire
        .id
        .clone()
        .unwrap_or_else(|| format!("a2a_{}", task.id));
    let body = serde_json::to_vec(&hire.request).unwrap_or_default();
    let purchase = Purchase::new(Method::POST, endpoint)
        .body(body, "application/json")
        .id(id);
    match hire.max_price {
        Some(max) => purchase.max_price(max),
        None => purchase,
    }
}

fn status_metadata(task: &Task) -> Option<&Map<String, Value>> {
    task.status.message.as_ref()?.metadata.as_ref()
}

/// The `PaymentRequired` a task waiting for payment carries.
fn payment_required(task: &Task) -> Option<PaymentRequired> {
    let md = status_metadata(task)?;
    if md.get(STATUS_KEY).and_then(Value::as_str) != Some("payment-required") {
        return None;
    }
    serde_json::from_value(md.get(REQUIRED_KEY)?.clone()).ok()
}

fn receipts(task: &Task) -> Vec<SettleResponse> {
    status_metadata(task)
        .and_then(|md| md.get(RECEIPTS_KEY))
        .and_then(|r| serde_json::from_value(r.clone()).ok())
        .unwrap_or_default()
}

fn status_text(task: &Task) -> String {
    task.status
        .message
        .as_ref()
        .map(|m| {
            m.parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn result_of(task: &Task) -> Value {
    let parts = task.artifacts.iter().flat_map(|a| a.parts.iter());
    let mut text = None;
    for p in parts {
        if let Some(data) = &p.data {
            return data.clone();
        }
        if text.is_none() {
            text = p.text.clone();
        }
    }
    text.map_or(Value::Null, Value::String)
}

fn timeout(hire: &Hire, task: &Task) -> HireError {
    HireError::Timeout {
        url: hire.url.clone(),
        task: task.id.clone(),
        state: task.status.state,
        after: hire.timeout,
    }
}
