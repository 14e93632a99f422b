//! JSON-RPC 2.0 over HTTP (POST /) and WebSocket (GET / with an upgrade), with
//! `eth_subscribe` for `newHeads` and `logs` on WebSocket.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ethers::types::{
    Address as EAddress, BlockNumber, Bytes as EBytes, FeeHistory, H256, U256, U64,
};
use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::state::{describe_failure, log_matches, CallRequest, BASE_FEE};
use super::{DevnetError, Mined, Shared};

/// Largest request body accepted (a contract deployment fits easily).
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Largest batch accepted.
const MAX_BATCH: usize = 256;
/// Most blocks one `eth_getLogs` may scan.
const MAX_LOG_RANGE: u64 = 100_000;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(ws_upgrade).post(http))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// A JSON-RPC error object.
#[derive(Debug)]
struct RpcError {
    code: i64,
    message: String,
    data: Option<Value>,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    fn params(message: impl Into<String>) -> Self {
        Self::new(-32602, message)
    }

    fn to_json(&self) -> Value {
        match &self.data {
            Some(d) => json!({"code": self.code, "message": self.message, "data": d}),
            None => json!({"code": self.code, "message": self.message}),
        }
    }
}

impl From<DevnetError> for RpcError {
    fn from(e: DevnetError) -> Self {
        match e {
            DevnetError::Reverted((message, data)) => Self {
                code: 3,
                message,
                data: data.map(|d| Value::String(d.to_string())),
            },
            DevnetError::Rejected(m) => Self::new(-32000, m),
            other => Self::new(-32603, other.to_string()),
        }
    }
}

type RpcResult = Result<Value, RpcError>;

async fn http(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    Json(answer(&shared, &body).await).into_response()
}

/// The reply to an HTTP request body: one call, or a batch of 1 to [`MAX_BATCH`].
/// Never panics, whatever the bytes: a body that is not JSON, not a call or a call
/// with bad params is answered with a JSON-RPC error.
pub(super) async fn answer(shared: &Arc<Shared>, body: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(body) {
        Err(e) => error_reply(
            Value::Null,
            &RpcError::new(-32700, format!("parse error: {e}")),
        ),
        Ok(Value::Array(calls)) if calls.is_empty() || calls.len() > MAX_BATCH => error_reply(
            Value::Null,
            &RpcError::new(-32600, format!("a batch must hold 1 to {MAX_BATCH} calls")),
        ),
        Ok(Value::Array(calls)) => {
            let mut out = Vec::with_capacity(calls.len());
            for call in calls {
                out.push(handle_call(shared, call, None).await);
            }
            Value::Array(out)
        }
        Ok(call) => handle_call(shared, call, None).await,
    }
}

fn error_reply(id: Value, e: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": e.to_json()})
}

/// Runs one call; `subs` is the WebSocket's subscription context, if any.
async fn handle_call(shared: &Arc<Shared>, call: Value, subs: Option<&mut Subscriptions>) -> Value {
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = call.get("method").and_then(Value::as_str) else {
        return error_reply(id, &RpcError::new(-32600, "invalid request: no method"));
    };
    let params = match call.get("params") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(p)) => p.clone(),
        Some(_) => {
            return error_reply(id, &RpcError::params("params must be an array"));
        }
    };
    let result = match (method, subs) {
        ("eth_subscribe", Some(subs)) => subs.subscribe(shared, &params),
        ("eth_unsubscribe", Some(subs)) => subs.unsubscribe(&params),
        ("eth_subscribe" | "eth_unsubscribe", None) => Err(RpcError::new(
            -32601,
            "subscriptions need a WebSocket connection",
        )),
        (m, _) => dispatch(shared, m, &params).await,
    };
    match result {
        Ok(v) => json!({"jsonrpc": "2.0", "id": id, "result": v}),
        Err(e) => {
            tracing::debug!(target: "chain::rpc", method, code = e.code, message = %e.message, "call failed");
            error_reply(id, &e)
        }
    }
}

fn param<T: DeserializeOwned>(params: &[Value], i: usize, name: &str) -> Result<T, RpcError> {
    let v = params.get(i).cloned().unwrap_or(Value::Null);
    serde_json::from_value(v).map_err(|e| RpcError::params(format!("param {i} ({name}): {e}")))
}

fn opt_param<T: DeserializeOwned>(
    params: &[Value],
    i: usize,
    name: &str,
) -> Result<Option<T>, RpcError> {
    match params.get(i) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => param(params, i, name).map(Some),
    }
}

fn to_value<T: serde::Serialize>(v: T) -> RpcResult {
    serde_json::to_value(v).map_err(|e| RpcError::new(-32603, e.to_string()))
}

