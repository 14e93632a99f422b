//! Fuzz tests (`fuzz_…`) of the embedded devnet's JSON-RPC: arbitrary request bodies,
//! calls of every method with arbitrary and near-valid params, batches, mutated
//! valid calls and mutated signed transactions, fed in process to the HTTP and
//! WebSocket answers ([`rpc::answer`], [`rpc::answer_ws`]) of one chain that lives
//! for the whole test. See the README's "Fuzzing".

use std::sync::{Arc, OnceLock};

use fuzz_support::proptest::prelude::*;
use fuzz_support::proptest::strategy::Union;
use fuzz_support::{
    arbitrary_text, fuzz, json_leaf, json_value, mutate_bytes, mutate_json, nested_json, token,
    Case,
};
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, mpsc, Mutex};
use wallets::{Eip1559Transaction, TxPolicy, U256 as WU256};

use super::rpc::{self, Subscriptions};
use super::state::ChainState;
use super::{dev_wallet, Shared, DEFAULT_CHAIN_ID};

/// Every method `dispatch` serves but `evm_mine` (no params, and a mined, fsynced
/// block per call), the subscriptions, and a few it does not serve.
const METHODS: &[&str] = &[
    "web3_clientVersion",
    "eth_chainId",
    "net_version",
    "net_listening",
    "eth_syncing",
    "eth_mining",
    "eth_accounts",
    "eth_blockNumber",
    "eth_gasPrice",
    "eth_maxPriorityFeePerGas",
    "eth_feeHistory",
    "eth_getBalance",
    "eth_getTransactionCount",
    "eth_getCode",
    "eth_getStorageAt",
    "eth_call",
    "eth_estimateGas",
    "eth_sendRawTransaction",
    "eth_getTransactionByHash",
    "eth_getTransactionReceipt",
    "eth_getBlockByNumber",
    "eth_getBlockByHash",
    "eth_getLogs",
    "evm_increaseTime",
    "eth_subscribe",
    "eth_unsubscribe",
    "eth_sendTransaction",
    "",
    "ETH_CHAINID",
];

/// Field names and values JSON-RPC params are made of.
fn tokens() -> &'static [&'static str] {
    static TOKENS: OnceLock<Vec<&'static str>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let mut t: Vec<&'static str> = vec![
            "jsonrpc",
            "2.0",
            "id",
            "method",
            "params",
            "latest",
            "earliest",
            "pending",
            "safe",
            "finalized",
            "0x0",
            "0x1",
            "0x",
            "0x00",
            "0x01",
            "0xffffffffffffffff",
            "0x10000000000000000",
            "0x400",
            "0x401",
            "0x186a0",
            "0x1c9c380",
            "0x1c9c381",
            // Init code: return 32 bytes, revert, invalid opcode, a log.
            "0x600160005260206000f3",
            "0x60006000fd",
            "0xfe",
            "0x60016000a0",
            "from",
            "to",
            "gas",
            "gasPrice",
            "value",
            "data",
            "input",
            "nonce",
            "fromBlock",
            "toBlock",
            "address",
            "topics",
            "blockHash",
            "newHeads",
            "logs",
            "0x0000000000000000000000000000000000000000",
        ];
        for i in 0..3 {
            let a = dev_wallet(i).address();
            t.push(Box::leak(a.to_string().into_boxed_str()));
            t.push(Box::leak(
                format!("0x{}", hex::encode(a.as_bytes())).into_boxed_str(),
            ));
        }
        for h in ["00", "11", "ff"] {
            t.push(Box::leak(format!("0x{}", h.repeat(32)).into_boxed_str()));
        }
        t
    })
}

/// A param: a leaf, a call request, a log filter, or anything.
fn param() -> BoxedStrategy<Value> {
    let tokens = tokens();
    let object = |keys: &'static [&'static str]| {
        prop::collection::vec((token(keys), json_leaf(tokens)), 0..5)
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
    };
    prop_oneof![
        4 => json_leaf(tokens),
        2 => object(&["from", "to", "gas", "gasPrice", "value", "data", "input", "nonce"]),
        2 => object(&["fromBlock", "toBlock", "address", "topics", "blockHash"]),
        1 => prop::collection::vec(json_leaf(tokens), 0..4).prop_map(Value::Array),
        1 => json_value(tokens),
    ]
    .boxed()
}

