//! A paid skill over A2A (the x402 extension): a task waits for payment, the signed
//! payment sent on it is settled on chain before the skill runs, the money moves
//! exactly once, bad payments fail the task with nothing moved, and the seller's
//! journal audits clean against the chain.

use std::sync::Arc;

use a2a::client::{A2aClient, Hire, HireError};
use a2a::paid::{PAYLOAD_KEY, RECEIPTS_KEY, REQUIRED_KEY, STATUS_KEY};
use a2a::wire::TaskState;
use a2a::{A2aAgent, A2aGateway, GatewayConfig};
use agent_sdk::{AgentBuilder, Host, HostConfig};
use negotiation::audit::{audit, ChainCheck};
use negotiation::{service_fn, ServiceOutput, SharedJournal};
use registry::chain::{self, DeployConfig, Deployment};
use registry::devnet::{dev_wallet, Devnet, DevnetConfig};
use serde_json::{json, Value};
use wallets::{
    Amount, Journal, Limits, Payment, SpendingPolicy, TransferWithAuthorization, Wallet, B256,
};
use x402::wire::{ExactEvmPayload, PaymentPayload, PaymentRequirements};
use x402::{BuyerConfig, PricedService, SellerConfig, X402Buyer, X402Seller};

const PRICE: u128 = 950_000;
const TOKEN: &str = "USD Coin";

async fn rpc(url: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let r = reqwest::Client::new()
        .post(format!("{url}/"))
        .header("A2A-Version", "1.0")
        .json(&body)
        .send()
        .await
        .unwrap();
    r.json().await.unwrap()
}

fn ask(text: &str) -> Value {
    json!({"message": {"messageId": B256::random().to_string(), "role": "ROLE_USER",
                        "parts": [{"data": text}]}})
}

fn pay_on(task: &str, payload: &PaymentPayload) -> Value {
    json!({"message": {"messageId": B256::random().to_string(), "role": "ROLE_USER", "taskId": task,
                        "parts": [{"text": "Here is the payment."}],
                        "metadata": {STATUS_KEY: "payment-submitted", PAYLOAD_KEY: payload}}})
}

/// A devnet with the contracts, and an agent on a host selling `echo` over x402, served
/// over A2A.
struct Market {
    dir: tempfile::TempDir,
    node: registry::devnet::DevnetHandle,
    minter: Deployment,
    addresses: registry::chain::Addresses,
    domain: wallets::Eip712Domain,
    host: Option<Host>,
    agent: agent_sdk::AgentHandle,
    gateway: Arc<A2aGateway>,
    journal: std::path::PathBuf,
}

