//! What the REST API holds: the application's parts it calls and its own
//! settings, not the whole service.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::fulfillment::Fulfillment;
use crate::health::Health;
use crate::orders::Orders;
use crate::rules::Rules;

/// The API's own settings.
#[derive(Debug, Clone, Default)]
pub struct ApiSettings {
    /// The admin API's bearer token; the admin API is off without one.
    pub admin_token: Option<String>,
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
