//! Wall-clock time, injectable: a host reads it from its [`Clock`].
//!
//! agent-core measures two kinds of time, through two different clocks:
//!
//! - **Wall-clock facts** go through the host's [`Clock`]
//!   ([`HostConfig::clock`](crate::HostConfig::clock)): the expiry stamped on an
//!   outgoing message, whether an incoming one has expired or expires beyond the
//!   host's maximum TTL, which replay records may be pruned, when a dialogue's state
//!   was last written, and whatever a skill asks [`Context::clock`](crate::Context::clock)
//!   (a negotiation's deadline, say). A test gives the host a [`ManualClock`] and
//!   moves time by [`ManualClock::advance`] instead of sleeping.
//! - **Elapsed-time waits** are tokio (and actix) timers on the monotonic clock, and
//!   a manual clock does not move them: how long an ask waits for its answer,
//!   connect and handshake timeouts, reconnect backoff, the edge's rate-limit
//!   period and timeout, and how often an agent prunes its replay records (what it
//!   prunes is decided by the [`Clock`]).
//!
//! One deliberate exception: an agent's first message sequence is seeded from the
//! system clock in nanoseconds, so that an agent restarted from its store never
//! reuses a sequence. It is a counter's seed, not a time anyone reads, and it must
//! grow across restarts even while a manual clock stands still.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use agent_core::clock::{Clock, ManualClock};
//!
//! let manual = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
//! let clock: Clock = manual.clock();
//! assert_eq!(clock.unix_secs(), 1_700_000_000);
//! manual.advance(Duration::from_millis(1_500));
//! assert_eq!(clock.unix_ms(), 1_700_000_001_500);
//! assert!(Clock::system().unix_secs() > 1_700_000_000);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where a host reads the wall-clock time: the system clock (the default) or a
/// [`ManualClock`]. Cheap to clone; clones read the same time.
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicU64>>,
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::System"),
            Some(nanos) => write!(f, "Clock::Manual({} ns)", nanos.load(Ordering::Acquire)),
        }
    }
}

/// `t` in nanoseconds since the Unix epoch: 0 before it, saturating after 2554.
fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// Now.
    pub fn now(&self) -> SystemTime {
        match &self.manual {
            None => SystemTime::now(),
            Some(nanos) => UNIX_EPOCH + Duration::from_nanos(nanos.load(Ordering::Acquire)),
        }
    }

    /// Now, in milliseconds since the Unix epoch (0 before it). Envelope expiries
    /// are in these units.
    pub fn unix_ms(&self) -> u64 {
        match &self.manual {
            None => u64::try_from(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis(),
            )
            .unwrap_or(u64::MAX),
            Some(nanos) => nanos.load(Ordering::Acquire) / 1_000_000,
        }
    }

    /// Now, in whole seconds since the Unix epoch (0 before it): the unit of
    /// on-chain deadlines and of the wallets' spending-policy clock
    /// (`SpendingPolicy::with_clock(move || clock.unix_secs())`).
    pub fn unix_secs(&self) -> u64 {
        self.unix_ms() / 1_000
    }
}

/// A clock that stands still until told to move, for tests and simulations. Clones
/// (and the [`Clock`]s made from it) share its time.
#[derive(Clone)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("unix_nanos", &self.nanos.load(Ordering::Acquire))
            .finish()
    }
}

impl ManualClock {
    /// A clock standing at `start` (a time before the Unix epoch counts as the epoch).
    pub fn new(start: SystemTime) -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(unix_nanos(start))),
        }
    }

    /// The [`Clock`] to give a host: it reads this clock's time.
    pub fn clock(&self) -> Clock {
        Clock {
            manual: Some(self.nanos.clone()),
        }
    }

    /// Its time.
    pub fn now(&self) -> SystemTime {
        self.clock().now()
    }

    /// Moves the clock forward by `by` (saturating, far beyond any test's needs).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // An update that cannot fail: the closure always returns Some.
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(by))
            });
    }

    /// Sets the clock to `t`, forward or back.
    pub fn set(&self, t: SystemTime) {
        self.nanos.store(unix_nanos(t), Ordering::Release);
    }
}

impl From<ManualClock> for Clock {
    fn from(manual: ManualClock) -> Self {
        manual.clock()
    }
}

impl From<&ManualClock> for Clock {
    fn from(manual: &ManualClock) -> Self {
        manual.clock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_clones_share_its_time() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000);
        let manual = ManualClock::new(start);
        let clock = manual.clock();
        let twin = clock.clone();
        assert_eq!(clock.now(), start);
        assert_eq!((clock.unix_ms(), clock.unix_secs()), (1_000_000, 1_000));
        manual.advance(Duration::from_millis(2_500));
        assert_eq!(twin.unix_ms(), 1_002_500);
        assert_eq!(twin.unix_secs(), 1_002);
        manual.clone().set(UNIX_EPOCH + Duration::from_secs(10));
        assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(10));
        assert_eq!(Clock::from(&manual).unix_secs(), 10);
    }

    #[test]
    fn times_outside_the_unix_range_saturate() {
        let manual = ManualClock::new(UNIX_EPOCH - Duration::from_secs(5));
        assert_eq!(manual.clock().unix_ms(), 0);
        manual.advance(Duration::MAX);
        assert_eq!(manual.clock().unix_ms(), u64::MAX / 1_000_000);
    }

    #[test]
    fn the_system_clock_reads_the_system_time() {
        let before = SystemTime::now();
        let read = Clock::system().now();
        assert!(read >= before);
        assert!(Clock::system().unix_ms() >= unix_nanos(before) / 1_000_000);
        assert_eq!(format!("{:?}", Clock::default()), "Clock::System");
    }
}
