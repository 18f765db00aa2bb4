//! Hot swap across a deployment on PostgreSQL + Redis: `host serve` (no
//! workers of its own) and three `host worker` processes, each its own OS
//! process from the release build. Two figures:
//!
//! - convergence: from the upload of a new `fulfillment` version through the
//!   admin API (`POST /admin/slots/fulfillment/versions`, activated) to the
//!   moment every process reports serving it, over `BENCH_SWAPS` swaps;
//! - `POST /api/v1/orders` throughput while `pricing` is uploaded and
//!   activated every second (by a client of its own, as an operator's
//!   would be), against the steady state of the same run. The two
//!   alternate, window by window, so a drift of the machine or the database
//!   over the run weighs on both alike; the CPU each part of the deployment
//!   spends is shown for both, which says where an upload's cost lands.
//!
//! `BENCH_SECONDS` (default 5) per window, `BENCH_ROUNDS` (3) pairs of
//! windows, `BENCH_CONNECTIONS` (16), `BENCH_SWAPS` (20).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use host::config::BackendSettings;
use host::store::Store;

mod common;
use common::cpu::{named_cpu, process_cpu};
use common::load::{Outcome, http_load, post_order, print_throughput_during_swaps};
use common::{BenchDatabase, install_components, percentile, rebuilt, setting};

const WORKER_PROCESSES: usize = 3;

/// The processes of one deployment; killed when dropped.
struct Fleet {
    api: Child,
    workers: Vec<Child>,
    address: SocketAddr,
    admin_address: SocketAddr,
}

impl Fleet {
    fn start(database: &BenchDatabase, components: &Path) -> Self {
        let free = || TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let (address, admin_address) = (free(), free());
        let settings = [
            ("LISTEN_ADDR", address.to_string()),
            ("ADMIN_LISTEN_ADDR", admin_address.to_string()),
            ("GRPC_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
            ("WORKERS", "0".to_owned()),
        ];
        let settings: Vec<(&str, &str)> = settings.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let api = host_process(database, components, "serve", &settings);
        let workers =
            (0..WORKER_PROCESSES).map(|_| host_process(database, components, "worker", &[("WORKERS", "1")])).collect();
        Self { api, workers, address, admin_address }
    }

    /// `path` on the admin listener for the admin API's paths, on the public one for the rest.
    fn url(&self, path: &str) -> String {
        let address = if path.starts_with("/api/v1/admin") { self.admin_address } else { self.address };
        format!("http://{address}{path}")
    }

    /// The admin listener's base URL.
    fn admin_base(&self) -> String {
        format!("http://{}", self.admin_address)
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
        .env("AUTH_HS256_SECRET", common::BENCH_SECRET)
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
        let slots = client.get(fleet.url("/api/v1/admin/slots")).send().await;
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
        let slots = client.get(fleet.url("/api/v1/admin/slots")).send().await;
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

/// Uploads a new build of `pricing` through the API at `base` in the
/// middle of every second of `window` (tags from `first_tag`), from a
/// thread, runtime and client of its own: an operator's, apart from the load.
/// Returns how many it uploaded.
fn upload_every_second(
    base: String,
    pricing: Arc<Version>,
    first_tag: u64,
    window: Duration,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = common::bench_client();
        runtime.block_on(async {
            let started = tokio::time::Instant::now();
            let mut done = 0;
            while Duration::from_secs(done + 1) <= window {
                tokio::time::sleep_until(started + Duration::from_millis(500) + Duration::from_secs(done)).await;
                upload(&client, &base, "pricing", &pricing, first_tag + done).await;
                done += 1;
            }
            done
        })
    })
}

/// CPU time each part of the machine has used so far.
#[derive(Clone, Copy, Default)]
struct CpuSpent {
    api: Duration,
    workers: Duration,
    postgres: Duration,
    redis: Duration,
    bench: Duration,
}

impl CpuSpent {
    fn now(fleet: &Fleet) -> Self {
        Self {
            api: process_cpu(fleet.api.id()),
            workers: fleet.workers.iter().map(|worker| process_cpu(worker.id())).sum(),
            postgres: named_cpu("postgres"),
            redis: named_cpu("redis-server"),
            bench: process_cpu(std::process::id()),
        }
    }

    fn parts(&self) -> [Duration; 5] {
        [self.api, self.workers, self.postgres, self.redis, self.bench]
    }

    fn from_parts([api, workers, postgres, redis, bench]: [Duration; 5]) -> Self {
        Self { api, workers, postgres, redis, bench }
    }
}

/// One load window: what the load saw, and the CPU spent meanwhile.
struct Window {
    outcome: Outcome,
    cpu: CpuSpent,
}

impl Window {
    fn measure(fleet: &Fleet, load: impl FnOnce() -> Outcome) -> Self {
        let before = CpuSpent::now(fleet);
        let outcome = load();
        let after = CpuSpent::now(fleet);
        let (before, after) = (before.parts(), after.parts());
        Self {
            outcome,
            cpu: CpuSpent::from_parts(std::array::from_fn(|part| after[part].saturating_sub(before[part]))),
        }
    }

