//! The protocol's messages, the agreement both sides sign, and the signed
//! delivery and receipt.
//!
//! Every message travels in the deal's dialogue. The buyer asks, the seller
//! answers (the answer is the ask's reply, in the same dialogue), except for
//! [`Reject`], a one-way tell:
//!
//! | buyer sends               | as   | seller answers                 |
//! |---------------------------|------|--------------------------------|
//! | [`CallForProposal`]       | ask  | [`ProposalReply`]              |
//! | [`Counter`]               | ask  | [`ProposalReply`]              |
//! | [`Accept`]                | ask  | [`Accepted`]                   |
//! | [`Reject`]                | tell | (nothing)                      |
//! | [`Pay`]                   | ask  | [`Deliver`] (after settlement) |
//! | [`Receipt`]               | ask  | `()` once journaled            |
//! | [`Fund`] (channel)        | ask  | [`Funded`] (channel open)      |
//! | [`Order`] (channel)       | ask  | [`Deliver`]                    |
//!
//! In `escrow` mode the buyer locks the price on chain before [`Pay`], the seller
//! records the delivery on chain before it answers, and the buyer's acceptance on chain
//! pays the seller before the [`Receipt`]. In `channel` mode the agreement sets the price
//! of each order; after [`Fund`], every order is an [`Order`] in a dialogue of its own,
//! answered by a [`Deliver`] and closed by a [`Receipt`], with no chain transaction.

use agent_sdk::Request;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wallets::eip712::Encoder;
use wallets::{keccak256, Address, Amount, Eip712, Eip712Domain, Signature, SignedPayment, B256};

/// How the buyer pays, chosen in the terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMode {
    /// An EIP-3009 `transferWithAuthorization` signed by the buyer and submitted by
    /// the seller, who pays the gas.
    Authorization,
    /// A `JobEscrow` lock by the buyer (with an EIP-2612 permit signed through its
    /// spending policy; the buyer pays the gas), delivery recorded on chain by the
    /// seller, release when the buyer accepts.
    Escrow,
    /// A `PaymentChannel` between the pair: the agreement sets the price of each order
    /// until its deadline, the buyer funds the channel once ([`Fund`], gasless: the seller
    /// submits the buyer's authorization), then pays each [`Order`] with an off-chain
    /// voucher; the seller settles the last voucher in one transaction.
    Channel,
}

impl PaymentMode {
    /// The mode's name as it is signed in an [`Agreement`].
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorization => "authorization",
            Self::Escrow => "escrow",
            Self::Channel => "channel",
        }
    }
}

impl std::fmt::Display for PaymentMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The EIP-712 domain agreements, deliveries and receipts are signed in.
pub fn negotiation_domain(chain_id: u64) -> Eip712Domain {
    Eip712Domain {
        name: Some("Agora Negotiation".into()),
        version: Some("1".into()),
        chain_id: Some(chain_id),
        verifying_contract: None,
        salt: None,
    }
}

/// The hash a task text is known by in agreements.
pub fn task_hash(task: &str) -> B256 {
    keccak256(task.as_bytes())
}

/// The hash of a delivered result: Keccak-256 of its canonical JSON (keys sorted,
/// no whitespace), as the journal hashes bodies.
pub fn result_hash(result: &Value) -> B256 {
    keccak256(wallets::journal::canonical_json(result))
}

/// The job id of an agreement paid in escrow: `keccak256("agora.escrow.v1" ‖ agreement
/// hash)`, so a retry locks (or finds) the same escrow.
pub fn escrow_job_id(agreement: &B256) -> B256 {
    let mut buf = Vec::with_capacity(15 + 32);
    buf.extend_from_slice(b"agora.escrow.v1");
    buf.extend_from_slice(agreement.as_bytes());
    keccak256(buf)
}

/// Seconds the buyer has to accept an escrow delivery before anyone may release it.
pub const ESCROW_REVIEW_WINDOW: u32 = 3_600;

/// Seconds a payment channel stays open after its agreement's deadline, for the seller
/// to settle the last voucher; then the buyer may take the rest back.
pub const CHANNEL_SETTLE_WINDOW: u64 = 3_600;

/// The id of one order in a channel agreement: `keccak256("agora.order.v1" ‖ agreement
/// hash ‖ cumulative amount)`. The cumulative amount of the voucher that pays an order is
/// unique in its channel, so this names the order in deliveries, receipts and journals.
pub fn order_id(agreement: &B256, cumulative: wallets::Amount) -> B256 {
    let mut buf = Vec::with_capacity(14 + 32 + 16);
    buf.extend_from_slice(b"agora.order.v1");
    buf.extend_from_slice(agreement.as_bytes());
    buf.extend_from_slice(&cumulative.base_units().to_be_bytes());
    keccak256(buf)
}

