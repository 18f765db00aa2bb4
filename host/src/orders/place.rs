//! Placing an order: `validation` rule -> products (cache-aside) ->
//! `pricing` rule -> one transaction. Nothing is written unless every step
//! succeeds; the rules see the order but never the database's stock.
//!
//! With an idempotency key the same request (as understood, not as spelled)
//! replays the first answer, the key with another request is refused, and a
//! request arriving while the first still runs waits for its answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use sha2::{Digest, Sha256};

use super::error::Resource;
use super::{OrderError, Orders};
use crate::auth::Principal;
use crate::domain::decision::{DraftLine, DraftOrder, Quote};
use crate::domain::input::{OrderRequest, Violation};
use crate::domain::{ComponentRecord, OrderDetail, Product};
use crate::runtime::CallContext;
use crate::store::{Claim, NewOrder, PricedLine, Store, StoreError};

/// When work done for a caller must stop, and the time limit that set it
/// (the client's deadline or the server's own).
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub at: Instant,
    pub limit: Duration,
}

impl Deadline {
    /// `limit` from now.
    pub fn after(limit: Duration) -> Self {
        Self { at: Instant::now() + limit, limit }
    }
}

/// How many times, and how far apart, a failed request's key release is
/// tried while the database is unavailable (about 5 s in all).
const KEY_RELEASE_TRIES: u32 = 25;
const KEY_RELEASE_PAUSE: Duration = Duration::from_millis(200);

/// How often a request waiting for another with the same key looks again.
const KEY_POLL: Duration = Duration::from_millis(20);

/// A placed order, as stored or as replayed.
#[derive(Debug, Clone)]
pub struct Placed {
    pub order: OrderDetail,
    /// Its rendering: for a replay, exactly the first answer.
    pub json: String,
    /// Whether this answers a repeat of an earlier request.
    pub replayed: bool,
}

impl Placed {
    fn fresh(order: OrderDetail) -> Result<Self, OrderError> {
        let json = serde_json::to_string(&order).map_err(anyhow::Error::from)?;
        Ok(Self { order, json, replayed: false })
    }

    fn replayed(json: String) -> Result<Self, OrderError> {
        let order = serde_json::from_str(&json).map_err(anyhow::Error::from)?;
        Ok(Self { order, json, replayed: true })
    }
}

impl Orders {
    /// Validates, prices and stores an order for `caller`; with `key`, at
    /// most once. A customer places orders for itself alone, and a key is
    /// the caller's own: the same key from another caller is another key,
    /// so no caller can replay, see or hold back another's order.
    ///
    /// A keyed placing runs on a task of its own until it finishes or
    /// `until` passes: a client that goes away mid-request (the usual reason
    /// to send a key and retry) does not stop it half-way, and its retry
    /// gets the first answer; at `until` (the client's deadline or the
    /// server's time limit) it is stopped and the key freed. Without a key
    /// the placing is the caller's: dropped with it, nothing stored.
    pub async fn place(
        self: &Arc<Self>,
        request: OrderRequest,
        caller: &Principal,
        correlation_id: &str,
        key: Option<String>,
        until: Deadline,
    ) -> Result<Placed, OrderError> {
        caller.order_access()?.act_for(request.user_id)?;
        let Some(key) = key.map(|key| caller.scoped_key(&key)) else {
            return self.place_new(request, correlation_id, None).await;
        };
        // Held until the placing ends, on its own task: a caller cannot pile
        // up placings that outlive its requests.
        let place = self.keys_in_flight.take(&caller.subject)?;
        let (orders, correlation_id) = (self.clone(), correlation_id.to_owned());
        let placing = async move {
            let placed = orders.place_once(request, &correlation_id, key).await;
            drop(place);
            placed
        };
        let bounded = async move {
            let stopped = Err(OrderError::TimedOut { limit: until.limit });
            tokio::time::timeout_at(until.at, placing).await.unwrap_or(stopped)
        };
        let task = tokio::spawn(bounded.instrument(tracing::Span::current()));
        task.await.map_err(|error| OrderError::Internal(anyhow::anyhow!("placing the order failed: {error}")))?
    }

