//! The spending policy: the only path to a payment signature.
//!
//! Limits sit below every negotiation strategy and every model output: whatever a
//! prompt, a peer or an LLM says, [`SpendingPolicy::authorize`] signs nothing past
//! them. What was spent is persisted in sled before the signature is returned, so a
//! restart neither resets the day's budget nor signs a second, different payment
//! for the same payment id.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::{Address, Amount, Error, Payment, PolicyViolation, Result, SignedPayment, Wallet};

/// The rolling window of the per-day and per-peer limits, in seconds.
pub const WINDOW_SECS: u64 = 24 * 60 * 60;

/// The limits a [`SpendingPolicy`] enforces. `None` means no limit of that kind.
///
/// They mirror AP2 mandate constraints: payees (allow/deny), amount per
/// transaction, a budget per rolling day, overall and per payee.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Most a single payment may be.
    #[serde(default)]
    pub per_deal: Option<Amount>,
    /// Most that may be paid to one peer in any rolling 24 hours.
    #[serde(default)]
    pub per_peer_daily: Option<Amount>,
    /// Most that may be paid in total in any rolling 24 hours.
    #[serde(default)]
    pub daily: Option<Amount>,
    /// If set, only these payees may be paid.
    #[serde(default)]
    pub allow: Option<BTreeSet<Address>>,
    /// These payees are never paid.
    #[serde(default)]
    pub deny: BTreeSet<Address>,
}

/// A stored authorization: the payment, its signature and when it was made.
#[derive(Serialize, Deserialize)]
struct Record {
    at: u64,
    signed: SignedPayment,
}

/// A spend in the rolling log.
#[derive(Serialize, Deserialize)]
struct Spend {
    payee: Address,
    amount: Amount,
}

type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Enforces [`Limits`] and signs payments that pass them.
///
/// ```
/// use std::sync::Arc;
/// use wallets::{Address, Amount, Eip712Domain, Limits, Payment, SpendingPolicy,
///               TransferWithAuthorization, Wallet, B256};
///
/// let dir = tempfile::tempdir()?;
/// let wallet = Arc::new(Wallet::random());
/// let limits = Limits { per_deal: Some("5 USDC".parse()?), ..Limits::default() };
/// let policy = SpendingPolicy::open(dir.path().join("spend"), wallet.clone(), limits)?;
///
/// let seller: Address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".parse()?;
/// let pay = |value: &str| -> Result<Payment, wallets::Error> {
///     Ok(Payment::Authorization {
///         domain: Eip712Domain::new("USD Coin", "2", 31337, Address::ZERO),
///         transfer: TransferWithAuthorization {
///             from: wallet.address(), to: seller, value: value.parse()?,
///             valid_after: 0, valid_before: u64::MAX, nonce: B256::random(),
///         },
///     })
/// };
/// let signed = policy.authorize(&pay("2.50")?)?;
/// signed.verify()?;
/// assert!(policy.authorize(&pay("7")?).is_err()); // over the per-deal limit
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SpendingPolicy {
    wallet: Arc<Wallet>,
    limits: Limits,
    path: PathBuf,
    db: sled::Db,
    /// payment id → [`Record`].
    payments: sled::Tree,
    /// big-endian time ‖ payment id → [`Spend`].
    log: sled::Tree,
    clock: Clock,
    /// Serialises check-then-record so two concurrent payments cannot both pass a limit.
    gate: Mutex<()>,
}

