//! The order lifecycle: one state machine for every way an order moves.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where an order is in its lifecycle.
///
/// `pending` (stored, priced) -> `processing` (a worker claimed it) ->
/// `fulfilled` (the policy said ship) -> `shipped` -> `delivered`. A policy may
/// hold (`on_hold`, released back to `processing`) or reject (`cancelled`).
/// `cancelled` is reachable from every state before `shipped`; `delivered`
/// and `cancelled` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Processing,
    OnHold,
    Fulfilled,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [OrderStatus; 7] = [
        Self::Pending,
        Self::Processing,
        Self::OnHold,
        Self::Fulfilled,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
    ];

    /// The name stored in the database and used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::OnHold => "on_hold",
            Self::Fulfilled => "fulfilled",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a stored or submitted name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// The states this one may move to.
    pub fn successors(self) -> &'static [OrderStatus] {
        use OrderStatus::*;
        match self {
            Pending => &[Processing, Cancelled],
            Processing => &[Fulfilled, OnHold, Cancelled],
            OnHold => &[Processing, Cancelled],
            Fulfilled => &[Shipped, Cancelled],
            Shipped => &[Delivered],
            Delivered | Cancelled => &[],
        }
    }

    /// Whether `self -> next` is a legal transition.
    pub fn can_become(self, next: OrderStatus) -> bool {
        self.successors().contains(&next)
    }

    /// Whether `self -> next` is fulfillment's own move: a worker taking the
    /// order (`pending -> processing`) or applying its policy's decision
    /// (`processing -> fulfilled | on_hold`). Made by hand, such a move would
    /// leave an order in `processing` with no job behind it, or decided with
    /// no decision recorded.
    pub fn is_fulfillment_move(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!((self, next), (Pending, Processing) | (Processing, Fulfilled | OnHold))
    }

    /// Whether a client or operator may move an order from `self` to `next`
    /// (a `PATCH`): the state machine allows it and it is not fulfillment's.
    pub fn can_become_by_hand(self, next: OrderStatus) -> bool {
        self.can_become(next) && !self.is_fulfillment_move(next)
    }

    /// The states a client or operator may move an order to from this one.
    pub fn successors_by_hand(self) -> Vec<OrderStatus> {
        self.successors().iter().copied().filter(|next| !self.is_fulfillment_move(*next)).collect()
    }

    /// Whether no transition leaves this state.
    pub fn is_terminal(self) -> bool {
        self.successors().is_empty()
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::{self, *};

    #[test]
    fn fulfillment_moves_are_not_made_by_hand() {
        assert!(!Pending.can_become_by_hand(Processing));
        assert!(!Processing.can_become_by_hand(Fulfilled));
        assert!(!Processing.can_become_by_hand(OnHold));
        // Releasing a hold, cancelling and moving a decided order along are.
        assert!(OnHold.can_become_by_hand(Processing));
        assert!(Processing.can_become_by_hand(Cancelled));
        assert!(Fulfilled.can_become_by_hand(Shipped));
        assert_eq!(Processing.successors_by_hand(), vec![Cancelled]);
        assert_eq!(Pending.successors_by_hand(), vec![Cancelled]);
        assert!(!Delivered.can_become_by_hand(Cancelled));
    }

    #[test]
    fn names_round_trip() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert_eq!(OrderStatus::parse("confirmed"), None);
    }

    #[test]
    fn the_happy_path_is_legal_and_one_way() {
        let path = [Pending, Processing, Fulfilled, Shipped, Delivered];
        for pair in path.windows(2) {
            assert!(pair[0].can_become(pair[1]), "{} -> {}", pair[0], pair[1]);
            assert!(!pair[1].can_become(pair[0]), "{} -> {}", pair[1], pair[0]);
        }
    }

    #[test]
    fn cancel_is_possible_only_before_shipping() {
        for status in OrderStatus::ALL {
            let before_shipping = matches!(status, Pending | Processing | OnHold | Fulfilled);
            assert_eq!(status.can_become(Cancelled), before_shipping, "{status}");
        }
    }

    #[test]
    fn holds_are_released_to_processing_and_terminal_states_stay() {
        assert!(OnHold.can_become(Processing));
        assert!(!OnHold.can_become(Fulfilled));
        assert!(Delivered.is_terminal() && Cancelled.is_terminal());
        assert!(!Pending.can_become(Pending));
    }
}
