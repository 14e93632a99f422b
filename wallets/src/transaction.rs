//! EIP-1559 transactions: the wallet signs what it can read.
//!
//! The wallet computes the signing hash itself from the fields below, so the check
//! it applies to `value` and `data` binds: a transaction that moves native value or
//! calls an ERC-20 `transfer`, `transferFrom`, `approve` or `increaseAllowance` is
//! a payment and is refused here; money leaves only through
//! [`crate::SpendingPolicy::authorize`].

use primitive_types::U256;

use crate::{keccak256, Address, Error, Result, Signature, Wallet, B256};

/// ERC-20 selectors that move or unlock tokens, with their names.
const TOKEN_SELECTORS: &[([u8; 4], &str)] = &[
    ([0xa9, 0x05, 0x9c, 0xbb], "ERC-20 transfer"),
    ([0x23, 0xb8, 0x72, 0xdd], "ERC-20 transferFrom"),
    ([0x09, 0x5e, 0xa7, 0xb3], "ERC-20 approve"),
    ([0x39, 0x50, 0x93, 0x51], "ERC-20 increaseAllowance"),
];

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
    /// Signs a transaction that moves no money: contract deployment, registry
    /// updates, escrow deliveries, submitting a payee's EIP-3009 authorization.
    ///
    /// # Errors
    /// [`Error::PaymentOutsidePolicy`] for native value and ERC-20 transfers or
    /// approvals.
    pub fn sign_transaction(&self, tx: &Eip1559Transaction) -> Result<Signature> {
        if let Some(kind) = tx.payment_kind() {
            return Err(Error::PaymentOutsidePolicy(kind.to_owned()));
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

    #[test]
    fn payments_are_refused() {
        let w = Wallet::random();
        let transfer = [[0xa9, 0x05, 0x9c, 0xbb].as_slice(), &[0u8; 64]].concat();
        for (t, kind) in [
            (tx(vec![], 1), "native value"),
            (tx(transfer, 0), "ERC-20 transfer"),
            (tx(vec![0x09, 0x5e, 0xa7, 0xb3, 0], 0), "ERC-20 approve"),
        ] {
            let err = w.sign_transaction(&t).unwrap_err();
            assert!(
                matches!(&err, Error::PaymentOutsidePolicy(k) if k.contains(kind)),
                "{err}"
            );
        }
        let ok = w
            .sign_transaction(&tx(vec![0x12, 0x34, 0x56, 0x78], 0))
            .unwrap();
        assert_eq!(
            ok.recover(&tx(vec![0x12, 0x34, 0x56, 0x78], 0).signing_hash())
                .unwrap(),
            w.address()
        );
    }
}