impl SpendingPolicy {
    /// Opens (or creates) the policy's store at `path`.
    ///
    /// # Errors
    /// [`Error::Storage`] if the database cannot be opened (for example because
    /// another process holds it).
    pub fn open(path: impl AsRef<Path>, wallet: Arc<Wallet>, limits: Limits) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let db = crate::store::open(&path).map_err(|e| Error::storage(&path, e))?;
        let payments = db
            .open_tree("payments")
            .map_err(|e| Error::storage(&path, e))?;
        let log = db.open_tree("log").map_err(|e| Error::storage(&path, e))?;
        let policy = Self {
            wallet,
            limits,
            path,
            db,
            payments,
            log,
            clock: Arc::new(unix_now),
            gate: Mutex::new(()),
        };
        Ok(policy)
    }

    /// Replaces the clock (unix seconds); for tests and simulations.
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The paying wallet's address.
    pub fn address(&self) -> Address {
        self.wallet.address()
    }

    /// Checks `payment` against the limits, records it, and returns it signed.
    ///
    /// Idempotent: authorizing the same payment (same id, same content) again returns
    /// the signature made the first time without counting it twice, so a retry after
    /// a timeout or a crash re-sends the same payment.
    ///
    /// # Errors
    /// [`Error::PolicyDenied`] naming the rule, [`Error::PaymentIdReused`] when the
    /// id was used for a different payment, [`Error::Storage`] if the record cannot
    /// be made durable (then nothing is signed).
    pub fn authorize(&self, payment: &Payment) -> Result<SignedPayment> {
        let _gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        let id = payment.id();

        if let Some(existing) = self.record(&id)? {
            if &existing.signed.payment != payment {
                return Err(Error::PaymentIdReused(id));
            }
            tracing::debug!(target: "wallet::policy", payment = %id, "re-sending an authorized payment");
            return Ok(existing.signed);
        }

        let now = (self.clock)();
        self.check(payment, &id, now)?;

        let signature = self.wallet.sign_hash(&payment.signing_hash())?;
        let signed = SignedPayment {
            payment: payment.clone(),
            signature,
        };
        let record = encode(&Record {
            at: now,
            signed: signed.clone(),
        })?;
        let spend = encode(&Spend {
            payee: payment.payee(),
            amount: payment.amount(),
        })?;
        let mut log_key = now.to_be_bytes().to_vec();
        log_key.extend_from_slice(id.as_bytes());
        (&self.payments, &self.log)
            .transaction(|(payments, log)| {
                payments.insert(id.as_bytes(), record.as_slice())?;
                log.insert(log_key.as_slice(), spend.as_slice())?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => Error::storage(&self.path, e),
                TransactionError::Abort(()) => Error::Corrupt {
                    what: self.path.display().to_string(),
                    reason: "transaction aborted".into(),
                },
            })?;
        self.db.flush().map_err(|e| Error::storage(&self.path, e))?;
        tracing::info!(target: "wallet::policy", payment = %id, payee = %payment.payee(),
            amount = %payment.amount(), "payment authorized");
        Ok(signed)
    }

    /// The stored authorization for `payment_id`, if any.
    ///
    /// # Errors
    /// [`Error::Storage`] or [`Error::Corrupt`].
    pub fn authorized(&self, payment_id: &str) -> Result<Option<SignedPayment>> {
        Ok(self.record(payment_id)?.map(|r| r.signed))
    }

    /// Total paid in the rolling window ending now, overall and to `peer` if given.
    ///
    /// # Errors
    /// [`Error::Storage`] or [`Error::Corrupt`].
    pub fn spent(&self, peer: Option<Address>) -> Result<(Amount, Option<Amount>)> {
        self.window_totals((self.clock)(), peer)
    }

    fn check(&self, payment: &Payment, id: &str, now: u64) -> Result<()> {
        let deny = |reason| Error::PolicyDenied {
            payment_id: id.to_owned(),
            payee: payment.payee(),
            amount: payment.amount(),
            reason,
        };
        let (payee, amount) = (payment.payee(), payment.amount());
        if payment.payer() != self.wallet.address() {
            return Err(deny(PolicyViolation::WrongPayer(payment.payer())));
        }
        if amount.is_zero() {
            return Err(deny(PolicyViolation::Zero));
        }
        if self.limits.deny.contains(&payee) {
            return Err(deny(PolicyViolation::Denied));
        }
        if let Some(allow) = &self.limits.allow {
            if !allow.contains(&payee) {
                return Err(deny(PolicyViolation::NotAllowed));
            }
        }
        if let Some(limit) = self.limits.per_deal {
            if amount > limit {
                return Err(deny(PolicyViolation::PerDeal { limit }));
            }
        }
        let (total, to_peer) = self.window_totals(now, Some(payee))?;
        if let Some(limit) = self.limits.per_peer_daily {
            let would_be = to_peer.unwrap_or_default().checked_add(amount)?;
            if would_be > limit {
                return Err(deny(PolicyViolation::PerPeer { limit, would_be }));
            }
        }
        if let Some(limit) = self.limits.daily {
            let would_be = total.checked_add(amount)?;
            if would_be > limit {
                return Err(deny(PolicyViolation::Daily { limit, would_be }));
            }
        }
        Ok(())
    }

    fn window_totals(&self, now: u64, peer: Option<Address>) -> Result<(Amount, Option<Amount>)> {
        // A spend at time t counts while now - t < WINDOW_SECS.
        let start = now.saturating_sub(WINDOW_SECS - 1);
        let mut total = Amount::ZERO;
        let mut to_peer = peer.map(|_| Amount::ZERO);
        for item in self.log.range(start.to_be_bytes()..) {
            let (_, value) = item.map_err(|e| Error::storage(&self.path, e))?;
            let spend: Spend = decode(&self.path, &value)?;
            total = total.checked_add(spend.amount)?;
            if Some(spend.payee) == peer {
                to_peer = Some(to_peer.unwrap_or_default().checked_add(spend.amount)?);
            }
        }
        Ok((total, to_peer))
    }

    fn record(&self, id: &str) -> Result<Option<Record>> {
        self.payments
            .get(id.as_bytes())
            .map_err(|e| Error::storage(&self.path, e))?
            .map(|v| decode(&self.path, &v))
            .transpose()
    }
}

