//! A JWKS fetched from the issuer's URL (`AUTH_JWKS_URL`): fetched at start,
//! again every refresh period, and again when a token names a key id the
//! set lacks (the issuer rotated its keys), at most once per minimum
//! interval, whatever the tokens say. A failed fetch keeps the keys held.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::keys::KeySet;

/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The key set at a URL, and when it was last fetched.
pub struct RemoteJwks {
    url: String,
    client: reqwest::Client,
    keys: ArcSwap<KeySet>,
    /// When the last fetch started; one fetch at a time.
    last_fetch: Mutex<Instant>,
    min_interval: Duration,
    fetches: AtomicU64,
}

impl RemoteJwks {
    /// Fetches the set at `url`; fails when it cannot be had or holds no usable key.
    pub async fn fetch(url: &str, min_interval: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder().timeout(FETCH_TIMEOUT).build()?;
        let keys = download(&client, url).await?;
        Ok(Self {
            url: url.to_owned(),
            client,
            keys: ArcSwap::from_pointee(keys),
            last_fetch: Mutex::new(Instant::now()),
            min_interval,
            fetches: AtomicU64::new(1),
        })
    }

    /// The keys held now.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// How many times the set was fetched (at start included).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Fetches again unless the last fetch is more recent than the minimum
    /// interval. Callers arriving during a fetch wait for it and reuse it.
    pub async fn refresh_for_unknown_key(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.elapsed() < self.min_interval {
            return;
        }
        *last = Instant::now();
        self.refresh().await;
    }

    async fn refresh(&self) {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match download(&self.client, &self.url).await {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), url = %self.url, "JWKS refreshed");
                self.keys.store(Arc::new(keys));
            }
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), url = %self.url, "cannot refresh the JWKS; keeping the keys held")
            }
        }
    }

    /// Refreshes every `period` until `stop`.
    pub async fn keep_fresh(self: Arc<Self>, period: Duration, stop: CancellationToken) {
        let mut every = tokio::time::interval_at(Instant::now() + period, period);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    let mut last = self.last_fetch.lock().await;
                    *last = Instant::now();
                    self.refresh().await;
                }
                () = stop.cancelled() => return,
            }
        }
    }
}

async fn download(client: &reqwest::Client, url: &str) -> anyhow::Result<KeySet> {
    use anyhow::Context;
    let mut response = client.get(url).send().await.with_context(|| format!("cannot fetch the JWKS at {url}"))?;
    anyhow::ensure!(response.status().is_success(), "the JWKS at {url} answered {}", response.status());
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.with_context(|| format!("cannot read the JWKS at {url}"))? {
        anyhow::ensure!(body.len() + chunk.len() <= MAX_JWKS_BYTES, "the JWKS at {url} is larger than 1 MiB");
        body.extend_from_slice(&chunk);
    }
    Ok(KeySet::from_jwks(&body)?)
}
