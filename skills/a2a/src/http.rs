//! The gateway's HTTP face: the agent cards, the JSON-RPC binding, the HTTP+JSON
//! binding and server-sent events, as an axum [`Router`] for the host's edge.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt as _;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use wallets::Address;

use crate::error::A2aError;
use crate::server::{A2aAgent, A2aGateway};
use crate::wire::{
    CancelTaskRequest, GetTaskRequest, ListTasksRequest, SendMessageRequest, SendMessageResponse,
    StreamResponse, VERSION_HEADER,
};

/// The gateway's routes, under `/agents` and at `/.well-known/agent-card.json` (mount
/// it at both on the host's edge):
///
/// | route | what |
/// |---|---|
/// | `GET /.well-known/agent-card.json` | the card of the host's one agent (with several, a `404` pointing at `/agents`) |
/// | `GET /agents` | the agents served: name, address, card URL |
/// | `GET /agents/<address>/.well-known/agent-card.json` | the agent's A2A card |
/// | `POST /agents/<address>/` | JSON-RPC: `SendMessage`, `SendStreamingMessage`, `GetTask`, `ListTasks`, `CancelTask` |
/// | `POST /agents/<address>/message:send`, `…/message:stream` | HTTP+JSON |
/// | `GET /agents/<address>/tasks`, `…/tasks/<id>`; `POST …/tasks/<id>:cancel` | HTTP+JSON |
pub fn router(gateway: Arc<A2aGateway>) -> Router {
    let limit = gateway.max_body_bytes();
    Router::new()
        .route("/agents", get(index))
        .route("/agents/", get(index))
        .route("/.well-known/agent-card.json", get(root_card))
        .route("/agents/:agent/.well-known/agent-card.json", get(card))
        .route("/agents/:agent", axum::routing::post(jsonrpc))
        .route("/agents/:agent/", axum::routing::post(jsonrpc))
        .route(
            "/agents/:agent/:action",
            axum::routing::post(rest_post).get(rest_list),
        )
        .route(
            "/agents/:agent/tasks/:id",
            get(rest_get).post(rest_task_action),
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(gateway)
}

/// Serves [`router`] alone on `listen` (port 0 picks one), for tests and tools.
///
/// # Errors
/// The bind error.
pub async fn serve(
    gateway: Arc<A2aGateway>,
    listen: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = router(gateway);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(target: "a2a", error = %e, "server stopped");
        }
    });
    Ok((addr, task))
}

type Gw = State<Arc<A2aGateway>>;

async fn index(State(gw): Gw) -> Response {
    let agents: Vec<Value> = gw
        .agents()
        .into_iter()
        .map(|(address, name)| {
            let url = gw.agent_url(address);
            json!({"name": name, "address": address, "url": format!("{url}/"),
                   "card": format!("{url}/{}", crate::wire::CARD_PATH)})
        })
        .collect();
    Json(json!({ "agents": agents })).into_response()
}

/// The agent at `/agents/<agent>`, or a 404 in the HTTP+JSON error form.
fn find(gw: &A2aGateway, agent: &str) -> Result<Arc<A2aAgent>, Box<Response>> {
    agent
        .parse::<Address>()
        .ok()
        .and_then(|a| gw.agent(a))
        .ok_or_else(|| {
            Box::new(rest_error(&A2aError::MethodNotFound(format!(
                "no agent {agent:?} on this host; GET /agents lists them"
            ))))
        })
}

async fn card(State(gw): Gw, Path(agent): Path<String>) -> Response {
    match find(&gw, &agent) {
        Ok(a) => match gw.card(a.address()) {
            Some(card) => Json(card).into_response(),
            None => rest_error(&A2aError::Internal("the agent left".into())),
        },
        Err(r) => *r,
    }
}

/// The host's card: its agent's, when it serves one (a deployed agent has a host of its
/// own); with several, a `404` that points at `GET /agents`.
async fn root_card(State(gw): Gw) -> Response {
    match gw.agents().as_slice() {
        [(address, _)] => match gw.card(*address) {
            Some(card) => Json(card).into_response(),
            None => rest_error(&A2aError::Internal("the agent left".into())),
        },
        agents => rest_error(&A2aError::MethodNotFound(format!(
            "this host serves {} agents: GET /agents lists them, each with its card",
            agents.len()
        ))),
    }
}

/// The agent at `/agents/<agent>` for a client of protocol version 1.x, or the error
/// response (HTTP+JSON form).
fn agent_for(
    gw: &A2aGateway,
    agent: &str,
    headers: &HeaderMap,
) -> Result<Arc<A2aAgent>, Box<Response>> {
    let agent = find(gw, agent)?;
    check_version(headers).map_err(|e| Box::new(rest_error(&e)))?;
    Ok(agent)
}

