//! `coloc`, the command line of the cooperative's sysadmins and members: a
//! client of colocd's public gRPC API (coloc.controller.v1) and nothing
//! more. It owns no state besides the config file it reads and the key
//! files `coloc user cert issue` writes; every decision is colocd's, the CLI only
//! checks input early so that mistakes get a clear sentence.
//!
//! Layout: [`args`] is the command tree and [`input`] parses the values
//! people type; [`config`] finds the server and credentials, [`client`]
//! connects, [`commands`] runs each command, [`certs`] makes the key and
//! writes the files of `coloc user cert issue`, [`output`] prints, [`error`]
//! decides messages and exit codes. [`args`], [`commands`] and
//! [`output`] are split by area of colocd's API, as the controller's
//! services are: `fleet` (sites, join tokens, nodes), `tenancy` (tenants,
//! users, tokens, certificates), `storage` (pools, volumes, snapshots),
//! `apps` (catalog, instances, requests), `audit` and `tasks`, with what
//! the areas share in the parent module.

mod args;
mod certs;
mod client;
mod commands;
mod config;
mod error;
mod input;
mod output;
mod password;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use crate::args::Cli;
use crate::error::Exit;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return clap_exit(err),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coloc: cannot start the async runtime: {e}");
            return ExitCode::from(Exit::Generic.code());
        }
    };
    match runtime.block_on(commands::run(cli.global, cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("coloc: {}", failure.message);
            ExitCode::from(failure.exit.code())
        }
    }
}

/// Help and version go to stdout with 0; a refused value exits 7 like any
/// other invalid argument; everything else clap refuses is a usage error.
fn clap_exit(err: clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // clap knows where these go (stdout for asked-for help).
            if let Err(e) = err.print() {
                eprintln!("coloc: cannot print help: {e}");
                return ExitCode::from(Exit::Generic.code());
            }
            ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(Exit::Usage.code()))
        }
        kind => {
            let text = err.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            eprint!("coloc: {text}");
            let exit = match kind {
                ErrorKind::ValueValidation | ErrorKind::InvalidValue => Exit::InvalidArgument,
                _ => Exit::Usage,
            };
            ExitCode::from(exit.code())
        }
    }
}