/// The terms of one deal. The seller signs it when proposing, the buyer when
/// accepting; the EIP-3009 nonce of its payment is derived from its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Agreement {
    /// The deal's dialogue.
    #[schemars(with = "String")]
    pub dialogue: B256,
    /// Who pays.
    #[schemars(with = "String")]
    pub buyer: Address,
    /// Who delivers and is paid.
    #[schemars(with = "String")]
    pub seller: Address,
    /// [`task_hash`] of the task text.
    #[schemars(with = "String")]
    pub task_hash: B256,
    /// The skill sold, e.g. `weather.Forecast`.
    pub kind: String,
    /// The price in base units of the stablecoin.
    #[schemars(with = "String")]
    pub price: Amount,
    /// How it is paid.
    pub mode: PaymentMode,
    /// The stablecoin it is paid in.
    #[schemars(with = "String")]
    pub token: Address,
    /// The chain of the token.
    pub chain_id: u64,
    /// Unix seconds until which the seller's offer stands.
    pub expiry: u64,
    /// Unix seconds by which the deal must be paid and delivered; the payment
    /// authorization is valid only before it.
    pub deadline: u64,
}

impl Eip712 for Agreement {
    const NAME: &'static str = "Agreement";
    const TYPE: &'static str = "Agreement(bytes32 dialogue,address buyer,address seller,bytes32 taskHash,string kind,uint256 price,string mode,address token,uint256 chainId,uint64 expiry,uint64 deadline)";

    fn struct_hash(&self) -> B256 {
        Encoder::new(Self::type_hash())
            .b256(self.dialogue)
            .address(self.buyer)
            .address(self.seller)
            .b256(self.task_hash)
            .string(&self.kind)
            .uint(self.price.base_units())
            .string(self.mode.as_str())
            .address(self.token)
            .uint(self.chain_id)
            .uint(self.expiry)
            .uint(self.deadline)
            .finish()
    }
}

impl Agreement {
    /// The digest both parties sign: the agreement's id.
    pub fn hash(&self) -> B256 {
        self.signing_hash(&negotiation_domain(self.chain_id))
    }
}

/// An agreement with both parties' signatures over [`Agreement::hash`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignedAgreement {
    /// The terms.
    pub agreement: Agreement,
    /// The seller's signature.
    #[schemars(with = "String")]
    pub seller_signature: Signature,
    /// The buyer's signature.
    #[schemars(with = "String")]
    pub buyer_signature: Signature,
}

impl SignedAgreement {
    /// Checks both signatures.
    ///
    /// # Errors
    /// [`wallets::Error::WrongSigner`] or [`wallets::Error::InvalidSignature`].
    pub fn verify(&self) -> wallets::Result<()> {
        let hash = self.agreement.hash();
        self.seller_signature.verify(&hash, self.agreement.seller)?;
        self.buyer_signature.verify(&hash, self.agreement.buyer)
    }
}

/// The buyer's call for proposals: what it wants done, in which skill, for at most
/// how much, by when. Ask; the answer is a [`ProposalReply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallForProposal {
    /// The task, as text. Untrusted on both sides: it never sets a price.
    pub task: String,
    /// The skill wanted.
    pub kind: String,
    /// The most the buyer will pay.
    #[schemars(with = "String")]
    pub max_price: Amount,
    /// Unix seconds by which the work must be paid and delivered.
    pub deadline: u64,
    /// Payment modes the buyer accepts, preferred first.
    pub modes: Vec<PaymentMode>,
    /// The stablecoin the buyer pays in.
    #[schemars(with = "String")]
    pub token: Address,
}

impl Request for CallForProposal {
    const KIND: &'static str = "negotiation.CallForProposal";
    type Response = ProposalReply;
}

/// A seller's offer: the agreement it is ready to sign, signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Proposal {
    /// The offered terms.
    pub agreement: Agreement,
    /// 0 for the opening offer, then the counter round it answers.
    pub round: u32,
    /// The seller's signature over [`Agreement::hash`] (a seller may leave it out
    /// until acceptance).
    #[schemars(with = "Option<String>")]
    pub signature: Option<Signature>,
}

/// A seller's answer to a call or a counter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
// Short-lived values on their way to or from JSON: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum ProposalReply {
    /// An offer.
    Propose(Proposal),
    /// No offer.
    Decline {
        /// Why.
        reason: String,
    },
}

