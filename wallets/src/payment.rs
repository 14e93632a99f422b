//! Payment authorizations: what the spending policy signs.

use serde::{Deserialize, Serialize};

use crate::eip712::{Eip712, Eip712Domain, Encoder};
use crate::{keccak256, Address, Amount, Signature, B256};

/// An EIP-3009 `TransferWithAuthorization` of the stablecoin: the payer signs, the
/// payee (or anyone) submits it, and the token moves `value` from `from` to `to`
/// if the current time is in `(valid_after, valid_before)` and `nonce` is unused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransferWithAuthorization {
    /// The payer.
    pub from: Address,
    /// The payee.
    pub to: Address,
    /// The amount.
    pub value: Amount,
    /// Unix seconds after which the authorization is valid.
    pub valid_after: u64,
    /// Unix seconds before which the authorization is valid.
    pub valid_before: u64,
    /// A unique 32-byte nonce; also the payment's idempotency id.
    pub nonce: B256,
}

impl Eip712 for TransferWithAuthorization {
    const NAME: &'static str = "TransferWithAuthorization";
    const TYPE: &'static str = "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)";

    fn struct_hash(&self) -> B256 {
        Encoder::new(Self::type_hash())
            .address(self.from)
            .address(self.to)
            .uint(self.value.base_units())
            .uint(self.valid_after)
            .uint(self.valid_before)
            .b256(self.nonce)
            .finish()
    }
}

impl TransferWithAuthorization {
    /// Derives the EIP-3009 nonce for a deal from the payer and the hash of the
    /// agreement it pays for, so that a retry after a crash or a timeout produces
    /// the same authorization instead of a second payment.
    pub fn derive_nonce(payer: Address, agreement: &B256) -> B256 {
        let mut buf = Vec::with_capacity(20 + 32 + 16);
        buf.extend_from_slice(b"agora.eip3009.v1");
        buf.extend_from_slice(payer.as_bytes());
        buf.extend_from_slice(agreement.as_bytes());
        keccak256(buf)
    }
}

/// An EIP-2612 `Permit`: lets `spender` (the escrow contract) pull `value` of the
/// owner's tokens until `deadline`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Permit {
    /// The payer.
    pub owner: Address,
    /// Who may pull the tokens (the escrow contract).
    pub spender: Address,
    /// The allowance.
    pub value: Amount,
    /// The owner's current permit nonce on the token.
    pub nonce: u64,
    /// Unix seconds until which the permit is valid.
    pub deadline: u64,
}

impl Eip712 for Permit {
    const NAME: &'static str = "Permit";
    const TYPE: &'static str =
        "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)";

    fn struct_hash(&self) -> B256 {
        Encoder::new(Self::type_hash())
            .address(self.owner)
            .address(self.spender)
            .uint(self.value.base_units())
            .uint(self.nonce)
            .uint(self.deadline)
            .finish()
    }
}

/// An EIP-3009 `ReceiveWithAuthorization`: as [`TransferWithAuthorization`], but only the
/// payee `to` may execute it. The payment channel contract funds channels with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiveWithAuthorization {
    /// The payer.
    pub from: Address,
    /// The payee, who must submit it (the payment channel contract).
    pub to: Address,
    /// The amount.
    pub value: Amount,
    /// Unix seconds after which the authorization is valid.
    pub valid_after: u64,
    /// Unix seconds before which the authorization is valid.
    pub valid_before: u64,
    /// A unique 32-byte nonce; for channel funding derived from the channel's terms.
    pub nonce: B256,
}

impl Eip712 for ReceiveWithAuthorization {
    const NAME: &'static str = "ReceiveWithAuthorization";
    const TYPE: &'static str = "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)";

    fn struct_hash(&self) -> B256 {
        Encoder::new(Self::type_hash())
            .address(self.from)
            .address(self.to)
            .uint(self.value.base_units())
            .uint(self.valid_after)
            .uint(self.valid_before)
            .b256(self.nonce)
            .finish()
    }
}

