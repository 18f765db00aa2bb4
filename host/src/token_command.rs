//! `host token issue`: an access token signed with the key this service
//! holds (the embedded default's, or `AUTH_HS256_SECRET`).

use std::time::Duration;

use clap::{Args, Subcommand};
use host::auth::{AuthSettings, Scope, Scopes, TokenRequest};

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Print a signed access token.
    Issue(IssueArgs),
}

#[derive(Args)]
pub struct IssueArgs {
    /// The subject: a user id for a customer, any name for a service.
    #[arg(long)]
    sub: String,
    /// Scopes (`orders`, `orders:all`, `catalog:write`, `admin`), repeated
    /// or space-separated.
    #[arg(long = "scope", required = true, num_args = 1..)]
    scopes: Vec<String>,
    /// How long the token is valid, in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl_secs: u64,
    /// The `client_id` claim, naming the client the token is for.
    #[arg(long)]
    client_id: Option<String>,
    #[command(flatten)]
    auth: AuthSettings,
}

impl TokenCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let TokenCommand::Issue(args) = self;
        let names: Vec<&str> = args.scopes.iter().flat_map(|scopes| scopes.split_whitespace()).collect();
        if let Some(unknown) = names.iter().find(|name| Scope::parse(name).is_none()) {
            anyhow::bail!("unknown scope {unknown:?}: one of orders, orders:all, catalog:write, admin");
        }
        let issuer = host::auth::issuer_for(&args.auth)?;
        let request = TokenRequest {
            subject: args.sub,
            scopes: Scopes::of(names.into_iter().filter_map(Scope::parse)),
            lifetime: Duration::from_secs(args.ttl_secs),
            client_id: args.client_id,
        };
        println!("{}", issuer.issue(&request)?);
        Ok(())
    }
}
