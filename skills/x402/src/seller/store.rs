//! The seller's persistent record of its sales, keyed by (token, payer, nonce).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wallets::{Eip712Domain, Signature, TransferWithAuthorization, B256};

use crate::{Error, Result};

/// Where one sale stands. Each state is on disk before the step that follows it:
///
/// ```text
/// (Received: verified, in memory only; nothing irreversible has happened)
///   -> Settling            written before the transferWithAuthorization is broadcast
///   -> Settled{tx}         written once the transaction is mined (and journaled)
///   -> Delivered{result}   written once the skill answered, before the answer leaves
/// ```
///
/// A `Settling` sale whose settlement provably did not happen (the authorization is
/// unused and expired, or the transfer reverted) is deleted, so the payment is
/// refused like a new one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SaleState {
    /// The settling transaction may have been broadcast: before anything else, find
    /// out on chain.
    Settling,
    /// Paid on chain; the skill has not answered yet (or failed, or crashed).
    Settled {
        /// The settling transaction.
        settlement: registry::chain::Mined,
    },
    /// Paid and served: a retry gets this answer again.
    Delivered {
        /// The settling transaction.
        settlement: registry::chain::Mined,
        /// The response body served (the skill's result as JSON).
        body: String,
        /// [`negotiation::result_hash`] of the result.
        result_hash: B256,
        /// The attestation the skill delivered with the result, if any (absent in
        /// older stores).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attestation: Option<serde_json::Value>,
    },
}

impl SaleState {
    /// The settling transaction, once known.
    pub fn settlement(&self) -> Option<&registry::chain::Mined> {
        match self {
            Self::Settling => None,
            Self::Settled { settlement } | Self::Delivered { settlement, .. } => Some(settlement),
        }
    }
}

/// One sale: what was paid for, with what, and where it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaleRecord {
    /// The skill sold.
    pub skill: String,
    /// The resource URL offered.
    pub resource: String,
    /// The price asked, in base units.
    pub price: wallets::Amount,
    /// The token's EIP-712 domain the payment was signed in.
    pub domain: Eip712Domain,
    /// The buyer's authorization.
    pub transfer: TransferWithAuthorization,
    /// The buyer's signature of it.
    pub signature: Signature,
    /// Keccak-256 of the request body the payment is for: bound at the first request,
    /// re-bound by a retry only while nothing was delivered.
    pub request_hash: B256,
    /// The block before the settlement was broadcast: where to look for it.
    pub from_block: u64,
    /// Where it stands.
    #[serde(flatten)]
    pub state: SaleState,
}

impl SaleRecord {
    /// The payment as the wallet crate has it.
    pub fn signed_payment(&self) -> wallets::SignedPayment {
        wallets::SignedPayment {
            payment: wallets::Payment::Authorization {
                domain: self.domain.clone(),
                transfer: self.transfer.clone(),
            },
            signature: self.signature,
        }
    }
}

/// The sales of one seller, by [`crate::verify::payment_key`], in a sled database.
/// Every write is flushed before it returns.
#[derive(Debug)]
pub struct SaleStore {
    db: sled::Db,
    path: PathBuf,
}

impl SaleStore {
    /// Opens (or creates) the store in the directory `path`.
    ///
    /// # Errors
    /// [`Error::Store`] when it cannot be opened (another process holds it).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let db = wallets::store::open(&path).map_err(|e| Error::Store {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(Self { db, path })
    }

    fn error(&self, message: String) -> Error {
        Error::Store {
            path: self.path.clone(),
            message,
        }
    }

    /// The sale under `key`.
    ///
    /// # Errors
    /// [`Error::Store`] when it cannot be read or does not parse.
    pub fn get(&self, key: &[u8]) -> Result<Option<SaleRecord>> {
        let Some(bytes) = self.db.get(key).map_err(|e| self.error(e.to_string()))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.error(format!("a sale record does not parse: {e}")))
    }

    /// Writes the sale under `key` and flushes it to disk.
    ///
    /// # Errors
    /// [`Error::Store`] when it cannot be written.
    pub fn put(&self, key: &[u8], record: &SaleRecord) -> Result<()> {
        let bytes = serde_json::to_vec(record).map_err(|e| self.error(e.to_string()))?;
        self.db
            .insert(key, bytes)
            .map_err(|e| self.error(e.to_string()))?;
        self.flush()
    }

    /// Deletes the sale under `key` (a settlement that provably did not happen).
    ///
    /// # Errors
    /// [`Error::Store`] when it cannot be written.
    pub fn remove(&self, key: &[u8]) -> Result<()> {
        self.db.remove(key).map_err(|e| self.error(e.to_string()))?;
        self.flush()
    }

    /// Every sale, in key order.
    ///
    /// # Errors
    /// [`Error::Store`] when one cannot be read or does not parse.
    pub fn all(&self) -> Result<Vec<(Vec<u8>, SaleRecord)>> {
        self.db
            .iter()
            .map(|item| {
                let (k, v) = item.map_err(|e| self.error(e.to_string()))?;
                let record = serde_json::from_slice(&v)
                    .map_err(|e| self.error(format!("a sale record does not parse: {e}")))?;
                Ok((k.to_vec(), record))
            })
            .collect()
    }

    fn flush(&self) -> Result<()> {
        self.db
            .flush()
            .map(drop)
            .map_err(|e| self.error(e.to_string()))
    }
}