/// The client's protocol version is 1.x (a missing header means 0.3).
fn check_version(headers: &HeaderMap) -> Result<(), A2aError> {
    let sent = headers
        .get(VERSION_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned());
    let version = sent.as_deref().unwrap_or("0.3");
    let major = version.split('.').next().unwrap_or_default();
    if major == "1" {
        Ok(())
    } else {
        Err(A2aError::VersionNotSupported(format!(
            "A2A version {version:?}{} is not supported: this agent speaks {} (send the \
             {VERSION_HEADER} header)",
            if sent.is_none() { " (no header)" } else { "" },
            crate::wire::PROTOCOL_VERSION
        )))
    }
}

fn params<T: DeserializeOwned>(value: Value) -> Result<T, A2aError> {
    serde_json::from_value(value).map_err(|e| A2aError::InvalidParams(format!("params: {e}")))
}

fn rpc_result(id: &Value, result: impl serde::Serialize) -> Response {
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

/// A JSON-RPC error: HTTP 200 (the clients read the error from the body).
fn rpc_error(id: &Value, e: &A2aError) -> Response {
    Json(json!({"jsonrpc": "2.0", "id": id, "error": e.to_jsonrpc()})).into_response()
}

fn rest_error(e: &A2aError) -> Response {
    let (status, _) = e.http_status();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(e.to_rest())).into_response()
}

async fn jsonrpc(
    State(gw): Gw,
    Path(agent): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let agent = match find(&gw, &agent) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let null = Value::Null;
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return rpc_error(
                &null,
                &A2aError::InvalidRequest(format!(
                    "request body: {} (at most {} bytes)",
                    e.body_text(),
                    gw.max_body_bytes()
                )),
            )
        }
    };
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return rpc_error(
                &null,
                &A2aError::Parse(format!("the body is not JSON: {e}")),
            )
        }
    };
    let Value::Object(mut request) = request else {
        return rpc_error(
            &null,
            &A2aError::InvalidRequest(
                "a JSON-RPC request is an object (batches are not served)".into(),
            ),
        );
    };
    let id = request.remove("id").unwrap_or(Value::Null);
    if !matches!(id, Value::Null | Value::String(_) | Value::Number(_)) {
        return rpc_error(
            &null,
            &A2aError::InvalidRequest("id is a string, a number or null".into()),
        );
    }
    if request.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return rpc_error(
            &id,
            &A2aError::InvalidRequest("jsonrpc must be \"2.0\"".into()),
        );
    }
    let Some(method) = request
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return rpc_error(
            &id,
            &A2aError::InvalidRequest("method is missing or not a string".into()),
        );
    };
    if let Err(e) = check_version(&headers) {
        return rpc_error(&id, &e);
    }
    let p = request
        .remove("params")
        .unwrap_or_else(|| Value::Object(Map::new()));
    let done = |r: Result<Value, A2aError>| match r {
        Ok(v) => rpc_result(&id, v),
        Err(e) => rpc_error(&id, &e),
    };
    match method.as_str() {
        "SendMessage" => done(
            async {
                let task = gw.send(&agent, params(p)?, None).await?;
                to_value(&SendMessageResponse::Task(task))
            }
            .await,
        ),
        "SendStreamingMessage" => match params::<SendMessageRequest>(p) {
            Ok(r) => stream(gw, agent, r, Some(id)).await,
            Err(e) => rpc_error(&id, &e),
        },
        "GetTask" => done(
            params(p)
                .and_then(|r| gw.get_task(&agent, r))
                .and_then(|t| to_value(&t)),
        ),
        "ListTasks" => done(
            params(p)
                .and_then(|r| gw.list_tasks(&agent, r))
                .and_then(|t| to_value(&t)),
        ),
        "CancelTask" => done(
            async {
                let task = gw.cancel_task(&agent, params(p)?).await?;
                to_value(&task)
            }
            .await,
        ),
        "SubscribeToTask" => done(Err(A2aError::UnsupportedOperation(
            "SubscribeToTask is not served; GetTask polls a task".into(),
        ))),
        "CreateTaskPushNotificationConfig"
        | "GetTaskPushNotificationConfig"
        | "ListTaskPushNotificationConfigs"
        | "DeleteTaskPushNotificationConfig" => done(Err(A2aError::PushNotificationNotSupported(
            "this agent sends no push notifications".into(),
        ))),
        "GetExtendedAgentCard" => done(Err(A2aError::ExtendedAgentCardNotConfigured(
            "this agent has no extended card".into(),
        ))),
        other => done(Err(A2aError::MethodNotFound(format!(
            "no method {other:?}; this agent serves SendMessage, SendStreamingMessage, GetTask, \
             ListTasks and CancelTask"
        )))),
    }
}

fn to_value(v: &impl serde::Serialize) -> Result<Value, A2aError> {
    serde_json::to_value(v).map_err(|e| A2aError::Internal(e.to_string()))
}

