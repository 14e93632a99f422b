//! The devnet's chain: revm execution, one block per transaction, sled persistence.
//!
//! Everything the chain knows lives in one sled tree under key prefixes, and each
//! block is written with one atomic batch and flushed before the transaction's hash
//! is returned, so a killed process restarts with every mined block and nothing
//! half-written:
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `a/` | address | balance (32) ‖ nonce (8) ‖ code hash (32) |
//! | `c/` | code hash | bytecode |
//! | `s/` | address ‖ slot | value (32) |
//! | `b/` | block number (8, BE) | [`StoredBlock`] JSON |
//! | `h/` | block hash | block number (8, BE) |
//! | `t/` | tx hash | [`StoredTx`] JSON |
//! | `m/` | name | chain metadata |

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ethers::types::{
    transaction::eip2718::TypedTransaction, Address as EAddress, Block, Bloom, Bytes as EBytes,
    Log as ELog, Transaction, TransactionReceipt, TxHash, H256, U256 as EU256, U64,
};
use ethers::utils::rlp::Rlp;
use revm::db::{CacheDB, EmptyDB};
use revm::primitives::{
    AccountInfo, Address, Bytecode, Bytes, EVMError, ExecutionResult, Output, SpecId, TxKind, B256,
    KECCAK_EMPTY, U256,
};
use revm::{DatabaseCommit, Evm};
use serde::{Deserialize, Serialize};

use super::DevnetError;

/// Gas limit of every block.
pub(crate) const BLOCK_GAS_LIMIT: u64 = 30_000_000;
/// The fixed base fee per gas, in wei (1 gwei).
pub(crate) const BASE_FEE: u64 = 1_000_000_000;
/// Half the order of secp256k1: the largest `s` of a transaction signature (EIP-2).
const SECP256K1_HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
];

type Result<T, E = DevnetError> = std::result::Result<T, E>;

/// A mined block as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StoredBlock {
    pub(crate) number: u64,
    pub(crate) hash: H256,
    pub(crate) parent_hash: H256,
    pub(crate) timestamp: u64,
    pub(crate) gas_used: u64,
    pub(crate) transactions: Vec<H256>,
}

/// A mined transaction as stored: the raw bytes and its receipt.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StoredTx {
    pub(crate) raw: EBytes,
    pub(crate) receipt: TransactionReceipt,
}

/// What a block added, for subscribers.
#[derive(Clone, Debug)]
pub(crate) struct Mined {
    pub(crate) block: Block<TxHash>,
    pub(crate) logs: Vec<ELog>,
}

/// The chain state machine.
pub(crate) struct ChainState {
    pub(crate) chain_id: u64,
    db: CacheDB<EmptyDB>,
    store: sled::Db,
    path: PathBuf,
    head: StoredBlock,
    /// Seconds added to the wall clock by `evm_increaseTime`.
    time_offset: u64,
}