/// Resolves a block tag to a number, given the head.
fn block_number(tag: Option<BlockNumber>, head: u64) -> Result<u64, RpcError> {
    match tag.unwrap_or(BlockNumber::Latest) {
        BlockNumber::Number(n) => Ok(n.as_u64()),
        BlockNumber::Earliest => Ok(0),
        _ => Ok(head),
    }
}

/// State queries only know the latest state; older block tags are refused clearly.
fn require_latest(tag: Option<BlockNumber>, head: u64) -> Result<(), RpcError> {
    let n = block_number(tag, head)?;
    if n >= head {
        Ok(())
    } else {
        Err(RpcError::new(
            -32000,
            format!("historical state is not kept: block {n} is older than the head {head}"),
        ))
    }
}

async fn dispatch(shared: &Arc<Shared>, method: &str, p: &[Value]) -> RpcResult {
    match method {
        "web3_clientVersion" => to_value(format!("agora-devnet/{}", env!("CARGO_PKG_VERSION"))),
        "eth_chainId" => to_value(U64::from(shared.chain_id)),
        "net_version" => to_value(shared.chain_id.to_string()),
        "net_listening" => to_value(true),
        "eth_syncing" | "eth_mining" => to_value(false),
        "eth_accounts" => to_value(Vec::<EAddress>::new()),
        "eth_blockNumber" => to_value(U64::from(shared.chain.lock().await.head_number())),
        "eth_gasPrice" => to_value(U256::from(BASE_FEE) * 2),
        "eth_maxPriorityFeePerGas" => to_value(U256::from(BASE_FEE)),
        "eth_feeHistory" => {
            let count: U256 = param(p, 0, "blockCount")?;
            let newest: BlockNumber = param(p, 1, "newestBlock")?;
            let percentiles: Vec<f64> = opt_param(p, 2, "rewardPercentiles")?.unwrap_or_default();
            let head = shared.chain.lock().await.head_number();
            let newest = block_number(Some(newest), head)?.min(head);
            let count = count.min(U256::from(1024)).as_u64().min(newest + 1).max(1);
            let oldest = newest + 1 - count;
            to_value(FeeHistory {
                base_fee_per_gas: vec![U256::from(BASE_FEE); count as usize + 1],
                gas_used_ratio: vec![0.0; count as usize],
                oldest_block: U256::from(oldest),
                reward: vec![vec![U256::from(BASE_FEE); percentiles.len()]; count as usize],
            })
        }
        "eth_getBalance" | "eth_getTransactionCount" | "eth_getCode" => {
            let addr: EAddress = param(p, 0, "address")?;
            let tag: Option<BlockNumber> = opt_param(p, 1, "block")?;
            let chain = shared.chain.lock().await;
            require_latest(tag, chain.head_number())?;
            match method {
                "eth_getBalance" => to_value(chain.balance(addr)),
                "eth_getTransactionCount" => to_value(U256::from(chain.nonce(addr))),
                _ => to_value(chain.code(addr)),
            }
        }
        "eth_getStorageAt" => {
            let addr: EAddress = param(p, 0, "address")?;
            let slot: U256 = param(p, 1, "slot")?;
            let tag: Option<BlockNumber> = opt_param(p, 2, "block")?;
            let chain = shared.chain.lock().await;
            require_latest(tag, chain.head_number())?;
            to_value(chain.storage(addr, slot))
        }
        "eth_call" => {
            let req: CallRequest = param(p, 0, "transaction")?;
            let tag: Option<BlockNumber> = opt_param(p, 1, "block")?;
            let chain = shared.chain.lock().await;
            require_latest(tag, chain.head_number())?;
            let result = chain.call(&req, None)?;
            match result.output() {
                Some(out) if result.is_success() => to_value(EBytes::from(out.to_vec())),
                _ => Err(DevnetError::Reverted(describe_failure(&result)).into()),
            }
        }
        "eth_estimateGas" => {
            let req: CallRequest = param(p, 0, "transaction")?;
            let chain = shared.chain.lock().await;
            to_value(U256::from(chain.estimate_gas(&req)?))
        }
        "eth_sendRawTransaction" => {
            let raw: EBytes = param(p, 0, "data")?;
            // Execution and the fsync of the block are blocking work.
            let s = shared.clone();
            let (hash, mined) =
                tokio::task::spawn_blocking(move || s.chain.blocking_lock().send_raw(&raw))
                    .await
                    .map_err(|e| RpcError::new(-32603, format!("execution task failed: {e}")))??;
            if let Some(mined) = mined {
                // No subscriber is not an error.
                let _ = shared.events.send(Arc::new(mined));
            }
            to_value(hash)
        }
        "eth_getTransactionByHash" => {
            let hash: H256 = param(p, 0, "hash")?;
            to_value(shared.chain.lock().await.transaction(&hash)?)
        }
        "eth_getTransactionReceipt" => {
            let hash: H256 = param(p, 0, "hash")?;
            to_value(
                shared
                    .chain
                    .lock()
                    .await
                    .stored_tx(&hash)?
                    .map(|t| t.receipt),
            )
        }
        "eth_getBlockByNumber" | "eth_getBlockByHash" => {
            let full: bool = opt_param(p, 1, "fullTransactions")?.unwrap_or(false);
            let chain = shared.chain.lock().await;
            let block = if method == "eth_getBlockByHash" {
                let hash: H256 = param(p, 0, "hash")?;
                chain.block_by_hash(&hash)?
            } else {
                let tag: BlockNumber = param(p, 0, "block")?;
                chain.block_by_number(block_number(Some(tag), chain.head_number())?)?
            };
            let Some(block) = block else {
                return Ok(Value::Null);
            };
            let json = chain.block_json(&block);
            if full {
                let mut txs = Vec::with_capacity(block.transactions.len());
                for h in &block.transactions {
                    txs.extend(chain.transaction(h)?);
                }
                to_value(json.into_full_block(txs))
            } else {
                to_value(json)
            }
        }
        "eth_getLogs" => {
            let filter: Value = param(p, 0, "filter")?;
            let chain = shared.chain.lock().await;
            let head = chain.head_number();
            let spec = LogFilter::parse(&filter)?;
            let (from, to) = match spec.block_hash {
                Some(h) => match chain.block_by_hash(&h)? {
                    Some(b) => (b.number, b.number),
                    None => return to_value(Vec::<Value>::new()),
                },
                None => (block_number(spec.from, head)?, block_number(spec.to, head)?),
            };
            if to >= from && to - from > MAX_LOG_RANGE {
                return Err(RpcError::new(
                    -32005,
                    format!(
                        "query covers {} blocks; the limit is {MAX_LOG_RANGE}",
                        to - from + 1
                    ),
                ));
            }
            to_value(chain.logs(from, to, &spec.addresses, &spec.topics)?)
        }
        "evm_increaseTime" => {
            let secs: U256 = param(p, 0, "seconds")?;
            let secs = u64::try_from(secs).map_err(|_| RpcError::params("seconds too large"))?;
            let offset = shared
                .chain
                .lock()
                .await
                .increase_time(secs)
                .ok_or_else(|| {
                    RpcError::params(format!(
                        "seconds too large: {secs} more would take the clock past 2^64 - 1"
                    ))
                })?;
            to_value(U256::from(offset))
        }
        "evm_mine" => {
            let mined = shared.chain.lock().await.mine_empty()?;
            let _ = shared.events.send(Arc::new(mined));
            to_value("0x0")
        }
        other => Err(RpcError::new(
            -32601,
            format!("method {other} is not supported"),
        )),
    }
}

