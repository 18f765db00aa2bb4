//! Order events (`OrderCreated`, `OrderStatusChanged`) for live clients.
//!
//! Events are written to the outbox with the change they announce. With
//! Redis, the relay appends them to the `order_events` stream (capped), and
//! every API process follows the stream into its [`EventHub`], so a client
//! connected to any process sees changes made by any worker. Without Redis,
//! the relay hands them to the hub directly.

use std::sync::Arc;
use std::time::Duration;

use ::redis::Client;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::streams::StreamReadReply;
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How many events a slow subscriber may fall behind before it misses some.
const HUB_CAPACITY: usize = 4096;
/// How long one `XREAD` blocks, so a stop is noticed promptly.
const STREAM_BLOCK: Duration = Duration::from_secs(1);

/// One event as delivered to subscribers.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderEvent {
    /// Where the event sits in the feed: the stream entry id, or the outbox id.
    pub id: String,
    /// `OrderCreated` or `OrderStatusChanged`.
    pub kind: String,
    /// The order it is about.
    pub order_id: i64,
    /// The order's version after the change.
    pub version: i64,
    /// The user whose order it is (absent from events written before
    /// events named their user).
    pub user_id: Option<i64>,
    /// The event as JSON.
    pub json: Arc<str>,
}

/// The fields of an event that routing needs.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: String,
    order_id: i64,
    #[serde(default)]
    version: i64,
    #[serde(default)]
    user_id: Option<i64>,
}

impl OrderEvent {
    /// Reads an event written by the store; `None` for anything else.
    pub fn parse(id: String, json: &str) -> Option<Self> {
        let head: Head = serde_json::from_str(json).ok()?;
        let Head { kind, order_id, version, user_id } = head;
        Some(Self { id, kind, order_id, version, user_id, json: json.into() })
    }
}

/// Fans events out to every subscriber in this process.
#[derive(Clone)]
pub struct EventHub {
    sender: broadcast::Sender<OrderEvent>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self { sender: broadcast::channel(HUB_CAPACITY).0 }
    }
}

impl EventHub {
    /// Delivers `event` to the current subscribers (none is fine).
    pub fn publish(&self, event: OrderEvent) {
        let _ = self.sender.send(event);
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<OrderEvent> {
        self.sender.subscribe()
    }
}

/// Follows the `stream` key into `hub` until `stop`, starting with the
/// entries appended after it starts. Redis outages are waited out.
pub async fn follow_stream(client: Client, stream: String, hub: EventHub, stop: CancellationToken) {
    let mut last = "$".to_owned();
    let mut connection: Option<ConnectionManager> = None;
    while !stop.is_cancelled() {
        if connection.is_none() {
            // One reconnection attempt per read: this loop paces its own retries.
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(STREAM_BLOCK + Duration::from_secs(5)))
                .set_number_of_retries(0);
            match ConnectionManager::new_with_config(client.clone(), config).await {
                Ok(opened) => connection = Some(opened),
                Err(error) => {
                    tracing::warn!(%error, "cannot follow the order event stream; retrying");
                    pause(&stop, Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let read = ::redis::cmd("XREAD")
            .arg("COUNT")
            .arg(500)
            .arg("BLOCK")
            .arg(STREAM_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&stream)
            .arg(&last)
            .query_async::<Option<StreamReadReply>>(connection.as_mut().expect("opened above"))
            .await;
        match read {
            Ok(Some(reply)) => {
                for entry in reply.keys.into_iter().flat_map(|key| key.ids) {
                    last.clone_from(&entry.id);
                    if let Some(json) = entry.get::<String>("event")
                        && let Some(event) = OrderEvent::parse(entry.id, &json)
                    {
                        hub.publish(event);
                    }
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "reading the order event stream failed; retrying");
                pause(&stop, Duration::from_secs(1)).await;
            }
        }
    }
}

/// Sleeps for `duration`, or less if `stop` comes first.
pub(crate) async fn pause(stop: &CancellationToken, duration: Duration) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(duration) => {}
    }
}