/// A call: a method and params, sometimes without `jsonrpc`, an id or params.
fn call() -> BoxedStrategy<Value> {
    (
        token(METHODS),
        prop::collection::vec(param(), 0..4),
        json_leaf(tokens()),
        0u8..8,
    )
        .prop_map(|(method, params, id, shape)| {
            let mut c = Map::new();
            if shape != 1 {
                c.insert("jsonrpc".into(), "2.0".into());
            }
            if shape != 2 {
                c.insert("id".into(), id);
            }
            if shape != 3 {
                c.insert("method".into(), method.into());
            }
            match shape {
                4 => {}
                5 => {
                    c.insert(
                        "params".into(),
                        params.into_iter().next().unwrap_or_default(),
                    );
                }
                _ => {
                    c.insert("params".into(), Value::Array(params));
                }
            }
            Value::Object(c)
        })
        .boxed()
}

/// Calls that must succeed on a fresh devnet.
fn valid_calls() -> Vec<Value> {
    let a = dev_wallet(0).address().to_string();
    let b = dev_wallet(1).address().to_string();
    let calls = [
        json!(["web3_clientVersion", []]),
        json!(["eth_chainId", []]),
        json!(["net_version", null]),
        json!(["eth_blockNumber", []]),
        json!(["eth_gasPrice", []]),
        json!(["eth_feeHistory", ["0x4", "latest", [25, 75]]]),
        json!(["eth_getBalance", [a, "latest"]]),
        json!(["eth_getTransactionCount", [a, "pending"]]),
        json!(["eth_getCode", [b]]),
        json!(["eth_getStorageAt", [b, "0x0", "latest"]]),
        json!(["eth_call", [{"to": b, "data": "0x12345678"}, "latest"]]),
        json!(["eth_call", [{"data": "0x600160005260206000f3"}]]),
        json!(["eth_estimateGas", [{"from": a, "to": b, "value": "0x1"}]]),
        json!(["eth_getBlockByNumber", ["latest", false]]),
        json!(["eth_getBlockByNumber", ["0x0", true]]),
        json!([
            "eth_getTransactionByHash",
            [format!("0x{}", "11".repeat(32))]
        ]),
        json!([
            "eth_getTransactionReceipt",
            [format!("0x{}", "11".repeat(32))]
        ]),
        json!(["eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest", "address": [b]}]]),
        json!(["eth_getLogs", [{"topics": [null, [format!("0x{}", "00".repeat(32))]]}]]),
    ];
    calls
        .into_iter()
        .enumerate()
        .map(|(i, c)| json!({"jsonrpc": "2.0", "id": i, "method": c[0], "params": c[1]}))
        .collect()
}

/// A signed transfer-free call from dev account 0 (nonce 0) for
/// `eth_sendRawTransaction`, as hex.
fn signed_transaction() -> String {
    let to = dev_wallet(2).address();
    let tx = Eip1559Transaction {
        chain_id: DEFAULT_CHAIN_ID,
        nonce: 0,
        max_priority_fee_per_gas: 1_000_000_000,
        max_fee_per_gas: 2_000_000_000,
        gas_limit: 50_000,
        to: Some(to),
        value: WU256::zero(),
        data: vec![0x12, 0x34, 0x56, 0x78],
    };
    let policy = TxPolicy::new(u128::MAX).allow_call(to, [0x12, 0x34, 0x56, 0x78]);
    let sig = dev_wallet(0).sign_transaction(&tx, &policy).unwrap();
    format!("0x{}", hex::encode(tx.encode_signed(&sig)))
}