/// A payment channel of the `PaymentChannel` contract: who pays whom, under the payer's
/// salt. Its id is `keccak256(abi.encode(payer, payee, salt))`, as the contract's
/// `channelIdOf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Channel {
    /// Who deposits and signs vouchers.
    pub payer: Address,
    /// Who settles vouchers and is paid.
    pub payee: Address,
    /// Chosen by the payer, unique among its channels to this payee.
    pub salt: B256,
}

/// Domain tag of a channel-opening EIP-3009 nonce (the contract's `OPEN_AUTHORIZATION_TAG`).
const OPEN_AUTHORIZATION_TAG: &str =
    "Agora PaymentChannel open(bytes32 channelId,uint64 expiresAt)";
/// Domain tag of a top-up EIP-3009 nonce (the contract's `TOP_UP_AUTHORIZATION_TAG`).
const TOP_UP_AUTHORIZATION_TAG: &str =
    "Agora PaymentChannel topUp(bytes32 channelId,uint256 deposit)";

impl Channel {
    /// The channel id: `keccak256(abi.encode(payer, payee, salt))`.
    pub fn id(&self) -> B256 {
        let mut buf = [0u8; 96];
        buf[12..32].copy_from_slice(self.payer.as_bytes());
        buf[44..64].copy_from_slice(self.payee.as_bytes());
        buf[64..].copy_from_slice(self.salt.as_bytes());
        keccak256(buf)
    }

    /// Derives the salt of a channel from the payer and the agreement it pays for, so
    /// that a retry opens the same channel instead of a second one.
    pub fn derive_salt(payer: Address, agreement: &B256) -> B256 {
        let mut buf = Vec::with_capacity(20 + 32 + 16);
        buf.extend_from_slice(b"agora.channel.v1");
        buf.extend_from_slice(payer.as_bytes());
        buf.extend_from_slice(agreement.as_bytes());
        keccak256(buf)
    }

    /// The EIP-3009 nonce of the authorization that opens this channel with expiry
    /// `expires_at`, as the contract's `openAuthorizationNonce`.
    pub fn open_nonce(&self, expires_at: u64) -> B256 {
        words(&[
            keccak256(OPEN_AUTHORIZATION_TAG),
            self.id(),
            uint_word(u128::from(expires_at)),
        ])
    }

    /// The EIP-3009 nonce of the authorization that tops this channel up to a total
    /// deposit of `deposit`, as the contract's `topUpAuthorizationNonce`.
    pub fn top_up_nonce(&self, deposit: Amount) -> B256 {
        words(&[
            keccak256(TOP_UP_AUTHORIZATION_TAG),
            self.id(),
            uint_word(deposit.base_units()),
        ])
    }
}

/// `keccak256` of 32-byte words laid end to end (`abi.encode` of static values).
fn words(items: &[B256]) -> B256 {
    let mut buf = Vec::with_capacity(32 * items.len());
    for w in items {
        buf.extend_from_slice(w.as_bytes());
    }
    keccak256(buf)
}

fn uint_word(v: u128) -> B256 {
    let mut w = [0u8; 32];
    w[16..].copy_from_slice(&v.to_be_bytes());
    B256(w)
}

/// What a channel-funding authorization does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelFunding {
    /// Opens the channel (`openWithAuthorization`) with this expiry.
    Open {
        /// Unix seconds: the last moment (inclusive) the payee may settle.
        #[serde(rename = "expiresAt")]
        expires_at: u64,
    },
    /// Tops the channel up (`topUpWithAuthorization`) to this total deposit.
    TopUp {
        /// The channel's total deposit after the top-up.
        deposit: Amount,
    },
}

/// A payment channel voucher: the payer pays `cumulative_amount` in all in the channel.
/// EIP-712 type `Voucher(bytes32 channelId,uint256 cumulativeAmount)` in the channel
/// contract's domain ([`Voucher::domain`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Voucher {
    /// The channel ([`Channel::id`]).
    pub channel_id: B256,
    /// Everything paid in the channel so far, this voucher's deal included.
    pub cumulative_amount: Amount,
}

