//! A transaction-sending middleware that survives node restarts: one signed
//! transaction per nonce, resent as is until the node has it.
//!
//! ethers' `NonceManagerMiddleware` keeps counting when a send fails, so after a
//! node outage every later transaction carries a nonce the node rejects forever.
//! [`ReliableSender`] instead:
//!
//! - assigns nonces under a lock from a local counter, initialised from the node's
//!   pending count and re-read after any failure that may have left it stale;
//! - signs each transaction once and resends the same bytes while the node does not
//!   answer (down, or the connection broke before or after it got the request), with
//!   exponential backoff and a cap, so a retry can never become a second transaction;
//! - treats "already known" and a node that already has the hash as success;
//! - reads again (calls, logs, receipts, transactions, balances, the block number)
//!   while the node is unreachable, with the same backoff, so a node restart in the
//!   middle of a settlement is waited out rather than failing the deal.

use std::time::Duration;

use async_trait::async_trait;
use ethers::providers::{JsonRpcError, Middleware, MiddlewareError, PendingTransaction};
use ethers::types::{
    transaction::eip2718::TypedTransaction, Address, BlockId, BlockNumber, Bytes, Filter, Log,
    NameOrAddress, Transaction, TransactionReceipt, TxHash, H256, U256, U64,
};
use tokio::sync::Mutex;

