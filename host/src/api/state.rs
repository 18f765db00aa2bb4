//! What the REST API holds: the application's parts it calls and its own
//! settings, not the whole service.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::Credentials;
use crate::fulfillment::Fulfillment;
use crate::health::Health;
use crate::orders::Orders;
use crate::rules::Rules;

/// Shared by every handler.
#[derive(Clone)]
pub struct ApiState {
    pub orders: Arc<Orders>,
    pub rules: Arc<Rules>,
    pub fulfillment: Arc<Fulfillment>,
    pub health: Arc<Health>,
    /// Who sends each request.
    pub credentials: Credentials,
    /// Cancelled when the process starts shutting down: event streams end.
    pub stopping: CancellationToken,
}
