//! PaymentChannel paid through the spending policy: a gasless open, 50 vouchers and one
//! settlement to the base unit, stale vouchers refused, a gasless top-up, settle then close,
//! and the payer's refund after expiry, on both nodes. Prints the gas of each step.

use std::sync::Arc;

use ethers::providers::Middleware;
use ethers::types::{Address as EAddress, Bytes as EBytes, U256 as EU256};
use registry::chain::{self, Client, DeployConfig, Deployment, PaymentChannel};
use registry::devnet::dev_wallet;
use wallets::{
    Amount, Channel, ChannelFunding, Eip712Domain, Limits, Payment, ReceiveWithAuthorization,
    SignedPayment, SpendingPolicy, Voucher, Wallet, B256,
};

use crate::support::Node;

struct Parties {
    contracts: Deployment,
    payer: Arc<Wallet>,
    payee: Arc<Wallet>,
    payer_client: Arc<Client>,
    /// The channel contract as the payee (who submits everything: the payer sends nothing).
    as_payee: PaymentChannel<Client>,
    policy: SpendingPolicy,
    token_domain: Eip712Domain,
    voucher_domain: Eip712Domain,
}

fn ea(a: wallets::Address) -> EAddress {
    EAddress::from(a.0)
}

fn units(a: Amount) -> EU256 {
    EU256::from(a.base_units())
}

fn bytes(signed: &SignedPayment) -> EBytes {
    EBytes::from(signed.signature.to_bytes().to_vec())
}

/// Sends a contract call and returns the gas its transaction used, or the decoded revert.
async fn send<D: ethers::abi::Detokenize>(
    name: &str,
    call: ethers::contract::ContractCall<Client, D>,
) -> Result<u64, String> {
    let receipt = call
        .send()
        .await
        .map_err(|e| chain::contract_error(name, e).to_string())?
        .await
        .map_err(|e| e.to_string())?
        .ok_or("dropped")?;
    assert_eq!(receipt.status, Some(1.into()), "{name} reverted");
    Ok(receipt.gas_used.unwrap().as_u64())
}

async fn setup(node: &Node, dir: &std::path::Path) -> Parties {
    let url = node.url();
    let deployer = chain::connect(&url, Arc::new(dev_wallet(0))).await.unwrap();
    let (contracts, addresses) = Deployment::deploy(deployer.clone(), &DeployConfig::dev())
        .await
        .unwrap();
    let payer = Arc::new(dev_wallet(3));
    let payee = Arc::new(dev_wallet(4));
    contracts
        .stablecoin
        .mint(ea(payer.address()), EU256::from(100_000_000u64))
        .send()
        .await
        .unwrap()
        .await
        .unwrap();
    let channel_contract = wallets::Address(addresses.channel.0);
    let policy = SpendingPolicy::open(
        dir.join("policy"),
        payer.clone(),
        Limits {
            per_deal: Some("20 USDC".parse().unwrap()),
            per_peer_daily: Some("40 USDC".parse().unwrap()),
            ..Limits::default()
        },
    )
    .map(|p| addresses.pin(p, "USD Coin"))
    .unwrap();
    let token_domain = Eip712Domain::new(
        "USD Coin",
        "2",
        addresses.chain_id,
        wallets::Address(addresses.stablecoin.0),
    );
    let voucher_domain = Voucher::domain(addresses.chain_id, channel_contract);
    let payer_client = chain::connect(&url, payer.clone()).await.unwrap();
    let payee_client = chain::connect(&url, payee.clone()).await.unwrap();
    chain::allow_contract(
        &payee_client,
        addresses.channel,
        &chain::bindings::payment_channel::PAYMENTCHANNEL_ABI,
    );
    Parties {
        contracts: Deployment::at(deployer, &addresses),
        as_payee: PaymentChannel::new(addresses.channel, payee_client),
        payer,
        payee,
        payer_client,
        policy,
        token_domain,
        voucher_domain,
    }
}

impl Parties {
    fn channel(&self, deal: u8) -> Channel {
        Channel {
            payer: self.payer.address(),
            payee: self.payee.address(),
            salt: Channel::derive_salt(self.payer.address(), &B256([deal; 32])),
        }
    }

    /// The payer's policy signs the funding; the payee checks it and submits it.
    fn funding(
        &self,
        channel: Channel,
        value: Amount,
        valid_before: u64,
        funding: ChannelFunding,
    ) -> Result<SignedPayment, String> {
        let nonce = match funding {
            ChannelFunding::Open { expires_at } => channel.open_nonce(expires_at),
            ChannelFunding::TopUp { deposit } => channel.top_up_nonce(deposit),
        };
        let signed = self
            .policy
            .authorize(&Payment::ChannelFunding {
                domain: self.token_domain.clone(),
                authorization: ReceiveWithAuthorization {
                    from: channel.payer,
                    to: wallets::Address(self.contracts.channel.address().0),
                    value,
                    valid_after: 0,
                    valid_before,
                    nonce,
                },
                channel,
                funding,
            })
            .map_err(|e| e.to_string())?;
        signed.verify().unwrap();
        Ok(signed)
    }

