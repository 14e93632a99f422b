//! The spending policy: the only path to a payment signature.
//!
//! Limits sit below every negotiation strategy and every model output: whatever a
//! prompt, a peer or an LLM says, [`SpendingPolicy::authorize`] signs nothing past
//! them. What was spent is persisted in sled before the signature is returned, so a
//! restart neither resets the day's budget nor signs a second, different payment
//! for the same payment id.
//!
//! Payment channels: a voucher counts the increment of its cumulative amount over the
//! last voucher signed for the same channel, which is stored with the spend in one
//! all-or-nothing write ([`crate::store::AtomicWriter`]); a lower voucher is refused
//! and the same voucher again is re-sent. The deposit that funds a channel counts
//! nothing (it stays the payer's until vouchers release it, and comes back at expiry),
//! so the policy signs funding only for channel contracts it was told to trust
//! ([`SpendingPolicy::trust_channel_contract`]) and only with the EIP-3009 nonce that
//! binds the channel's terms; a funding still counts against the per-deal limit.
//!
//! The policy decides on signed facts and on contracts it was pinned to, never on a
//! field that travels unsigned: a token payment must be in a token domain the policy
//! is pinned to ([`SpendingPolicy::pin_token`]: chain id, contract, name and version),
//! an escrow permit's `spender` must be a trusted escrow contract and is the payee the
//! limits count (the `seller` an escrow releases to is not part of the permit), and
//! a voucher must be in a trusted channel contract's domain. Every pinned contract is
//! guarded in the wallet too ([`Wallet::guard_contract`]), so no typed data in its
//! domain is signed outside the policy.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::payment::ChannelFunding;
use crate::store::Write;
use crate::{Address, Amount, Error, Payment, PolicyViolation, Result, SignedPayment, Wallet};

/// The rolling window of the per-day and per-peer limits, in seconds.
pub const WINDOW_SECS: u64 = 24 * 60 * 60;

/// The limits a [`SpendingPolicy`] enforces. `None` means no limit of that kind.
///
/// They mirror AP2 mandate constraints: payees (allow/deny), amount per
/// transaction, a budget per rolling day, overall and per payee, a validity window and
/// a recurrence (how many payments a rolling day may hold).
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
    /// Unix seconds from which payments may be signed.
    #[serde(default)]
    pub valid_from: Option<u64>,
    /// Unix seconds after which no payment is signed.
    #[serde(default)]
    pub valid_until: Option<u64>,
    /// Most payments in any rolling 24 hours.
    #[serde(default)]
    pub max_payments_daily: Option<u32>,
}

/// A stored authorization: the payment, its signature and when it was made.
#[derive(Serialize, Deserialize)]
struct Record {
    at: u64,
    signed: SignedPayment,
}

/// A spend in the rolling log.
#[derive(Debug, Serialize, Deserialize)]
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
/// // The token's EIP-712 domain, from the deployment: payments are signed only in it.
/// let token = Eip712Domain::new("USD Coin", "2", 31337, Address([7; 20]));
/// let policy = SpendingPolicy::open(dir.path().join("spend"), wallet.clone(), limits)?
///     .pin_token(token.clone());
///
/// let seller: Address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".parse()?;
/// let pay = |value: &str| -> Result<Payment, wallets::Error> {
///     Ok(Payment::Authorization {
///         domain: token.clone(),
///         transfer: TransferWithAuthorization {
///             from: wallet.address(), to: seller, value: value.parse()?,
///             valid_after: 0, valid_before: u64::MAX, nonce: B256::random(),
///         },
///     })
/// };
/// let signed = policy.authorize(&pay("2.50")?)?;
/// signed.verify()?;
/// assert!(policy.authorize(&pay("7 USDC")?).is_err()); // over the per-deal limit
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
    /// channel key ([`Payment::channel_key`]) → the last voucher's cumulative [`Amount`].
    channels: sled::Tree,
    /// Writes a payment's record, spend and channel all or none.
    writer: crate::store::AtomicWriter,
    /// Contracts trusted to hold channel deposits.
    channel_contracts: BTreeSet<Address>,
    /// Contracts trusted to hold escrow deposits.
    escrow_contracts: BTreeSet<Address>,
    /// The token domains payments may be signed in.
    tokens: Vec<crate::Eip712Domain>,
    clock: Clock,
    /// Serialises check-then-record so two concurrent payments cannot both pass a limit;
    /// holds the rolling window's spends and totals, so a check does not rescan the log.
    gate: Mutex<Window>,
}

/// The spends of the rolling window, kept beside the `log` tree with running totals.
#[derive(Debug, Default)]
struct Window {
    /// Every spend logged at or after this time is in `spends`; `None` until loaded.
    from: Option<u64>,
    /// Log key → spend.
    spends: std::collections::BTreeMap<Vec<u8>, Spend>,
    total: Amount,
    per_peer: std::collections::HashMap<Address, Amount>,
}

