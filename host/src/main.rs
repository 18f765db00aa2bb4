//! The `host` binary: thin on purpose; everything lives in the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use component_commands::ComponentCommand;
use std::sync::Arc;
use std::time::Duration;

use host::app::{App, AppSettings};
use host::config::{BackendSettings, ServeSettings, WorkerSettings};
use host::orders::OrderPolicy;
use host::runtime::bindings::types::Order;
use host::runtime::{CallContext, Capabilities, EngineSettings, Runtime, Slot, SlotRegistry};
use host::startup::{Application, Background, shutdown_signal};

mod component_commands;
mod token_command;

#[derive(Parser)]
#[command(name = "host", version, about = "An order service whose business rules are WebAssembly components")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API (the default). Without DATABASE_URL and REDIS_URL
    /// it runs embedded: a SQLite file under ./data and in-process caches.
    Serve(Box<ServeSettings>),
    /// Run fulfillment workers (no HTTP API): take jobs from the queue, ask
    /// the `fulfillment` component, apply its decisions. Drains on SIGTERM.
    Worker(Box<WorkerSettings>),
    /// Check a component file offline, or push it to the component registry.
    Component {
        #[command(subcommand)]
        command: ComponentCommand,
    },
    /// Mint an access token with the key this service holds (the embedded
    /// default's, or AUTH_HS256_SECRET): `host token issue --sub 42 --scope orders`.
    Token {
        #[command(subcommand)]
        command: token_command::TokenCommand,
    },
    /// Apply the database migrations and exit.
    Migrate {
        #[command(flatten)]
        backend: BackendSettings,
    },
    /// Load the components and run one order through validation, pricing and
    /// fulfillment, printing each slot's answer.
    Demo {
        /// Folder holding `<slot>.wasm` and `<slot>.toml` for each slot.
        #[arg(long, env = "COMPONENTS_DIR", default_value = "data/components")]
        components_dir: PathBuf,
        /// An order as JSON; a built-in 3-line order when omitted.
        #[arg(long)]
        order: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    host::telemetry::init();
    let cli = Cli::parse();
    let command = cli.command.unwrap_or_else(|| Command::Serve(Box::new(ServeSettings::parse_env())));
    let outcome = match command {
        Command::Serve(settings) => serve(*settings).await,
        Command::Worker(settings) => worker(*settings).await,
        Command::Migrate { backend } => migrate(&backend).await,
        Command::Token { command } => command.run(),
        Command::Demo { components_dir, order } => demo(&components_dir, order).await,
        Command::Component { command } => match command.run().await {
            Ok(true) => Ok(()),
            Ok(false) => std::process::exit(1),
            Err(error) => Err(error),
        },
    };
    if let Err(error) = &outcome {
        tracing::error!(error = format!("{error:#}"), "stopped on an error");
    }
    outcome
}

async fn serve(settings: ServeSettings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    let (address, grpc, admin) = (app.local_addr(), app.grpc_addr(), app.admin_addr());
    tracing::info!(%address, %grpc, %admin, "serving");
    println!("Orderly is serving on http://{address}");
    println!("gRPC (orderly.v1.OrderService) on http://{grpc}");
    println!("The admin API on http://{admin}");
    if let Some(token) = app.first_token() {
        println!("A token with every scope, valid for an hour (more: host token issue --sub 42 --scope orders):");
        println!("  export TOKEN={token}");
    }
    println!("Try: curl -s -X POST http://{address}/api/v1/orders -H \"authorization: Bearer $TOKEN\" \\");
    println!(
        "       -H 'content-type: application/json' -d '{{\"user_id\": 7, \"items\": [{{\"product_id\": 1, \"quantity\": 2}}]}}'"
    );
    app.run_until_stopped().await
}

async fn worker(settings: WorkerSettings) -> anyhow::Result<()> {
    let app = App::build(
        AppSettings {
            backend: &settings.backend,
            role: "worker",
            components_dir: None,
            swap: &settings.swap,
            product_cache_ttl: Duration::from_secs(300),
            seed_demo_products: Some(false),
            orders: OrderPolicy::default(),
        },
        None,
    )
    .await?;
    let app = Arc::new(app);
    let mut fulfillment = settings.fulfillment.clone();
    fulfillment.workers = fulfillment.workers.max(1);
    let background = Background::start(app.clone(), &fulfillment, &settings.swap);
    println!("Orderly worker: {} workers on the {} queue", fulfillment.workers, app.fulfillment.queue().backend());
    shutdown_signal().await;
    tracing::info!("shutting down: no new jobs, finishing those in hand");
    background.stop(Duration::from_secs(settings.shutdown_grace_secs)).await;
    app.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn migrate(backend: &BackendSettings) -> anyhow::Result<()> {
    let options = backend.connect_options();
    let store = host::store::Store::open(&options).await?;
    // Unlike a start, migrating fails if components cannot be given their logins.
    store.set_up_component_logins().await?;
    tracing::info!("migrations applied; component logins ready");
    Ok(())
}

async fn demo(components_dir: &std::path::Path, order: Option<PathBuf>) -> anyhow::Result<()> {
    let runtime = Runtime::new(&EngineSettings::default(), Capabilities::embedded())?;
    let registry = SlotRegistry::new();
    let filled = runtime.load_dir(components_dir, &registry).await?;
    anyhow::ensure!(
        filled.len() == Slot::ALL.len(),
        "expected validation.wasm, pricing.wasm and fulfillment.wasm in {} (run `just build`)",
        components_dir.display()
    );
    let order: Order = match order {
        Some(path) => serde_json::from_str(&std::fs::read_to_string(path)?)?,
        None => serde_json::from_str(DEMO_ORDER)?,
    };
    let context = CallContext::new(uuid::Uuid::new_v4().to_string());
    let component = |slot| registry.get(slot).expect("filled above");
    let violations = runtime.validate(&component(Slot::Validation), &context, &order).await?;
    println!("validation: {}", serde_json::to_string(&violations.value)?);
    anyhow::ensure!(violations.value.is_empty(), "the order was refused");
    let quote = runtime.price(&component(Slot::Pricing), &context, &order).await?;
    println!("pricing: {}", serde_json::to_string(&quote.value)?);
    let Ok(quote) = quote.value else { anyhow::bail!("the order could not be priced") };
    let decision = runtime.decide(&component(Slot::Fulfillment), &context, &order, &quote).await?;
    println!("fulfillment: {}", serde_json::to_string(&decision.value)?);
    Ok(())
}

/// `host` with no subcommand serves with settings from the environment.
trait FromEnvironment {
    fn parse_env() -> Self;
}

impl FromEnvironment for ServeSettings {
    fn parse_env() -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            settings: ServeSettings,
        }
        Only::parse_from(["host"]).settings
    }
}

const DEMO_ORDER: &str = r#"{
  "id": null, "user_id": 7, "currency": "EUR", "attributes": [],
  "items": [
    {"product_id": 1, "sku": "MUG-01", "name": "Mug", "unit_price": 1250, "quantity": 2},
    {"product_id": 2, "sku": "TEA-01", "name": "Tea", "unit_price": 990, "quantity": 1},
    {"product_id": 3, "sku": "POT-01", "name": "Teapot", "unit_price": 4500, "quantity": 3}
  ]
}"#;
