//! `orderly.v1.OrderService`: the order API over gRPC, on the same
//! application layer as the REST API.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use super::auth::Caller;
use super::convert;
use super::correlation::CorrelationId;
use super::events::{event, state};
use super::proto::order_service_server::OrderService;
use super::proto::{
    CreateOrderRequest, GetOrderRequest, ListOrdersRequest, ListOrdersResponse, Order, OrderEvent,
    UpdateOrderStatusRequest, WatchOrderRequest, WatchOrdersRequest,
};
use super::status::{bad_field, invalid};
use crate::auth::Scope;
use crate::orders::{Deadline, Orders};
use crate::store::OrderFilter;

/// The metadata key of an idempotent create, as the REST header.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on an answer replayed for a repeated idempotent create.
const REPLAYED: &str = "idempotent-replayed";
/// Largest page of a listing, and the page size when none is asked for.
const MAX_PAGE: i32 = 100;
const DEFAULT_PAGE: i32 = 20;

type Events = Pin<Box<dyn Stream<Item = Result<OrderEvent, Status>> + Send>>;

/// The service, over the orders of one process.
pub struct OrderApi {
    orders: Arc<Orders>,
    /// Cancelled at shutdown: watch streams end so connections can drain.
    stopping: CancellationToken,
    /// How long a call may run when the client asks for longer (or no limit).
    time_limit: Duration,
}

impl OrderApi {
    pub fn new(orders: Arc<Orders>, stopping: CancellationToken, time_limit: Duration) -> Self {
        Self { orders, stopping, time_limit }
    }

    /// When the call must stop: the client's `grpc-timeout`, or the
    /// server's own limit if that comes sooner.
    fn deadline<T>(&self, request: &Request<T>) -> Deadline {
        let asked = request.metadata().get(GRPC_TIMEOUT).and_then(|value| value.to_str().ok()).and_then(grpc_timeout);
        Deadline::after(asked.map_or(self.time_limit, |asked| asked.min(self.time_limit)))
    }

    fn until_stopping(&self, events: impl Stream<Item = OrderEvent> + Send + 'static) -> Events {
        Box::pin(events.take_until(self.stopping.clone().cancelled_owned()).map(Ok))
    }
}

/// The metadata key of a client's deadline.
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// A `grpc-timeout` value: at most 8 digits and a unit (`H`, `M`, `S`,
/// `m`, `u`, `n`), as the gRPC over HTTP/2 protocol spells it.
fn grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The call's correlation id (assigned by [`super::correlation`]).
fn correlation_id<T>(request: &Request<T>) -> Arc<str> {
    request.extensions().get::<CorrelationId>().map(|id| id.0.clone()).unwrap_or_else(|| "".into())
}

