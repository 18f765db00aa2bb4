//! `host component`: check a component file against the gate offline, or
//! push it to the component registry (the database every process follows).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use host::config::{BackendSettings, SwapSettings};
use host::rules::Rules;
use host::rules::swap::gate::{self, Fixtures, GateReport};
use host::rules::swap::{Candidate, ProcessInfo, Proposal, Source, Swaps};
use host::runtime::{Capabilities, EngineSettings, Runtime, Slot, SlotConfig};
use host::store::Store;

#[derive(Subcommand)]
pub enum ComponentCommand {
    /// Run the gate a component must pass before it goes live (compile, fit
    /// the slot's world, answer the golden fixtures) and print the report.
    /// Exits with 1 if the component would be rejected.
    Check {
        #[command(flatten)]
        files: ComponentFiles,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Publish a component to the component registry (through the gate,
    /// here first), so that every process of the deployment can serve it;
    /// with `--activate` they all do. Exits with 1 if it was rejected.
    Push {
        #[command(flatten)]
        files: ComponentFiles,
        /// Make it the slot's active version at once.
        #[arg(long)]
        activate: bool,
        #[command(flatten)]
        backend: BackendSettings,
    },
}

/// A component's files.
#[derive(clap::Args)]
pub struct ComponentFiles {
    /// The component's `.wasm`.
    file: PathBuf,
    /// The slot it is meant for: validation, pricing or fulfillment.
    #[arg(long)]
    slot: Slot,
    /// Its `.toml` (default: the file's name with `.toml`, if present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The golden fixtures (default: `<slot>.fixtures/` beside the file, if present).
    #[arg(long)]
    fixtures: Option<PathBuf>,
}

impl ComponentCommand {
    /// Runs the command; `false` when the component was rejected.
    pub async fn run(self) -> anyhow::Result<bool> {
        match self {
            ComponentCommand::Check { files, json } => check(files, json).await,
            ComponentCommand::Push { files, activate, backend } => push(files, activate, &backend).await,
        }
    }
}

impl ComponentFiles {
    /// The candidate the files make, and whether fixtures were found.
    fn read(&self) -> anyhow::Result<(Candidate, bool)> {
        let wasm = std::fs::read(&self.file).with_context(|| format!("cannot read {}", self.file.display()))?;
        let config_path = self.config.clone().unwrap_or_else(|| self.file.with_extension("toml"));
        let config_text = match std::fs::read_to_string(&config_path) {
            Ok(text) => Some(text),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && self.config.is_none() => None,
            Err(error) => return Err(error).with_context(|| format!("cannot read {}", config_path.display())),
        };
        let beside = || Some(self.file.parent()?.join(format!("{}.fixtures", self.slot.name())));
        let dir = self.fixtures.clone().or_else(|| beside().filter(|dir| dir.is_dir()));
        let fixtures = dir.as_deref().map_or(Fixtures::None, Fixtures::in_dir);
        Ok((Candidate { wasm, config_text, fixtures }, dir.is_some()))
    }
}

fn offline_runtime() -> anyhow::Result<Runtime> {
    Ok(Runtime::new(&EngineSettings::default(), Capabilities::embedded())?)
}

async fn check(files: ComponentFiles, json: bool) -> anyhow::Result<bool> {
    let (candidate, found_fixtures) = files.read()?;
    let runtime = offline_runtime()?;
    let slot = files.slot;
    let config_name = files.file.with_extension("toml");
    let verdict = match candidate.config_text.as_deref().map(|text| SlotConfig::parse(text, &display(&config_name))) {
        Some(Err(error)) => gate::refused(slot, &candidate.sha256(), error.to_string()),
        parsed => {
            let config = parsed.and_then(Result::ok).unwrap_or_default();
            let Candidate { wasm, config_text, fixtures } = candidate;
            gate::check(&runtime, slot, wasm, config, config_text, &fixtures).await
        }
    };
    print_report(&verdict.report, json, found_fixtures)?;
    Ok(verdict.report.accepted)
}

async fn push(files: ComponentFiles, activate: bool, backend: &BackendSettings) -> anyhow::Result<bool> {
    let (candidate, found_fixtures) = files.read()?;
    let store = Store::open(&backend.connect_options()).await?;
    let swaps = Swaps::new(store.clone(), None, &SwapSettings::default(), ProcessInfo::current("cli"));
    let rules = Rules::new(offline_runtime()?, swaps);
    let proposal = rules.publish(files.slot, candidate, Source::Cli.into(), activate).await;
    store.close().await;
    let (accepted, outcome) = match proposal? {
        Proposal::Activated(report) => {
            print_report(&report, false, found_fixtures)?;
            (true, "published and activated: every process follows".to_owned())
        }
        Proposal::Stored { version_id, report } => {
            print_report(&report, false, found_fixtures)?;
            (true, format!("published as version {version_id} (not activated)"))
        }
        Proposal::Unchanged => (true, "already the active version: nothing to do".to_owned()),
        Proposal::Rejected(report) => {
            print_report(&report, false, found_fixtures)?;
            (false, "rejected: the registry is unchanged".to_owned())
        }
    };
    println!("{outcome}");
    Ok(accepted)
}

fn print_report(report: &GateReport, json: bool, found_fixtures: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    if !found_fixtures {
        println!("(no golden fixtures given: only compilation and the slot's world are checked)");
    }
    print!("{}", report.render());
    Ok(())
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
