//! Who a verified token speaks for, and what it may do.

use std::fmt;

/// A permission a token's `scope` claim grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Place orders for oneself; read, list and watch one's own orders.
    Orders,
    /// Act for any user: their orders, `user_id` in a body, status changes.
    OrdersAll,
    /// Create and change products.
    CatalogWrite,
    /// The admin API.
    Admin,
}

impl Scope {
    /// Every scope, in the order the docs list them.
    pub const ALL: [Scope; 4] = [Scope::Orders, Scope::OrdersAll, Scope::CatalogWrite, Scope::Admin];

    /// Its name in a `scope` claim.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Orders => "orders",
            Scope::OrdersAll => "orders:all",
            Scope::CatalogWrite => "catalog:write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.name() == name)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of scopes. Names the service does not know are left out: they
/// grant nothing here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    /// The scopes of a space-separated `scope` claim (RFC 8693 §4.2).
    pub fn parse(claim: &str) -> Self {
        Self::of(claim.split(' ').filter_map(Scope::parse))
    }

    pub fn of(scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self(scopes.into_iter().fold(0, |bits, scope| bits | scope.bit()))
    }

    pub fn all() -> Self {
        Self::of(Scope::ALL)
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// The claim's text: the names, space-separated.
    pub fn claim(self) -> String {
        Scope::ALL.into_iter().filter(|scope| self.contains(*scope)).map(Scope::name).collect::<Vec<_>>().join(" ")
    }
}

/// The caller a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `sub`: for a customer, the user id.
    pub subject: String,
    /// `client_id`, when the token names the client it was issued to.
    pub client_id: Option<String>,
    pub scopes: Scopes,
    /// `exp`, in seconds since the epoch.
    pub expires_at: u64,
}

/// Whose orders a caller may see and act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderAccess {
    /// Any user's (`orders:all`).
    AnyUser,
    /// Only this user's (`orders`, the subject a user id).
    User(i64),
}

impl OrderAccess {
    /// Whether an order of `user_id` is the caller's to see.
    pub fn covers(self, user_id: i64) -> bool {
        match self {
            OrderAccess::AnyUser => true,
            OrderAccess::User(own) => own == user_id,
        }
    }

    /// The user a listing is limited to: the one asked for, or for a
    /// customer, itself (naming another user is refused).
    pub fn listing(self, named: Option<i64>) -> Result<Option<i64>, AccessError> {
        match self {
            OrderAccess::AnyUser => Ok(named),
            OrderAccess::User(own) if named.is_none_or(|named| named == own) => Ok(Some(own)),
            OrderAccess::User(_) => Err(AccessError::OtherUser),
        }
    }

    /// The caller's own user, for a customer.
    pub fn own_user(self) -> Option<i64> {
        match self {
            OrderAccess::AnyUser => None,
            OrderAccess::User(own) => Some(own),
        }
    }

    /// Ok when the caller may act for `user_id`: place an order for it.
    pub fn act_for(self, user_id: i64) -> Result<(), AccessError> {
        if self.covers(user_id) { Ok(()) } else { Err(AccessError::OtherUser) }
    }
}

/// Why a verified caller may not do what it asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The token lacks the scope the action needs.
    #[error("this needs the `{0}` scope")]
    MissingScope(Scope),
    /// A customer's token names another user.
    #[error("a token with the `orders` scope acts only for its own user (its `sub`)")]
    OtherUser,
    /// `orders` was granted to a subject that is not a user id.
    #[error("the token's subject is not a user id, so it has no orders of its own")]
    NotAUser,
}

