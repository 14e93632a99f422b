//! Principals and their mandates: on whose behalf an agent may spend.
//!
//! Every payment an agent makes is for a principal: an address its owner listed, with
//! a [`Mandate`] in the shape of an AP2 intent mandate (which skills, most per
//! request, a budget per rolling day, a validity window). A request from anyone else
//! spends nothing, and the most a request may spend comes from the mandate, never
//! from the request.
//!
//! [`Mandates::commission`] checks a request against its principal's mandate and
//! reserves the most it may spend, on disk, before any money moves;
//! [`Mandates::settle`] replaces the reservation with what was spent. A crash in
//! between keeps the reservation, so a principal's budget can be under-used after a
//! crash but never overspent. The spending policy still caps every payment below
//! this ([`crate::SpendingPolicy`]).
//!
//! ```
//! use std::collections::BTreeMap;
//! use wallets::{Address, Mandate, Mandates};
//!
//! let dir = tempfile::tempdir()?;
//! let owner: Address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".parse()?;
//! let mandate = Mandate {
//!     skills: ["travel.Plan".to_owned()].into(),
//!     max_per_request: "2 USDC".parse()?,
//!     daily: Some("3 USDC".parse()?),
//!     valid_from: None,
//!     valid_until: None,
//! };
//! let mandates = Mandates::open(dir.path().join("mandates"), BTreeMap::from([(owner, mandate)]))?;
//!
//! let first = mandates.commission(owner, "travel.Plan", "request-1")?;
//! assert_eq!(first.max_price(), "2 USDC".parse()?);
//! mandates.settle(&first, "0.95 USDC".parse()?)?;
//! // 2.05 of the day's 3 USDC are left: the next request reserves its 2 USDC, and
//! // the one after it may spend only what remains.
//! let second = mandates.commission(owner, "travel.Plan", "request-2")?;
//! assert_eq!(second.max_price(), "2 USDC".parse()?);
//! let third = mandates.commission(owner, "travel.Plan", "request-3")?;
//! assert_eq!(third.max_price(), "0.05 USDC".parse()?);
//! // Anyone else, or another skill, gets nothing.
//! assert!(mandates.commission(Address([9; 20]), "travel.Plan", "request-4").is_err());
//! assert!(mandates.commission(owner, "llm.complete", "request-5").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::policy::{decode, encode};
use crate::{Address, Amount, Error, Result, WINDOW_SECS};

/// What a principal allows an agent to spend on its behalf (the shape of an AP2
/// intent mandate).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mandate {
    /// The skills (request kinds, e.g. `travel.Plan`) the principal may commission.
    pub skills: BTreeSet<String>,
    /// The most one request may spend.
    pub max_per_request: Amount,
    /// The most all of the principal's requests may spend in any rolling 24 hours.
    #[serde(default)]
    pub daily: Option<Amount>,
    /// Unix seconds from which the mandate holds.
    #[serde(default)]
    pub valid_from: Option<u64>,
    /// Unix seconds after which the mandate no longer holds.
    #[serde(default)]
    pub valid_until: Option<u64>,
}

/// Why a request was refused under [`Mandates::commission`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MandateViolation {
    /// The sender is not a principal of this agent.
    #[error("{0} is not a principal of this agent; it may not commission paid work")]
    NotAPrincipal(Address),
    /// The principal's mandate does not cover the skill.
    #[error("the mandate does not cover {0}")]
    Skill(String),
    /// Before the mandate's validity window.
    #[error("the mandate holds from {valid_from} (unix seconds), it is {now}")]
    NotYetValid {
        /// When it starts to hold.
        valid_from: u64,
        /// The clock.
        now: u64,
    },
    /// After the mandate's validity window.
    #[error("the mandate expired at {valid_until} (unix seconds), it is {now}")]
    Expired {
        /// When it stopped holding.
        valid_until: u64,
        /// The clock.
        now: u64,
    },
    /// The principal's daily budget is spent or reserved.
    #[error("the daily budget of {daily} is used up ({used} spent or reserved in the last 24h)")]
    Budget {
        /// The mandate's budget.
        daily: Amount,
        /// What is spent or reserved.
        used: Amount,
    },
    /// The request id was used before.
    #[error("request {0:?} was commissioned before")]
    Reused(String),
}

/// A request commissioned under a mandate: the most it may spend, reserved against the
/// principal's budget until [`Mandates::settle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commission {
    principal: Address,
    key: Vec<u8>,
    max_price: Amount,
}

impl Commission {
    /// The principal the work is for.
    pub fn principal(&self) -> Address {
        self.principal
    }