    fn merged(windows: Vec<Window>) -> Self {
        let cpu = windows.iter().fold([Duration::ZERO; 5], |sum, window| {
            let parts = window.cpu.parts();
            std::array::from_fn(|part| sum[part] + parts[part])
        });
        Self {
            outcome: Outcome::merged(windows.into_iter().map(|window| window.outcome).collect()),
            cpu: CpuSpent::from_parts(cpu),
        }
    }

    /// Cores each part kept busy, and its CPU time per order placed.
    fn cpu_row(&self, name: &str) -> String {
        let (seconds, orders) = (self.outcome.elapsed.as_secs_f64(), self.outcome.requests.max(1) as f64);
        let parts = self.cpu.parts();
        let cell =
            |cpu: Duration| format!("{:.2} ({:.0} µs)", cpu.as_secs_f64() / seconds, cpu.as_secs_f64() * 1e6 / orders);
        let cells: Vec<String> = parts.iter().map(|&cpu| cell(cpu)).collect();
        format!("| {name} | {} | {} |", cells.join(" | "), cell(parts.iter().sum()))
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
    let seconds: u64 = setting("BENCH_SECONDS", 5, 1);
    let rounds: u64 = setting("BENCH_ROUNDS", 3, 1);
    let connections: usize = setting("BENCH_CONNECTIONS", 16, 4);
    let swaps: u64 = setting("BENCH_SWAPS", 20, 2);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let database = BenchDatabase::create(&runtime);
    let dir = tempfile::tempdir().unwrap();
    let components = dir.path().join("components");
    install_components(&components);
    let fleet = Fleet::start(&database, &components);
    let client = common::bench_client();
    runtime.block_on(started(&client, &fleet));
    let fulfillment = Version::default_of("fulfillment", "fulfillment-standard", &components);
    let pricing = Version::default_of("pricing", "pricing", &components);

    // Upload to every process serving it: the API's gate and activation,
    // the notification, each worker's own gate and swap, its report.
    println!("{swaps} fulfillment swaps on 1 API + {WORKER_PROCESSES} worker processes ...");
    let (mut answered, mut everywhere) = (Vec::new(), Vec::new());
    for tag in 1..=swaps {
        let sent = Instant::now();
        let sha256 = runtime.block_on(upload(&client, &fleet.admin_base(), "fulfillment", &fulfillment, tag));
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
    let window = Duration::from_secs(seconds);
    // Warm up first: every window starts on a deployment past its first orders.
    runtime.block_on(http_load(fleet.address, connections, Duration::from_secs(3), post.clone()));
    println!(
        "POST /api/v1/orders at {connections} connections, {rounds} × ({seconds} s steady, {seconds} s while pricing is uploaded every second) ..."
    );
    let pricing = Arc::new(pricing);
    let (mut steady, mut swapping, mut uploads) = (Vec::new(), Vec::new(), 0);
    for round in 0..rounds {
        // Vacuumed before each window: every window starts on tables in the same shape.
        database.vacuum(&runtime);
        steady.push(Window::measure(&fleet, || {
            runtime.block_on(http_load(fleet.address, connections, window, post.clone()))
        }));
        database.vacuum(&runtime);
        let uploader = upload_every_second(fleet.admin_base(), pricing.clone(), 1_000 * (round + 1), window);
        swapping.push(Window::measure(&fleet, || {
            runtime.block_on(http_load(fleet.address, connections, window, post.clone()))
        }));
        uploads += uploader.join().expect("every upload activated");
        let (calm, busy) = (&steady[steady.len() - 1].outcome, &swapping[swapping.len() - 1].outcome);
        println!(
            "round {}: {:.0}/s steady, {:.0}/s during uploads ({:.0} %)",
            round + 1,
            calm.rate(),
            busy.rate(),
            100.0 * busy.rate() / calm.rate()
        );
    }
    let (steady, swapping) = (Window::merged(steady), Window::merged(swapping));

    let ms = |time: Duration| time.as_secs_f64() * 1e3;
    println!();
    println!("| fulfillment swap, {swaps} times | median | fastest | slowest |");
    println!("| --- | --- | --- | --- |");
    for (what, times) in [("upload answered (gated, active)", &answered), ("every process serves it", &everywhere)] {
        let (median, fastest, slowest) = (percentile(times, 0.5), times[0], times[times.len() - 1]);
        println!("| {what} | {:.0} ms | {:.0} ms | {:.0} ms |", ms(median), ms(fastest), ms(slowest));
    }
    println!();
    print_throughput_during_swaps(&steady.outcome, &swapping.outcome, &format!("{uploads} pricing uploads"));
    println!();
    println!("| CPU used, cores (per order) | API | workers | PostgreSQL | Redis | load and uploads | all |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    println!("{}", steady.cpu_row("steady"));
    println!("{}", swapping.cpu_row("during uploads"));
    drop(fleet);
    database.drop_now(&runtime);
}
