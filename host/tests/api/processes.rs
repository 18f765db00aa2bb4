//! The service's own processes, started by a test against a [`TestApp`]'s
//! database, Redis (when it has one) and components: `host worker` and `host serve`, to be
//! killed, frozen and restarted; and a client placing keyed orders through
//! whatever happens to them.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{AUTH_ENV, TestApp, back_office_token, client_with};

/// A `host` subcommand on `app`'s database, Redis and components, with
/// `settings` as environment variables, its log lines (JSON) going to `output`.
fn host_process(app: &TestApp, subcommand: &str, settings: &[(&str, &str)], output: Stdio) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_host"));
    command
        .arg(subcommand)
        .env("DATABASE_URL", &app.database_url)
        .env("REDIS_NAMESPACE", &app.namespace)
        .env("COMPONENTS_DIR", &app.components_dir)
        .env("CLAIM_WAIT_MS", "200")
        .env("RUST_LOG", "warn")
        .env(AUTH_ENV.0, AUTH_ENV.1)
        .stdout(output);
    // On the embedded backend there is no Redis: the processes share the SQLite file.
    match app.redis_url.as_deref() {
        Some(url) => command.env("REDIS_URL", url),
        None => command.env_remove("REDIS_URL"),
    };
    for (name, value) in settings {
        command.env(name, value);
    }
    command.spawn().unwrap_or_else(|error| panic!("host {subcommand} starts: {error}"))
}

/// Where a child's log goes: nowhere, unless `TEST_LOG` is set.
fn quiet() -> Stdio {
    if std::env::var_os("TEST_LOG").is_some() { Stdio::inherit() } else { Stdio::null() }
}

/// `host worker` with `settings`.
pub fn worker_process(app: &TestApp, settings: &[(&str, &str)]) -> Child {
    host_process(app, "worker", settings, quiet())
}