impl Window {
    fn add(&mut self, key: Vec<u8>, spend: Spend) -> Result<()> {
        self.total = self.total.checked_add(spend.amount)?;
        let peer = self.per_peer.entry(spend.payee).or_default();
        *peer = peer.checked_add(spend.amount)?;
        self.spends.insert(key, spend);
        Ok(())
    }

    /// Drops the spends logged before `start`.
    fn evict_before(&mut self, start: u64) -> Result<()> {
        let keep = self.spends.split_off(start.to_be_bytes().as_slice());
        for spend in std::mem::replace(&mut self.spends, keep).into_values() {
            self.total = self.total.checked_sub(spend.amount)?;
            if let Some(peer) = self.per_peer.get_mut(&spend.payee) {
                *peer = peer.checked_sub(spend.amount)?;
                if peer.is_zero() {
                    self.per_peer.remove(&spend.payee);
                }
            }
        }
        self.from = Some(start);
        Ok(())
    }
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
        let channels = db
            .open_tree("channels")
            .map_err(|e| Error::storage(&path, e))?;
        let writer =
            crate::store::AtomicWriter::open(&db, &path).map_err(|e| Error::storage(&path, e))?;
        let policy = Self {
            wallet,
            limits,
            path,
            db,
            payments,
            log,
            channels,
            writer,
            channel_contracts: BTreeSet::new(),
            escrow_contracts: BTreeSet::new(),
            tokens: Vec::new(),
            clock: Arc::new(unix_now),
            gate: Mutex::new(Window::default()),
        };
        Ok(policy)
    }

    /// Replaces the clock (unix seconds); for tests and simulations.
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Trusts `contract` (a deployed `PaymentChannel`) to hold channel deposits: only then
    /// does the policy sign [`Payment::ChannelFunding`] to it. Take the address from the
    /// deployment, never from a peer.
    pub fn trust_channel_contract(mut self, contract: Address) -> Self {
        self.wallet.guard_contract(contract);
        self.channel_contracts.insert(contract);
        self
    }

    /// Trusts `contract` (a deployed `JobEscrow`) to hold escrow deposits: only then does
    /// the policy sign a permit whose spender it is. Take the address from the
    /// deployment, never from a peer.
    pub fn trust_escrow_contract(mut self, contract: Address) -> Self {
        self.wallet.guard_contract(contract);
        self.escrow_contracts.insert(contract);
        self
    }

    /// Pins a token's EIP-712 domain (chain id, contract, name and version): token
    /// payments (authorizations, escrow permits, channel funding) are signed only in a
    /// pinned domain. Take it from the deployment and the token itself, never from a
    /// peer.
    pub fn pin_token(mut self, domain: crate::Eip712Domain) -> Self {
        if let Some(contract) = domain.verifying_contract {
            self.wallet.guard_contract(contract);
        }
        if !self.tokens.contains(&domain) {
            self.tokens.push(domain);
        }
        self
    }

    /// The token domains pinned with [`SpendingPolicy::pin_token`]: the only ones token
    /// payments are signed in.
    pub fn tokens(&self) -> &[crate::Eip712Domain] {
        &self.tokens
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
        let signed = self.authorize_unflushed(payment)?;
        self.flush()?;
        Ok(signed)
    }

    /// As [`SpendingPolicy::authorize`], but returns before the record is on disk: the
    /// payment counts against the limits of later payments at once, and is durable once
    /// [`SpendingPolicy::flush`] returns. Hand the signature to nobody before that (a
    /// crash could forget it was signed). Lets a caller that must order its payments
    /// (vouchers of one channel) hold its own lock only while signing, and share the
    /// disk flushes.
    ///
    /// # Errors
    /// As [`SpendingPolicy::authorize`].
    pub fn authorize_unflushed(&self, payment: &Payment) -> Result<SignedPayment> {
        let mut window = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        let id = payment.id();

        if let Some(existing) = self.record(&id)? {
            drop(window);
            if &existing.signed.payment != payment {
                return Err(Error::PaymentIdReused(id));
            }
            tracing::debug!(target: "wallet::policy", payment = %id, "re-sending an authorized payment");
            return Ok(existing.signed);
        }

        let now = (self.clock)();
        let counted = self.check(payment, &id, now, &mut window)?;

        let signature = self.wallet.sign_hash(&payment.signing_hash())?;
        let signed = SignedPayment {
            payment: payment.clone(),
            signature,
        };
        let record = encode(&Record {
            at: now,
            signed: signed.clone(),
        })?;
        let spend_value = Spend {
            payee: payment.payee(),
            amount: counted,
        };
        let spend = encode(&spend_value)?;
        let mut log_key = now.to_be_bytes().to_vec();
        log_key.extend_from_slice(id.as_bytes());
        // A voucher's channel moves on to its cumulative amount, with the spend.
        let channel = match (payment.channel_key(), payment) {
            (Some(key), Payment::ChannelVoucher { voucher, .. }) => {
                Some((key, encode(&voucher.cumulative_amount)?))
            }
            _ => None,
        };
        let mut writes = Vec::with_capacity(3);
        if !counted.is_zero() {
            writes.push(Write::set(&self.log, log_key.clone(), spend));
        }
        if let Some((key, last)) = channel {
            writes.push(Write::set(&self.channels, key.as_bytes().to_vec(), last));
        }
        writes.push(Write::set(&self.payments, id.as_bytes().to_vec(), record));
        self.writer
            .write(&writes)
            .map_err(|e| Error::storage(&self.path, e))?;
        if !counted.is_zero() && window.from.is_some_and(|from| now >= from) {
            window.add(log_key, spend_value)?;
        }
        // Later payments see this one from here on.
        drop(window);
        tracing::info!(target: "wallet::policy", payment = %id, payee = %payment.payee(),
            amount = %payment.amount(), counted = %counted, "payment authorized");
        Ok(signed)
    }

    /// Waits until every payment authorized so far is on disk.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn flush(&self) -> Result<()> {
        self.db
            .flush()
            .map(drop)
            .map_err(|e| Error::storage(&self.path, e))
    }

    /// The stored authorization for `payment_id`, if any.
    ///
    /// # Errors
    /// [`Error::Storage`] or [`Error::Corrupt`].
    pub fn authorized(&self, payment_id: &str) -> Result<Option<SignedPayment>> {
        Ok(self.record(payment_id)?.map(|r| r.signed))
    }

    /// The cumulative amount of the last voucher signed for the channel `channel_id` of the
    /// `PaymentChannel` in `domain` (zero if none).
    ///
    /// # Errors
    /// [`Error::Storage`] or [`Error::Corrupt`].
    pub fn last_voucher(
        &self,
        domain: &crate::Eip712Domain,
        channel_id: crate::B256,
    ) -> Result<Amount> {
        let key = format!(
            "{}:{}:{}",
            domain.chain_id.unwrap_or_default(),
            domain.verifying_contract.unwrap_or_default(),
            channel_id
        );
        self.last_cumulative(&key)
    }

    /// Total paid in the rolling window ending now, overall and to `peer` if given.
    ///
    /// # Errors
    /// [`Error::Storage`] or [`Error::Corrupt`].
    pub fn spent(&self, peer: Option<Address>) -> Result<(Amount, Option<Amount>)> {
        let mut window = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        self.window_totals((self.clock)(), peer, &mut window)
    }

    /// Checks `payment` against the limits; returns the amount it counts against them.
    fn check(&self, payment: &Payment, id: &str, now: u64, window: &mut Window) -> Result<Amount> {
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
        if let Err(reason) = self
            .check_validity(now)
            .and_then(|()| self.check_contracts(payment))
            .and_then(|()| self.check_channel_terms(payment))
        {
            return Err(deny(reason));
        }
        if amount.is_zero() {
            return Err(deny(PolicyViolation::Zero));
        }
        // An escrow's declared seller is held to the lists too, beside the payee.
        let seller = match payment {
            Payment::EscrowDeposit { seller, .. } => Some(*seller),
            _ => None,
        };
        let payees = || std::iter::once(payee).chain(seller);
        if payees().any(|p| self.limits.deny.contains(&p)) {
            return Err(deny(PolicyViolation::Denied));
        }
        if let Some(allow) = &self.limits.allow {
            let escrow = self.escrow_contracts.contains(&payee) && seller.is_some();
            let allowed = match seller {
                // A trusted escrow contract is where the money waits; the seller it
                // releases to is the one the allow-list must name.
                Some(seller) if escrow => allow.contains(&seller),
                _ => allow.contains(&payee),
            };
            if !allowed {
                return Err(deny(PolicyViolation::NotAllowed));
            }
        }
        let counted = match payment {
            Payment::ChannelFunding { .. } => Amount::ZERO,
            Payment::ChannelVoucher { .. } => {
                let key = payment.channel_key().unwrap_or_default();
                let last = self.last_cumulative(&key)?;
                if amount <= last {
                    return Err(deny(PolicyViolation::StaleVoucher { last }));
                }
                amount.checked_sub(last)?
            }
            _ => amount,
        };
        if let Some(limit) = self.limits.per_deal {
            // Channel funding counts nothing against the budgets (vouchers do), but one
            // deposit is still held to the per-deal limit.
            let deal = match payment {
                Payment::ChannelFunding { .. } => amount,
                _ => counted,
            };
            if deal > limit {
                return Err(deny(PolicyViolation::PerDeal { limit }));
            }
        }
        let (total, to_peer) = self.window_totals(now, Some(payee), window)?;
        if let Some(limit) = self.limits.max_payments_daily {
            let would_be = window.spends.len() as u64 + 1;
            if !counted.is_zero() && would_be > u64::from(limit) {
                return Err(deny(PolicyViolation::Recurrence { limit, would_be }));
            }
        }
        if let Some(limit) = self.limits.per_peer_daily {
            let would_be = to_peer.unwrap_or_default().checked_add(counted)?;
            if would_be > limit {
                return Err(deny(PolicyViolation::PerPeer { limit, would_be }));
            }
        }
        if let Some(limit) = self.limits.daily {
            let would_be = total.checked_add(counted)?;
            if would_be > limit {
                return Err(deny(PolicyViolation::Daily { limit, would_be }));
            }
        }
        Ok(counted)
    }

    /// The limits' validity window holds `now`.
    fn check_validity(&self, now: u64) -> Result<(), PolicyViolation> {
        match (self.limits.valid_from, self.limits.valid_until) {
            (Some(valid_from), _) if now < valid_from => {
                Err(PolicyViolation::NotYetValid { valid_from, now })
            }
            (_, Some(valid_until)) if now > valid_until => {
                Err(PolicyViolation::Expired { valid_until, now })
            }
            _ => Ok(()),
        }
    }

    /// Token payments are in a pinned token domain, escrow permits name a trusted escrow
    /// contract as spender, vouchers are in a trusted channel contract's domain.
    fn check_contracts(&self, payment: &Payment) -> Result<(), PolicyViolation> {
        let token = match payment {
            Payment::Authorization { domain, .. }
            | Payment::EscrowDeposit { domain, .. }
            | Payment::ChannelFunding { domain, .. } => Some(domain),
            Payment::ChannelVoucher { domain, .. } => {
                let contract = domain.verifying_contract.unwrap_or_default();
                if !self.channel_contracts.contains(&contract) {
                    return Err(PolicyViolation::UntrustedChannelContract(contract));
                }
                None
            }
        };
        if let Some(domain) = token {
            if !self.tokens.contains(domain) {
                return Err(PolicyViolation::UnpinnedToken(describe(domain)));
            }
        }
        if let Payment::EscrowDeposit { permit, .. } = payment {
            if !self.escrow_contracts.contains(&permit.spender) {
                return Err(PolicyViolation::UntrustedEscrowContract(permit.spender));
            }
        }
        Ok(())
    }

    /// A channel payment must be what it says: a voucher for its channel's id, a funding
    /// authorization from the channel's payer to a trusted channel contract with the nonce
    /// that binds the channel's terms on chain.
    fn check_channel_terms(&self, payment: &Payment) -> Result<(), PolicyViolation> {
        match payment {
            Payment::ChannelVoucher {
                channel, voucher, ..
            } if voucher.channel_id != channel.id() => {
                return Err(PolicyViolation::ChannelMismatch(
                    "the voucher's channel id is not the channel's",
                ));
            }
            Payment::ChannelFunding {
                authorization,
                channel,
                funding,
                ..
            } => {
                if !self.channel_contracts.contains(&authorization.to) {
                    return Err(PolicyViolation::UntrustedChannelContract(authorization.to));
                }
                if authorization.from != channel.payer {
                    return Err(PolicyViolation::ChannelMismatch(
                        "the authorization is not from the channel's payer",
                    ));
                }
                let nonce = match funding {
                    ChannelFunding::Open { expires_at } => channel.open_nonce(*expires_at),
                    ChannelFunding::TopUp { deposit } => {
                        if *deposit < authorization.value {
                            return Err(PolicyViolation::ChannelMismatch(
                                "the deposit after a top-up is below the top-up",
                            ));
                        }
                        channel.top_up_nonce(*deposit)
                    }
                };
                if authorization.nonce != nonce {
                    return Err(PolicyViolation::ChannelMismatch(
                        "the authorization's nonce does not bind the channel's terms",
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn last_cumulative(&self, key: &str) -> Result<Amount> {
        Ok(self
            .channels
            .get(key.as_bytes())
            .map_err(|e| Error::storage(&self.path, e))?
            .map(|v| decode(&self.path, &v))
            .transpose()?
            .unwrap_or_default())
    }

    fn window_totals(
        &self,
        now: u64,
        peer: Option<Address>,
        window: &mut Window,
    ) -> Result<(Amount, Option<Amount>)> {
        // A spend at time t counts while now - t < WINDOW_SECS.
        let start = now.saturating_sub(WINDOW_SECS - 1);
        match window.from {
            Some(from) if start >= from => window.evict_before(start)?,
            // First use, or a clock that went back past what was kept: read the log.
            _ => {
                let mut fresh = Window {
                    from: Some(start),
                    ..Window::default()
                };
                for item in self.log.range(start.to_be_bytes()..) {
                    let (key, value) = item.map_err(|e| Error::storage(&self.path, e))?;
                    fresh.add(key.to_vec(), decode(&self.path, &value)?)?;
                }
                *window = fresh;
            }
        }
        let to_peer = peer.map(|p| window.per_peer.get(&p).copied().unwrap_or_default());
        Ok((window.total, to_peer))
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

/// A token domain as errors show it.
fn describe(domain: &crate::Eip712Domain) -> String {
    format!(
        "{:?} version {:?} on chain {} at {}",
        domain.name.as_deref().unwrap_or_default(),
        domain.version.as_deref().unwrap_or_default(),
        domain.chain_id.unwrap_or_default(),
        domain.verifying_contract.unwrap_or_default()
    )
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Corrupt {
        what: "spending policy".into(),
        reason: e.to_string(),
    })
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(path: &Path, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        what: path.display().to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::{
        Channel, Eip712Domain, ReceiveWithAuthorization, TransferWithAuthorization, Voucher, B256,
    };

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

        /// A policy pinned to [`token`] and trusting the channel and escrow contracts.
        fn policy(&self, limits: Limits) -> SpendingPolicy {
            self.bare_policy(limits)
                .pin_token(token())
                .trust_channel_contract(CHANNELS)
                .trust_escrow_contract(ESCROW)
        }

        /// A policy pinned to nothing and trusting no contract.
        fn bare_policy(&self, limits: Limits) -> SpendingPolicy {
            let now = self.now.clone();
            SpendingPolicy::open(&self.path, self.wallet.clone(), limits)
                .unwrap()
                .with_clock(move || now.load(Ordering::SeqCst))
        }

        fn payment(&self, to: Address, value: &str) -> Payment {
            Payment::Authorization {
                domain: token(),
                transfer: TransferWithAuthorization {
                    from: self.wallet.address(),
                    to,
                    value: amount(value),
                    valid_after: 0,
                    valid_before: u64::MAX,
                    nonce: B256::random(),
                },
            }
        }
    }

    /// The token domain the fixture's policies are pinned to.
    fn token() -> Eip712Domain {
        Eip712Domain::new("USD Coin", "2", 31337, Address([7; 20]))
    }

    const ESCROW: Address = Address([0xee; 20]);

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
            per_deal: Some(amount("5")),
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
            per_peer_daily: Some(amount("6")),
            daily: Some(amount("10")),
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
            (amount("8"), Some(amount("4")))
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
        assert_eq!(p.spent(None).unwrap().0, amount("4"));
        assert!(p.authorize(&f.payment(PEER_A, "6")).is_ok());
    }

    #[test]
    fn retries_return_the_same_signature_and_count_once() {
        let f = Fixture::new();
        let limits = Limits {
            daily: Some(amount("5")),
            ..Limits::default()
        };
        let payment = f.payment(PEER_A, "3");
        let first = f.policy(limits.clone()).authorize(&payment).unwrap();
        let p = f.policy(limits);
        let again = p.authorize(&payment).unwrap();
        assert_eq!(first, again);
        assert_eq!(p.spent(None).unwrap().0, amount("3"));
        assert_eq!(p.authorized(&payment.id()).unwrap(), Some(first));

        // Same id, different content: refused, not signed.
        let mut changed = payment.clone();
        let Payment::Authorization { transfer, .. } = &mut changed else {
            unreachable!()
        };
        transfer.value = amount("4");
        assert!(matches!(
            p.authorize(&changed),
            Err(Error::PaymentIdReused(_))
        ));
    }

    #[test]
    fn concurrent_payments_cannot_overspend() {
        let f = Fixture::new();
        let p = Arc::new(f.policy(Limits {
            daily: Some(amount("10")),
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
        assert_eq!(p.spent(None).unwrap().0, amount("10"));
    }

    // ------------------------------------------------------------------ channels

    const CHANNELS: Address = Address([0xcc; 20]);

    impl Fixture {
        fn channel(&self, payee: Address, salt: u8) -> Channel {
            Channel {
                payer: self.wallet.address(),
                payee,
                salt: B256([salt; 32]),
            }
        }

        fn voucher(&self, channel: Channel, cumulative: &str) -> Payment {
            Payment::ChannelVoucher {
                domain: Voucher::domain(31337, CHANNELS),
                channel,
                voucher: Voucher {
                    channel_id: channel.id(),
                    cumulative_amount: amount(cumulative),
                },
            }
        }

        fn funding(&self, channel: Channel, value: &str, funding: ChannelFunding) -> Payment {
            let nonce = match funding {
                ChannelFunding::Open { expires_at } => channel.open_nonce(expires_at),
                ChannelFunding::TopUp { deposit } => channel.top_up_nonce(deposit),
            };
            Payment::ChannelFunding {
                domain: token(),
                authorization: ReceiveWithAuthorization {
                    from: self.wallet.address(),
                    to: CHANNELS,
                    value: amount(value),
                    valid_after: 0,
                    valid_before: u64::MAX,
                    nonce,
                },
                channel,
                funding,
            }
        }
    }

    fn amount(s: &str) -> Amount {
        format!("{s} USDC").parse().unwrap()
    }

    #[test]
    fn vouchers_count_the_increment_over_the_last_voucher() {
        let f = Fixture::new();
        let limits = Limits {
            per_deal: Some(amount("2")),
            daily: Some(amount("10")),
            ..Limits::default()
        };
        let p = f.policy(limits.clone());
        let ch = f.channel(PEER_A, 1);
        for cumulative in ["1", "3", "4.5"] {
            let signed = p.authorize(&f.voucher(ch, cumulative)).unwrap();
            signed.verify().unwrap();
        }
        // 1 + 2 + 1.5: each voucher counted its increment, not its cumulative amount.
        assert_eq!(
            p.spent(Some(PEER_A)).unwrap(),
            (amount("4.5"), Some(amount("4.5")))
        );
        let domain = Voucher::domain(31337, CHANNELS);
        assert_eq!(p.last_voucher(&domain, ch.id()).unwrap(), amount("4.5"));

        // The per-deal limit applies to the increment: 4.5 → 7 is 2.5.
        assert_eq!(
            reason(p.authorize(&f.voucher(ch, "7")).unwrap_err()),
            PolicyViolation::PerDeal { limit: amount("2") }
        );
        // Lower than the last voucher: refused, nothing signed or counted.
        assert_eq!(
            reason(p.authorize(&f.voucher(ch, "4")).unwrap_err()),
            PolicyViolation::StaleVoucher {
                last: amount("4.5")
            }
        );
        assert_eq!(
            reason(p.authorize(&f.voucher(ch, "0")).unwrap_err()),
            PolicyViolation::Zero
        );
        // Another channel to the same peer starts from zero but shares the peer's budget.
        let other = f.channel(PEER_A, 2);
        p.authorize(&f.voucher(other, "2")).unwrap();
        assert_eq!(p.last_voucher(&domain, other.id()).unwrap(), amount("2"));
        assert_eq!(p.spent(Some(PEER_A)).unwrap().1, Some(amount("6.5")));
    }

    #[test]
    fn voucher_retries_are_idempotent_across_restarts() {
        let f = Fixture::new();
        let ch = f.channel(PEER_A, 1);
        let latest = f.voucher(ch, "3");
        let first = {
            let p = f.policy(Limits::default());
            p.authorize(&f.voucher(ch, "1")).unwrap();
            p.authorize(&latest).unwrap()
        };
        let p = f.policy(Limits::default());
        // The same voucher again: the same signature, counted once.
        assert_eq!(p.authorize(&latest).unwrap(), first);
        assert_eq!(p.spent(None).unwrap().0, amount("3"));
        // An older voucher that was signed before is re-sent as it was, too.
        assert!(p.authorize(&f.voucher(ch, "1")).is_ok());
        // A lower one never signed is refused after the restart as well.
        assert_eq!(
            reason(p.authorize(&f.voucher(ch, "2")).unwrap_err()),
            PolicyViolation::StaleVoucher { last: amount("3") }
        );
        p.authorize(&f.voucher(ch, "3.25")).unwrap();
        assert_eq!(p.spent(None).unwrap().0, amount("3.25"));
    }

    #[test]
    fn concurrent_copies_of_a_voucher_count_once() {
        let f = Fixture::new();
        let p = Arc::new(f.policy(Limits::default()));
        let v = f.voucher(f.channel(PEER_A, 1), "5");
        let sigs: Vec<SignedPayment> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (p, v) = (p.clone(), v.clone());
                    s.spawn(move || p.authorize(&v).unwrap())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(sigs.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(p.spent(None).unwrap().0, amount("5"));
    }

    #[test]
    fn vouchers_must_name_their_channel_and_come_from_this_wallet() {
        let f = Fixture::new();
        let p = f.policy(Limits {
            deny: [PEER_B].into(),
            ..Limits::default()
        });
        let ch = f.channel(PEER_A, 1);
        let mut mismatched = f.voucher(ch, "1");
        let Payment::ChannelVoucher { voucher, .. } = &mut mismatched else {
            unreachable!()
        };
        voucher.channel_id = f.channel(PEER_A, 2).id();
        assert!(matches!(
            reason(p.authorize(&mismatched).unwrap_err()),
            PolicyViolation::ChannelMismatch(_)
        ));
        let foreign = Channel {
            payer: PEER_B,
            ..ch
        };
        assert_eq!(
            reason(p.authorize(&f.voucher(foreign, "1")).unwrap_err()),
            PolicyViolation::WrongPayer(PEER_B)
        );
        assert_eq!(
            reason(
                p.authorize(&f.voucher(f.channel(PEER_B, 1), "1"))
                    .unwrap_err()
            ),
            PolicyViolation::Denied
        );
    }

    #[test]
    fn channel_funding_needs_a_trusted_contract_and_the_binding_nonce() {
        let f = Fixture::new();
        let limits = Limits {
            per_deal: Some(amount("50")),
            daily: Some(amount("5")),
            deny: [PEER_B].into(),
            ..Limits::default()
        };
        let ch = f.channel(PEER_A, 1);
        let open = f.funding(ch, "50", ChannelFunding::Open { expires_at: 99 });
        // Not trusted: refused, whatever the terms.
        assert_eq!(
            reason(
                f.bare_policy(limits.clone())
                    .pin_token(token())
                    .authorize(&open)
                    .unwrap_err()
            ),
            PolicyViolation::UntrustedChannelContract(CHANNELS)
        );
        let p = f.policy(limits);
        // The deposit counts nothing: it is above the daily limit, and the budget stays
        // whole for the vouchers.
        let signed = p.authorize(&open).unwrap();
        signed.verify().unwrap();
        assert_eq!(p.spent(None).unwrap().0, Amount::ZERO);
        assert_eq!(p.authorize(&open).unwrap(), signed, "idempotent");
        let top_up = f.funding(
            ch,
            "10",
            ChannelFunding::TopUp {
                deposit: amount("60"),
            },
        );
        p.authorize(&top_up).unwrap();
        p.authorize(&f.voucher(ch, "1")).unwrap();
        assert_eq!(p.spent(None).unwrap().0, amount("1"));

        // A nonce that does not bind these terms (here another channel's) is refused: the
        // payee the policy counts must be the one the contract will pay.
        let mut swapped = f.funding(ch, "50", ChannelFunding::Open { expires_at: 100 });
        let Payment::ChannelFunding { authorization, .. } = &mut swapped else {
            unreachable!()
        };
        authorization.nonce = f.channel(PEER_B, 1).open_nonce(100);
        assert!(matches!(
            reason(p.authorize(&swapped).unwrap_err()),
            PolicyViolation::ChannelMismatch(_)
        ));
        let below = f.funding(
            ch,
            "10",
            ChannelFunding::TopUp {
                deposit: amount("5"),
            },
        );
        assert!(matches!(
            reason(p.authorize(&below).unwrap_err()),
            PolicyViolation::ChannelMismatch(_)
        ));
        // Lists apply to the channel's payee.
        let denied = f.funding(
            f.channel(PEER_B, 1),
            "5",
            ChannelFunding::Open { expires_at: 99 },
        );
        assert_eq!(
            reason(p.authorize(&denied).unwrap_err()),
            PolicyViolation::Denied
        );
        let zero = f.funding(
            f.channel(PEER_A, 3),
            "0",
            ChannelFunding::Open { expires_at: 9 },
        );
        assert_eq!(
            reason(p.authorize(&zero).unwrap_err()),
            PolicyViolation::Zero
        );
    }

    #[test]
    fn vouchers_are_refused_outside_the_policy() {
        let w = Wallet::random();
        let v = Voucher {
            channel_id: B256([1; 32]),
            cumulative_amount: Amount::ONE,
        };
        assert!(matches!(
            w.sign_typed(&Voucher::domain(1, CHANNELS), &v),
            Err(Error::PaymentOutsidePolicy(t)) if t == "Voucher"
        ));
    }

    /// Regression: a channel deposit counted nothing at all, so one funding could lock
    /// any amount whatever the per-deal limit.
    #[test]
    fn channel_funding_counts_against_the_per_deal_limit() {
        let f = Fixture::new();
        let p = f.policy(Limits {
            per_deal: Some(amount("1")),
            ..Limits::default()
        });
        let open = f.funding(
            f.channel(PEER_A, 1),
            "50",
            ChannelFunding::Open { expires_at: 99 },
        );
        assert_eq!(
            reason(p.authorize(&open).unwrap_err()),
            PolicyViolation::PerDeal { limit: amount("1") }
        );
        let small = f.funding(
            f.channel(PEER_A, 2),
            "1",
            ChannelFunding::Open { expires_at: 99 },
        );
        p.authorize(&small).unwrap();
    }

    /// Regression: any token domain was signed in, so a peer could name another token,
    /// chain or EIP-712 version and have the wallet authorize a transfer there.
    #[test]
    fn token_payments_only_in_a_pinned_domain() {
        let f = Fixture::new();
        let p = f.policy(Limits::default());
        p.authorize(&f.payment(PEER_A, "1")).unwrap();
        let elsewhere = [
            Eip712Domain::new("USD Coin", "2", 1, Address([7; 20])),
            Eip712Domain::new("USD Coin", "2", 31337, Address([8; 20])),
            Eip712Domain::new("USDC", "2", 31337, Address([7; 20])),
            Eip712Domain::new("USD Coin", "1", 31337, Address([7; 20])),
        ];
        for domain in elsewhere {
            let mut pay = f.payment(PEER_A, "1");
            let Payment::Authorization { domain: d, .. } = &mut pay else {
                unreachable!()
            };
            *d = domain;
            assert!(matches!(
                reason(p.authorize(&pay).unwrap_err()),
                PolicyViolation::UnpinnedToken(_)
            ));
        }
        // A policy pinned to nothing signs no token payment.
        let bare = Fixture::new();
        assert!(matches!(
            reason(
                bare.bare_policy(Limits::default())
                    .authorize(&bare.payment(PEER_A, "1"))
                    .unwrap_err()
            ),
            PolicyViolation::UnpinnedToken(_)
        ));
    }

    impl Fixture {
        fn escrow(&self, spender: Address, seller: Address, value: &str) -> Payment {
            Payment::EscrowDeposit {
                domain: token(),
                permit: crate::Permit {
                    owner: self.wallet.address(),
                    spender,
                    value: amount(value),
                    nonce: 0,
                    deadline: u64::MAX,
                },
                seller,
                job_id: B256::random(),
            }
        }
    }

    /// Regression: an escrow deposit was counted against its unsigned `seller` field,
    /// so a permit whose spender was anyone (an attacker's contract or account) passed
    /// as a payment to an allowed seller.
    #[test]
    fn escrow_permits_only_for_a_trusted_escrow_counted_by_spender() {
        let f = Fixture::new();
        let p = f.policy(Limits {
            allow: Some([PEER_A].into()),
            per_peer_daily: Some(amount("3")),
            ..Limits::default()
        });
        // The spender is the attacker, the declared seller an allowed peer.
        assert_eq!(
            reason(p.authorize(&f.escrow(PEER_B, PEER_A, "1")).unwrap_err()),
            PolicyViolation::UntrustedEscrowContract(PEER_B)
        );
        let signed = p.authorize(&f.escrow(ESCROW, PEER_A, "2")).unwrap();
        assert_eq!(signed.payment.payee(), ESCROW);
        assert_eq!(signed.payment.beneficiary(), PEER_A);
        assert_eq!(p.spent(Some(ESCROW)).unwrap().1, Some(amount("2")));
        // The declared seller is still held to the allow-list.
        assert_eq!(
            reason(p.authorize(&f.escrow(ESCROW, PEER_B, "1")).unwrap_err()),
            PolicyViolation::NotAllowed
        );
        // And the per-peer limit applies to what the escrow holds.
        assert!(matches!(
            reason(p.authorize(&f.escrow(ESCROW, PEER_A, "2")).unwrap_err()),
            PolicyViolation::PerPeer { .. }
        ));
    }

    #[test]
    fn vouchers_only_in_a_trusted_channel_contract() {
        let f = Fixture::new();
        let p = f.bare_policy(Limits::default()).pin_token(token());
        assert_eq!(
            reason(
                p.authorize(&f.voucher(f.channel(PEER_A, 1), "1"))
                    .unwrap_err()
            ),
            PolicyViolation::UntrustedChannelContract(CHANNELS)
        );
    }

    #[test]
    fn validity_window_and_recurrence() {
        let f = Fixture::new();
        let now = f.now.load(Ordering::SeqCst);
        let p = f.policy(Limits {
            valid_from: Some(now + 10),
            valid_until: Some(now + 100),
            max_payments_daily: Some(2),
            ..Limits::default()
        });
        assert_eq!(
            reason(p.authorize(&f.payment(PEER_A, "1")).unwrap_err()),
            PolicyViolation::NotYetValid {
                valid_from: now + 10,
                now
            }
        );
        f.now.store(now + 10, Ordering::SeqCst);
        p.authorize(&f.payment(PEER_A, "1")).unwrap();
        let again = f.payment(PEER_A, "1");
        p.authorize(&again).unwrap();
        // A retry of a signed payment is no new payment.
        p.authorize(&again).unwrap();
        assert_eq!(
            reason(p.authorize(&f.payment(PEER_B, "1")).unwrap_err()),
            PolicyViolation::Recurrence {
                limit: 2,
                would_be: 3
            }
        );
        f.now.store(now + 101, Ordering::SeqCst);
        assert_eq!(
            reason(p.authorize(&f.payment(PEER_A, "1")).unwrap_err()),
            PolicyViolation::Expired {
                valid_until: now + 100,
                now: now + 101
            }
        );
    }

    #[test]
    fn pinned_contracts_are_guarded_in_the_wallet() {
        let f = Fixture::new();
        let _p = f.policy(Limits::default());
        for contract in [Address([7; 20]), CHANNELS, ESCROW] {
            assert!(f.wallet.is_guarded(contract), "{contract}");
        }
    }
}
