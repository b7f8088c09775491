//! One function per command: check what only the CLI can check, connect,
//! make the call, print. Connection happens after local validation, so a
//! typo never costs a round trip or depends on the server being up.
//!
//! One module per area of colocd's API, as the controller's services are
//! split: [`fleet`] (sites, nodes, join tokens, colocd's counters),
//! [`tenancy`] (tenants, users and their certificates, API tokens,
//! `whoami`), [`storage`] (pools, volumes, snapshots), [`apps`] (catalog,
//! instances, logs, requests), [`audit`], [`tasks`] and [`health`] (node
//! health, scrubs and self-tests, alerts); this module
//! dispatches and holds what they share: connecting, calling, printing
//! lists and secrets.

mod apps;
mod audit;
mod fleet;
mod health;
mod storage;
mod tasks;
mod tenancy;

use std::future::Future;

use tonic::{Response, Status};

use crate::args::{Command, GlobalArgs};
use crate::client::Api;
use crate::config;
use crate::error::Failure;
use crate::output::{Printer, write_stdout};

/// Runs one parsed command line.
pub async fn run(global: GlobalArgs, command: Command) -> Result<(), Failure> {
    let out = Printer { json: global.json };
    match command {
        Command::Site { command } => fleet::site(&global, out, command).await,
        Command::Node { command } => fleet::node(&global, out, command).await,
        Command::Tenant { command } => tenancy::tenant(&global, out, command).await,
        Command::Pool { command } => storage::pool(&global, out, command).await,
        Command::Volume { command } => storage::volume(&global, out, command).await,
        Command::App { command } => apps::app(&global, out, command).await,
        Command::Request { command } => apps::request(&global, out, command).await,
        Command::Alert { command } => health::alert(&global, out, command).await,
        Command::User { command } => tenancy::user(&global, out, command).await,
        Command::Token { command } => tenancy::token(&global, out, command).await,
        Command::Whoami => tenancy::whoami(&global, out).await,
        Command::Stats => fleet::stats(&global, out).await,
        Command::Tasks => tasks::tasks(&global, out).await,
        Command::Audit(args) => audit::audit(&global, out, args).await,
    }
}

async fn connect(global: &GlobalArgs) -> Result<Api, Failure> {
    let settings = config::load(global)?;
    Api::connect(&settings).await
}

/// Awaits a call, prints the notices colocd attached about the caller's
/// association, and turns a refusal into a [`Failure`].
async fn call<T>(
    api: &Api,
    request: impl Future<Output = Result<Response<T>, Status>>,
) -> Result<T, Failure> {
    match request.await {
        Ok(answer) => {
            api.show_notices(answer.metadata(), "");
            Ok(answer.into_inner())
        }
        Err(status) => {
            api.show_notices(status.metadata(), status.message());
            Err(api.fail(status))
        }
    }
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Prints a secret that colocd will never show again: the secret alone on
/// stdout (so `$(coloc token create)` captures just it), the explanation
/// on stderr. In JSON mode the whole object goes to stdout.
fn print_secret(
    out: Printer,
    json: serde_json::Value,
    secret: &str,
    about: String,
) -> Result<(), Failure> {
    if secret.is_empty() {
        return Err(Failure::generic(
            "colocd answered without a secret; nothing to show",
        ));
    }
    if out.json {
        return out.emit(json, String::new);
    }
    eprintln!("{about}");
    eprintln!("The secret below is shown only once: colocd keeps only a hash of it. Store it now.");
    write_stdout(&format!("{secret}\n"))
}
