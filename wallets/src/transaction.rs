//! EIP-1559 transactions: the wallet signs what it can read, and only what it was
//! told it may send.
//!
//! The wallet computes the signing hash itself from the fields below, so its checks
//! bind. A transaction is signed only when its [`TxPolicy`] allows it: a call to one
//! of the (contract, selector) pairs the agent uses, or a contract creation where the
//! policy allows one, with no native value and a fee (`max_fee_per_gas × gas_limit`)
//! within the policy's cap. Whatever the allow-list says, an ERC-20 `transfer`,
//! `transferFrom`, `approve` or `increaseAllowance` is a payment and is refused here:
//! money leaves only through [`crate::SpendingPolicy::authorize`].

use std::collections::BTreeSet;

use primitive_types::U256;

use crate::{keccak256, Address, Error, Result, Signature, Wallet, B256};

/// ERC-20 selectors that move or unlock tokens, with their names.
const TOKEN_SELECTORS: &[([u8; 4], &str)] = &[
    ([0xa9, 0x05, 0x9c, 0xbb], "ERC-20 transfer"),
    ([0x23, 0xb8, 0x72, 0xdd], "ERC-20 transferFrom"),
    ([0x09, 0x5e, 0xa7, 0xb3], "ERC-20 approve"),
    ([0x39, 0x50, 0x93, 0x51], "ERC-20 increaseAllowance"),
];

/// Which transactions a wallet may sign: an allow-list of (contract, selector) calls,
/// contract creation or not, and a cap on the fee.
///
/// ```
/// use wallets::{Address, Eip1559Transaction, TxPolicy, Wallet, U256};
/// let registry = Address([0x11; 20]);
/// let register = [0x12, 0x34, 0x56, 0x78];
/// let policy = TxPolicy::new(10u128.pow(16)).allow_call(registry, register);
/// let mut tx = Eip1559Transaction {
///     chain_id: 1, nonce: 0, max_priority_fee_per_gas: 1, max_fee_per_gas: 10u128.pow(9),
///     gas_limit: 100_000, to: Some(registry), value: U256::zero(),
///     data: register.to_vec(),
/// };
/// let wallet = Wallet::random();
/// assert!(wallet.sign_transaction(&tx, &policy).is_ok());
/// tx.to = Some(Address([0x22; 20])); // another contract: refused
/// assert!(wallet.sign_transaction(&tx, &policy).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxPolicy {
    calls: BTreeSet<(Address, [u8; 4])>,
    create: bool,
    max_fee_wei: u128,
}

impl TxPolicy {
    /// Allows nothing yet; the fee of any transaction is capped at `max_fee_wei`.
    pub fn new(max_fee_wei: u128) -> Self {
        Self {
            calls: BTreeSet::new(),
            create: false,
            max_fee_wei,
        }
    }

    /// Allows calls of `selector` on `contract`.
    pub fn allow_call(mut self, contract: Address, selector: [u8; 4]) -> Self {
        self.calls.insert((contract, selector));
        self
    }

    /// Adds calls of `selector` on `contract` to a policy in place.
    pub fn insert_call(&mut self, contract: Address, selector: [u8; 4]) {
        self.calls.insert((contract, selector));
    }

    /// Allows contract creation (deployments).
    pub fn allow_create(mut self) -> Self {
        self.create = true;
        self
    }

    /// The fee cap, in wei.
    pub fn max_fee_wei(&self) -> u128 {
        self.max_fee_wei
    }

    /// Why `tx` is refused, if it is.
    fn refusal(&self, tx: &Eip1559Transaction) -> Option<Error> {
        if let Some(kind) = tx.payment_kind() {
            return Some(Error::PaymentOutsidePolicy(kind.to_owned()));
        }
        let fee = tx.max_fee_per_gas.checked_mul(u128::from(tx.gas_limit));
        if fee.is_none_or(|fee| fee > self.max_fee_wei) {
            return Some(Error::TransactionRefused(format!(
                "its fee of up to {} wei (max fee {} × gas {}) is over the cap of {} wei",
                fee.map_or_else(|| "2^128".into(), |f| f.to_string()),
                tx.max_fee_per_gas,
                tx.gas_limit,
                self.max_fee_wei
            )));
        }
        match (tx.to, tx.data.get(..4)) {
            (None, _) if self.create => None,
            (None, _) => Some(Error::TransactionRefused(
                "contract creation is not allowed for this wallet".into(),
            )),
            (Some(to), Some(selector)) => {
                let mut s = [0u8; 4];
                s.copy_from_slice(selector);
                (!self.calls.contains(&(to, s))).then(|| {
                    Error::TransactionRefused(format!(
                        "a call of 0x{} on {to} is not on the allow-list",
                        hex::encode(s)
                    ))
                })
            }
            (Some(to), None) => Some(Error::TransactionRefused(format!(
                "a call to {to} without a function selector is not on the allow-list"
            ))),
        }
    }
}