impl Eip712 for Voucher {
    const NAME: &'static str = "Voucher";
    const TYPE: &'static str = "Voucher(bytes32 channelId,uint256 cumulativeAmount)";

    fn struct_hash(&self) -> B256 {
        Encoder::new(Self::type_hash())
            .b256(self.channel_id)
            .uint(self.cumulative_amount.base_units())
            .finish()
    }
}

impl Voucher {
    /// The channel contract's EIP-712 domain name.
    pub const DOMAIN_NAME: &'static str = "Agora PaymentChannel";
    /// The channel contract's EIP-712 domain version.
    pub const DOMAIN_VERSION: &'static str = "1";

    /// The EIP-712 domain of the `PaymentChannel` contract at `contract` on `chain_id`.
    pub fn domain(chain_id: u64, contract: Address) -> Eip712Domain {
        Eip712Domain::new(Self::DOMAIN_NAME, Self::DOMAIN_VERSION, chain_id, contract)
    }
}

/// Whether `type_hash` is the EIP-712 type hash of a type that moves money: the
/// payment types of this module, whatever name a caller gives them.
pub(crate) fn is_payment_type_hash(type_hash: &B256) -> bool {
    [
        TransferWithAuthorization::type_hash(),
        ReceiveWithAuthorization::type_hash(),
        Permit::type_hash(),
        Voucher::type_hash(),
    ]
    .contains(type_hash)
}

/// A payment the wallet may be asked to sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Payment {
    /// An EIP-3009 transfer authorization in the token's EIP-712 domain.
    Authorization {
        /// The token's domain (name, version "2", chain id, token address).
        domain: Eip712Domain,
        /// The transfer.
        transfer: TransferWithAuthorization,
    },
    /// An escrow deposit: a permit for the escrow contract to pull the price, used
    /// by `JobEscrow.lockWithPermit` to lock it for `seller` under `job_id`.
    EscrowDeposit {
        /// The token's domain.
        domain: Eip712Domain,
        /// The permit (spender = the escrow contract).
        permit: Permit,
        /// Who the escrow pays on release. Not part of the permit's signature: the
        /// policy holds it to its allow- and deny-lists, but counts the permit's
        /// spender as the payee.
        seller: Address,
        /// The buyer's job id (the escrow id is keccak256(buyer, job id)).
        job_id: B256,
    },
    /// Funds a payment channel without gas: a `ReceiveWithAuthorization` of the token to
    /// the channel contract, whose nonce binds the channel's terms
    /// ([`Channel::open_nonce`], [`Channel::top_up_nonce`]). The deposit stays the payer's
    /// until vouchers release it, so the policy counts nothing for it against the budgets
    /// (the vouchers count) and signs it only for a channel contract it trusts.
    ChannelFunding {
        /// The token's domain.
        domain: Eip712Domain,
        /// The authorization (from = payer, to = the channel contract).
        authorization: ReceiveWithAuthorization,
        /// The channel funded.
        channel: Channel,
        /// Opening or top-up.
        funding: ChannelFunding,
    },
    /// A payment channel voucher. The policy counts the increment over the last voucher
    /// it signed for the same channel and refuses a lower one.
    ChannelVoucher {
        /// The channel contract's domain ([`Voucher::domain`]).
        domain: Eip712Domain,
        /// The channel, whose payee the policy counts.
        channel: Channel,
        /// The voucher (its channel id must be `channel`'s).
        voucher: Voucher,
    },
}