impl Principal {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(scope)
    }

    /// Ok when the token grants `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), AccessError> {
        if self.has(scope) { Ok(()) } else { Err(AccessError::MissingScope(scope)) }
    }

    /// The subject as the seeds' user id (a positive integer), if it is one.
    pub fn user_id(&self) -> Option<i64> {
        let plain = !self.subject.is_empty() && self.subject.bytes().all(|byte| byte.is_ascii_digit());
        self.subject.parse().ok().filter(|id| plain && *id > 0)
    }

    /// Whose orders this caller reaches: any user's with `orders:all`, its
    /// own with `orders`.
    pub fn order_access(&self) -> Result<OrderAccess, AccessError> {
        if self.has(Scope::OrdersAll) {
            return Ok(OrderAccess::AnyUser);
        }
        self.require(Scope::Orders)?;
        self.user_id().map(OrderAccess::User).ok_or(AccessError::NotAUser)
    }

    /// Who did it, for the registry's history and the log: the client a
    /// token was issued to, else its subject.
    pub fn actor(&self) -> &str {
        self.client_id.as_deref().unwrap_or(&self.subject)
    }

    /// `key` as this caller's own: one caller's key never meets another's.
    /// The digest of the length-prefixed subject and the key (no subject can
    /// forge another's prefix), 64 characters whatever their lengths, so a
    /// key of the full 255 characters still fits where keys are stored.
    pub fn scoped_key(&self, key: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut digest = Sha256::new();
        digest.update(format!("{}:{}:", self.subject.len(), self.subject));
        digest.update(key);
        hex::encode(digest.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(subject: &str, scopes: &str) -> Principal {
        Principal { subject: subject.into(), client_id: None, scopes: Scopes::parse(scopes), expires_at: 0 }
    }

    #[test]
    fn unknown_and_malformed_scope_names_grant_nothing() {
        let scopes = Scopes::parse("orders  ADMIN admin:all catalog:write,admin orders:all");
        assert!(scopes.contains(Scope::Orders) && scopes.contains(Scope::OrdersAll));
        assert!(!scopes.contains(Scope::Admin), "neither ADMIN, admin:all nor a comma list is `admin`");
        assert!(!scopes.contains(Scope::CatalogWrite));
        assert_eq!(Scopes::parse(&Scopes::all().claim()), Scopes::all());
    }

    #[test]
    fn a_customer_is_a_positive_integer_subject() {
        assert_eq!(principal("42", "orders").order_access(), Ok(OrderAccess::User(42)));
        for subject in ["0", "-3", "+3", "042x", "", "99999999999999999999", "gateway"] {
            assert_eq!(principal(subject, "orders").order_access(), Err(AccessError::NotAUser), "{subject:?}");
        }
        assert_eq!(principal("gateway", "orders:all").order_access(), Ok(OrderAccess::AnyUser));
        assert_eq!(
            principal("42", "catalog:write admin").order_access(),
            Err(AccessError::MissingScope(Scope::Orders))
        );
    }

    #[test]
    fn a_customer_acts_and_lists_only_for_itself() {
        let own = OrderAccess::User(42);
        assert_eq!(own.act_for(42), Ok(()));
        assert_eq!(own.act_for(43), Err(AccessError::OtherUser));
        assert_eq!(OrderAccess::AnyUser.act_for(43), Ok(()));
        assert_eq!((own.own_user(), OrderAccess::AnyUser.own_user()), (Some(42), None));
        assert!(own.covers(42) && !own.covers(43) && OrderAccess::AnyUser.covers(43));
        assert_eq!(own.listing(None), Ok(Some(42)));
        assert_eq!(own.listing(Some(42)), Ok(Some(42)));
        assert_eq!(own.listing(Some(43)), Err(AccessError::OtherUser));
        assert_eq!(OrderAccess::AnyUser.listing(None), Ok(None));
    }

    #[test]
    fn the_keys_of_two_subjects_never_meet() {
        // Without the length, "a:b" + "c" and "a" + "b:c" would be one key.
        let first = principal("a:b", "orders").scoped_key("c");
        let second = principal("a", "orders").scoped_key("b:c");
        assert_ne!(first, second);
        assert_eq!(principal("a", "orders").scoped_key("b:c"), second, "the same caller and key: the same key");
        let longest = principal(&"s".repeat(1000), "orders").scoped_key(&"k".repeat(255));
        assert_eq!(longest.len(), 64);
    }
}