/// What a reply must look like: JSON-RPC 2.0 with a result or an error that has a
/// code and a message; for a valid call, a result.
fn check_reply(reply: &Value, valid: bool) -> Result<(), String> {
    if let Value::Array(replies) = reply {
        return replies.iter().try_for_each(|r| check_reply(r, valid));
    }
    if reply.get("jsonrpc") != Some(&json!("2.0")) || reply.get("id").is_none() {
        return Err(format!("not a JSON-RPC 2.0 reply: {reply}"));
    }
    match (reply.get("result"), reply.get("error")) {
        (Some(_), None) => Ok(()),
        (None, Some(e)) if valid => Err(format!("a valid call failed: {e}")),
        (None, Some(e)) => {
            let message = e.get("message").and_then(Value::as_str).unwrap_or_default();
            if e.get("code").and_then(Value::as_i64).is_none() || message.trim().is_empty() {
                return Err(format!("an error without a code or message: {e}"));
            }
            // A panic on a blocking task comes back as an error; it is still a panic.
            if message.contains("panicked") {
                return Err(format!("a task panicked: {e}"));
            }
            Ok(())
        }
        _ => Err(format!("neither a result nor an error: {reply}")),
    }
}

/// Request bodies: arbitrary bytes, calls of every method, batches, mutated valid
/// calls, mutated signed transactions; each answered over HTTP and as a WebSocket
/// message.
#[test]
fn fuzz_devnet_json_rpc() {
    let dir = tempfile::tempdir().unwrap();
    let genesis: Vec<_> = (0..3)
        .map(|i| {
            (
                revm::primitives::Address::from(dev_wallet(i).address().0),
                revm::primitives::U256::from(10u128.pow(22)),
            )
        })
        .collect();
    let chain = ChainState::open(dir.path(), DEFAULT_CHAIN_ID, &genesis).unwrap();
    let shared = Arc::new(Shared {
        chain: Mutex::new(chain),
        chain_id: DEFAULT_CHAIN_ID,
        events: broadcast::channel(16).0,
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let tokens = tokens();
    let valid = valid_calls();
    let raw = signed_transaction();
    let send =
        json!({"jsonrpc": "2.0", "id": 7, "method": "eth_sendRawTransaction", "params": [raw]});
    let raw_bytes = hex::decode(raw.trim_start_matches("0x")).unwrap();
    let mutated_raw = mutate_bytes(raw_bytes, &["\u{2}", "\0", "\u{7f}"]).prop_map(|b| {
        json!({"jsonrpc": "2.0", "id": 8, "method": "eth_sendRawTransaction",
                   "params": [format!("0x{}", hex::encode(b))]})
    });
    let mutated_calls = Union::new(
        valid
            .iter()
            .chain([&send])
            .map(|c| mutate_json(c.clone(), tokens)),
    );
    let batch = prop::collection::vec(call(), 0..5).prop_map(Value::Array);
    let cases = prop_oneof![
        1 => prop::sample::select(valid.clone()).prop_map(|c| Case::Valid(c.to_string())),
        1 => prop::collection::vec(prop::sample::select(valid.clone()), 1..4)
            .prop_map(|b| Case::Valid(Value::Array(b).to_string())),
        6 => call().prop_map(|c| Case::Fuzzed(c.to_string())),
        2 => batch.prop_map(|b| Case::Fuzzed(b.to_string())),
        4 => mutated_calls.prop_map(|c| Case::Fuzzed(c.to_string())),
        1 => mutated_raw.prop_map(|c| Case::Fuzzed(c.to_string())),
        1 => fuzz_support::mutate_text(send.to_string(), tokens).prop_map(Case::Fuzzed),
        1 => arbitrary_text().prop_map(Case::Fuzzed),
        1 => nested_json().prop_map(Case::Fuzzed),
    ];
    fuzz("fuzz_devnet_json_rpc", 1000, cases, |case| {
        let (valid, body) = match case {
            Case::Valid(b) => (true, b),
            Case::Fuzzed(b) => (false, b),
        };
        rt.block_on(async {
            check_reply(&rpc::answer(&shared, body.as_bytes()).await, valid)?;
            let (out, _rx) = mpsc::channel(16);
            let mut subs = Subscriptions::new(out);
            check_reply(&rpc::answer_ws(&shared, body, &mut subs).await, valid)
        })
    });
    // The signed transaction went through once among the cases or goes now; a
    // resend is the same hash, not an error.
    let first = rt.block_on(rpc::answer(&shared, send.to_string().as_bytes()));
    check_reply(&first, true).unwrap();
}