    /// Places the order of a request with `key`: the first answer if it was
    /// placed before, the key held until the order is stored (or freed).
    async fn place_once(
        self: &Arc<Self>,
        request: OrderRequest,
        correlation_id: &str,
        key: String,
    ) -> Result<Placed, OrderError> {
        let since = match self.claim_key(&key, &request_hash(&request)?).await? {
            KeyClaim::Held { since } => since,
            KeyClaim::Answered(replay) => return Ok(*replay),
        };
        let held = HeldKey { store: self.store.clone(), claim: Some((key.clone(), since)) };
        let placed = self.place_new(request, correlation_id, Some(key)).await?;
        held.keep();
        Ok(placed)
    }

    /// Takes `key` for this request, or finds the first answer when this
    /// request was placed before.
    async fn claim_key(&self, key: &str, hash: &str) -> Result<KeyClaim, OrderError> {
        let policy = &self.policy;
        let ttl = chrono::Duration::from_std(policy.idempotency_ttl).map_err(anyhow::Error::from)?;
        let abandon = chrono::Duration::from_std(policy.idempotency_abandon_after).map_err(anyhow::Error::from)?;
        let waiting_since = Instant::now();
        loop {
            match self.store.claim_idempotency_key(key, hash, ttl, abandon).await? {
                Claim::Fresh { since } => return Ok(KeyClaim::Held { since }),
                Claim::Replay { body, .. } => {
                    return Placed::replayed(body).map(|placed| KeyClaim::Answered(Box::new(placed)));
                }
                Claim::Mismatch => return Err(OrderError::KeyReused),
                Claim::InProgress if waiting_since.elapsed() < policy.idempotency_wait => {
                    tokio::time::sleep(KEY_POLL).await;
                }
                Claim::InProgress => return Err(OrderError::KeyInProgress),
            }
        }
    }

    async fn place_new(
        self: &Arc<Self>,
        request: OrderRequest,
        correlation_id: &str,
        key: Option<String>,
    ) -> Result<Placed, OrderError> {
        let context = CallContext::new(correlation_id);
        let mut draft = draft(&request);
        let validated = self.rules.validate(&context, &draft).await?;
        if !validated.value.is_empty() {
            return Err(OrderError::Invalid(validated.value));
        }
        let products = self.ordered_products(&request).await?;
        fill_from_catalogue(&mut draft, &products);
        let priced = self.rules.price(&context, &draft).await?;
        let quote = priced.value.map_err(OrderError::Invalid)?;
        let records = vec![validated.record, priced.record];
        let stored = self.store.create_order(&new_order(&draft, quote, records, correlation_id, key)).await?;
        self.remember(&stored).await;
        Placed::fresh(stored)
    }

