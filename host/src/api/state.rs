//! What the REST API holds: the application's parts it calls and its own
//! settings, not the whole service.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::fulfillment::Fulfillment;
use crate::health::Health;
use crate::orders::Orders;
use crate::rules::Rules;

/// The API's own settings.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Largest page of a listing.
    pub max_page: i64,
    /// Page size when none is asked for.
    pub default_page: i64,
    /// The admin API's bearer token; the admin API is off without one.
    pub admin_token: Option<String>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self { max_page: 100, default_page: 20, admin_token: None }
    }
}

/// Shared by every handler.
#[derive(Clone)]
pub struct ApiState {
    pub orders: Arc<Orders>,
    pub rules: Arc<Rules>,
    pub fulfillment: Arc<Fulfillment>,
    pub health: Arc<Health>,
    pub settings: Arc<ApiSettings>,
    /// Cancelled when the process starts shutting down: event streams end.
    pub stopping: CancellationToken,
}