/// An unsigned EIP-1559 (type 2) transaction with an empty access list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eip1559Transaction {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The sender's nonce.
    pub nonce: u64,
    /// Tip per gas, in wei.
    pub max_priority_fee_per_gas: u128,
    /// Fee cap per gas, in wei.
    pub max_fee_per_gas: u128,
    /// Gas limit.
    pub gas_limit: u64,
    /// The callee; `None` creates a contract.
    pub to: Option<Address>,
    /// Native value in wei.
    pub value: U256,
    /// Calldata or init code.
    pub data: Vec<u8>,
}

impl Eip1559Transaction {
    fn rlp_fields(&self) -> Vec<Vec<u8>> {
        let mut value = [0u8; 32];
        self.value.to_big_endian(&mut value);
        vec![
            rlp::uint(u128::from(self.chain_id)),
            rlp::uint(u128::from(self.nonce)),
            rlp::uint(self.max_priority_fee_per_gas),
            rlp::uint(self.max_fee_per_gas),
            rlp::uint(u128::from(self.gas_limit)),
            rlp::bytes(self.to.as_ref().map_or(&[][..], |a| a.as_bytes())),
            rlp::bytes(trim_zeros(&value)),
            rlp::bytes(&self.data),
            rlp::list(&[]),
        ]
    }

    /// `keccak256(0x02 || rlp([chain_id, nonce, tip, fee_cap, gas, to, value, data, []]))`.
    pub fn signing_hash(&self) -> B256 {
        let mut out = vec![0x02];
        out.extend(rlp::list(&self.rlp_fields()));
        keccak256(out)
    }

    /// The raw signed transaction for `eth_sendRawTransaction`.
    pub fn encode_signed(&self, signature: &Signature) -> Vec<u8> {
        let mut fields = self.rlp_fields();
        fields.push(rlp::uint(u128::from(signature.v() - 27)));
        fields.push(rlp::bytes(trim_zeros(signature.r().as_bytes())));
        fields.push(rlp::bytes(trim_zeros(signature.s().as_bytes())));
        let mut out = vec![0x02];
        out.extend(rlp::list(&fields));
        out
    }

    /// Why this transaction is a payment, if it is one.
    fn payment_kind(&self) -> Option<&'static str> {
        if !self.value.is_zero() {
            return Some("native value transfer");
        }
        let selector = self.data.get(..4)?;
        TOKEN_SELECTORS
            .iter()
            .find(|(s, _)| s.as_slice() == selector)
            .map(|(_, name)| *name)
    }
}

impl Wallet {
    /// Signs a transaction that `policy` allows and that moves no money: contract
    /// deployment, registry updates, escrow deliveries, submitting a payee's EIP-3009
    /// authorization.
    ///
    /// # Errors
    /// [`Error::PaymentOutsidePolicy`] for native value and ERC-20 transfers or
    /// approvals, [`Error::TransactionRefused`] for a call or creation the policy does
    /// not allow or a fee over its cap.
    pub fn sign_transaction(
        &self,
        tx: &Eip1559Transaction,
        policy: &TxPolicy,
    ) -> Result<Signature> {
        if let Some(refused) = policy.refusal(tx) {
            tracing::warn!(target: "wallet::sign", to = ?tx.to, error = %refused, "transaction refused");
            return Err(refused);
        }
        self.sign_hash(&tx.signing_hash())
    }
}

fn trim_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// Just enough RLP to encode transactions.
mod rlp {
    fn length_prefix(len: usize, short: u8, long: u8) -> Vec<u8> {
        if len < 56 {
            // len < 56, so it fits in the byte after the offset.
            vec![short + len as u8]
        } else {
            let be = len.to_be_bytes();
            let digits = super::trim_zeros(&be);
            let mut out = vec![long + digits.len() as u8];
            out.extend_from_slice(digits);
            out
        }
    }

    pub(super) fn bytes(b: &[u8]) -> Vec<u8> {
        match b {
            [single] if *single < 0x80 => vec![*single],
            _ => {
                let mut out = length_prefix(b.len(), 0x80, 0xb7);
                out.extend_from_slice(b);
                out
            }
        }
    }

    pub(super) fn uint(v: u128) -> Vec<u8> {
        bytes(super::trim_zeros(&v.to_be_bytes()))
    }

