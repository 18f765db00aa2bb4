//! The outbox relay: publishes what committed transactions wrote to the
//! outbox, then marks it published. With Redis, jobs go to
//! `fulfillment_queue` (`LPUSH`, the seeds' wire format) and events to the
//! `order_events` stream (`XADD … MAXLEN ~`); without Redis, events go to the
//! in-process hub and jobs stay in the outbox, which is then the queue.
//! While Redis is down the relay backs off and retries; nothing is lost,
//! since a row is marked only after Redis accepted it.

use std::time::Duration;

use ::redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use crate::orders::events::{EventHub, OrderEvent, pause};
use crate::store::statements::{EVENTS_TOPIC, FULFILLMENT_TOPIC};
use crate::store::{OutboxMessage, Store};

/// Rows published per round.
const BATCH: i64 = 500;
/// How soon a relay looks again when another process's relay had the turn.
const TURN_TAKEN: Duration = Duration::from_millis(20);
/// How often an idle relay looks without being woken (rows written by other processes).
const IDLE_POLL: Duration = Duration::from_millis(500);
/// The longest pause between attempts while Redis is down: short, since
/// every order placed meanwhile waits for Redis to come back, and one
/// attempt a second costs a down server nothing.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Where the relay publishes.
pub enum Sink {
    /// Redis: the job list and the event stream.
    Redis {
        connection: ConnectionManager,
        /// The `fulfillment_queue` key.
        queue: String,
        /// The `order_events` key.
        stream: String,
        /// The stream's approximate cap.
        max_len: u64,
    },
    /// No Redis: events to this process's hub; jobs stay in the outbox.
    Local(EventHub),
}

/// Moves outbox rows to their destination.
pub struct Relay {
    store: Store,
    sink: Sink,
}

impl Relay {
    pub fn new(store: Store, sink: Sink) -> Self {
        Self { store, sink }
    }

    /// One round: publishes up to a batch; returns how many (`None` when
    /// another process's relay has the turn).
    pub async fn relay_once(&self) -> anyhow::Result<Option<usize>> {
        match &self.sink {
            Sink::Redis { connection, queue, stream, max_len } => {
                let publish = async |messages: &[OutboxMessage]| {
                    let mut pipe = ::redis::pipe();
                    for message in messages {
                        if message.topic == FULFILLMENT_TOPIC {
                            pipe.cmd("LPUSH").arg(queue).arg(&message.payload).ignore();
                        } else {
                            pipe.cmd("XADD")
                                .arg(stream)
                                .arg("MAXLEN")
                                .arg("~")
                                .arg(*max_len)
                                .arg("*")
                                .arg("event")
                                .arg(&message.payload)
                                .arg("outbox_id")
                                .arg(message.id)
                                .ignore();
                        }
                    }
                    pipe.query_async::<()>(&mut connection.clone()).await
                };
                self.store
                    .relay_outbox(&[FULFILLMENT_TOPIC, EVENTS_TOPIC], BATCH, publish)
                    .await?
                    .map_err(anyhow::Error::from)
            }
            Sink::Local(hub) => {
                let publish = async |messages: &[OutboxMessage]| {
                    for message in messages {
                        if let Some(event) = OrderEvent::parse(message.id.to_string(), &message.payload) {
                            hub.publish(event);
                        }
                    }
                    Ok::<(), std::convert::Infallible>(())
                };
                self.store.relay_outbox(&[EVENTS_TOPIC], BATCH, publish).await?.map_err(anyhow::Error::from)
            }
        }
    }

    /// Relays until `stop`: at once when this process commits outbox rows,
    /// every half second otherwise, backing off while a server is down.
    pub async fn run(self, stop: CancellationToken) {
        let mut written = self.store.outbox_watch();
        let mut backoff = Duration::from_millis(100);
        let mut failing = false;
        while !stop.is_cancelled() {
            written.borrow_and_update();
            match self.relay_once().await {
                Ok(relayed) => {
                    if failing {
                        tracing::info!("outbox relay recovered");
                        failing = false;
                    }
                    backoff = Duration::from_millis(100);
                    match relayed {
                        Some(count) if count as i64 == BATCH => continue,
                        Some(_) => {}
                        // Another relay publishes; look again soon, as our rows may be next.
                        None => {
                            pause(&stop, TURN_TAKEN).await;
                            continue;
                        }
                    }
                    tokio::select! {
                        () = stop.cancelled() => {}
                        _ = written.changed() => {}
                        () = tokio::time::sleep(IDLE_POLL) => {}
                    }
                }
                Err(error) => {
                    if !failing {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "outbox relay cannot publish; retrying with backoff"
                        );
                        failing = true;
                    }
                    pause(&stop, backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
