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

    /// The user an order is placed for: the one a body names, or the
    /// caller itself. A customer naming another user is refused.
    pub fn placing_for(self, named: Option<i64>) -> Result<i64, AccessError> {
        match (self, named) {
            (OrderAccess::User(own), None) => Ok(own),
            (OrderAccess::User(own), Some(named)) if named == own => Ok(own),
            (OrderAccess::User(_), Some(_)) => Err(AccessError::OtherUser),
            (OrderAccess::AnyUser, Some(named)) => Ok(named),
            (OrderAccess::AnyUser, None) => Err(AccessError::NoUser),
        }
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
    /// A token acting for any user must say which.
    #[error("user_id is required: a token with `orders:all` acts for the user the request names")]
    NoUser,
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

    /// The namespace of this caller's idempotency keys: one caller's key
    /// never meets another's. Length-prefixed, so no subject can forge
    /// another's prefix.
    pub fn key_namespace(&self, key: &str) -> String {
        format!("{}:{}:{key}", self.subject.len(), self.subject)
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
    fn a_customer_places_only_for_itself() {
        let own = OrderAccess::User(42);
        assert_eq!(own.placing_for(None), Ok(42));
        assert_eq!(own.placing_for(Some(42)), Ok(42));
        assert_eq!(own.placing_for(Some(43)), Err(AccessError::OtherUser));
        assert_eq!(OrderAccess::AnyUser.placing_for(Some(43)), Ok(43));
        assert_eq!(OrderAccess::AnyUser.placing_for(None), Err(AccessError::NoUser));
        assert!(own.covers(42) && !own.covers(43) && OrderAccess::AnyUser.covers(43));
    }

    #[test]
    fn key_namespaces_of_two_subjects_never_meet() {
        // Without the length, "a:b" + "c" and "a" + "b:c" would be one key.
        let first = principal("a:b", "orders").key_namespace("c");
        let second = principal("a", "orders").key_namespace("b:c");
        assert_ne!(first, second);
    }
}