impl Payment {
    /// The payment's idempotency id: the same id always means the same payment.
    pub fn id(&self) -> String {
        match self {
            Self::Authorization { domain, transfer } => format!(
                "eip3009:{}:{}:{}",
                domain.chain_id.unwrap_or_default(),
                domain.verifying_contract.unwrap_or_default(),
                transfer.nonce
            ),
            Self::EscrowDeposit {
                domain,
                permit,
                job_id,
                ..
            } => format!(
                "escrow:{}:{}:{}:{}",
                domain.chain_id.unwrap_or_default(),
                permit.spender,
                permit.owner,
                job_id
            ),
            Self::ChannelFunding {
                domain,
                authorization,
                ..
            } => format!(
                "eip3009:{}:{}:{}",
                domain.chain_id.unwrap_or_default(),
                domain.verifying_contract.unwrap_or_default(),
                authorization.nonce
            ),
            Self::ChannelVoucher { voucher, .. } => format!(
                "voucher:{}:{}",
                self.channel_key().unwrap_or_default(),
                voucher.cumulative_amount.base_units()
            ),
        }
    }

    /// For a voucher, the key of its channel (chain, contract, channel id) under which the
    /// policy keeps the last cumulative amount; `None` for other payments.
    pub fn channel_key(&self) -> Option<String> {
        match self {
            Self::ChannelVoucher {
                domain, voucher, ..
            } => Some(format!(
                "{}:{}:{}",
                domain.chain_id.unwrap_or_default(),
                domain.verifying_contract.unwrap_or_default(),
                voucher.channel_id
            )),
            _ => None,
        }
    }

    /// Who pays.
    pub fn payer(&self) -> Address {
        match self {
            Self::Authorization { transfer, .. } => transfer.from,
            Self::EscrowDeposit { permit, .. } => permit.owner,
            Self::ChannelFunding { authorization, .. } => authorization.from,
            Self::ChannelVoucher { channel, .. } => channel.payer,
        }
    }

    /// Who is paid, as the signature binds it: for an escrow deposit the permit's
    /// spender (the escrow contract), since the seller it releases to is not signed.
    pub fn payee(&self) -> Address {
        match self {
            Self::Authorization { transfer, .. } => transfer.to,
            Self::EscrowDeposit { permit, .. } => permit.spender,
            Self::ChannelFunding { channel, .. } | Self::ChannelVoucher { channel, .. } => {
                channel.payee
            }
        }
    }

    /// Who the money is meant for in the end: the payee, or for an escrow deposit the
    /// seller the escrow releases to (declared, not signed: check it against the
    /// chain, as the audit does).
    pub fn beneficiary(&self) -> Address {
        match self {
            Self::EscrowDeposit { seller, .. } => *seller,
            _ => self.payee(),
        }
    }

    /// How much the signature moves or allows: for a voucher its cumulative amount (the
    /// policy counts only the increment over the channel's previous voucher).
    pub fn amount(&self) -> Amount {
        match self {
            Self::Authorization { transfer, .. } => transfer.value,
            Self::EscrowDeposit { permit, .. } => permit.value,
            Self::ChannelFunding { authorization, .. } => authorization.value,
            Self::ChannelVoucher { voucher, .. } => voucher.cumulative_amount,
        }
    }

    /// The digest the payer signs.
    pub fn signing_hash(&self) -> B256 {
        match self {
            Self::Authorization { domain, transfer } => transfer.signing_hash(domain),
            Self::EscrowDeposit { domain, permit, .. } => permit.signing_hash(domain),
            Self::ChannelFunding {
                domain,
                authorization,
                ..
            } => authorization.signing_hash(domain),
            Self::ChannelVoucher {
                domain, voucher, ..
            } => voucher.signing_hash(domain),
        }
    }
}

/// A payment with the payer's signature, ready to hand to the payee or the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedPayment {
    /// What was authorized.
    pub payment: Payment,
    /// The payer's signature over [`Payment::signing_hash`].
    pub signature: Signature,
}