/// [`worker_process`], its log lines written to `output`.
pub fn worker_process_to(app: &TestApp, settings: &[(&str, &str)], output: Stdio) -> Child {
    host_process(app, "worker", settings, output)
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`) to a child process.
pub fn signal(child: &Child, signal: &str) {
    let sent = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    assert!(sent.success(), "kill -{signal}");
}

/// `host serve` without workers, on a port of its own that it keeps across
/// restarts, so clients find it again at the same address.
pub struct ApiProcess {
    child: Child,
    port: u16,
    admin_port: u16,
    settings: Vec<(String, String)>,
}

/// The API's time limit in these tests: a key held by a killed API is free
/// again this long plus 5 s after it was claimed.
pub const API_TIME_LIMIT_MS: &str = "2000";

impl ApiProcess {
    /// Starts the API and waits until it is ready.
    pub async fn start(app: &TestApp) -> Self {
        Self::start_with(app, &[]).await
    }

    /// [`ApiProcess::start`] with `more` settings (environment variables).
    pub async fn start_with(app: &TestApp, more: &[(&str, &str)]) -> Self {
        let free_port = || TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (port, admin_port) = (free_port(), free_port());
        let settings = [
            ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("GRPC_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
            ("ADMIN_LISTEN_ADDR", format!("127.0.0.1:{admin_port}")),
            ("WORKERS", "0".to_owned()),
            ("REQUEST_TIMEOUT_MS", API_TIME_LIMIT_MS.to_owned()),
            ("SEED_DEMO_PRODUCTS", "false".to_owned()),
        ];
        let settings: Vec<(String, String)> = settings
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .chain(more.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())))
            .collect();
        let child = Self::spawn(app, &settings);
        let api = Self { child, port, admin_port, settings };
        api.wait_until_ready().await;
        api
    }

    fn spawn(app: &TestApp, settings: &[(String, String)]) -> Child {
        let settings: Vec<(&str, &str)> =
            settings.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
        host_process(app, "serve", &settings, quiet())
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its admin API's base URL.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    async fn wait_until_ready(&self) {
        let (client, deadline) = (reqwest::Client::new(), Instant::now() + Duration::from_secs(60));
        loop {
            if let Ok(answer) = client.get(format!("{}/ready", self.url())).send().await
                && answer.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "host serve did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends it `signal` (`STOP`, `CONT`).
    pub fn signal(&self, name: &str) {
        signal(&self.child, name);
    }

    /// Kills it (SIGKILL: requests in flight die with it, mid-transaction
    /// or not) and starts it again on the same port.
    pub async fn kill_and_restart(&mut self, app: &TestApp) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = Self::spawn(app, &self.settings);
        self.wait_until_ready().await;
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a [`keyed_client`] placed and went through.
#[derive(Debug, Default)]
pub struct KeyedLoad {
    /// Each order placed, (id, quantity).
    pub placed: Vec<(i64, i64)>,
    /// Answers 503 (retried with the same key).
    pub refused: u32,
    /// Answers 409 `idempotency-key-in-progress` (retried with the same key).
    pub in_progress: u32,
    /// Requests that got no answer at all: the connection failed or broke.
    pub unanswered: u32,
}

impl KeyedLoad {
    /// The loads of several clients as one.
    pub fn merge(loads: impl IntoIterator<Item = KeyedLoad>) -> KeyedLoad {
        loads.into_iter().fold(KeyedLoad::default(), |mut all, load| {
            all.placed.extend(load.placed);
            all.refused += load.refused;
            all.in_progress += load.in_progress;
            all.unanswered += load.unanswered;
            all
        })
    }
}

/// One client placing orders with idempotency keys at `base` for `run`, as
/// a careful client does: every request without a final answer (a 503, a
/// 409 `idempotency-key-in-progress`, no answer at all) is sent again with
/// its key, until it is answered 201; any other answer fails the test.
pub async fn keyed_client(base: String, mug: i64, client: u32, run: Duration) -> KeyedLoad {
    let (http, started) = (client_with(&back_office_token()), Instant::now());
    let mut load = KeyedLoad::default();
    for n in 0.. {
        if started.elapsed() > run {
            break;
        }
        let (key, quantity) = (format!("client-{client}-order-{n}"), 1 + i64::from(n % 3));
        let body = json!({"user_id": client * 10_000 + n, "items": [{"product_id": mug, "quantity": quantity}]});
        let first_try = Instant::now();
        loop {
            assert!(first_try.elapsed() < Duration::from_secs(60), "{key} never placed: {load:?}");
            let sent = http.post(format!("{base}/api/v1/orders")).header("idempotency-key", &key).json(&body).send();
            let Ok(response) = sent.await else {
                load.unanswered += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            let Ok(answer) = response.json::<Value>().await else {
                load.unanswered += 1;
                continue;
            };
            match (status, answer["type"].as_str()) {
                (201, _) => {
                    load.placed.push((answer["id"].as_i64().unwrap(), quantity));
                    break;
                }
                (503, _) => load.refused += 1,
                (409, Some("urn:orderly:problem:idempotency-key-in-progress")) => load.in_progress += 1,
                (other, _) => panic!("{key}: {other} {answer}"),
            }
            assert!(retry_after, "{key}: a {status} to retry carries Retry-After");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    load
}

/// Every order of `load` was placed once (one order per key, no other order
/// stored, `mug`'s stock, `stocked` at first, down by exactly what they
/// ordered) and is fulfilled, decided exactly once.
pub async fn assert_each_order_placed_and_decided_once(app: &TestApp, load: &KeyedLoad, mug: i64, stocked: i64) {
    for (id, _) in &load.placed {
        let order = app.wait_for_status(*id, "fulfilled", Duration::from_secs(90)).await;
        let moves: Vec<&Value> = order["history"].as_array().unwrap().iter().map(|entry| &entry["to"]).collect();
        assert_eq!(moves, ["pending", "processing", "fulfilled"], "decided once: {order}");
    }
    let ids: std::collections::BTreeSet<i64> = load.placed.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), load.placed.len(), "one order per key");
    let mut connection = sqlx::PgConnection::connect(&app.database_url).await.unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(&mut connection).await.unwrap();
    assert_eq!(stored, load.placed.len() as i64, "no order stored behind an error answer");
    let units: i64 = load.placed.iter().map(|(_, quantity)| quantity).sum();
    assert_eq!(app.stock(mug).await, stocked - units, "stock exact");
    assert_eq!(app.service.fulfillment.depth().await.unwrap().dead, 0, "no job charged for a platform fault");
}