/// How often and how long to retry a send while the node is unreachable.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: u32,
    /// First pause; doubles each attempt.
    pub initial_backoff: Duration,
    /// Longest pause.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 20 retries from 100 ms up to 2 s apart: about half a minute in all.
    fn default() -> Self {
        Self {
            retries: 20,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Errors of [`ReliableSender`].
#[derive(Debug, thiserror::Error)]
pub enum ReliableError<M: Middleware> {
    /// An error of the layer below.
    #[error(transparent)]
    Inner(M::Error),
    /// The node stayed unreachable through every retry.
    #[error("gave up after {attempts} attempts to send transaction {hash:?}: {last}")]
    GaveUp {
        /// The signed transaction's hash (it may still be mined if the node has it).
        hash: H256,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: String,
    },
}

impl<M: Middleware> MiddlewareError for ReliableError<M> {
    type Inner = M::Error;

    fn from_err(e: M::Error) -> Self {
        Self::Inner(e)
    }

    fn as_inner(&self) -> Option<&M::Error> {
        match self {
            Self::Inner(e) => Some(e),
            Self::GaveUp { .. } => None,
        }
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct ReliableSender<M> {
    inner: M,
    address: Address,
    next_nonce: Mutex<Option<U256>>,
    policy: RetryPolicy,
}

impl<M: Middleware> ReliableSender<M> {
    /// Sends for `address` (the signer below) with `policy`.
    pub fn new(inner: M, address: Address, policy: RetryPolicy) -> Self {
        Self {
            inner,
            address,
            next_nonce: Mutex::new(None),
            policy,
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.policy
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(self.policy.max_backoff)
    }
}

/// Whether the node answered with an error (as opposed to not answering at all).
fn node_answered<E: MiddlewareError>(e: &E) -> Option<&JsonRpcError> {
    e.as_error_response()
}

impl<M: Middleware> ReliableSender<M> {
    /// Whether `e` means the node is unreachable: it carries no node answer and the
    /// node does not answer a probe either. Signer refusals and other local errors
    /// are not retried.
    async fn unreachable(&self, e: &M::Error) -> bool {
        node_answered(e).is_none() && self.inner.get_chainid().await.is_err()
    }

    /// Runs the read `read`, again while the node is unreachable, as sends are retried:
    /// a read changes nothing, so a node that restarts mid-deal costs a wait, not the
    /// deal. An answer from the node (a revert, a bad request) is returned at once.
    async fn read<T, F, Fut>(&self, what: &'static str, read: F) -> Result<T, ReliableError<M>>
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: std::future::Future<Output = Result<T, M::Error>> + Send,
        T: Send,
    {
        let mut attempt = 0;
        loop {
            match read().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < self.policy.retries && self.unreachable(&e).await => {
                    tracing::warn!(target: "chain::read", what, attempt, error = %e, "node unreachable; reading again");
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(ReliableError::Inner(e)),
            }
        }
    }
}

#[async_trait]
impl<M: Middleware> Middleware for ReliableSender<M> {
    type Error = ReliableError<M>;
    type Provider = M::Provider;
    type Inner = M;

    fn inner(&self) -> &M {
        &self.inner
    }

    async fn call(
        &self,
        tx: &TypedTransaction,
        block: Option<BlockId>,
    ) -> Result<Bytes, Self::Error> {
        self.read("eth_call", || self.inner.call(tx, block)).await
    }

    async fn get_logs(&self, filter: &Filter) -> Result<Vec<Log>, Self::Error> {
        self.read("eth_getLogs", || self.inner.get_logs(filter))
            .await
    }

    async fn get_block_number(&self) -> Result<U64, Self::Error> {
        self.read("eth_blockNumber", || self.inner.get_block_number())
            .await
    }

    async fn get_balance<T: Into<NameOrAddress> + Send + Sync>(
        &self,
        from: T,
        block: Option<BlockId>,
    ) -> Result<U256, Self::Error> {
        let from: NameOrAddress = from.into();
        self.read("eth_getBalance", || {
            self.inner.get_balance(from.clone(), block)
        })
        .await
    }

    async fn get_transaction<T: Send + Sync + Into<TxHash>>(
        &self,
        transaction_hash: T,
    ) -> Result<Option<Transaction>, Self::Error> {
        let hash: TxHash = transaction_hash.into();
        self.read("eth_getTransactionByHash", || {
            self.inner.get_transaction(hash)
        })
        .await
    }

    async fn get_transaction_receipt<T: Send + Sync + Into<TxHash>>(
        &self,
        transaction_hash: T,
    ) -> Result<Option<TransactionReceipt>, Self::Error> {
        let hash: TxHash = transaction_hash.into();
        self.read("eth_getTransactionReceipt", || {
            self.inner.get_transaction_receipt(hash)
        })
        .await
    }

    async fn send_transaction<T: Into<TypedTransaction> + Send + Sync>(
        &self,
        tx: T,
        block: Option<BlockId>,
    ) -> Result<PendingTransaction<'_, Self::Provider>, Self::Error> {
        let mut tx: TypedTransaction = tx.into();
        tx.set_from(self.address);
        let mut next = self.next_nonce.lock().await;

        // Fill and sign, retrying while the node is unreachable: nothing is sent yet.
        let mut attempt = 0;
        let raw: Bytes = loop {
            let prepared = async {
                let nonce = match *next {
                    Some(n) => n,
                    None => {
                        self.inner
                            .get_transaction_count(self.address, Some(BlockNumber::Pending.into()))
                            .await?
                    }
                };
                let mut tx = tx.clone();
                tx.set_nonce(nonce);
                self.inner.fill_transaction(&mut tx, block).await?;
                let sig = self.inner.sign_transaction(&tx, self.address).await?;
                Ok::<_, M::Error>((nonce, tx.rlp_signed(&sig)))
            }
            .await;
            match prepared {
                Ok((nonce, raw)) => {
                    *next = Some(nonce);
                    break raw;
                }
                Err(e) if attempt < self.policy.retries && self.unreachable(&e).await => {
                    tracing::warn!(target: "chain::send", attempt, error = %e, "node unreachable; retrying");
                    *next = None;
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => {
                    // Refused by the node (the call reverts) or the signer: no nonce used.
                    *next = None;
                    return Err(ReliableError::Inner(e));
                }
            }
        };
        let hash = H256(ethers::utils::keccak256(&raw));
        let nonce = next.unwrap_or_default();

        // Send the same bytes until the node has them.
        let mut attempt = 0;
        loop {
            match self.inner.send_raw_transaction(raw.clone()).await {
                Ok(_) => break,
                Err(e) => {
                    let known = matches!(self.inner.get_transaction(hash).await, Ok(Some(_)));
                    let already = node_answered(&e)
                        .is_some_and(|r| r.message.to_lowercase().contains("already known"));
                    if known || already {
                        break;
                    }
                    // No answer (the node is down, or the connection broke before or
                    // after the node got the request): the same bytes again can only
                    // be the same transaction, so they are resent whether or not the
                    // node answers a probe.
                    let unanswered = node_answered(&e).is_none();
                    if unanswered && attempt < self.policy.retries {
                        tracing::warn!(target: "chain::send", ?hash, attempt, error = %e, "no answer from the node; resending the same transaction");
                        tokio::time::sleep(self.backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    // Refused, or gave up: the nonce may or may not be used; re-read it next time.
                    *next = None;
                    return Err(if !unanswered {
                        ReliableError::Inner(e)
                    } else {
                        ReliableError::GaveUp {
                            hash,
                            attempts: attempt + 1,
                            last: e.to_string(),
                        }
                    });
                }
            }
        }
        *next = Some(nonce + 1);
        Ok(PendingTransaction::new(hash, self.provider()))
    }
}