/// The buyer's counter-offer in the deal's dialogue. Ask; the answer is the
/// seller's revised [`ProposalReply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Counter {
    /// The price the buyer offers.
    #[schemars(with = "String")]
    pub price: Amount,
    /// The counter round, from 1.
    pub round: u32,
}

impl Request for Counter {
    const KIND: &'static str = "negotiation.Counter";
    type Response = ProposalReply;
}

/// The buyer accepts a proposal: the agreement exactly as proposed, signed by the
/// buyer. Ask; the answer is [`Accepted`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Accept {
    /// The agreement accepted.
    pub agreement: Agreement,
    /// The buyer's signature over [`Agreement::hash`].
    #[schemars(with = "String")]
    pub buyer_signature: Signature,
}

impl Request for Accept {
    const KIND: &'static str = "negotiation.Accept";
    type Response = Accepted;
}

/// The seller's confirmation of an acceptance: its signature over the agreement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Accepted {
    /// The seller's signature over [`Agreement::hash`].
    #[schemars(with = "String")]
    pub seller_signature: Signature,
}

/// The buyer ends the dialogue without a deal (another seller won, the price was
/// too high, the policy refused the payment). Tell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reject {
    /// Why.
    pub reason: String,
}

impl Request for Reject {
    const KIND: &'static str = "negotiation.Reject";
    type Response = ();
}

/// The buyer's payment for an accepted agreement. Ask; the seller settles it on
/// chain, does the work and answers with [`Deliver`]. Sending it again (after a
/// timeout or a crash) re-sends the same signed payment and gets the same delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pay {
    /// [`Agreement::hash`] of what it pays for.
    #[schemars(with = "String")]
    pub agreement: B256,
    /// The payment, signed through the buyer's spending policy.
    #[schemars(with = "Value")]
    pub payment: SignedPayment,
}

impl Request for Pay {
    const KIND: &'static str = "negotiation.Pay";
    type Response = Deliver;
}

/// The buyer funds the payment channel of an accepted `channel` agreement: an EIP-3009
/// `ReceiveWithAuthorization` signed through its spending policy, which the seller
/// submits (and pays the gas of). Ask; the answer is [`Funded`]. Idempotent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fund {
    /// [`Agreement::hash`] of the channel agreement.
    #[schemars(with = "String")]
    pub agreement: B256,
    /// The funding ([`wallets::Payment::ChannelFunding`]).
    #[schemars(with = "Value")]
    pub funding: SignedPayment,
}

impl Request for Fund {
    const KIND: &'static str = "negotiation.Fund";
    type Response = Funded;
}

/// The channel is open on chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Funded {
    /// The transaction that opened it.
    pub settlement: Settled,
}

/// One order under a funded `channel` agreement, in a dialogue of its own: the task and
/// the voucher that pays for it (cumulative amount = the previous voucher's + the
/// agreed price). Ask; the answer is the [`Deliver`], whose `agreement` is the
/// [`order_id`] and whose settlement is empty (vouchers are settled later, together).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Order {
    /// The dialogue of the channel agreement.
    #[schemars(with = "String")]
    pub channel_dialogue: B256,
    /// [`Agreement::hash`] of the channel agreement.
    #[schemars(with = "String")]
    pub agreement: B256,
    /// The task, as text.
    pub task: String,
    /// The voucher ([`wallets::Payment::ChannelVoucher`]).
    #[schemars(with = "Value")]
    pub payment: SignedPayment,
}

impl Request for Order {
    const KIND: &'static str = "negotiation.Order";
    type Response = Deliver;
}

/// An on-chain transaction of a deal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settled {
    /// The transaction hash.
    #[schemars(with = "String")]
    pub tx_hash: B256,
    /// Its block.
    pub block: u64,
    /// Gas it used, paid by whoever sent it.
    pub gas_used: u64,
}

/// What the seller signs when it delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// [`Agreement::hash`], or the [`order_id`] of a channel order.
    pub agreement: B256,
    /// [`result_hash`] of the result.
    pub result_hash: B256,
    /// The settling transaction.
    pub tx_hash: B256,
}

impl Eip712 for Delivery {
    const NAME: &'static str = "Delivery";
    const TYPE: &'static str = "Delivery(bytes32 agreement,bytes32 resultHash,bytes32 txHash)";

    fn struct_hash(&self) -> B256 {
        Encoder::new(Self::type_hash())
            .b256(self.agreement)
            .b256(self.result_hash)
            .b256(self.tx_hash)
            .finish()
    }
}

