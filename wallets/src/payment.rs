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
        /// Who the escrow pays on release: the payee the policy counts.
        seller: Address,
        /// The buyer's job id (the escrow id is keccak256(buyer, job id)).
        job_id: B256,
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
        }
    }

    /// Who pays.
    pub fn payer(&self) -> Address {
        match self {
            Self::Authorization { transfer, .. } => transfer.from,
            Self::EscrowDeposit { permit, .. } => permit.owner,
        }
    }

    /// Who is paid.
    pub fn payee(&self) -> Address {
        match self {
            Self::Authorization { transfer, .. } => transfer.to,
            Self::EscrowDeposit { seller, .. } => *seller,
        }
    }

    /// How much.
    pub fn amount(&self) -> Amount {
        match self {
            Self::Authorization { transfer, .. } => transfer.value,
            Self::EscrowDeposit { permit, .. } => permit.value,
        }
    }

    /// The digest the payer signs.
    pub fn signing_hash(&self) -> B256 {
        match self {
            Self::Authorization { domain, transfer } => transfer.signing_hash(domain),
            Self::EscrowDeposit { domain, permit, .. } => permit.signing_hash(domain),
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
}