    /// The most the request may spend: the mandate's per-request maximum, or what is
    /// left of its daily budget if that is less.
    pub fn max_price(&self) -> Amount {
        self.max_price
    }
}

/// A spend or reservation in the ledger.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    principal: Address,
    amount: Amount,
}

type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The principals of an agent with their mandates, and a ledger (sled) of what each
/// one's requests spent.
pub struct Mandates {
    mandates: BTreeMap<Address, Mandate>,
    path: PathBuf,
    db: sled::Db,
    /// big-endian time ‖ request id → [`Entry`].
    ledger: sled::Tree,
    /// request id → ledger key.
    requests: sled::Tree,
    clock: Clock,
    /// Serialises check-then-reserve.
    gate: Mutex<()>,
}

impl Mandates {
    /// Opens (or creates) the ledger at `path` for `mandates`.
    ///
    /// # Errors
    /// [`Error::Storage`] if the database cannot be opened.
    pub fn open(path: impl AsRef<Path>, mandates: BTreeMap<Address, Mandate>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let db = crate::store::open(&path).map_err(|e| Error::storage(&path, e))?;
        let ledger = db
            .open_tree("ledger")
            .map_err(|e| Error::storage(&path, e))?;
        let requests = db
            .open_tree("requests")
            .map_err(|e| Error::storage(&path, e))?;
        Ok(Self {
            mandates,
            path,
            db,
            ledger,
            requests,
            clock: Arc::new(crate::policy::unix_now),
            gate: Mutex::new(()),
        })
    }

    /// Replaces the clock (unix seconds); for tests and simulations.
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The mandate of `principal`, if it is one.
    pub fn mandate(&self, principal: Address) -> Option<&Mandate> {
        self.mandates.get(&principal)
    }

    /// Checks that `principal` may commission `skill` now and reserves the most the
    /// request `request_id` may spend, durably, against its daily budget.
    ///
    /// # Errors
    /// [`Error::MandateRefused`] naming the rule, [`Error::Storage`] if the
    /// reservation cannot be made durable (then nothing may be spent).
    pub fn commission(
        &self,
        principal: Address,
        skill: &str,
        request_id: &str,
    ) -> Result<Commission> {
        let refuse = |reason| Error::MandateRefused { principal, reason };
        let mandate = self
            .mandates
            .get(&principal)
            .ok_or_else(|| refuse(MandateViolation::NotAPrincipal(principal)))?;
        if !mandate.skills.contains(skill) {
            return Err(refuse(MandateViolation::Skill(skill.to_owned())));
        }
        let now = (self.clock)();
        match (mandate.valid_from, mandate.valid_until) {
            (Some(valid_from), _) if now < valid_from => {
                return Err(refuse(MandateViolation::NotYetValid { valid_from, now }))
            }
            (_, Some(valid_until)) if now > valid_until => {
                return Err(refuse(MandateViolation::Expired { valid_until, now }))
            }
            _ => {}
        }
        let _gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        if self.requests_get(request_id)?.is_some() {
            return Err(refuse(MandateViolation::Reused(request_id.to_owned())));
        }
        let mut max_price = mandate.max_per_request;
        if let Some(daily) = mandate.daily {
            let used = self.used(principal, now)?;
            let left = daily.checked_sub(used).unwrap_or(Amount::ZERO);
            if left.is_zero() {
                return Err(refuse(MandateViolation::Budget { daily, used }));
            }
            max_price = max_price.min(left);
        }
        let mut key = now.to_be_bytes().to_vec();
        key.extend_from_slice(request_id.as_bytes());
        self.write(&key, request_id, principal, max_price)?;
        Ok(Commission {
            principal,
            key,
            max_price,
        })
    }

    /// Records what the commissioned request spent (at most its reservation), freeing
    /// the rest of the reservation.
    ///
    /// # Errors
    /// [`Error::AmountOverflow`] if `spent` is above the reservation (then the
    /// reservation stays), [`Error::Storage`].
    pub fn settle(&self, commission: &Commission, spent: Amount) -> Result<()> {
        if spent > commission.max_price {
            return Err(Error::AmountOverflow(
                "a commissioned request spent more than its reservation",
            ));
        }
        let request_id = String::from_utf8_lossy(commission.key.get(8..).unwrap_or_default());
        let _gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        self.write(&commission.key, &request_id, commission.principal, spent)
    }

    /// What `principal`'s requests spent or reserved in the rolling window ending at `now`.
    fn used(&self, principal: Address, now: u64) -> Result<Amount> {
        let start = now.saturating_sub(WINDOW_SECS - 1);
        let mut used = Amount::ZERO;
        for item in self.ledger.range(start.to_be_bytes()..) {
            let (_, value) = item.map_err(|e| Error::storage(&self.path, e))?;
            let entry: Entry = decode(&self.path, &value)?;
            if entry.principal == principal {
                used = used.checked_add(entry.amount)?;
            }
        }
        Ok(used)
    }