    /// Opens `channel` gaslessly; returns the gas the payee paid.
    async fn open(&self, channel: Channel, deposit: &str, expires_in: u64) -> u64 {
        let deposit: Amount = format!("{deposit} USDC").parse().unwrap();
        let now = chain::chain_time(&self.payer_client).await.unwrap();
        let expires_at = now + expires_in;
        let signed = self
            .funding(
                channel,
                deposit,
                now + 600,
                ChannelFunding::Open { expires_at },
            )
            .unwrap();
        let gas = send(
            "PaymentChannel.openWithAuthorization",
            self.as_payee.open_with_authorization(
                ea(channel.payer),
                channel.salt.0,
                ea(channel.payee),
                units(deposit),
                expires_at,
                EU256::zero(),
                EU256::from(now + 600),
                bytes(&signed),
            ),
        )
        .await
        .unwrap();
        let state = self
            .contracts
            .channel
            .state_of(channel.id().0)
            .call()
            .await
            .unwrap();
        assert_eq!(state, 1, "open");
        gas
    }

    fn voucher(&self, channel: Channel, cumulative: Amount) -> Result<SignedPayment, String> {
        let signed = self
            .policy
            .authorize(&Payment::ChannelVoucher {
                domain: self.voucher_domain.clone(),
                channel,
                voucher: Voucher {
                    channel_id: channel.id(),
                    cumulative_amount: cumulative,
                },
            })
            .map_err(|e| e.to_string())?;
        // What the payee checks before delivering the deal the voucher pays for.
        signed.verify().unwrap();
        Ok(signed)
    }

    async fn settle(
        &self,
        channel: Channel,
        signed: &SignedPayment,
        close: bool,
    ) -> Result<u64, String> {
        let cumulative = units(signed.payment.amount());
        if close {
            let call = self
                .as_payee
                .close(channel.id().0, cumulative, bytes(signed));
            send("PaymentChannel.close", call).await
        } else {
            let call = self
                .as_payee
                .settle(channel.id().0, cumulative, bytes(signed));
            send("PaymentChannel.settle", call).await
        }
    }

    async fn balance(&self, who: EAddress) -> u128 {
        self.contracts
            .stablecoin
            .balance_of(who)
            .call()
            .await
            .unwrap()
            .as_u128()
    }
}

