//! Negotiation strategies: how far each side concedes.
//!
//! Strategies only decide prices and choices; they never sign. The buyer's spending
//! policy stays the final gate below any strategy (or any model advising it).

use std::time::Duration;

use wallets::Amount;

use super::messages::{CallForProposal, Proposal};

/// How a buyer negotiates.
pub trait BuyerStrategy: Send + Sync + 'static {
    /// The most this buyer pays for a task whose caller allows `max_price`; never
    /// above `max_price` (the buyer clamps it).
    fn reservation_price(&self, max_price: Amount) -> Amount {
        max_price
    }

    /// How many sellers receive the call for proposals.
    fn max_sellers(&self) -> usize {
        3
    }

    /// How long to wait for proposals.
    fn proposal_window(&self) -> Duration {
        Duration::from_secs(10)
    }

    /// How long the whole deal may take: the deadline of the call.
    fn deal_time(&self) -> Duration {
        Duration::from_secs(600)
    }

    /// Counter rounds at most.
    fn max_rounds(&self) -> u32 {
        2
    }

    /// Picks one of `proposals` (all valid and within the reservation price), or
    /// none. By default the cheapest, the first of equals.
    fn choose(&self, proposals: &[Proposal]) -> Option<usize> {
        proposals
            .iter()
            .enumerate()
            .min_by_key(|(i, p)| (p.agreement.price, *i))
            .map(|(i, _)| i)
    }

    /// The counter-offer of round `round` (from 1) to an asked price of `ask`, or
    /// `None` to accept `ask`.
    fn counter(&self, round: u32, ask: Amount, reservation: Amount) -> Option<Amount>;
}

/// Starts `discount_percent` below the ask and concedes linearly over the rounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultBuyerStrategy {
    /// How far below the ask the first counter goes, in percent.
    pub discount_percent: u8,
    /// Counter rounds.
    pub rounds: u32,
    /// Sellers to call.
    pub sellers: usize,
    /// Wait for proposals.
    pub window: Duration,
}

impl Default for DefaultBuyerStrategy {
    fn default() -> Self {
        Self {
            discount_percent: 20,
            rounds: 2,
            sellers: 3,
            window: Duration::from_secs(10),
        }
    }
}

impl BuyerStrategy for DefaultBuyerStrategy {
    fn max_sellers(&self) -> usize {
        self.sellers
    }

    fn proposal_window(&self) -> Duration {
        self.window
    }

    fn max_rounds(&self) -> u32 {
        self.rounds
    }

    fn counter(&self, round: u32, ask: Amount, reservation: Amount) -> Option<Amount> {
        if round == 0 || round > self.rounds || self.discount_percent == 0 {
            return None;
        }
        // Round r of R asks for discount * (R - r + 1) / R percent off.
        let left = u128::from(self.rounds - round + 1);
        let off = ask
            .base_units()
            .saturating_mul(u128::from(self.discount_percent.min(100)))
            .saturating_mul(left)
            / (100 * u128::from(self.rounds));
        let offer = Amount::from_base_units(ask.base_units().saturating_sub(off)).min(reservation);
        (offer < ask).then_some(offer)
    }
}

/// How a seller prices.
pub trait SellerStrategy: Send + Sync + 'static {
    /// The opening price for `call`, or `None` to decline it.
    fn open(&self, call: &CallForProposal) -> Option<Amount>;

    /// The revised price after the buyer countered `counter` in round `round`
    /// against the current price `current`. At most `current`.
    fn respond(&self, round: u32, current: Amount, counter: Amount) -> Amount;

    /// How long an offer stands.
    fn offer_validity(&self) -> Duration {
        Duration::from_secs(120)
    }
}

/// A list price, a floor it never goes below, and a concession of
/// `concession_percent` of the gap to the floor per counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultSellerStrategy {
    /// The opening price.
    pub list: Amount,
    /// The lowest price.
    pub floor: Amount,
    /// How much of the gap between the current price and the floor one counter
    /// wins, in percent.
    pub concession_percent: u8,
}

impl DefaultSellerStrategy {
    /// Sells at `list`, down to `floor`, conceding half the gap per counter.
    pub fn new(list: Amount, floor: Amount) -> Self {
        Self {
            list,
            floor: floor.min(list),
            concession_percent: 50,
        }
    }

    /// A fixed price: no concession.
    pub fn fixed(price: Amount) -> Self {
        Self::new(price, price)
    }
}

impl SellerStrategy for DefaultSellerStrategy {
    /// Declines a call whose maximum is below the floor; otherwise asks the list
    /// price, or the buyer's maximum when that is lower.
    fn open(&self, call: &CallForProposal) -> Option<Amount> {
        (self.floor <= call.max_price).then(|| self.list.min(call.max_price).max(self.floor))
    }

    fn respond(&self, _round: u32, current: Amount, counter: Amount) -> Amount {
        if counter >= current {
            return current;
        }
        let gap = current.base_units().saturating_sub(self.floor.base_units());
        let conceded = current
            .base_units()
            .saturating_sub(gap.saturating_mul(u128::from(self.concession_percent.min(100))) / 100);
        Amount::from_base_units(conceded)
            .max(counter)
            .max(self.floor)
            .min(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usdc(s: &str) -> Amount {
        format!("{s} USDC").parse().unwrap()
    }

    #[test]
    fn the_default_buyer_concedes_over_rounds_and_stays_under_its_reservation() {
        let s = DefaultBuyerStrategy::default();
        assert_eq!(s.counter(1, usdc("10"), usdc("20")), Some(usdc("8")));
        assert_eq!(s.counter(2, usdc("10"), usdc("20")), Some(usdc("9")));
        assert_eq!(s.counter(3, usdc("10"), usdc("20")), None);
        assert_eq!(s.counter(1, usdc("10"), usdc("7")), Some(usdc("7")));
    }

    #[test]
    fn the_default_seller_meets_halfway_and_never_goes_below_its_floor() {
        let s = DefaultSellerStrategy::new(usdc("4"), usdc("3"));
        assert_eq!(s.respond(1, usdc("4"), usdc("3.2")), usdc("3.5"));
        assert_eq!(s.respond(1, usdc("4"), usdc("1")), usdc("3.5"));
        assert_eq!(s.respond(2, usdc("3.5"), usdc("3.6")), usdc("3.5"));
        assert_eq!(s.respond(2, usdc("3.5"), usdc("3.4")), usdc("3.4"));
        let fixed = DefaultSellerStrategy::fixed(usdc("2"));
        assert_eq!(fixed.respond(1, usdc("2"), usdc("1")), usdc("2"));
    }

    #[test]
    fn the_default_seller_declines_calls_below_its_floor() {
        let s = DefaultSellerStrategy::new(usdc("9"), usdc("8"));
        let mut call = CallForProposal {
            task: "x".into(),
            kind: "k".into(),
            max_price: usdc("5"),
            deadline: 0,
            modes: vec![],
            token: wallets::Address::ZERO,
        };
        assert_eq!(s.open(&call), None);
        call.max_price = usdc("8.5");
        assert_eq!(s.open(&call), Some(usdc("8.5")));
    }
}