/// An `eth_getLogs` / `logs` subscription filter.
#[derive(Debug, Default)]
struct LogFilter {
    from: Option<BlockNumber>,
    to: Option<BlockNumber>,
    block_hash: Option<H256>,
    addresses: Vec<EAddress>,
    topics: Vec<Option<Vec<H256>>>,
}

impl LogFilter {
    fn parse(v: &Value) -> Result<Self, RpcError> {
        let field = |name: &str| v.get(name).filter(|x| !x.is_null()).cloned();
        let mut f = Self::default();
        if let Some(x) = field("fromBlock") {
            f.from = Some(parse_field("fromBlock", x)?);
        }
        if let Some(x) = field("toBlock") {
            f.to = Some(parse_field("toBlock", x)?);
        }
        if let Some(x) = field("blockHash") {
            f.block_hash = Some(parse_field("blockHash", x)?);
        }
        match field("address") {
            None => {}
            Some(Value::Array(items)) => {
                for item in items {
                    f.addresses.push(parse_field("address", item)?);
                }
            }
            Some(one) => f.addresses.push(parse_field("address", one)?),
        }
        if let Some(Value::Array(topics)) = field("topics") {
            for (i, t) in topics.into_iter().enumerate() {
                let name = format!("topics[{i}]");
                f.topics.push(match t {
                    Value::Null => None,
                    Value::Array(set) => Some(
                        set.into_iter()
                            .map(|x| parse_field(&name, x))
                            .collect::<Result<_, _>>()?,
                    ),
                    one => Some(vec![parse_field(&name, one)?]),
                });
            }
        }
        Ok(f)
    }
}

fn parse_field<T: DeserializeOwned>(name: &str, x: Value) -> Result<T, RpcError> {
    serde_json::from_value(x).map_err(|e| RpcError::params(format!("filter.{name}: {e}")))
}

