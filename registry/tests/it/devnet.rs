//! The contracts deployed on the embedded devnet through ethers, signed by wallets.

use std::sync::Arc;

use ethers::providers::Middleware;
use ethers::types::{Address as EAddress, Bytes as EBytes, U256 as EU256};
use registry::chain::{self, Stablecoin};
use registry::devnet::{dev_wallet, Devnet, DevnetConfig};

use crate::proxy::{Fault, FaultyProxy};
use crate::support;
use wallets::{Eip712Domain, Limits, Payment, SpendingPolicy, TransferWithAuthorization, B256};

fn eaddr(a: wallets::Address) -> EAddress {
    EAddress::from(a.0)
}

/// Deploys a dev stablecoin from the client's account, which becomes minter and
/// holder of `supply`.
async fn deploy_token(client: &Arc<chain::Client>, supply: EU256) -> Stablecoin<chain::Client> {
    let me = client.inner().address();
    client.inner().signer().allow_create();
    let token = Stablecoin::deploy(
        client.clone(),
        (
            "USD Coin".to_owned(),
            "USDC".to_owned(),
            me,
            true,
            me,
            supply,
        ),
    )
    .unwrap()
    .send()
    .await
    .unwrap();
    chain::allow_contract(
        client,
        token.address(),
        &chain::bindings::stablecoin::STABLECOIN_ABI,
    );
    token
}

/// USDC in base units.
fn usdc(whole: u64) -> EU256 {
    EU256::from(whole) * 1_000_000
}