fn key(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

pub(crate) fn to_e(a: Address) -> EAddress {
    EAddress::from_slice(a.as_slice())
}

fn from_e(a: EAddress) -> Address {
    Address::from_slice(a.as_bytes())
}

fn u256_to_e(v: U256) -> EU256 {
    EU256::from_big_endian(&v.to_be_bytes::<32>())
}

fn u256_from_e(v: EU256) -> U256 {
    let mut b = [0u8; 32];
    v.to_big_endian(&mut b);
    U256::from_be_bytes(b)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl ChainState {
    /// Opens the chain at `path`, creating it with `genesis` balances if new.
    pub(crate) fn open(path: &Path, chain_id: u64, genesis: &[(Address, U256)]) -> Result<Self> {
        let store = wallets::store::open(path).map_err(|e| DevnetError::storage(path, e))?;
        let mut db = CacheDB::new(EmptyDB::default());
        let st = |e| DevnetError::storage(path, e);

        let head = match store.get(b"m/chain_id").map_err(st)? {
            Some(stored) => {
                let stored_id = u64::from_be_bytes(stored.as_ref().try_into().unwrap_or_default());
                if stored_id != chain_id {
                    return Err(DevnetError::Config(format!(
                        "{} holds chain {stored_id}, not {chain_id}",
                        path.display()
                    )));
                }
                for item in store.scan_prefix(b"c/") {
                    let (k, v) = item.map_err(st)?;
                    let hash = B256::from_slice(k.get(2..).unwrap_or_default());
                    let code = Bytecode::new_raw(Bytes::copy_from_slice(&v));
                    db.contracts.insert(hash, code);
                }
                for item in store.scan_prefix(b"a/") {
                    let (k, v) = item.map_err(st)?;
                    let addr = Address::from_slice(k.get(2..).unwrap_or_default());
                    let corrupt = || DevnetError::Corrupt(format!("account {addr}"));
                    let balance = U256::from_be_slice(v.get(..32).ok_or_else(corrupt)?);
                    let nonce = u64::from_be_bytes(
                        v.get(32..40)
                            .ok_or_else(corrupt)?
                            .try_into()
                            .map_err(|_| corrupt())?,
                    );
                    let code_hash = B256::from_slice(v.get(40..72).ok_or_else(corrupt)?);
                    let code = db.contracts.get(&code_hash).cloned();
                    db.insert_account_info(
                        addr,
                        AccountInfo {
                            balance,
                            nonce,
                            code_hash,
                            code,
                        },
                    );
                }
                for item in store.scan_prefix(b"s/") {
                    let (k, v) = item.map_err(st)?;
                    let addr = Address::from_slice(k.get(2..22).unwrap_or_default());
                    let slot = U256::from_be_slice(k.get(22..).unwrap_or_default());
                    db.insert_account_storage(addr, slot, U256::from_be_slice(&v))
                        .map_err(|_| DevnetError::Corrupt(format!("storage of {addr}")))?;
                }
                let number = store
                    .get(b"m/head")
                    .map_err(st)?
                    .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
                    .ok_or_else(|| DevnetError::Corrupt("no head block".into()))?;
                load_block(&store, path, number)?
                    .ok_or_else(|| DevnetError::Corrupt(format!("head block {number} missing")))?
            }
            None => {
                let mut batch = sled::Batch::default();
                for (addr, balance) in genesis {
                    let info = AccountInfo {
                        balance: *balance,
                        ..AccountInfo::default()
                    };
                    batch.insert(key(b"a/", &[addr.as_slice()]), encode_account(&info));
                    db.insert_account_info(*addr, info);
                }
                let genesis_block = StoredBlock {
                    number: 0,
                    hash: H256(ethers::utils::keccak256(
                        [b"agora devnet genesis".as_slice(), &chain_id.to_be_bytes()].concat(),
                    )),
                    parent_hash: H256::zero(),
                    timestamp: now_secs(),
                    gas_used: 0,
                    transactions: vec![],
                };
                put_block(&mut batch, &genesis_block)?;
                batch.insert(b"m/chain_id".as_slice(), chain_id.to_be_bytes().as_slice());
                store.apply_batch(batch).map_err(st)?;
                store.flush().map_err(st)?;
                genesis_block
            }
        };
        Ok(Self {
            chain_id,
            db,
            store,
            path: path.to_owned(),
            head,
            time_offset: 0,
        })
    }

    pub(crate) fn head_number(&self) -> u64 {
        self.head.number
    }

    fn next_timestamp(&self) -> u64 {
        now_secs()
            .saturating_add(self.time_offset)
            .max(self.head.timestamp)
    }

    /// Moves the clock forward (`evm_increaseTime`); returns the total offset, or
    /// `None`, moving nothing, when the clock would pass the largest timestamp
    /// (`u64::MAX` seconds).
    pub(crate) fn increase_time(&mut self, secs: u64) -> Option<u64> {
        let offset = self.time_offset.checked_add(secs)?;
        now_secs().checked_add(offset)?;
        self.time_offset = offset;
        Some(offset)
    }

    pub(crate) fn balance(&self, a: EAddress) -> EU256 {
        self.db
            .accounts
            .get(&from_e(a))
            .map_or(EU256::zero(), |acc| u256_to_e(acc.info.balance))
    }

    /// Sets an account's ether balance (the devnet's faucet), durably.
    pub(crate) fn set_balance(&mut self, a: EAddress, wei: EU256) -> Result<()> {
        let addr = from_e(a);
        let mut info = self
            .db
            .accounts
            .get(&addr)
            .map(|acc| acc.info.clone())
            .unwrap_or_default();
        info.balance = u256_from_e(wei);
        self.store
            .insert(key(b"a/", &[addr.as_slice()]), encode_account(&info))
            .map_err(|e| DevnetError::storage(&self.path, e))?;
        self.store
            .flush()
            .map_err(|e| DevnetError::storage(&self.path, e))?;
        self.db.insert_account_info(addr, info);
        Ok(())
    }

    pub(crate) fn nonce(&self, a: EAddress) -> u64 {
        self.db
            .accounts
            .get(&from_e(a))
            .map_or(0, |acc| acc.info.nonce)
    }

    pub(crate) fn code(&self, a: EAddress) -> EBytes {
        self.db
            .accounts
            .get(&from_e(a))
            .and_then(|acc| self.db.contracts.get(&acc.info.code_hash))
            .map(|c| EBytes::from(c.original_bytes().to_vec()))
            .unwrap_or_default()
    }

    pub(crate) fn storage(&self, a: EAddress, slot: EU256) -> H256 {
        let v = self
            .db
            .accounts
            .get(&from_e(a))
            .and_then(|acc| acc.storage.get(&u256_from_e(slot)).copied())
            .unwrap_or_default();
        H256(v.to_be_bytes::<32>())
    }

    fn evm_for<'e, DB: revm::Database>(&self, db: DB, timestamp: u64) -> Evm<'e, (), DB> {
        let number = self.head.number + 1;
        Evm::builder()
            .with_db(db)
            .with_spec_id(SpecId::CANCUN)
            .modify_cfg_env(|c| c.chain_id = self.chain_id)
            .modify_block_env(|b| {
                b.number = U256::from(number);
                b.timestamp = U256::from(timestamp);
                b.gas_limit = U256::from(BLOCK_GAS_LIMIT);
                b.basefee = U256::from(BASE_FEE);
                b.prevrandao = Some(B256::from(self.head.hash.0));
                b.set_blob_excess_gas_and_price(0);
            })
            .build()
    }

    /// Executes a call without committing anything (`eth_call`, `eth_estimateGas`).
    pub(crate) fn call(&self, req: &CallRequest, gas: Option<u64>) -> Result<ExecutionResult> {
        let mut overlay = CacheDB::new(&self.db);
        let timestamp = self.next_timestamp();
        let mut evm = self.evm_for(&mut overlay, timestamp);
        let tx = evm.tx_mut();
        tx.caller = req.from.map(from_e).unwrap_or_default();
        tx.transact_to = req.to.map_or(TxKind::Create, |a| TxKind::Call(from_e(a)));
        tx.value = req.value.map(u256_from_e).unwrap_or_default();
        tx.data = Bytes::from(req.data().to_vec());
        tx.gas_limit = gas
            .or(req.gas.map(|g| g.low_u64()))
            .unwrap_or(BLOCK_GAS_LIMIT);
        // Calls are free unless the caller names a price, as geth does.
        tx.gas_price = req.gas_price.map(u256_from_e).unwrap_or_default();
        tx.gas_priority_fee = None;
        tx.nonce = None;
        tx.chain_id = Some(self.chain_id);
        evm.cfg_mut().disable_base_fee = req.gas_price.is_none();
        evm.transact()
            .map(|r| r.result)
            .map_err(|e| DevnetError::Rejected(evm_error(e)))
    }

    /// The least gas limit with which `req` succeeds (binary search, as geth does).
    pub(crate) fn estimate_gas(&self, req: &CallRequest) -> Result<u64> {
        let cap = req.gas.map_or(BLOCK_GAS_LIMIT, |g| g.low_u64());
        match self.call(req, Some(cap))? {
            ExecutionResult::Success { .. } => {}
            other => return Err(DevnetError::Reverted(describe_failure(&other))),
        }
        let (mut lo, mut hi) = (21_000u64.saturating_sub(1), cap);
        while lo + 1 < hi {
            let mid = lo + (hi - lo) / 2;
            match self.call(req, Some(mid)) {
                Ok(ExecutionResult::Success { .. }) => hi = mid,
                _ => lo = mid,
            }
        }
        Ok(hi)
    }

    /// Whether a transaction with this hash was mined.
    pub(crate) fn has_tx(&self, hash: &H256) -> Result<bool> {
        self.store
            .contains_key(key(b"t/", &[hash.as_bytes()]))
            .map_err(|e| DevnetError::storage(&self.path, e))
    }

    /// Decodes, executes and mines a raw signed transaction in its own block.
    pub(crate) fn send_raw(&mut self, raw: &[u8]) -> Result<(H256, Option<Mined>)> {
        let hash = H256(ethers::utils::keccak256(raw));
        if self.has_tx(&hash)? {
            // A resend of a mined transaction: same hash, nothing new.
            return Ok((hash, None));
        }
        let rlp = Rlp::new(raw);
        let (tx, sig) = TypedTransaction::decode_signed(&rlp)
            .map_err(|e| DevnetError::Rejected(format!("cannot decode transaction: {e}")))?;
        // A typed transaction's signature carries its y-parity, 0 or 1; ethers'
        // re-encoding below subtracts an EIP-155 offset from anything else (an
        // overflow panic on network input).
        if !matches!(tx, TypedTransaction::Legacy(_)) && sig.v > 1 {
            return Err(DevnetError::Rejected(format!(
                "signature y-parity is {}; a typed transaction's is 0 or 1",
                sig.v
            )));
        }
        // One signed transaction, one encoding, one hash: trailing bytes, extra list
        // items or a high s (its twin signature, EIP-2) would let anyone mine it
        // under a hash its sender never sees, as other nodes refuse.
        if tx.rlp_signed(&sig).as_ref() != raw {
            return Err(DevnetError::Rejected(
                "transaction is not in its canonical encoding (trailing bytes or extra fields)"
                    .into(),
            ));
        }
        if sig.s > EU256::from_big_endian(&SECP256K1_HALF_ORDER) {
            return Err(DevnetError::Rejected(
                "signature s is above half the curve order (EIP-2)".into(),
            ));
        }
        let from = sig
            .recover(tx.sighash())
            .map_err(|e| DevnetError::Rejected(format!("bad signature: {e}")))?;
        if let Some(id) = tx.chain_id() {
            if id.as_u64() != self.chain_id {
                return Err(DevnetError::Rejected(format!(
                    "transaction is for chain {id}, this is chain {}",
                    self.chain_id
                )));
            }
        }

        let timestamp = self.next_timestamp();
        let number = self.head.number + 1;
        let (result, state) = {
            let mut overlay = CacheDB::new(&self.db);
            let mut evm = self.evm_for(&mut overlay, timestamp);
            let env = evm.tx_mut();
            env.caller = from_e(from);
            env.transact_to = tx
                .to_addr()
                .map_or(TxKind::Create, |a| TxKind::Call(from_e(*a)));
            env.value = tx.value().copied().map(u256_from_e).unwrap_or_default();
            env.data = Bytes::from(tx.data().map(|d| d.to_vec()).unwrap_or_default());
            env.gas_limit = tx.gas().map_or(0, |g| g.low_u64());
            env.nonce = Some(tx.nonce().map_or(0, |n| n.low_u64()));
            env.chain_id = tx.chain_id().map(|c| c.as_u64());
            match &tx {
                TypedTransaction::Eip1559(t) => {
                    env.gas_price = t.max_fee_per_gas.map(u256_from_e).unwrap_or_default();
                    env.gas_priority_fee = t.max_priority_fee_per_gas.map(u256_from_e);
                }
                other => {
                    env.gas_price = other.gas_price().map(u256_from_e).unwrap_or_default();
                    env.gas_priority_fee = None;
                }
            }
            let out = evm
                .transact()
                .map_err(|e| DevnetError::Rejected(evm_error(e)))?;
            (out.result, out.state)
        };

        // Persist the state changes and the block in one batch.
        let mut batch = sled::Batch::default();
        for (addr, account) in &state {
            if !account.is_touched() {
                continue;
            }
            if account.is_selfdestructed() {
                batch.remove(key(b"a/", &[addr.as_slice()]));
                for item in self.store.scan_prefix(key(b"s/", &[addr.as_slice()])) {
                    let (k, _) = item.map_err(|e| DevnetError::storage(&self.path, e))?;
                    batch.remove(k);
                }
                continue;
            }
            batch.insert(
                key(b"a/", &[addr.as_slice()]),
                encode_account(&account.info),
            );
            if let Some(code) = &account.info.code {
                if account.info.code_hash != KECCAK_EMPTY {
                    batch.insert(
                        key(b"c/", &[account.info.code_hash.as_slice()]),
                        code.original_bytes().to_vec(),
                    );
                }
            }
            for (slot, value) in &account.storage {
                if !value.is_changed() {
                    continue;
                }
                let k = key(b"s/", &[addr.as_slice(), &slot.to_be_bytes::<32>()]);
                if value.present_value.is_zero() {
                    batch.remove(k);
                } else {
                    batch.insert(k, value.present_value.to_be_bytes::<32>().to_vec());
                }
            }
        }

        let gas_used = result.gas_used();
        let block_hash = H256(ethers::utils::keccak256(
            [
                self.head.hash.as_bytes(),
                &number.to_be_bytes(),
                &timestamp.to_be_bytes(),
                hash.as_bytes(),
            ]
            .concat(),
        ));
        let (status, logs, contract_address) = match &result {
            ExecutionResult::Success { logs, output, .. } => {
                let created = match output {
                    Output::Create(_, Some(a)) => Some(to_e(*a)),
                    _ => None,
                };
                (1u64, logs.clone(), created)
            }
            _ => (0, vec![], None),
        };
        let logs: Vec<ELog> = logs
            .iter()
            .enumerate()
            .map(|(i, l)| ELog {
                address: to_e(l.address),
                topics: l.data.topics().iter().map(|t| H256(t.0)).collect(),
                data: EBytes::from(l.data.data.to_vec()),
                block_hash: Some(block_hash),
                block_number: Some(U64::from(number)),
                transaction_hash: Some(hash),
                transaction_index: Some(U64::zero()),
                log_index: Some(EU256::from(i)),
                transaction_log_index: Some(EU256::from(i)),
                log_type: None,
                removed: Some(false),
            })
            .collect();
        let mut bloom = Bloom::default();
        for l in &logs {
            bloom.accrue(ethers::abi::ethereum_types::BloomInput::Raw(
                l.address.as_bytes(),
            ));
            for t in &l.topics {
                bloom.accrue(ethers::abi::ethereum_types::BloomInput::Raw(t.as_bytes()));
            }
        }
        let effective_price = match &tx {
            TypedTransaction::Eip1559(t) => {
                let cap = t.max_fee_per_gas.unwrap_or_default();
                let tip = t.max_priority_fee_per_gas.unwrap_or_default();
                cap.min(EU256::from(BASE_FEE) + tip)
            }
            other => other.gas_price().unwrap_or_default(),
        };
        let receipt = TransactionReceipt {
            transaction_hash: hash,
            transaction_index: U64::zero(),
            block_hash: Some(block_hash),
            block_number: Some(U64::from(number)),
            from,
            to: tx.to_addr().copied(),
            cumulative_gas_used: EU256::from(gas_used),
            gas_used: Some(EU256::from(gas_used)),
            contract_address,
            logs: logs.clone(),
            status: Some(U64::from(status)),
            root: None,
            logs_bloom: bloom,
            transaction_type: Some(U64::from(tx_type(&tx))),
            effective_gas_price: Some(effective_price),
            other: Default::default(),
        };
        let block = StoredBlock {
            number,
            hash: block_hash,
            parent_hash: self.head.hash,
            timestamp,
            gas_used,
            transactions: vec![hash],
        };
        put_block(&mut batch, &block)?;
        batch.insert(
            key(b"t/", &[hash.as_bytes()]),
            json(&StoredTx {
                raw: EBytes::from(raw.to_vec()),
                receipt,
            })?,
        );
        let st = |e| DevnetError::storage(&self.path, e);
        self.store.apply_batch(batch).map_err(st)?;
        self.store.flush().map_err(st)?;

        // Only now, with the block durable, does the in-memory state move.
        self.db.commit(state);
        self.db.logs.clear();
        self.head = block;
        tracing::debug!(target: "chain::devnet", block = number, tx = ?hash, status, gas_used, "mined");
        let mined = Mined {
            block: self.block_json(&self.head),
            logs,
        };
        Ok((hash, Some(mined)))
    }

    /// Mines an empty block (`evm_mine`).
    pub(crate) fn mine_empty(&mut self) -> Result<Mined> {
        let number = self.head.number + 1;
        let timestamp = self.next_timestamp();
        let block = StoredBlock {
            number,
            hash: H256(ethers::utils::keccak256(
                [
                    self.head.hash.as_bytes(),
                    &number.to_be_bytes(),
                    &timestamp.to_be_bytes(),
                ]
                .concat(),
            )),
            parent_hash: self.head.hash,
            timestamp,
            gas_used: 0,
            transactions: vec![],
        };
        let mut batch = sled::Batch::default();
        put_block(&mut batch, &block)?;
        let st = |e| DevnetError::storage(&self.path, e);
        self.store.apply_batch(batch).map_err(st)?;
        self.store.flush().map_err(st)?;
        self.head = block;
        Ok(Mined {
            block: self.block_json(&self.head),
            logs: vec![],
        })
    }

    pub(crate) fn block_by_number(&self, number: u64) -> Result<Option<StoredBlock>> {
        if number == self.head.number {
            return Ok(Some(self.head.clone()));
        }
        load_block(&self.store, &self.path, number)
    }

    pub(crate) fn block_by_hash(&self, hash: &H256) -> Result<Option<StoredBlock>> {
        let st = |e| DevnetError::storage(&self.path, e);
        match self.store.get(key(b"h/", &[hash.as_bytes()])).map_err(st)? {
            Some(n) => {
                let n = u64::from_be_bytes(n.as_ref().try_into().unwrap_or_default());
                self.block_by_number(n)
            }
            None => Ok(None),
        }
    }

    pub(crate) fn stored_tx(&self, hash: &H256) -> Result<Option<StoredTx>> {
        let st = |e| DevnetError::storage(&self.path, e);
        self.store
            .get(key(b"t/", &[hash.as_bytes()]))
            .map_err(st)?
            .map(|v| serde_json::from_slice(&v).map_err(|e| DevnetError::Corrupt(e.to_string())))
            .transpose()
    }

    /// The transaction as `eth_getTransactionByHash` returns it.
    pub(crate) fn transaction(&self, hash: &H256) -> Result<Option<Transaction>> {
        let Some(stored) = self.stored_tx(hash)? else {
            return Ok(None);
        };
        let rlp = Rlp::new(&stored.raw);
        let (tx, sig) = TypedTransaction::decode_signed(&rlp)
            .map_err(|e| DevnetError::Corrupt(format!("stored tx {hash:?}: {e}")))?;
        let r = &stored.receipt;
        let mut out = Transaction {
            hash: *hash,
            nonce: tx.nonce().copied().unwrap_or_default(),
            block_hash: r.block_hash,
            block_number: r.block_number,
            transaction_index: Some(r.transaction_index),
            from: r.from,
            to: tx.to_addr().copied(),
            value: tx.value().copied().unwrap_or_default(),
            gas_price: r.effective_gas_price,
            gas: tx.gas().copied().unwrap_or_default(),
            input: tx.data().cloned().unwrap_or_default(),
            v: U64::from(sig.v),
            r: sig.r,
            s: sig.s,
            transaction_type: r.transaction_type,
            access_list: None,
            max_priority_fee_per_gas: None,
            max_fee_per_gas: None,
            chain_id: tx.chain_id().map(|c| EU256::from(c.as_u64())),
            other: Default::default(),
        };
        if let TypedTransaction::Eip1559(t) = &tx {
            out.max_fee_per_gas = t.max_fee_per_gas;
            out.max_priority_fee_per_gas = t.max_priority_fee_per_gas;
            out.access_list = Some(t.access_list.clone());
        }
        Ok(Some(out))
    }

    /// The block as `eth_getBlockBy*` returns it (transaction hashes only).
    pub(crate) fn block_json(&self, b: &StoredBlock) -> Block<TxHash> {
        Block {
            hash: Some(b.hash),
            parent_hash: b.parent_hash,
            uncles_hash: H256(ethers::utils::keccak256([0xc0u8])),
            author: Some(EAddress::zero()),
            state_root: H256::zero(),
            transactions_root: H256::zero(),
            receipts_root: H256::zero(),
            number: Some(U64::from(b.number)),
            gas_used: EU256::from(b.gas_used),
            gas_limit: EU256::from(BLOCK_GAS_LIMIT),
            extra_data: EBytes::default(),
            logs_bloom: Some(Bloom::default()),
            timestamp: EU256::from(b.timestamp),
            difficulty: EU256::zero(),
            total_difficulty: Some(EU256::zero()),
            seal_fields: vec![],
            uncles: vec![],
            transactions: b.transactions.clone(),
            size: Some(EU256::from(512)),
            mix_hash: Some(H256::zero()),
            nonce: Some(ethers::types::H64::zero()),
            base_fee_per_gas: Some(EU256::from(BASE_FEE)),
            blob_gas_used: Some(EU256::zero()),
            excess_blob_gas: Some(EU256::zero()),
            withdrawals_root: Some(H256::zero()),
            withdrawals: Some(vec![]),
            parent_beacon_block_root: Some(H256::zero()),
            other: Default::default(),
        }
    }

    /// Logs of blocks `from..=to` that match the filter.
    pub(crate) fn logs(
        &self,
        from: u64,
        to: u64,
        addresses: &[EAddress],
        topics: &[Option<Vec<H256>>],
    ) -> Result<Vec<ELog>> {
        let mut out = Vec::new();
        for n in from..=to.min(self.head.number) {
            let Some(block) = self.block_by_number(n)? else {
                continue;
            };
            for tx in &block.transactions {
                let Some(stored) = self.stored_tx(tx)? else {
                    continue;
                };
                out.extend(
                    stored
                        .receipt
                        .logs
                        .into_iter()
                        .filter(|l| log_matches(l, addresses, topics)),
                );
            }
        }
        Ok(out)
    }

    /// All balances, for tests and `agora chain` start-up output.
    #[cfg(test)]
    pub(crate) fn accounts(&self) -> std::collections::HashMap<Address, U256> {
        self.db
            .accounts
            .iter()
            .map(|(a, acc)| (*a, acc.info.balance))
            .collect()
    }
}

/// Whether a log matches an address set and positional topic sets (empty = any).
pub(crate) fn log_matches(l: &ELog, addresses: &[EAddress], topics: &[Option<Vec<H256>>]) -> bool {
    if !addresses.is_empty() && !addresses.contains(&l.address) {
        return false;
    }
    topics.iter().enumerate().all(|(i, want)| match want {
        None => true,
        Some(set) if set.is_empty() => true,
        Some(set) => l.topics.get(i).is_some_and(|t| set.contains(t)),
    })
}

fn tx_type(tx: &TypedTransaction) -> u64 {
    match tx {
        TypedTransaction::Legacy(_) => 0,
        TypedTransaction::Eip2930(_) => 1,
        TypedTransaction::Eip1559(_) => 2,
    }
}

fn encode_account(info: &AccountInfo) -> Vec<u8> {
    let mut v = info.balance.to_be_bytes::<32>().to_vec();
    v.extend_from_slice(&info.nonce.to_be_bytes());
    v.extend_from_slice(info.code_hash.as_slice());
    v
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| DevnetError::Corrupt(e.to_string()))
}

fn put_block(batch: &mut sled::Batch, b: &StoredBlock) -> Result<()> {
    batch.insert(key(b"b/", &[&b.number.to_be_bytes()]), json(b)?);
    batch.insert(
        key(b"h/", &[b.hash.as_bytes()]),
        b.number.to_be_bytes().to_vec(),
    );
    batch.insert(b"m/head".to_vec(), b.number.to_be_bytes().to_vec());
    Ok(())
}

fn load_block(store: &sled::Db, path: &Path, number: u64) -> Result<Option<StoredBlock>> {
    store
        .get(key(b"b/", &[&number.to_be_bytes()]))
        .map_err(|e| DevnetError::storage(path, e))?
        .map(|v| serde_json::from_slice(&v).map_err(|e| DevnetError::Corrupt(e.to_string())))
        .transpose()
}

fn evm_error<E: std::fmt::Debug>(e: EVMError<E>) -> String {
    match e {
        EVMError::Transaction(t) => format!("invalid transaction: {t}"),
        EVMError::Header(h) => format!("invalid block header: {h:?}"),
        EVMError::Database(d) => format!("state error: {d:?}"),
        EVMError::Custom(s) => s,
        EVMError::Precompile(s) => format!("precompile: {s}"),
    }
}

/// A failed execution in words, with the revert data if any.
pub(crate) fn describe_failure(r: &ExecutionResult) -> (String, Option<EBytes>) {
    match r {
        ExecutionResult::Success { .. } => ("success".into(), None),
        ExecutionResult::Revert { output, .. } => (
            "execution reverted".into(),
            Some(EBytes::from(output.to_vec())),
        ),
        ExecutionResult::Halt { reason, .. } => (format!("execution halted: {reason:?}"), None),
    }
}

/// The fields of `eth_call` / `eth_estimateGas` requests that matter here (the rest,
/// such as fee caps and access lists, are accepted and ignored).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CallRequest {
    pub(crate) from: Option<EAddress>,
    pub(crate) to: Option<EAddress>,
    pub(crate) gas: Option<EU256>,
    pub(crate) gas_price: Option<EU256>,
    pub(crate) value: Option<EU256>,
    pub(crate) data: Option<EBytes>,
    pub(crate) input: Option<EBytes>,
}