/// Subscriptions of one WebSocket connection.
pub(super) struct Subscriptions {
    out: mpsc::Sender<String>,
    next_id: u64,
    tasks: std::collections::HashMap<String, tokio::task::JoinHandle<()>>,
}

/// Most subscriptions one connection may hold.
const MAX_SUBSCRIPTIONS: usize = 64;

impl Subscriptions {
    /// None yet; notifications will go to `out`.
    pub(super) fn new(out: mpsc::Sender<String>) -> Self {
        Self {
            out,
            next_id: 0,
            tasks: Default::default(),
        }
    }

    fn subscribe(&mut self, shared: &Arc<Shared>, p: &[Value]) -> RpcResult {
        if self.tasks.len() >= MAX_SUBSCRIPTIONS {
            return Err(RpcError::new(
                -32005,
                format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection"),
            ));
        }
        let kind: String = param(p, 0, "subscription")?;
        let filter = match kind.as_str() {
            "newHeads" => None,
            "logs" => Some(LogFilter::parse(p.get(1).unwrap_or(&Value::Null))?),
            other => {
                return Err(RpcError::params(format!(
                    "unsupported subscription {other:?}"
                )))
            }
        };
        self.next_id += 1;
        let id = format!("{:#x}", self.next_id);
        let mut events = shared.events.subscribe();
        let out = self.out.clone();
        let sub_id = id.clone();
        let task = tokio::spawn(async move {
            loop {
                let mined: Arc<Mined> = match events.recv().await {
                    Ok(m) => m,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(target: "chain::rpc", skipped = n, "slow subscriber skipped blocks");
                        continue;
                    }
                    Err(_) => break,
                };
                let items: Vec<Value> = match &filter {
                    None => serde_json::to_value(&mined.block).into_iter().collect(),
                    Some(f) => mined
                        .logs
                        .iter()
                        .filter(|l| log_matches(l, &f.addresses, &f.topics))
                        .filter_map(|l| serde_json::to_value(l).ok())
                        .collect(),
                };
                for result in items {
                    let note = json!({"jsonrpc": "2.0", "method": "eth_subscription",
                        "params": {"subscription": sub_id, "result": result}});
                    if out.send(note.to_string()).await.is_err() {
                        return;
                    }
                }
            }
        });
        self.tasks.insert(id.clone(), task);
        to_value(id)
    }

    fn unsubscribe(&mut self, p: &[Value]) -> RpcResult {
        let id: String = param(p, 0, "subscription id")?;
        match self.tasks.remove(&id) {
            Some(task) => {
                task.abort();
                to_value(true)
            }
            None => to_value(false),
        }
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

/// The reply to a WebSocket message: one call, or a batch of 1 to [`MAX_BATCH`],
/// with `eth_subscribe` and `eth_unsubscribe` on the connection's `subs`.
pub(super) async fn answer_ws(shared: &Arc<Shared>, text: &str, subs: &mut Subscriptions) -> Value {
    match serde_json::from_str::<Value>(text) {
        Err(e) => error_reply(
            Value::Null,
            &RpcError::new(-32700, format!("parse error: {e}")),
        ),
        Ok(Value::Array(calls)) if calls.len() <= MAX_BATCH && !calls.is_empty() => {
            let mut replies = Vec::with_capacity(calls.len());
            for call in calls {
                replies.push(handle_call(shared, call, Some(&mut *subs)).await);
            }
            Value::Array(replies)
        }
        Ok(Value::Array(_)) => error_reply(
            Value::Null,
            &RpcError::new(-32600, format!("a batch must hold 1 to {MAX_BATCH} calls")),
        ),
        Ok(call) => handle_call(shared, call, Some(&mut *subs)).await,
    }
}

async fn ws_upgrade(ws: WebSocketUpgrade, State(shared): State<Arc<Shared>>) -> Response {
    ws.max_message_size(MAX_BODY)
        .on_upgrade(move |socket| serve_ws(socket, shared))
}

async fn serve_ws(socket: WebSocket, shared: Arc<Shared>) {
    let (mut sink, mut stream) = socket.split();
    // Bounded: a client that stops reading gets its notifications dropped, not our memory.
    let (out, mut rx) = mpsc::channel::<String>(1024);
    let writer = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.send(Message::Text(text)).await.is_err() {
                break;
            }
        }
    });
    let mut subs = Subscriptions::new(out.clone());
    while let Some(Ok(msg)) = stream.next().await {
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
            Message::Close(_) => break,
            _ => continue,
        };
        let reply = answer_ws(&shared, &text, &mut subs).await;
        if out.send(reply.to_string()).await.is_err() {
            break;
        }
    }
    drop(subs);
    drop(out);
    let _ = writer.await;
}