    pub(super) fn list(items: &[Vec<u8>]) -> Vec<u8> {
        let payload: Vec<u8> = items.concat();
        let mut out = length_prefix(payload.len(), 0xc0, 0xf7);
        out.extend(payload);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(data: Vec<u8>, value: u64) -> Eip1559Transaction {
        Eip1559Transaction {
            chain_id: 1,
            nonce: 0,
            max_priority_fee_per_gas: 1_000_000_000,
            max_fee_per_gas: 30_000_000_000,
            gas_limit: 21_000,
            to: Some(Address([0x11; 20])),
            value: U256::from(value),
            data,
        }
    }

    #[test]
    fn rlp_basics() {
        assert_eq!(rlp::bytes(&[]), vec![0x80]);
        assert_eq!(rlp::bytes(&[0x7f]), vec![0x7f]);
        assert_eq!(rlp::bytes(&[0x80]), vec![0x81, 0x80]);
        assert_eq!(rlp::uint(0), vec![0x80]);
        assert_eq!(rlp::uint(1024), vec![0x82, 0x04, 0x00]);
        assert_eq!(rlp::list(&[]), vec![0xc0]);
        let long = vec![0xaa; 60];
        assert_eq!(&rlp::bytes(&long)[..2], &[0xb8, 60]);
        // "cat", "dog" from the RLP specification.
        assert_eq!(
            rlp::list(&[rlp::bytes(b"cat"), rlp::bytes(b"dog")]),
            vec![0xc8, 0x83, b'c', b'a', b't', 0x83, b'd', b'o', b'g']
        );
    }

    /// Allows everything the tests call: selector 0x12345678 and the ERC-20 selectors on
    /// the callee, creation, and a generous fee.
    fn lenient() -> TxPolicy {
        let to = Address([0x11; 20]);
        let mut p = TxPolicy::new(u128::MAX).allow_create();
        for (s, _) in TOKEN_SELECTORS {
            p.insert_call(to, *s);
        }
        p.allow_call(to, [0x12, 0x34, 0x56, 0x78])
    }

    #[test]
    fn payments_are_refused() {
        let w = Wallet::random();
        let transfer = [[0xa9, 0x05, 0x9c, 0xbb].as_slice(), &[0u8; 64]].concat();
        for (t, kind) in [
            (tx(vec![], 1), "native value"),
            (tx(transfer, 0), "ERC-20 transfer"),
            (tx(vec![0x09, 0x5e, 0xa7, 0xb3, 0], 0), "ERC-20 approve"),
        ] {
            // Even where the allow-list names the call.
            let err = w.sign_transaction(&t, &lenient()).unwrap_err();
            assert!(
                matches!(&err, Error::PaymentOutsidePolicy(k) if k.contains(kind)),
                "{err}"
            );
        }
        let ok = w
            .sign_transaction(&tx(vec![0x12, 0x34, 0x56, 0x78], 0), &lenient())
            .unwrap();
        assert_eq!(
            ok.recover(&tx(vec![0x12, 0x34, 0x56, 0x78], 0).signing_hash())
                .unwrap(),
            w.address()
        );
    }

    /// Regression: signing was a denylist (value and four ERC-20 selectors), so any
    /// other call on any contract was signed: a `permit`-less drain through a
    /// malicious contract, an unknown token's own transfer function, or a fee of the
    /// whole gas balance.
    #[test]
    fn only_allowed_calls_within_the_fee_cap_are_signed() {
        let w = Wallet::random();
        let registry = Address([0x11; 20]);
        let register = [0x12, 0x34, 0x56, 0x78];
        // 30 gwei × 21 000 gas = 6.3e14 wei.
        let policy = TxPolicy::new(630_000_000_000_000).allow_call(registry, register);
        assert!(w
            .sign_transaction(&tx(register.to_vec(), 0), &policy)
            .is_ok());

        let refused = |t: &Eip1559Transaction, says: &str| {
            let err = w.sign_transaction(t, &policy).unwrap_err();
            assert!(
                matches!(&err, Error::TransactionRefused(m) if m.contains(says)),
                "{err}"
            );
        };
        refused(
            &tx(vec![0xde, 0xad, 0xbe, 0xef], 0),
            "not on the allow-list",
        );
        refused(&tx(vec![], 0), "without a function selector");
        let elsewhere = Eip1559Transaction {
            to: Some(Address([0x22; 20])),
            ..tx(register.to_vec(), 0)
        };
        refused(&elsewhere, "not on the allow-list");
        let create = Eip1559Transaction {
            to: None,
            ..tx(vec![0x60, 0x80], 0)
        };
        refused(&create, "contract creation");
        assert!(w
            .sign_transaction(&create, &policy.clone().allow_create())
            .is_ok());
        let pricey = Eip1559Transaction {
            gas_limit: 21_001,
            ..tx(register.to_vec(), 0)
        };
        refused(&pricey, "over the cap");
        let overflow = Eip1559Transaction {
            max_fee_per_gas: u128::MAX,
            ..tx(register.to_vec(), 0)
        };
        refused(&overflow, "over the cap");
    }
}