async fn channel_paths(node: &Node, dir: &std::path::Path) {
    let p = setup(node, dir).await;
    let (payer, payee) = (ea(p.payer.address()), ea(p.payee.address()));
    let held = p.contracts.channel.address();
    let payer_eth = p.payer_client.get_balance(payer, None).await.unwrap();

    // The contract's domain is the one the wallet signs vouchers in.
    assert_eq!(
        p.contracts.channel.domain_separator().call().await.unwrap(),
        p.voucher_domain.separator().0
    );

    // 1. A gasless open: the payer's policy signs, the payee submits.
    let ch = p.channel(1);
    let open_gas = p.open(ch, "20", 3_600).await;
    assert_eq!(
        p.contracts
            .channel
            .channel_id_of(payer, payee, ch.salt.0)
            .call()
            .await
            .unwrap(),
        ch.id().0
    );
    assert_eq!(p.balance(payer).await, 80_000_000);
    assert_eq!(p.balance(held).await, 20_000_000);

    // 2. 50 deals of uneven prices, each paid by a voucher for the running total.
    let mut cumulative = Amount::ZERO;
    let mut vouchers = Vec::new();
    for i in 1..=50u128 {
        let price = Amount::from_base_units(200_000 + i * 3_217 + i % 7);
        cumulative = cumulative.checked_add(price).unwrap();
        vouchers.push(p.voucher(ch, cumulative).unwrap());
    }
    assert_eq!(
        p.policy.last_voucher(&p.voucher_domain, ch.id()).unwrap(),
        cumulative
    );
    assert_eq!(
        p.policy.spent(Some(p.payee.address())).unwrap().0,
        cumulative
    );
    // Retrying the last voucher re-sends it; a lower one is refused.
    assert_eq!(
        &p.voucher(ch, cumulative).unwrap(),
        vouchers.last().unwrap()
    );
    let err = p.voucher(ch, Amount::from_base_units(1)).unwrap_err();
    assert!(err.contains("last voucher"), "{err}");

    // 3. One settlement pays all 50 deals, to the base unit.
    let last = vouchers.last().unwrap();
    let settle_gas = p.settle(ch, last, false).await.unwrap();
    let paid = cumulative.base_units();
    assert_eq!(p.balance(payee).await, paid);
    assert_eq!(p.balance(held).await, 20_000_000 - paid);
    assert_eq!(p.balance(payer).await, 80_000_000);

    // 4. Stale vouchers are worthless on chain: an older one, and the same one again.
    let err = p.settle(ch, &vouchers[24], false).await.unwrap_err();
    assert!(err.contains("StaleVoucher"), "{}: {err}", node.name());
    let err = p.settle(ch, last, false).await.unwrap_err();
    assert!(err.contains("StaleVoucher"), "{}: {err}", node.name());

    // 5. A gasless top-up, a voucher beyond the first deposit, then the payee closes:
    //    settled and the rest back to the payer in one transaction.
    let now = chain::chain_time(&p.payer_client).await.unwrap();
    let top_up = p
        .funding(
            ch,
            "5 USDC".parse().unwrap(),
            now + 600,
            ChannelFunding::TopUp {
                deposit: "25 USDC".parse().unwrap(),
            },
        )
        .unwrap();
    let top_up_gas = send(
        "PaymentChannel.topUpWithAuthorization",
        p.as_payee.top_up_with_authorization(
            ch.id().0,
            EU256::from(5_000_000u64),
            EU256::zero(),
            EU256::from(now + 600),
            bytes(&top_up),
        ),
    )
    .await
    .unwrap();
    assert_eq!(p.balance(payer).await, 75_000_000);
    let final_amount = Amount::from_base_units(20_500_000);
    // More deals up to 20.5 USDC in all (past the first deposit of 20), at most 1 USDC
    // each: the per-deal limit applies to every voucher's increment.
    let mut step = cumulative;
    let mut final_voucher = None;
    while step < final_amount {
        step = step
            .checked_add(Amount::ONE)
            .map(|s| if s > final_amount { final_amount } else { s })
            .unwrap();
        final_voucher = Some(p.voucher(ch, step).unwrap());
    }
    let final_voucher = final_voucher.unwrap();
    let close_gas = p.settle(ch, &final_voucher, true).await.unwrap();
    assert_eq!(p.balance(payee).await, 20_500_000);
    assert_eq!(p.balance(payer).await, 75_000_000 + 4_500_000);
    assert_eq!(p.balance(held).await, 0);
    let err = p.settle(ch, &final_voucher, false).await.unwrap_err();
    assert!(err.contains("ChannelNotOpen"), "{}: {err}", node.name());

    // 6. Expiry: the payee settles part, misses the expiry with the rest, and anyone
    //    returns the unsettled rest to the payer.
    let ch2 = p.channel(2);
    p.open(ch2, "3", 120).await;
    let v1 = p.voucher(ch2, "1 USDC".parse().unwrap()).unwrap();
    p.settle(ch2, &v1, false).await.unwrap();
    let v2 = p.voucher(ch2, "2 USDC".parse().unwrap()).unwrap();
    let early = p.contracts.channel.expire(ch2.id().0);
    let err = send("PaymentChannel.expire", early).await.unwrap_err();
    assert!(err.contains("ChannelNotExpired"), "{}: {err}", node.name());
    chain::advance_time(&p.payer_client, 121).await.unwrap();
    let err = p.settle(ch2, &v2, false).await.unwrap_err();
    assert!(err.contains("ChannelPastExpiry"), "{}: {err}", node.name());
    let expire_gas = send(
        "PaymentChannel.expire",
        p.contracts.channel.expire(ch2.id().0),
    )
    .await
    .unwrap();
    assert_eq!(p.balance(payee).await, 20_500_000 + 1_000_000);
    assert_eq!(p.balance(payer).await, 79_500_000 - 3_000_000 + 2_000_000);
    assert_eq!(p.balance(held).await, 0);

    // The payer never sent a transaction and paid no gas.
    assert_eq!(
        p.payer_client.get_balance(payer, None).await.unwrap(),
        payer_eth
    );
    assert_eq!(
        p.payer_client
            .get_transaction_count(payer, None)
            .await
            .unwrap(),
        EU256::zero()
    );

    println!(
        "PaymentChannel gas on {} (whole transactions): openWithAuthorization {open_gas}, \
         settle {settle_gas} (50 vouchers), topUpWithAuthorization {top_up_gas}, \
         close {close_gas}, expire {expire_gas}",
        node.name()
    );
}

on_devnet_and_anvil!(
    channel_open_vouchers_settle_close_and_expiry_on_the_embedded_devnet,
    channel_open_vouchers_settle_close_and_expiry_on_anvil,
    channel_paths
);