impl fmt::Debug for SpendingPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpendingPolicy")
            .field("wallet", &self.wallet.address())
            .field("limits", &self.limits)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Corrupt {
        what: "spending policy".into(),
        reason: e.to_string(),
    })
}

fn decode<T: for<'de> Deserialize<'de>>(path: &Path, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        what: path.display().to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::{Eip712Domain, TransferWithAuthorization, B256};

    struct Fixture {
        _dir: tempfile::TempDir,
        path: PathBuf,
        wallet: Arc<Wallet>,
        now: Arc<AtomicU64>,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            Self {
                path: dir.path().join("policy"),
                _dir: dir,
                wallet: Arc::new(Wallet::random()),
                now: Arc::new(AtomicU64::new(1_700_000_000)),
            }
        }

        fn policy(&self, limits: Limits) -> SpendingPolicy {
            let now = self.now.clone();
            SpendingPolicy::open(&self.path, self.wallet.clone(), limits)
                .unwrap()
                .with_clock(move || now.load(Ordering::SeqCst))
        }

        fn payment(&self, to: Address, value: &str) -> Payment {
            Payment::Authorization {
                domain: Eip712Domain::new("USD Coin", "2", 31337, Address([7; 20])),
                transfer: TransferWithAuthorization {
                    from: self.wallet.address(),
                    to,
                    value: value.parse().unwrap(),
                    valid_after: 0,
                    valid_before: u64::MAX,
                    nonce: B256::random(),
                },
            }
        }
    }

    fn reason(err: Error) -> PolicyViolation {
        match err {
            Error::PolicyDenied { reason, .. } => reason,
            other => panic!("expected a policy denial, got {other}"),
        }
    }

    const PEER_A: Address = Address([0xaa; 20]);
    const PEER_B: Address = Address([0xbb; 20]);

    #[test]
    fn per_deal_limit() {
        let f = Fixture::new();
        let p = f.policy(Limits {
            per_deal: Some("5".parse().unwrap()),
            ..Limits::default()
        });
        assert!(p
            .authorize(&f.payment(PEER_A, "5"))
            .unwrap()
            .verify()
            .is_ok());
        assert!(matches!(
            reason(p.authorize(&f.payment(PEER_A, "5.000001")).unwrap_err()),
            PolicyViolation::PerDeal { .. }
        ));
    }

    #[test]
    fn allow_and_deny_lists() {
        let f = Fixture::new();
        let p = f.policy(Limits {
            allow: Some([PEER_A].into()),
            deny: [PEER_B].into(),
            ..Limits::default()
        });
        assert!(p.authorize(&f.payment(PEER_A, "1")).is_ok());
        assert_eq!(
            reason(p.authorize(&f.payment(PEER_B, "1")).unwrap_err()),
            PolicyViolation::Denied
        );
        assert_eq!(
            reason(p.authorize(&f.payment(Address([1; 20]), "1")).unwrap_err()),
            PolicyViolation::NotAllowed
        );
    }

    #[test]
    fn zero_and_foreign_payer_are_refused() {
        let f = Fixture::new();
        let p = f.policy(Limits::default());
        assert_eq!(
            reason(p.authorize(&f.payment(PEER_A, "0")).unwrap_err()),
            PolicyViolation::Zero
        );
        let mut foreign = f.payment(PEER_A, "1");
        let Payment::Authorization { transfer, .. } = &mut foreign else {
            unreachable!()
        };
        transfer.from = PEER_B;
        assert_eq!(
            reason(p.authorize(&foreign).unwrap_err()),
            PolicyViolation::WrongPayer(PEER_B)
        );
    }

    #[test]
    fn rolling_daily_and_per_peer_limits_survive_restart() {
        let f = Fixture::new();
        let limits = Limits {
            per_peer_daily: Some("6".parse().unwrap()),
            daily: Some("10".parse().unwrap()),
            ..Limits::default()
        };
        {
            let p = f.policy(limits.clone());
            p.authorize(&f.payment(PEER_A, "4")).unwrap();
            f.now.fetch_add(3600, Ordering::SeqCst);
            p.authorize(&f.payment(PEER_B, "4")).unwrap();
        }
        // Reopen: the day's spending is still there.
        let p = f.policy(limits);
        assert_eq!(
            p.spent(Some(PEER_A)).unwrap(),
            ("8".parse().unwrap(), Some("4".parse().unwrap()))
        );
        assert!(matches!(
            reason(p.authorize(&f.payment(PEER_A, "2.5")).unwrap_err()),
            PolicyViolation::PerPeer { .. }
        ));
        assert!(matches!(
            reason(
                p.authorize(&f.payment(Address([3; 20]), "2.5"))
                    .unwrap_err()
            ),
            PolicyViolation::Daily { .. }
        ));
        // 24 hours after the first spend it leaves the window.
        f.now.fetch_add(WINDOW_SECS - 3600, Ordering::SeqCst);
        assert_eq!(p.spent(None).unwrap().0, "4".parse().unwrap());
        assert!(p.authorize(&f.payment(PEER_A, "6")).is_ok());
    }

    #[test]
    fn retries_return_the_same_signature_and_count_once() {
        let f = Fixture::new();
        let limits = Limits {
            daily: Some("5".parse().unwrap()),
            ..Limits::default()
        };
        let payment = f.payment(PEER_A, "3");
        let first = f.policy(limits.clone()).authorize(&payment).unwrap();
        let p = f.policy(limits);
        let again = p.authorize(&payment).unwrap();
        assert_eq!(first, again);
        assert_eq!(p.spent(None).unwrap().0, "3".parse().unwrap());
        assert_eq!(p.authorized(&payment.id()).unwrap(), Some(first));

        // Same id, different content: refused, not signed.
        let mut changed = payment.clone();
        let Payment::Authorization { transfer, .. } = &mut changed else {
            unreachable!()
        };
        transfer.value = "4".parse().unwrap();
        assert!(matches!(
            p.authorize(&changed),
            Err(Error::PaymentIdReused(_))
        ));
    }

    #[test]
    fn concurrent_payments_cannot_overspend() {
        let f = Fixture::new();
        let p = Arc::new(f.policy(Limits {
            daily: Some("10".parse().unwrap()),
            ..Limits::default()
        }));
        let payments: Vec<Payment> = (0..40).map(|_| f.payment(PEER_A, "1")).collect();
        let ok = std::thread::scope(|s| {
            let handles: Vec<_> = payments
                .chunks(10)
                .map(|chunk| {
                    let p = p.clone();
                    s.spawn(move || chunk.iter().filter(|pay| p.authorize(pay).is_ok()).count())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum::<usize>()
        });
        assert_eq!(ok, 10);
        assert_eq!(p.spent(None).unwrap().0, "10".parse().unwrap());
    }
}