    /// The ordered products, from the cache where possible; every one must
    /// exist, be active and be sold in the order's currency.
    async fn ordered_products(&self, request: &OrderRequest) -> Result<HashMap<i64, Product>, OrderError> {
        let mut ids: Vec<i64> = request.lines.iter().map(|line| line.product_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let found = self.products_by_id(&ids).await?;
        let mut violations = Vec::new();
        for (index, line) in request.lines.iter().enumerate() {
            let Some(product) = found.get(&line.product_id) else {
                return Err(OrderError::NotFound { resource: Resource::Product, id: line.product_id });
            };
            if !product.active {
                return Err(OrderError::Inactive(product.id));
            }
            if product.currency != request.currency {
                violations.push(Violation::new(
                    "currency-mismatch",
                    format!("items/{index}/product_id"),
                    format!(
                        "product {} is sold in {}, the order is in {}",
                        product.id, product.currency, request.currency
                    ),
                ));
            }
        }
        if violations.is_empty() { Ok(found) } else { Err(OrderError::Invalid(violations)) }
    }
}

/// What validation sees: what the customer sent (product ids and
/// quantities); names and prices come from the catalogue before pricing.
fn draft(request: &OrderRequest) -> DraftOrder {
    DraftOrder {
        user_id: request.user_id,
        currency: request.currency.clone(),
        lines: request
            .lines
            .iter()
            .map(|line| DraftLine {
                product_id: line.product_id,
                sku: String::new(),
                name: String::new(),
                unit_price: 0,
                quantity: line.quantity,
            })
            .collect(),
        attributes: request.attributes.clone(),
    }
}

fn fill_from_catalogue(draft: &mut DraftOrder, products: &HashMap<i64, Product>) {
    for line in &mut draft.lines {
        let product = &products[&line.product_id];
        line.sku = product.sku.clone();
        line.name = product.name.clone();
        line.unit_price = product.price;
    }
}

/// The request as understood: the same order however it was spelled (field
/// order, whitespace, the one-line shorthand or the default currency).
fn request_hash(request: &OrderRequest) -> Result<String, OrderError> {
    let canonical = serde_json::to_vec(request).map_err(anyhow::Error::from)?;
    Ok(hex::encode(Sha256::digest(&canonical)))
}

/// The order to store: the draft's lines at the quote's prices.
fn new_order(
    draft: &DraftOrder,
    quote: Quote,
    components: Vec<ComponentRecord>,
    correlation_id: &str,
    idempotency_key: Option<String>,
) -> NewOrder {
    let lines = draft
        .lines
        .iter()
        .zip(&quote.lines)
        .map(|(line, priced)| PricedLine {
            product_id: line.product_id,
            sku: line.sku.clone(),
            name: line.name.clone(),
            unit_price: priced.unit_price,
            quantity: priced.quantity,
            line_total: priced.line_total,
        })
        .collect();
    NewOrder {
        user_id: draft.user_id,
        currency: quote.currency,
        lines,
        subtotal: quote.subtotal,
        discount: quote.discount,
        tax: quote.tax,
        shipping: quote.shipping,
        total: quote.total,
        notes: quote.notes,
        attributes: draft.attributes.clone(),
        components,
        correlation_id: correlation_id.to_owned(),
        idempotency_key,
    }
}

/// What claiming an idempotency key found.
enum KeyClaim {
    /// The key is this request's, by the claim made at `since`.
    Held { since: chrono::DateTime<chrono::Utc> },
    /// The same request was placed before: its answer.
    Answered(Box<Placed>),
}

/// A claimed idempotency key that is freed unless the request placed its
/// order: failed requests are not remembered, and neither is one stopped at
/// its deadline, so the client may retry with the same key. Freeing touches only a key still in
/// progress: a key whose order committed was completed in that transaction.
struct HeldKey {
    store: Store,
    /// The key and when it was claimed.
    claim: Option<(String, chrono::DateTime<chrono::Utc>)>,
}

impl HeldKey {
    /// The order was placed: the key stays, completed with its answer.
    fn keep(mut self) {
        self.claim = None;
    }
}

impl Drop for HeldKey {
    fn drop(&mut self) {
        let Some((key, since)) = self.claim.take() else { return };
        let store = self.store.clone();
        // Drop cannot wait; the release runs on its own, and outlasts a short
        // outage (the failure that freed the key is often the database
        // restarting), or the retry would wait for a key nobody holds.
        tokio::spawn(async move {
            for _ in 0..KEY_RELEASE_TRIES {
                match store.release_idempotency_key(&key, since).await {
                    Ok(()) => return,
                    Err(StoreError::Database(error)) if crate::store::is_unavailable(&error) => {
                        tokio::time::sleep(KEY_RELEASE_PAUSE).await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot release an idempotency key");
                        return;
                    }
                }
            }
            tracing::warn!("cannot release an idempotency key: the database stayed unavailable");
        });
    }
}