/// The work, delivered after the payment settled: the answer to [`Pay`] and [`Order`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deliver {
    /// [`Agreement::hash`], or the [`order_id`] of a channel order.
    #[schemars(with = "String")]
    pub agreement: B256,
    /// The result.
    pub result: Value,
    /// [`result_hash`] of `result`.
    #[schemars(with = "String")]
    pub result_hash: B256,
    /// An attestation of how the result was made (e.g. a signed LLM inference
    /// record), if the service gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<Value>,
    /// The seller's transaction: in `authorization` mode the transfer that paid for
    /// it, in `escrow` mode the recorded delivery; none (zero hash) for a channel order.
    pub settlement: Settled,
    /// The seller's signature over the [`Delivery`].
    #[schemars(with = "String")]
    pub signature: Signature,
}

impl Deliver {
    /// The signed [`Delivery`].
    pub fn delivery(&self) -> Delivery {
        Delivery {
            agreement: self.agreement,
            result_hash: self.result_hash,
            tx_hash: self.settlement.tx_hash,
        }
    }
}

/// What the buyer signs when it has received a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiptNote {
    /// [`Agreement::hash`], or the [`order_id`] of a channel order.
    pub agreement: B256,
    /// [`result_hash`] of what was received.
    pub result_hash: B256,
}

impl Eip712 for ReceiptNote {
    const NAME: &'static str = "Receipt";
    const TYPE: &'static str = "Receipt(bytes32 agreement,bytes32 resultHash)";

    fn struct_hash(&self) -> B256 {
        Encoder::new(Self::type_hash())
            .b256(self.agreement)
            .b256(self.result_hash)
            .finish()
    }
}

/// The buyer confirms it received the delivery. Tell; closes the deal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Receipt {
    /// [`Agreement::hash`].
    #[schemars(with = "String")]
    pub agreement: B256,
    /// [`result_hash`] of what was received.
    #[schemars(with = "String")]
    pub result_hash: B256,
    /// The buyer's signature over the [`ReceiptNote`].
    #[schemars(with = "String")]
    pub signature: Signature,
}

impl Receipt {
    /// The signed [`ReceiptNote`].
    pub fn note(&self) -> ReceiptNote {
        ReceiptNote {
            agreement: self.agreement,
            result_hash: self.result_hash,
        }
    }
}

impl Request for Receipt {
    const KIND: &'static str = "negotiation.Receipt";
    type Response = ();
}

/// The most receipts one [`Receipts`] message may carry.
pub const MAX_RECEIPTS: usize = 256;

/// Receipts of several channel orders at once, sent in the channel agreement's
/// dialogue: each receipt's `agreement` is its order's id ([`order_id`]), which is
/// the order's dialogue. Ask; the seller journals them together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Receipts {
    /// At most [`MAX_RECEIPTS`].
    pub receipts: Vec<Receipt>,
}

impl Request for Receipts {
    const KIND: &'static str = "negotiation.Receipts";
    type Response = ();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agreement() -> Agreement {
        Agreement {
            dialogue: B256([7; 32]),
            buyer: Address([1; 20]),
            seller: Address([2; 20]),
            task_hash: task_hash("forecast Lisbon"),
            kind: "weather.Forecast".into(),
            price: Amount::from_base_units(2_500_000),
            mode: PaymentMode::Authorization,
            token: Address([3; 20]),
            chain_id: 31337,
            expiry: 100,
            deadline: 200,
        }
    }

    #[test]
    fn agreements_round_trip_and_any_change_changes_the_hash() {
        let a = agreement();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Agreement>(&json).unwrap(), a);
        assert!(json.contains("\"price\":\"2500000\""), "{json}");
        let mut b = a.clone();
        b.price = Amount::from_base_units(2_500_001);
        assert_ne!(a.hash(), b.hash());
        let mut c = a.clone();
        c.mode = PaymentMode::Escrow;
        assert_ne!(a.hash(), c.hash());
    }

    #[test]
    fn signed_agreements_verify_both_parties() {
        let (buyer, seller) = (wallets::Wallet::random(), wallets::Wallet::random());
        let mut a = agreement();
        a.buyer = buyer.address();
        a.seller = seller.address();
        let domain = negotiation_domain(a.chain_id);
        let mut signed = SignedAgreement {
            seller_signature: seller.sign_typed(&domain, &a).unwrap(),
            buyer_signature: buyer.sign_typed(&domain, &a).unwrap(),
            agreement: a,
        };
        signed.verify().unwrap();
        signed.agreement.price = Amount::ONE;
        assert!(signed.verify().is_err());
    }

    #[test]
    fn result_hashes_ignore_key_order() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":[true,"x"]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{ "b":[true,"x"], "a":1 }"#).unwrap();
        assert_eq!(result_hash(&a), result_hash(&b));
    }
}