/// Runs a streaming send: server-sent events of [`StreamResponse`]s, each wrapped as a
/// JSON-RPC result when `rpc_id` is given. An error before the task exists is answered
/// as a plain error.
async fn stream(
    gw: Arc<A2aGateway>,
    agent: Arc<A2aAgent>,
    request: SendMessageRequest,
    rpc_id: Option<Value>,
) -> Response {
    let (tx, mut rx) = mpsc::channel::<StreamResponse>(16);
    let run = {
        let gw = gw.clone();
        tokio::spawn(async move { gw.send(&agent, request, Some(tx)).await })
    };
    let Some(first) = rx.recv().await else {
        let e = match run.await {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => A2aError::Internal("the task ended without an event".into()),
            Err(e) => A2aError::Internal(format!("the task's worker failed: {e}")),
        };
        return match &rpc_id {
            Some(id) => rpc_error(id, &e),
            None => rest_error(&e),
        };
    };
    let events = futures::stream::unfold((Some(first), rx), |(first, mut rx)| async move {
        let next = match first {
            Some(f) => Some(f),
            None => rx.recv().await,
        };
        next.map(|e| (e, (None, rx)))
    });
    let events = events.map(move |event| {
        let data = match &rpc_id {
            Some(id) => json!({"jsonrpc": "2.0", "id": id, "result": event}),
            None => serde_json::to_value(&event).unwrap_or(Value::Null),
        };
        Ok::<_, std::convert::Infallible>(Event::default().data(data.to_string()))
    });
    Sse::new(events).into_response()
}

async fn rest_post(
    State(gw): Gw,
    Path((agent, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let agent = match agent_for(&gw, &agent, &headers) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let request = body
        .map_err(|e| A2aError::InvalidRequest(format!("request body: {}", e.body_text())))
        .and_then(|b| {
            serde_json::from_slice::<Value>(&b)
                .map_err(|e| A2aError::Parse(format!("the body is not JSON: {e}")))
        })
        .and_then(params::<SendMessageRequest>);
    let request = match request {
        Ok(r) => r,
        Err(e) => return rest_error(&e),
    };
    match action.as_str() {
        "message:send" => match gw.send(&agent, request, None).await {
            Ok(task) => Json(SendMessageResponse::Task(task)).into_response(),
            Err(e) => rest_error(&e),
        },
        "message:stream" => stream(gw, agent, request, None).await,
        other => rest_error(&A2aError::MethodNotFound(format!(
            "no route POST {other:?}"
        ))),
    }
}

async fn rest_list(
    State(gw): Gw,
    Path((agent, action)): Path<(String, String)>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if action != "tasks" {
        return rest_error(&A2aError::MethodNotFound(format!(
            "no route GET {action:?}"
        )));
    }
    let agent = match agent_for(&gw, &agent, &headers) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let result = query_params(&query)
        .and_then(params::<ListTasksRequest>)
        .and_then(|r| gw.list_tasks(&agent, r));
    match result {
        Ok(list) => Json(list).into_response(),
        Err(e) => rest_error(&e),
    }
}

/// Query parameters as the request object: numbers and booleans where they parse.
fn query_params(query: &HashMap<String, String>) -> Result<Value, A2aError> {
    let mut out = Map::new();
    for (k, v) in query {
        let value = match k.as_str() {
            "pageSize" | "historyLength" => Value::from(
                v.parse::<i64>()
                    .map_err(|_| A2aError::InvalidParams(format!("{k} {v:?} is not a number")))?,
            ),
            "includeArtifacts" => Value::Bool(v == "true"),
            _ => Value::String(v.clone()),
        };
        out.insert(k.clone(), value);
    }
    Ok(Value::Object(out))
}

async fn rest_get(
    State(gw): Gw,
    Path((agent, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let agent = match agent_for(&gw, &agent, &headers) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let result = query_params(&query)
        .and_then(|mut q| {
            if let Value::Object(m) = &mut q {
                m.insert("id".into(), Value::String(id));
            }
            params::<GetTaskRequest>(q)
        })
        .and_then(|r| gw.get_task(&agent, r));
    match result {
        Ok(task) => Json(task).into_response(),
        Err(e) => rest_error(&e),
    }
}

async fn rest_task_action(
    State(gw): Gw,
    Path((agent, id_action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let agent = match agent_for(&gw, &agent, &headers) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    match id_action.rsplit_once(':') {
        Some((id, "cancel")) => {
            let r = CancelTaskRequest {
                id: id.to_owned(),
                ..CancelTaskRequest::default()
            };
            match gw.cancel_task(&agent, r).await {
                Ok(task) => Json(task).into_response(),
                Err(e) => rest_error(&e),
            }
        }
        Some((_, "subscribe")) => rest_error(&A2aError::UnsupportedOperation(
            "subscribing is not served; GET the task to poll it".into(),
        )),
        _ => rest_error(&A2aError::MethodNotFound(format!(
            "no route POST tasks/{id_action:?}"
        ))),
    }
}