impl CallRequest {
    fn data(&self) -> &[u8] {
        self.input
            .as_ref()
            .or(self.data.as_ref())
            .map_or(&[], |b| b.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_balances_persist() {
        let dir = tempfile::tempdir().unwrap();
        let a = Address::repeat_byte(7);
        {
            let s = ChainState::open(dir.path(), 1337, &[(a, U256::from(5))]).unwrap();
            assert_eq!(s.accounts().get(&a), Some(&U256::from(5)));
        }
        let s = ChainState::open(dir.path(), 1337, &[]).unwrap();
        assert_eq!(s.balance(to_e(a)), EU256::from(5));
        assert!(ChainState::open(dir.path(), 1, &[]).is_err());
    }

    /// A signed transfer of 1 wei from dev account 0 (nonce 0), as sent.
    fn signed_transfer() -> Vec<u8> {
        let to = crate::devnet::dev_wallet(2).address();
        let tx = wallets::Eip1559Transaction {
            chain_id: 1337,
            nonce: 0,
            max_priority_fee_per_gas: 1_000_000_000,
            max_fee_per_gas: 2_000_000_000,
            gas_limit: 50_000,
            to: Some(to),
            value: wallets::U256::zero(),
            data: vec![0x12, 0x34, 0x56, 0x78],
        };
        let policy = wallets::TxPolicy::new(u128::MAX).allow_call(to, [0x12, 0x34, 0x56, 0x78]);
        let sig = crate::devnet::dev_wallet(0)
            .sign_transaction(&tx, &policy)
            .unwrap();
        tx.encode_signed(&sig)
    }

    /// Regression (found by `fuzz_devnet_json_rpc`): a signed transaction with a
    /// byte appended, or with its twin high-s signature, was mined under another
    /// hash, and the transaction as its sender sent it then failed (nonce too low).
    #[test]
    fn one_signed_transaction_has_one_hash() {
        let dir = tempfile::tempdir().unwrap();
        let a = Address::from(crate::devnet::dev_wallet(0).address().0);
        let mut s = ChainState::open(dir.path(), 1337, &[(a, U256::from(10u128.pow(22)))]).unwrap();
        let raw = signed_transfer();
        let refused = |s: &mut ChainState, bytes: &[u8]| match s.send_raw(bytes) {
            Err(DevnetError::Rejected(m)) => m,
            other => panic!("{other:?}"),
        };
        let mut trailing = raw.clone();
        trailing.push(0);
        assert!(refused(&mut s, &trailing).contains("canonical"));
        let (tx, sig) = TypedTransaction::decode_signed(&Rlp::new(&raw)).unwrap();
        let order = EU256::from_big_endian(&SECP256K1_HALF_ORDER) * 2 + 1;
        let twin = ethers::types::Signature {
            r: sig.r,
            s: order - sig.s,
            v: 1 - sig.v,
        };
        assert!(refused(&mut s, &tx.rlp_signed(&twin)).contains("EIP-2"));
        let (hash, mined) = s.send_raw(&raw).unwrap();
        assert!(mined.is_some());
        assert_eq!(hash, H256(ethers::utils::keccak256(&raw)));
        // Sent again: the same hash, nothing new.
        assert!(s.send_raw(&raw).unwrap().1.is_none());
    }

    /// Regression (found by `fuzz_devnet_json_rpc`): an EIP-1559 transaction whose
    /// y-parity was above 1 panicked (a subtraction overflow in ethers' re-encoding)
    /// instead of being refused.
    #[test]
    fn a_typed_transaction_with_a_y_parity_above_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ChainState::open(dir.path(), 1337, &[]).unwrap();
        let mut raw = signed_transfer();
        // ‖ v ‖ 0xa0 r(32) ‖ 0xa0 s(32): v is the byte before the last 66.
        let at = raw.len() - 67;
        assert!(raw[at] <= 1 || raw[at] == 0x80, "v at {at}: {:#x}", raw[at]);
        raw[at] = 27;
        match s.send_raw(&raw) {
            Err(DevnetError::Rejected(m)) => assert!(m.contains("y-parity is 27"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    /// Regression (found by `fuzz_devnet_json_rpc`): `evm_increaseTime` saturated
    /// the clock offset at 2^64 - 1, and the next call, transaction or block then
    /// overflowed adding it to the wall clock (a panic in debug builds; in release a
    /// timestamp that wrapped around to the past).
    #[test]
    fn increase_time_past_the_largest_timestamp_is_refused_not_an_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ChainState::open(dir.path(), 1337, &[]).unwrap();
        assert_eq!(s.increase_time(u64::MAX), None);
        // A day, twice, adds up.
        assert_eq!(s.increase_time(86_400), Some(86_400));
        assert_eq!(s.increase_time(86_400), Some(172_800));
        // Up to an hour short of the end of time, then no further.
        let rest = u64::MAX - now_secs() - 172_800 - 3_600;
        assert_eq!(s.increase_time(rest), Some(rest + 172_800));
        assert_eq!(s.increase_time(7_200), None);
        // Calls and blocks run at the late clock.
        let call = s.call(&CallRequest::default(), None).unwrap();
        assert!(call.is_success(), "{call:?}");
        let mined = s.mine_empty().unwrap();
        assert!(mined.block.timestamp > EU256::from(u64::MAX - 7_200));
    }
}