impl Market {
    async fn open() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let node = Devnet::spawn(DevnetConfig::new(dir.path().join("chain")))
            .await
            .unwrap();
        let deployer = chain::connect(&node.http_url(), Arc::new(dev_wallet(0)))
            .await
            .unwrap();
        let (minter, addresses) = Deployment::deploy(deployer, &DeployConfig::dev())
            .await
            .unwrap();
        let stablecoin = wallets::Address(addresses.stablecoin.0);
        let domain = addresses.token_domain(TOKEN);
        let host = Host::spawn(
            HostConfig::new(addresses.chain_id, dir.path().join("host"))
                .listen("127.0.0.1:0".parse().unwrap()),
        )
        .unwrap();
        let wallet = Arc::new(dev_wallet(3));
        let agent = AgentBuilder::new("shop")
            .wallet(wallet.clone())
            .spawn(&host)
            .unwrap();
        let client = chain::connect(&node.http_url(), wallet.clone())
            .await
            .unwrap();
        let journal = dir.path().join("shop.journal");
        let shared = SharedJournal::new(Journal::open(&journal, wallet.clone()).unwrap());
        // It fails the first "flaky" request, after payment.
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let echo = service_fn(move |task: String| {
            let failed = failed.clone();
            async move {
                if task == "\"flaky\"" && !failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    return Err(agent_sdk::SkillError::internal("the skill fell over"));
                }
                Ok(ServiceOutput::new(json!({"echo": task})))
            }
        });
        let schema = json!({"type": "string"});
        let seller = X402Seller::new(
            agent.context(),
            client,
            stablecoin,
            shared,
            SellerConfig::new(dir.path().join("sales"), TOKEN),
        )
        .unwrap()
        .sell(PricedService::new(
            "echo",
            Amount::from_base_units(PRICE),
            echo,
            schema.clone(),
            schema,
        ))
        .unwrap();
        let base = format!("http://{}", host.local_addr().unwrap());
        let gateway =
            Arc::new(A2aGateway::open(GatewayConfig::new(dir.path().join("a2a"), base)).unwrap());
        gateway
            .add(A2aAgent::new(agent.address(), "shop").sell(Arc::new(seller)))
            .unwrap();
        host.mount_http("/agents", a2a::http::router(gateway.clone()))
            .unwrap();
        Self {
            dir,
            node,
            minter,
            addresses,
            domain,
            host: Some(host),
            agent,
            gateway,
            journal,
        }
    }

    fn url(&self) -> String {
        self.gateway.agent_url(self.agent.address())
    }

    /// A wallet holding `funds` base units.
    async fn funded(&self, funds: u128) -> Arc<Wallet> {
        let wallet = Arc::new(Wallet::random());
        self.minter
            .mint(wallet.address(), Amount::from_base_units(funds))
            .await
            .unwrap();
        wallet
    }

    async fn balance(&self, who: wallets::Address) -> u128 {
        self.minter.balance_of(who).await.unwrap().base_units()
    }

    async fn close(mut self) {
        if let Some(host) = self.host.take() {
            tokio::task::spawn_blocking(move || host.shutdown())
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paid_skill_completes_after_payment_and_the_money_moves_once() {
    let m = Market::open().await;
    let (agent, url, domain) = (&m.agent, m.url(), m.domain.clone());
    let card = m.gateway.card(agent.address()).unwrap();
    assert_eq!(
        card.capabilities.extensions[0].uri,
        a2a::paid::EXTENSION_URI
    );

    // The buyer: a wallet behind a spending policy pinned to the token.
    let buyer = m.funded(3 * PRICE).await;
    let policy = SpendingPolicy::open(m.dir.path().join("spend"), buyer.clone(), Limits::default())
        .unwrap()
        .pin_token(domain.clone());
    let balances = || async {
        (
            m.balance(buyer.address()).await,
            m.balance(agent.address()).await,
        )
    };
    let before = balances().await;

    // Asked: the task waits for payment; nothing ran, nothing moved.
    let body = rpc(&url, "SendMessage", ask("lisbon")).await;
    let task = &body["result"]["task"];
    assert_eq!(
        task["status"]["state"], "TASK_STATE_INPUT_REQUIRED",
        "{body}"
    );
    let metadata = &task["status"]["message"]["metadata"];
    assert_eq!(metadata[STATUS_KEY], "payment-required");
    let offer: PaymentRequirements =
        serde_json::from_value(metadata[REQUIRED_KEY]["accepts"][0].clone()).unwrap();
    assert_eq!(offer.amount, PRICE.to_string());
    assert_eq!(
        offer.pay_to.to_lowercase(),
        agent.address().to_string().to_lowercase()
    );
    let id = task["id"].as_str().unwrap().to_owned();
    assert_eq!(balances().await, before);

    // Paid on the task: settled, then done.
    let payment = |value: u128| {
        let transfer = TransferWithAuthorization {
            from: buyer.address(),
            to: agent.address(),
            value: Amount::from_base_units(value),
            valid_after: 0,
            valid_before: unix_now() + 120,
            nonce: B256::random(),
        };
        let signed = policy
            .authorize(&Payment::Authorization {
                domain: domain.clone(),
                transfer,
            })
            .unwrap();
        PaymentPayload {
            x402_version: 2,
            payload: serde_json::to_value(ExactEvmPayload::of(&signed).unwrap()).unwrap(),
            accepted: offer.clone(),
            ..PaymentPayload::default()
        }
    };
    let good = payment(PRICE);
    let body = rpc(&url, "SendMessage", pay_on(&id, &good)).await;
    let task = &body["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{body}");
    assert_eq!(
        task["artifacts"][0]["parts"][0]["data"],
        json!({"echo": "\"lisbon\""})
    );
    let metadata = &task["status"]["message"]["metadata"];
    assert_eq!(metadata[STATUS_KEY], "payment-completed");
    assert_eq!(metadata[RECEIPTS_KEY][0]["success"], true);
    assert_eq!(balances().await, (before.0 - PRICE, before.1 + PRICE));

    // The same payment again: the task is done; nothing more moves.
    let body = rpc(&url, "SendMessage", pay_on(&id, &good)).await;
    assert_eq!(body["error"]["code"], -32004, "{body}");
    assert_eq!(balances().await, (before.0 - PRICE, before.1 + PRICE));

    // The skill fails after payment: the task waits for the same payment again, takes
    // no other, and the retry runs the skill without a second charge.
    let body = rpc(&url, "SendMessage", ask("flaky")).await;
    let flaky = body["result"]["task"]["id"].as_str().unwrap().to_owned();
    let first = payment(PRICE);
    let body = rpc(&url, "SendMessage", pay_on(&flaky, &first)).await;
    let task = &body["result"]["task"];
    assert_eq!(
        task["status"]["state"], "TASK_STATE_INPUT_REQUIRED",
        "{body}"
    );
    assert_eq!(
        task["status"]["message"]["metadata"][STATUS_KEY],
        "payment-submitted"
    );
    assert_eq!(
        task["status"]["message"]["metadata"][RECEIPTS_KEY][0]["success"],
        true
    );
    // The skill's own words stay on its host; the client learns where they are.
    let said = task["status"]["message"]["parts"].to_string();
    assert!(!said.contains("fell over"), "{said}");
    assert!(said.contains("its host's log has the details"), "{said}");
    let paid_twice = (before.0 - 2 * PRICE, before.1 + 2 * PRICE);
    assert_eq!(balances().await, paid_twice);
    let body = rpc(&url, "SendMessage", pay_on(&flaky, &payment(PRICE))).await;
    assert_eq!(body["error"]["code"], -32602, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("send that payment again"));
    let body = rpc(&url, "SendMessage", pay_on(&flaky, &first)).await;
    let task = &body["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{body}");
    assert_eq!(
        task["artifacts"][0]["parts"][0]["data"],
        json!({"echo": "\"flaky\""})
    );
    assert_eq!(balances().await, paid_twice);

    // A short payment fails its task with the reason; a rejection cancels one.
    let body = rpc(&url, "SendMessage", ask("porto")).await;
    let other = body["result"]["task"]["id"].as_str().unwrap().to_owned();
    let body = rpc(&url, "SendMessage", pay_on(&other, &payment(PRICE - 1))).await;
    let task = &body["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_FAILED", "{body}");
    assert_eq!(
        task["status"]["message"]["metadata"][STATUS_KEY],
        "payment-failed"
    );
    assert_eq!(
        task["status"]["message"]["metadata"]["x402.payment.error"],
        "invalid_exact_evm_payload_authorization_value_mismatch"
    );
    let body = rpc(&url, "SendMessage", ask("faro")).await;
    let third = body["result"]["task"]["id"].as_str().unwrap().to_owned();
    let reject = json!({"message": {"messageId": "r", "role": "ROLE_USER", "taskId": third,
                                     "parts": [{"text": "no"}],
                                     "metadata": {STATUS_KEY: "payment-rejected"}}});
    let body = rpc(&url, "SendMessage", reject).await;
    assert_eq!(
        body["result"]["task"]["status"]["state"], "TASK_STATE_CANCELED",
        "{body}"
    );
    assert_eq!(balances().await, paid_twice);

    // The sale is in the seller's journal, and matches the chain.
    let check = ChainCheck::new(m.node.http_url(), m.addresses);
    let report = audit(std::slice::from_ref(&m.journal), Some(&check))
        .await
        .unwrap();
    assert!(report.is_clean(), "{}", report.to_table());
    assert_eq!(report.sales.len(), 2);
    assert!(report.sales.iter().all(|s| s.stage == "delivered"));
    m.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agora_agent_hires_a_paid_a2a_skill_within_its_policy() {
    let m = Market::open().await;
    let seller = m.agent.address();
    let hirer = |name: &str, wallet: Arc<Wallet>, limits: Limits| {
        let dir = m.dir.path().join(name);
        let policy = SpendingPolicy::open(dir.join("spend"), wallet.clone(), limits)
            .unwrap()
            .pin_token(m.domain.clone());
        let journal = SharedJournal::new(Journal::open(dir.join("journal"), wallet).unwrap());
        let buyer = X402Buyer::open(
            Arc::new(policy),
            journal,
            BuyerConfig::new(dir.join("x402")),
        )
        .unwrap();
        A2aClient::new().with_buyer(Arc::new(buyer))
    };
    let wallet = m.funded(3 * PRICE).await;
    let limits = Limits {
        per_deal: Some(Amount::from_base_units(PRICE)),
        ..Limits::default()
    };
    let client = hirer("travel", wallet.clone(), limits);

    // Hired, paid once, the result back.
    let hire = Hire::new(m.url(), json!("lisbon")).id("trip-42-echo-lisbon");
    let hired = client.hire(hire.clone()).await.unwrap();
    assert_eq!(hired.result, json!({"echo": "\"lisbon\""}));
    assert_eq!(hired.task.status.state, TaskState::Completed);
    let paid = hired.paid.unwrap();
    assert_eq!(
        paid.payment.payment.amount(),
        Amount::from_base_units(PRICE)
    );
    assert!(paid.receipts[0].success);
    assert_eq!(m.balance(wallet.address()).await, 2 * PRICE);
    assert_eq!(m.balance(seller).await, PRICE);

    // A hire within the policy's refusal: nothing signed, the task left waiting.
    let stingy = hirer(
        "stingy",
        m.funded(3 * PRICE).await,
        Limits {
            per_deal: Some(Amount::from_base_units(PRICE - 1)),
            ..Limits::default()
        },
    );
    let err = stingy
        .hire(Hire::new(m.url(), json!("porto")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("per-deal"), "{err}");
    assert_eq!(m.balance(seller).await, PRICE);

    // Without a buyer, a paid skill is refused before anything is signed.
    let err = A2aClient::new()
        .hire(Hire::new(m.url(), json!("faro")))
        .await
        .unwrap_err();
    assert!(matches!(err, HireError::PaymentRequired { .. }), "{err}");

    // The hirer's journal and the seller's name the same sale and audit clean.
    let check = ChainCheck::new(m.node.http_url(), m.addresses);
    let journals = [m.dir.path().join("travel/journal"), m.journal.clone()];
    let report = audit(&journals, Some(&check)).await.unwrap();
    assert!(report.is_clean(), "{}", report.to_table());
    let stages: Vec<&str> = report.sales.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(stages.len(), 2, "{}", report.to_table());
    assert!(stages.contains(&"answered") && stages.contains(&"delivered"));
    assert_eq!(report.sales[0].sale, report.sales[1].sale);
    m.close().await;
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