impl SignedPayment {
    /// Checks that the signature was made by the payer.
    ///
    /// # Errors
    /// [`crate::Error::WrongSigner`] or [`crate::Error::InvalidSignature`].
    pub fn verify(&self) -> crate::Result<()> {
        self.signature
            .verify(&self.payment.signing_hash(), self.payment.payer())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permit_typehash_matches_eip2612() {
        // PERMIT_TYPEHASH of EIP-2612 (and of USDC, OpenZeppelin's ERC20Permit).
        assert_eq!(
            Permit::type_hash().to_string(),
            "0x6e71edae12b1b97f4d1f60370fef10105fa2faae0126114a169c64845d6126c9"
        );
    }

    #[test]
    fn typehash_matches_usdc() {
        // keccak256("TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)")
        // as the constant TRANSFER_WITH_AUTHORIZATION_TYPEHASH in USDC's EIP3009.sol.
        assert_eq!(
            TransferWithAuthorization::type_hash().to_string(),
            "0x7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267"
        );
    }

    #[test]
    fn receive_typehash_matches_usdc() {
        assert_eq!(
            ReceiveWithAuthorization::type_hash().to_string(),
            "0xd099cc98ef71107a616c4f0f941f04c322d8e254fe26b3c6668db87aae413de8"
        );
    }

    /// Vectors computed with `cast keccak` / `cast abi-encode` from the contract's formulas
    /// (registry/contracts/README.md, "Payment channels").
    #[test]
    fn channel_ids_nonces_and_voucher_digest_match_the_contract() {
        let channel = Channel {
            payer: Address([0x11; 20]),
            payee: Address([0x22; 20]),
            salt: B256([0x33; 32]),
        };
        assert_eq!(
            channel.id().to_string(),
            "0x93a444846e4fda069407f6c3b1f13662af7192b9829015f800dc507b04dfeab1"
        );
        assert_eq!(
            channel.open_nonce(1_700_086_400).to_string(),
            "0xb66706035bfd7964410f22249c1f8337ff393e9a29d1304af9c98d476d79799a"
        );
        assert_eq!(
            channel
                .top_up_nonce(Amount::from_base_units(13_000_000))
                .to_string(),
            "0x9f8da7f10e3473f039b89a939ca33281f7b80d3210f95269cf70c294793b8861"
        );
        assert_eq!(
            Voucher::type_hash().to_string(),
            "0x5e172d4a19b08b5b7f0354399a080f05a28476f34f987f7cd87e69a4065d4ec0"
        );
        let voucher = Voucher {
            channel_id: channel.id(),
            cumulative_amount: Amount::from_base_units(1_234_567),
        };
        assert_eq!(
            voucher
                .signing_hash(&Voucher::domain(31337, Address([0x44; 20])))
                .to_string(),
            "0xb396dcc252f99ff4a9a71cc3b2f4cbb7a80b441151ff74b4fd176762b9985e63"
        );
    }

    #[test]
    fn channel_payments_round_trip_through_json() {
        let channel = Channel {
            payer: Address([1; 20]),
            payee: Address([2; 20]),
            salt: Channel::derive_salt(Address([1; 20]), &B256([9; 32])),
        };
        let funding = Payment::ChannelFunding {
            domain: Eip712Domain::new("USD Coin", "2", 31337, Address([3; 20])),
            authorization: ReceiveWithAuthorization {
                from: channel.payer,
                to: Address([4; 20]),
                value: Amount::ONE,
                valid_after: 0,
                valid_before: 10,
                nonce: channel.open_nonce(99),
            },
            channel,
            funding: ChannelFunding::Open { expires_at: 99 },
        };
        let voucher = Payment::ChannelVoucher {
            domain: Voucher::domain(31337, Address([4; 20])),
            channel,
            voucher: Voucher {
                channel_id: channel.id(),
                cumulative_amount: Amount::ONE,
            },
        };
        for p in [funding, voucher] {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<Payment>(&json).unwrap(), p, "{json}");
            assert_eq!(p.payer(), channel.payer);
            assert_eq!(p.payee(), channel.payee);
        }
    }
}
