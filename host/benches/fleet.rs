//! Hot swap across a deployment on PostgreSQL + Redis: `host serve` (no
//! workers of its own) and three `host worker` processes, each its own OS
//! process from the release build. Two figures:
//!
//! - convergence: from the upload of a new `fulfillment` version through the
//!   admin API (`POST /admin/slots/fulfillment/versions`, activated) to the
//!   moment every process reports serving it, over `BENCH_SWAPS` swaps;
//! - `POST /api/v1/orders` throughput while `pricing` is uploaded and
//!   activated every second, against the steady state of the same run.
//!
//! `BENCH_SECONDS` (default 10) per load phase, `BENCH_CONNECTIONS` (16),
//! `BENCH_SWAPS` (20).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use host::config::BackendSettings;
use host::store::Store;

mod common;
use common::load::{http_load, post_order, print_throughput_during_swaps};
use common::{BenchDatabase, install_components, percentile, rebuilt, setting};

const TOKEN: &str = "fleet-bench-token";
const WORKER_PROCESSES: usize = 3;

/// The processes of one deployment; killed when dropped.
struct Fleet {
    api: Child,
    workers: Vec<Child>,
    address: SocketAddr,
}

impl Fleet {
    fn start(database: &BenchDatabase, components: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let api = host_process(
            database,
            components,
            "serve",
            &[("LISTEN_ADDR", &address.to_string()), ("GRPC_LISTEN_ADDR", "127.0.0.1:0"), ("WORKERS", "0")],
        );
        let workers =
            (0..WORKER_PROCESSES).map(|_| host_process(database, components, "worker", &[("WORKERS", "1")])).collect();
        Self { api, workers, address }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn processes(&self) -> usize {
        1 + self.workers.len()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.api).chain(&mut self.workers) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `host <subcommand>` (this build's release binary) on the bench's database and Redis.
fn host_process(database: &BenchDatabase, components: &Path, subcommand: &str, settings: &[(&str, &str)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_host"));
    command
        .arg(subcommand)
        .env("DATABASE_URL", &database.url)
        .env("REDIS_URL", &database.redis_url)
        .env("REDIS_NAMESPACE", format!("bench:{}:", database.name))
        .env("COMPONENTS_DIR", components)
        .env("ADMIN_TOKEN", TOKEN)
        .env("SEED_DEMO_PRODUCTS", "false")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    for (name, value) in settings {
        command.env(name, value);
    }
    command.spawn().expect("host starts")
}

/// A slot's default component: its `.wasm`, `.toml` and fixtures folder.
struct Version {
    wasm: Vec<u8>,
    toml: String,
    fixtures: PathBuf,
}

impl Version {
    fn default_of(slot: &str, crate_dir: &str, components: &Path) -> Self {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../components").join(crate_dir);
        Self {
            wasm: std::fs::read(components.join(format!("{slot}.wasm"))).unwrap(),
            toml: std::fs::read_to_string(source.join(format!("{slot}.toml"))).unwrap(),
            fixtures: source.join("fixtures"),
        }
    }

    /// The admin API's form for a new build (`tag`) of this version, activated.
    fn form(&self, tag: u64) -> (reqwest::multipart::Form, String) {
        let wasm = rebuilt(&self.wasm, tag);
        let sha256 = host::runtime::digest(&wasm);
        let mut form = reqwest::multipart::Form::new()
            .part("component", reqwest::multipart::Part::bytes(wasm).file_name("component.wasm"))
            .text("config", self.toml.clone())
            .text("activate", "true");
        for entry in std::fs::read_dir(&self.fixtures).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap();
            form = form.part("fixtures", reqwest::multipart::Part::bytes(bytes).file_name(name));
        }
        (form, sha256)
    }
}

/// Uploads and activates build `tag` of `version` in `slot` through the API
/// at `base`; returns its sha256.
async fn upload(client: &reqwest::Client, base: &str, slot: &str, version: &Version, tag: u64) -> String {
    let (form, sha256) = version.form(tag);
    let answer = client
        .post(format!("{base}/api/v1/admin/slots/{slot}/versions"))
        .bearer_auth(TOKEN)
        .multipart(form)
        .send()
        .await
        .expect("the API answers");
    let status = answer.status();
    let body: Value = answer.json().await.unwrap();
    assert!(status.is_success() && body["outcome"] == "activated", "{status}: {body}");
    sha256
}

/// Waits until every process of `fleet` reports serving `sha256` in `slot`.
async fn converged(client: &reqwest::Client, fleet: &Fleet, slot: &str, sha256: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = Value::Null;
    loop {
        let slots = client.get(fleet.url("/api/v1/admin/slots")).bearer_auth(TOKEN).send().await;
        if let Ok(slots) = slots
            && let Ok(slots) = slots.json::<Value>().await
            && let Some(status) = slots.as_array().and_then(|slots| slots.iter().find(|status| status["slot"] == slot))
        {
            let processes = status["processes"].as_array().map_or(&[][..], Vec::as_slice);
            let serving = |process: &Value| process["serving"]["sha256"] == sha256;
            if processes.len() == fleet.processes() && processes.iter().all(serving) {
                return;
            }
            last = status.clone();
        }
        assert!(Instant::now() < deadline, "{slot} never converged on {sha256}: {last:#}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until every process reports the active version of each slot it
/// follows (the API all three, each worker `fulfillment`).
async fn started(client: &reqwest::Client, fleet: &Fleet) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let slots = client.get(fleet.url("/api/v1/admin/slots")).bearer_auth(TOKEN).send().await;
        if let Ok(slots) = slots
            && let Ok(slots) = slots.json::<Value>().await
            && let Some(slots) = slots.as_array()
        {
            let everywhere = |slot: &Value| {
                let processes = slot["processes"].as_array().map_or(0, Vec::len);
                let following = if slot["slot"] == "fulfillment" { fleet.processes() } else { 1 };
                processes == following && slot["converged"] == true
            };
            if slots.len() == 3 && slots.iter().all(everywhere) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the deployment never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn products(database: &BenchDatabase) -> Vec<i64> {
    let backend = BackendSettings { database_url: Some(database.url.clone()), ..BackendSettings::default() };
    let store = Store::open(&backend.connect_options()).await.unwrap();
    let ids = common::load_catalogue(&store, "FLEET").await.iter().map(|product| product.id).collect();
    store.close().await;
    ids
}

fn main() {
    let seconds: u64 = setting("BENCH_SECONDS", 10, 1);
    let connections: usize = setting("BENCH_CONNECTIONS", 16, 4);
    let swaps: u64 = setting("BENCH_SWAPS", 20, 2);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let database = BenchDatabase::create(&runtime);
    let dir = tempfile::tempdir().unwrap();
    let components = dir.path().join("components");
    install_components(&components);
    let fleet = Fleet::start(&database, &components);
    let client = reqwest::Client::new();
    runtime.block_on(started(&client, &fleet));
    let fulfillment = Version::default_of("fulfillment", "fulfillment-standard", &components);
    let pricing = Version::default_of("pricing", "pricing", &components);

    // Upload to every process serving it: the API's gate and activation,
    // the notification, each worker's own gate and swap, its report.
    println!("{swaps} fulfillment swaps on 1 API + {WORKER_PROCESSES} worker processes ...");
    let (mut answered, mut everywhere) = (Vec::new(), Vec::new());
    for tag in 1..=swaps {
        let sent = Instant::now();
        let sha256 = runtime.block_on(upload(&client, &fleet.url(""), "fulfillment", &fulfillment, tag));
        answered.push(sent.elapsed());
        runtime.block_on(converged(&client, &fleet, "fulfillment", &sha256));
        everywhere.push(sent.elapsed());
    }
    answered.sort_unstable();
    everywhere.sort_unstable();

    let products = runtime.block_on(products(&database));
    let post = Arc::new(move |n: u64| {
        let pick = |offset: u64| products[((n * 7 + offset) % products.len() as u64) as usize];
        let body = json!({"user_id": n % 1_000_000, "items": [
            {"product_id": pick(0), "quantity": 1}, {"product_id": pick(331), "quantity": 2}]});
        post_order(&body)
    });
    let duration = Duration::from_secs(seconds);
    // Warm up, then vacuum: both phases start on tables in the same shape.
    runtime.block_on(http_load(fleet.address, connections, Duration::from_secs(3), post.clone()));
    database.vacuum(&runtime);
    println!("POST /api/v1/orders for {seconds} s at {connections} connections, steady ...");
    let steady = runtime.block_on(http_load(fleet.address, connections, duration, post.clone()));
    database.vacuum(&runtime);
    println!("... and again while pricing is uploaded and activated every second ...");
    let swapper = {
        let client = client.clone();
        let base = fleet.url("");
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let (started, mut done) = (Instant::now(), 0u64);
            tick.tick().await;
            while started.elapsed() + Duration::from_secs(1) < duration {
                tick.tick().await;
                upload(&client, &base, "pricing", &pricing, 1_000 + done).await;
                done += 1;
            }
            done
        })
    };
    let swapping = runtime.block_on(http_load(fleet.address, connections, duration, post));
    let pricing_swaps = runtime.block_on(swapper).unwrap();

    let ms = |time: Duration| time.as_secs_f64() * 1e3;
    println!();
    println!("| fulfillment swap, {swaps} times | median | fastest | slowest |");
    println!("| --- | --- | --- | --- |");
    for (what, times) in [("upload answered (gated, active)", &answered), ("every process serves it", &everywhere)] {
        let (median, fastest, slowest) = (percentile(times, 0.5), times[0], times[times.len() - 1]);
        println!("| {what} | {:.0} ms | {:.0} ms | {:.0} ms |", ms(median), ms(fastest), ms(slowest));
    }
    println!();
    print_throughput_during_swaps(&steady, &swapping, &format!("{pricing_swaps} pricing uploads"));
    drop(fleet);
    database.drop_now(&runtime);
}
