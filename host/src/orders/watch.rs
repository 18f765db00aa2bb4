//! Following orders as they change: one order (its state now, then every
//! change after it) or all of them, from this process's event hub, which
//! sees the changes of every process (see [`super::events`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use super::error::Resource;
use super::events::OrderEvent;
use super::quota::QuotaPermit;
use super::{OrderError, Orders};
use crate::auth::{OrderAccess, Principal};
use crate::domain::OrderStatus;

/// What a follower receives.
#[derive(Debug, Clone)]
pub enum Watched {
    /// An order was created or changed.
    Event(OrderEvent),
    /// The follower fell behind and missed this many events.
    Lagged(u64),
}

/// An order's state when following it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub order_id: i64,
    pub status: OrderStatus,
    pub version: i64,
}

impl Orders {
    /// Order `id`'s state now, and its changes after that state. Subscribed
    /// before reading the state, so no change falls in between; events the
    /// state already includes (relayed late) are left out.
    /// Another user's order is not found, as a missing one. The stream
    /// holds one of the caller's watch places until it is dropped.
    pub async fn watch(
        &self,
        id: i64,
        caller: &Principal,
    ) -> Result<(Snapshot, BoxStream<'static, Watched>), OrderError> {
        let access = caller.order_access()?;
        let place = self.watches.take(&caller.subject)?;
        let since = Arc::new(AtomicI64::new(i64::MAX));
        let changes = self.follow(place, {
            let since = since.clone();
            move |event| event.order_id == id && event.version > since.load(Ordering::Relaxed)
        });
        let state = self.store.order_state(id).await.map_err(OrderError::order_not_found(id))?;
        if !access.covers(state.user_id) {
            return Err(OrderError::NotFound { resource: Resource::Order, id });
        }
        since.store(state.version, Ordering::Relaxed);
        let snapshot = Snapshot { order_id: id, status: state.status, version: state.version };
        Ok((snapshot, changes.boxed()))
    }

    /// Every order's events from now on; a customer's own orders' only
    /// (an event that does not name its user is not a customer's to see).
    /// The stream holds one of the caller's watch places until it is dropped.
    pub fn watch_all(&self, caller: &Principal) -> Result<BoxStream<'static, Watched>, OrderError> {
        let access = caller.order_access()?;
        let place = self.watches.take(&caller.subject)?;
        Ok(match access {
            OrderAccess::AnyUser => self.follow(place, |_| true).boxed(),
            OrderAccess::User(own) => self.follow(place, move |event| event.user_id == Some(own)).boxed(),
        })
    }

    /// The events `keep` keeps, holding `place` for as long as the stream lives.
    fn follow<F>(&self, place: QuotaPermit, keep: F) -> impl Stream<Item = Watched> + Send + 'static + use<F>
    where
        F: Fn(&OrderEvent) -> bool + Send + Sync + 'static,
    {
        let receiver = self.events.subscribe();
        futures::stream::unfold((receiver, keep, place), |(mut receiver, keep, place)| async move {
            loop {
                match receiver.recv().await {
                    Ok(event) if keep(&event) => return Some((Watched::Event(event), (receiver, keep, place))),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(missed)) => {
                        return Some((Watched::Lagged(missed), (receiver, keep, place)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        })
    }
}