    fn requests_get(&self, request_id: &str) -> Result<Option<sled::IVec>> {
        self.requests
            .get(request_id.as_bytes())
            .map_err(|e| Error::storage(&self.path, e))
    }

    fn write(
        &self,
        key: &[u8],
        request_id: &str,
        principal: Address,
        amount: Amount,
    ) -> Result<()> {
        let entry = encode(&Entry { principal, amount })?;
        self.ledger
            .insert(key, entry)
            .and_then(|_| self.requests.insert(request_id.as_bytes(), key))
            .and_then(|_| self.db.flush())
            .map(drop)
            .map_err(|e| Error::storage(&self.path, e))
    }
}

impl fmt::Debug for Mandates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mandates")
            .field("principals", &self.mandates.keys().collect::<Vec<_>>())
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    const OWNER: Address = Address([0x0a; 20]);

    fn usdc(s: &str) -> Amount {
        format!("{s} USDC").parse().unwrap()
    }

    fn mandates(dir: &Path, now: Arc<AtomicU64>, mandate: Mandate) -> Mandates {
        Mandates::open(dir.join("m"), BTreeMap::from([(OWNER, mandate)]))
            .unwrap()
            .with_clock(move || now.load(Ordering::SeqCst))
    }

    fn plan_mandate() -> Mandate {
        Mandate {
            skills: ["travel.Plan".to_owned()].into(),
            max_per_request: usdc("2"),
            daily: Some(usdc("5")),
            valid_from: Some(1_000),
            valid_until: Some(1_000_000),
        }
    }

    fn violation(e: Error) -> MandateViolation {
        match e {
            Error::MandateRefused { reason, .. } => reason,
            other => panic!("expected a mandate refusal, got {other}"),
        }
    }

    #[test]
    fn budget_window_and_reservations_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicU64::new(999));
        let m = mandates(dir.path(), now.clone(), plan_mandate());
        assert_eq!(
            violation(m.commission(OWNER, "travel.Plan", "r0").unwrap_err()),
            MandateViolation::NotYetValid {
                valid_from: 1_000,
                now: 999
            }
        );
        now.store(2_000, Ordering::SeqCst);
        let a = m.commission(OWNER, "travel.Plan", "r1").unwrap();
        let b = m.commission(OWNER, "travel.Plan", "r2").unwrap();
        assert_eq!((a.max_price(), b.max_price()), (usdc("2"), usdc("2")));
        m.settle(&a, usdc("0.5")).unwrap();
        // b is still reserved in full (a crash here keeps it reserved).
        drop(m);
        let m = mandates(dir.path(), now.clone(), plan_mandate());
        let c = m.commission(OWNER, "travel.Plan", "r3").unwrap();
        assert_eq!(c.max_price(), usdc("2"));
        let d = m.commission(OWNER, "travel.Plan", "r4").unwrap();
        assert_eq!(d.max_price(), usdc("0.5"));
        assert!(matches!(
            violation(m.commission(OWNER, "travel.Plan", "r5").unwrap_err()),
            MandateViolation::Budget { .. }
        ));
        assert_eq!(
            violation(m.commission(OWNER, "travel.Plan", "r1").unwrap_err()),
            MandateViolation::Reused("r1".into())
        );
        assert!(m.settle(&d, usdc("0.6")).is_err(), "more than reserved");
        // A day later the budget is whole again.
        now.store(2_000 + WINDOW_SECS, Ordering::SeqCst);
        assert_eq!(
            m.commission(OWNER, "travel.Plan", "r6")
                .unwrap()
                .max_price(),
            usdc("2")
        );
        now.store(1_000_001, Ordering::SeqCst);
        assert!(matches!(
            violation(m.commission(OWNER, "travel.Plan", "r7").unwrap_err()),
            MandateViolation::Expired { .. }
        ));
    }

    #[test]
    fn strangers_and_other_skills_get_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let m = mandates(dir.path(), Arc::new(AtomicU64::new(5_000)), plan_mandate());
        let stranger = Address([0x0b; 20]);
        assert_eq!(
            violation(m.commission(stranger, "travel.Plan", "r").unwrap_err()),
            MandateViolation::NotAPrincipal(stranger)
        );
        assert_eq!(
            violation(m.commission(OWNER, "llm.complete", "r").unwrap_err()),
            MandateViolation::Skill("llm.complete".into())
        );
    }
}