/// The `idempotency-key` metadata, if sent: 1 to 255 visible ASCII characters.
fn idempotency_key<T>(request: &Request<T>) -> Result<Option<String>, Status> {
    let Some(value) = request.metadata().get(IDEMPOTENCY_KEY) else { return Ok(None) };
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 255 || !bytes.iter().all(u8::is_ascii_graphic) {
        return Err(bad_field(IDEMPOTENCY_KEY, "idempotency-key must be 1 to 255 visible ASCII characters"));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// The page size asked for (capped) and the position after which the page starts.
fn page(request: &ListOrdersRequest) -> Result<(i64, Option<i64>), Status> {
    let size = match request.page_size {
        0 => DEFAULT_PAGE,
        size if size < 0 => return Err(bad_field("page_size", "page_size must be positive")),
        size => size.min(MAX_PAGE),
    };
    let before = match request.page_token.as_str() {
        "" => None,
        token => Some(
            token
                .parse::<i64>()
                .ok()
                .filter(|position| *position > 0)
                .ok_or_else(|| bad_field("page_token", "not a page token from this service"))?,
        ),
    };
    Ok((i64::from(size), before))
}

#[tonic::async_trait]
impl OrderService for OrderApi {
    async fn create_order(&self, request: Request<CreateOrderRequest>) -> Result<Response<Order>, Status> {
        let caller = Caller::of(&request)?;
        let access = caller.order_access()?;
        let (correlation_id, key) = (correlation_id(&request), idempotency_key(&request)?);
        let deadline = self.deadline(&request);
        let parsed = convert::create_request(request.into_inner())
            .parse(self.orders.default_currency(), access.own_user())
            .map_err(|violations| invalid(&violations))?;
        let placed = self.orders.place(parsed, &caller.0, &correlation_id, key, deadline).await?;
        tracing::info!(target: "grpc", order_id = placed.order.id, replayed = placed.replayed, "order placed");
        let mut response = Response::new(convert::order(placed.order));
        if placed.replayed {
            response.metadata_mut().insert(REPLAYED, MetadataValue::from_static("true"));
        }
        Ok(response)
    }

    async fn get_order(&self, request: Request<GetOrderRequest>) -> Result<Response<Order>, Status> {
        let access = Caller::of(&request)?.order_access()?;
        let order = self.orders.order(request.into_inner().id, access).await?;
        Ok(Response::new(convert::order(order)))
    }

    async fn list_orders(&self, request: Request<ListOrdersRequest>) -> Result<Response<ListOrdersResponse>, Status> {
        let access = Caller::of(&request)?.order_access()?;
        let request = request.into_inner();
        let (limit, before) = page(&request)?;
        let status = match request.status {
            0 => None,
            value => Some(convert::requested_status(value).ok_or_else(|| bad_field("status", "unknown status"))?),
        };
        let filter = OrderFilter { user_id: request.user_id, status, before, limit };
        let orders = self.orders.list(&filter, access).await?;
        let next_page_token = match orders.last() {
            Some(last) if orders.len() as i64 == limit => last.id.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(ListOrdersResponse {
            orders: orders.into_iter().map(convert::summary).collect(),
            next_page_token,
        }))
    }

    async fn update_order_status(&self, request: Request<UpdateOrderStatusRequest>) -> Result<Response<Order>, Status> {
        Caller::of(&request)?.require(Scope::OrdersAll)?;
        let correlation_id = correlation_id(&request);
        let request = request.into_inner();
        let to = convert::requested_status(request.status).ok_or_else(|| bad_field("status", "name the new status"))?;
        let order = self.orders.change_status(request.id, to, request.reason.as_deref(), &correlation_id).await?;
        tracing::info!(target: "grpc", order_id = order.id, status = %order.status, "order status changed");
        Ok(Response::new(convert::order(order)))
    }

    type WatchOrderStream = Events;

    async fn watch_order(&self, request: Request<WatchOrderRequest>) -> Result<Response<Events>, Status> {
        let caller = Caller::of(&request)?;
        let (snapshot, changes) = self.orders.watch(request.into_inner().id, &caller.0).await?;
        let first = futures::stream::once(async move { state(snapshot) });
        Ok(Response::new(self.until_stopping(first.chain(changes.filter_map(|watched| async { event(watched) })))))
    }

    type WatchOrdersStream = Events;

    async fn watch_orders(&self, request: Request<WatchOrdersRequest>) -> Result<Response<Events>, Status> {
        let caller = Caller::of(&request)?;
        let events = self.orders.watch_all(&caller.0)?.filter_map(|watched| async { event(watched) });
        Ok(Response::new(self.until_stopping(events)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_are_read_in_every_unit() {
        assert_eq!(grpc_timeout("300m"), Some(Duration::from_millis(300)));
        assert_eq!(grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(grpc_timeout("5M"), Some(Duration::from_secs(300)));
        assert_eq!(grpc_timeout("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(grpc_timeout("10n"), Some(Duration::from_nanos(10)));
    }

    #[test]
    fn malformed_grpc_timeouts_are_ignored() {
        for value in ["", "m", "100", "123456789m", "-1S", "1.5S", "10x", "1 S"] {
            assert_eq!(grpc_timeout(value), None, "{value:?}");
        }
    }
}