#[tokio::test(flavor = "multi_thread")]
async fn eip3009_payment_on_the_embedded_devnet_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = Devnet::spawn(DevnetConfig::new(dir.path().join("chain")))
        .await
        .unwrap();
    let (token, payment) = eip3009_payment(&node.http_url(), dir.path()).await;

    // Restart: the node comes back with every block and balance.
    let head = node.block_number().await;
    node.shutdown().await;
    let node = Devnet::spawn(DevnetConfig::new(dir.path().join("chain")))
        .await
        .unwrap();
    assert_eq!(node.block_number().await, head);
    let client = chain::connect(&node.http_url(), Arc::new(dev_wallet(0)))
        .await
        .unwrap();
    chain::allow_contract(&client, token, &chain::bindings::stablecoin::STABLECOIN_ABI);
    let token = Stablecoin::new(token, client.clone());
    let seller = eaddr(dev_wallet(2).address());
    assert_eq!(
        token.balance_of(seller).call().await.unwrap(),
        EU256::from(2_500_000u64)
    );
    let receipt = client
        .get_transaction_receipt(payment)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(receipt.status, Some(1.into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn eip3009_payment_on_anvil() {
    let dir = tempfile::tempdir().unwrap();
    let node = support::anvil().await;
    eip3009_payment(&node.url(), dir.path()).await;
}

/// Deploys the stablecoin, has the buyer's policy sign a 2.50 USDC authorization,
/// the seller submit it, and a replay fail; returns the token and the payment's hash.
async fn eip3009_payment(url: &str, dir: &std::path::Path) -> (EAddress, ethers::types::H256) {
    let deployer = Arc::new(dev_wallet(0));
    let buyer = Arc::new(dev_wallet(1));
    let seller = Arc::new(dev_wallet(2));
    let client = chain::connect(url, deployer.clone()).await.unwrap();
    let chain_id = client.get_chainid().await.unwrap().as_u64();

    let token = deploy_token(&client, usdc(1_000)).await;
    token
        .mint(eaddr(buyer.address()), usdc(100))
        .send()
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(
        token
            .balance_of(eaddr(buyer.address()))
            .call()
            .await
            .unwrap(),
        usdc(100)
    );

    // The token's EIP-712 domain is the one the wallet signs in.
    let domain = Eip712Domain::new(
        "USD Coin",
        "2",
        chain_id,
        wallets::Address(token.address().0),
    );
    assert_eq!(
        token.domain_separator().call().await.unwrap(),
        domain.separator().0
    );

    // The buyer's policy signs a 2.50 USDC authorization; the seller submits it.
    let policy = SpendingPolicy::open(
        dir.join("policy"),
        buyer.clone(),
        Limits {
            per_deal: Some("5 USDC".parse().unwrap()),
            ..Limits::default()
        },
    )
    .unwrap()
    .pin_token(domain.clone());
    let nonce = TransferWithAuthorization::derive_nonce(buyer.address(), &B256([9; 32]));
    let signed = policy
        .authorize(&Payment::Authorization {
            domain,
            transfer: TransferWithAuthorization {
                from: buyer.address(),
                to: seller.address(),
                value: "2.50".parse().unwrap(),
                valid_after: 0,
                valid_before: u64::MAX / 2,
                nonce,
            },
        })
        .unwrap();
    let seller_client = chain::connect(url, seller.clone()).await.unwrap();
    chain::allow_contract(
        &seller_client,
        token.address(),
        &chain::bindings::stablecoin::STABLECOIN_ABI,
    );
    let as_seller = Stablecoin::new(token.address(), seller_client.clone());
    let submit = || {
        as_seller.transfer_with_authorization(
            eaddr(buyer.address()),
            eaddr(seller.address()),
            EU256::from(2_500_000u64),
            EU256::zero(),
            EU256::from(u64::MAX / 2),
            nonce.0,
            EBytes::from(signed.signature.to_bytes().to_vec()),
        )
    };
    let receipt = submit().send().await.unwrap().await.unwrap().unwrap();
    assert_eq!(receipt.status, Some(1.into()));
    assert_eq!(
        token
            .balance_of(eaddr(seller.address()))
            .call()
            .await
            .unwrap(),
        EU256::from(2_500_000u64)
    );
    assert!(token
        .authorization_state(eaddr(buyer.address()), nonce.0)
        .call()
        .await
        .unwrap());

    // A replay of the same authorization is refused and moves nothing.
    let replay = submit();
    let replay = replay.send().await;
    let Err(err) = replay else {
        panic!("replayed authorization was accepted");
    };
    let message = chain::contract_error("Stablecoin.transferWithAuthorization", err).to_string();
    assert!(message.contains("transferWithAuthorization"), "{message}");
    assert_eq!(
        token
            .balance_of(eaddr(buyer.address()))
            .call()
            .await
            .unwrap(),
        EU256::from(97_500_000u64)
    );

    (token.address(), receipt.transaction_hash)
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_subscriptions_see_new_heads_and_logs() {
    use ethers::providers::{Provider, StreamExt, Ws};
    use ethers::types::Filter;

    let dir = tempfile::tempdir().unwrap();
    let node = Devnet::spawn(DevnetConfig::new(dir.path())).await.unwrap();
    let ws = Provider::<Ws>::connect(node.ws_url()).await.unwrap();
    assert_eq!(ws.get_chainid().await.unwrap().as_u64(), node.chain_id());
    let mut heads = ws.subscribe_blocks().await.unwrap();

    let deployer = Arc::new(dev_wallet(0));
    let client = chain::connect(&node.http_url(), deployer.clone())
        .await
        .unwrap();
    let token = deploy_token(&client, usdc(1)).await;
    let head = tokio::time::timeout(std::time::Duration::from_secs(5), heads.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.number, Some(1.into()));

    let mut logs = ws
        .subscribe_logs(&Filter::new().address(token.address()))
        .await
        .unwrap();
    let receipt = token
        .mint(eaddr(dev_wallet(5).address()), usdc(7))
        .send()
        .await
        .unwrap()
        .await
        .unwrap()
        .unwrap();
    let log = tokio::time::timeout(std::time::Duration::from_secs(5), logs.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(log.transaction_hash, Some(receipt.transaction_hash));
    assert_eq!(log.address, token.address());
}

#[tokio::test(flavor = "multi_thread")]
async fn sends_survive_a_node_restart_without_gaps_or_duplicates() {
    use ethers::providers::Middleware as _;
    use registry::chain::RetryPolicy;

    let dir = tempfile::tempdir().unwrap();
    // The node listens on a port of its own choosing each time it starts; the client
    // keeps one URL, the relay's.
    let config = || DevnetConfig::new(dir.path().join("chain"));
    let node = Devnet::spawn(config()).await.unwrap();
    let relay = Relay::spawn(node.addr()).await;
    let deployer = Arc::new(dev_wallet(0));
    // Up to a minute of retrying: the node must be back by then, however busy the
    // machine.
    let policy = RetryPolicy {
        retries: 600,
        initial_backoff: std::time::Duration::from_millis(20),
        max_backoff: std::time::Duration::from_millis(100),
    };
    let client = chain::connect_with(&relay.url(), deployer.clone(), policy)
        .await
        .unwrap();
    let me = eaddr(deployer.address());
    let token = deploy_token(&client, usdc(1)).await;

    // A transaction the wallet refuses (an ERC-20 transfer) fails at once and uses no nonce.
    let refused = token.transfer(eaddr(dev_wallet(4).address()), usdc(1));
    let err = refused.send().await.unwrap_err().to_string();
    assert!(err.contains("spending policy"), "{err}");

    // The node goes away; a send waits for it and goes through once it is back.
    relay.set_node(None);
    node.shutdown().await;
    let receiver = eaddr(dev_wallet(5).address());
    let sending = {
        let token = token.clone();
        tokio::spawn(async move {
            let call = token.mint(receiver, usdc(7));
            call.send()
                .await
                .map(|p| p.tx_hash())
                .map_err(|e| e.to_string())
        })
    };
    // The send has found the node down.
    tokio::time::timeout(std::time::Duration::from_secs(30), relay.turned_away())
        .await
        .expect("the send tried the node within 30 s");
    let node = Devnet::spawn(config()).await.unwrap();
    relay.set_node(Some(node.addr()));
    let hash = sending.await.unwrap().unwrap();
    assert!(node.has_transaction(hash).await.unwrap());
    assert_eq!(token.balance_of(receiver).call().await.unwrap(), usdc(7));

    // No gap: the next transaction takes the next nonce.
    let next = token.mint(receiver, usdc(1));
    next.send().await.unwrap().await.unwrap();
    assert_eq!(token.balance_of(receiver).call().await.unwrap(), usdc(8));
    assert_eq!(
        client.get_transaction_count(me, None).await.unwrap(),
        3.into()
    );

    // Reads wait for the node too: a call and a log query made while it is away
    // answer once it is back, with what the restarted node holds.
    relay.set_node(None);
    node.shutdown().await;
    let reading = {
        let (token, client) = (token.clone(), client.clone());
        tokio::spawn(async move {
            let balance = token
                .balance_of(receiver)
                .call()
                .await
                .map_err(|e| e.to_string())?;
            let filter = ethers::types::Filter::new()
                .address(token.address())
                .from_block(0);
            let logs = client.get_logs(&filter).await.map_err(|e| e.to_string())?;
            Ok::<_, String>((balance, logs.len()))
        })
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), relay.turned_away())
        .await
        .expect("the read tried the node within 30 s");
    let node = Devnet::spawn(config()).await.unwrap();
    relay.set_node(Some(node.addr()));
    let (balance, logs) = reading.await.unwrap().unwrap();
    assert_eq!(balance, usdc(8));
    // The token's three Transfer events: the deployment's supply and the two mints.
    assert_eq!(logs, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_whose_answer_is_lost_is_neither_duplicated_nor_leaves_a_gap() {
    send_through_a_broken_exchange(Fault::SwallowAnswer).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_whose_request_is_lost_is_sent_again_once() {
    send_through_a_broken_exchange(Fault::DropRequest).await;
}

/// A mint whose `eth_sendRawTransaction` exchange breaks as `fault` says is reported
/// with the hash the node has, happens once, and leaves no nonce gap.
async fn send_through_a_broken_exchange(fault: Fault) {
    use ethers::providers::Middleware as _;
    use registry::chain::RetryPolicy;

    let dir = tempfile::tempdir().unwrap();
    let node = Devnet::spawn(DevnetConfig::new(dir.path())).await.unwrap();
    let deployer = Arc::new(dev_wallet(0));
    let me = eaddr(deployer.address());
    let receiver = eaddr(dev_wallet(5).address());

    // The token comes from a direct connection, so the proxied client's first
    // transaction is the mint below.
    let direct = chain::connect(&node.http_url(), deployer.clone())
        .await
        .unwrap();
    let token = deploy_token(&direct, usdc(1)).await.address();

    let proxy = FaultyProxy::spawn(node.addr(), "eth_sendRawTransaction", fault).await;
    let policy = RetryPolicy {
        retries: 5,
        initial_backoff: std::time::Duration::from_millis(20),
        max_backoff: std::time::Duration::from_millis(100),
    };
    let client = chain::connect_with(&proxy.url(), deployer.clone(), policy)
        .await
        .unwrap();
    chain::allow_contract(&client, token, &chain::bindings::stablecoin::STABLECOIN_ABI);
    let token = Stablecoin::new(token, client.clone());

    let flow = async {
        // The exchange of the mint breaks: the send still reports the transaction.
        let call = token.mint(receiver, usdc(7));
        let pending = call.send().await.unwrap();
        let hash = pending.tx_hash();
        let faulted = proxy.faulted();
        assert_eq!(faulted.len(), 1, "no exchange was broken");
        assert_eq!(raw_tx_hash(&faulted[0]), hash);
        assert!(node.has_transaction(hash).await.unwrap());
        let receipt = pending.await.unwrap().unwrap();
        assert_eq!(receipt.status, Some(1.into()));
        let mined = client.get_transaction(hash).await.unwrap().unwrap();
        assert_eq!(mined.nonce, 1.into());

        // Minted once, and the account used exactly nonces 0 (deploy) and 1 (mint).
        assert_eq!(token.balance_of(receiver).call().await.unwrap(), usdc(7));
        assert_eq!(
            client.get_transaction_count(me, None).await.unwrap(),
            2.into()
        );

        // The next transaction takes nonce 2 and is mined.
        let call = token.mint(receiver, usdc(1));
        let receipt = call.send().await.unwrap().await.unwrap().unwrap();
        assert_eq!(receipt.status, Some(1.into()));
        let next = client
            .get_transaction(receipt.transaction_hash)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(next.nonce, 2.into());
        assert_eq!(token.balance_of(receiver).call().await.unwrap(), usdc(8));
        assert_eq!(
            client.get_transaction_count(me, None).await.unwrap(),
            3.into()
        );
        // Whatever was resent, only these two transactions ever went to the node.
        let mut sent: Vec<_> = proxy.marked().iter().map(|b| raw_tx_hash(b)).collect();
        sent.dedup();
        assert_eq!(sent, vec![hash, receipt.transaction_hash]);
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), flow)
        .await
        .expect("the sends did not finish in 30 s");
    node.shutdown().await;
}

/// The hash of the transaction an `eth_sendRawTransaction` request body carries.
fn raw_tx_hash(body: &[u8]) -> ethers::types::H256 {
    let request: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(request["method"], "eth_sendRawTransaction", "{request}");
    let raw = request["params"][0].as_str().unwrap();
    let raw = hex::decode(raw.trim_start_matches("0x")).unwrap();
    ethers::utils::keccak256(raw).into()
}

/// A loopback TCP relay in front of a node that restarts on another port, so that a
/// client keeps one URL. While it has no node it turns each connection away (closes
/// it unanswered, which a client cannot tell from a node that went away) and says so
/// ([`Relay::turned_away`]).
struct Relay {
    addr: std::net::SocketAddr,
    shared: Arc<RelayShared>,
    task: tokio::task::JoinHandle<()>,
}

struct RelayShared {
    node: std::sync::Mutex<Option<std::net::SocketAddr>>,
    turned_away: tokio::sync::Notify,
}

impl Relay {
    /// Listens on a free loopback port and relays to `node`.
    async fn spawn(node: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(RelayShared {
            node: std::sync::Mutex::new(Some(node)),
            turned_away: tokio::sync::Notify::new(),
        });
        let relay = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let node = *relay.node.lock().unwrap();
                match node {
                    Some(node) => {
                        tokio::spawn(async move {
                            if let Ok(mut upstream) = tokio::net::TcpStream::connect(node).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                            }
                        });
                    }
                    None => {
                        drop(client);
                        relay.turned_away.notify_one();
                    }
                }
            }
        });
        Self { addr, shared, task }
    }

    /// `http://addr` of the relay.
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where new connections go from now on; `None`: turned away.
    fn set_node(&self, node: Option<std::net::SocketAddr>) {
        *self.shared.node.lock().unwrap() = node;
    }

    /// Waits until the relay has turned a connection away.
    async fn turned_away(&self) {
        self.shared.turned_away.notified().await;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
