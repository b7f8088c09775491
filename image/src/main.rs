//! coloc-image: builds the node image every coloc server boots, and the
//! per-node seed volume that makes a booted image one particular node.
//!
//! - `coloc-image lock <spec>`: resolves the spec's packages against the
//!   Debian mirrors into the committed lockfile and fills the package cache.
//! - `coloc-image build <spec> -o node.img`: a GPT disk (ESP with
//!   systemd-boot, ext4 root) installed from exactly the locked packages,
//!   bit-identical on rebuild (docs/IMAGE.md has the layout and what is and
//!   is not reproducible).
//! - `coloc-image hash <spec> --agent <bin>`: the content hash of a build's
//!   inputs, under which images are cached.
//! - `coloc-image seed`: a node's seed volume (seed.rs).
//!
//! It owns the image's bytes; what runs inside the image at boot (units,
//! first-boot setup) is image/rootfs/ and the agent's business. Of the
//! rest of coloc it uses only `coloc-proto` (names, and the seed schema in
//! `coloc_proto::seed`); the agent binary it installs is an input file.
//!
//! Layout, in the order of a build: `spec` (the image spec, strict TOML),
//! `lockfile` (the committed package lock) and `lock` (the command that
//! writes it), `index` (apt's metadata, parsed), `cache` (the
//! content-addressed `.deb` cache), `inputs` (what an image is a function
//! of, and its hash), `workdir` (a build's scratch directory), `rootfs`
//! (mmdebstrap from a local repository of the locked packages), `hook`
//! (the customize step mmdebstrap runs inside the chroot), `tree` (the
//! root tree on a tmpfs), `ext4` (the root filesystem), `esp` (the EFI
//! system partition), `gpt` (the disk), `image` (the whole `build`
//! pipeline), `digest` (hashes and the identifiers derived from them),
//! `progress` (what the user watches), `runner` (the one way this binary
//! runs a command) and `seed` (`coloc-image seed`).

mod cache;
mod digest;
mod esp;
mod ext4;
mod gpt;
mod hook;
mod image;
mod index;
mod inputs;
mod lock;
mod lockfile;
mod progress;
mod rootfs;
mod runner;
mod seed;
mod spec;
mod tree;
mod workdir;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cache::DebCache;
use crate::progress::human_bytes;

#[derive(Debug, Parser)]
#[command(
    name = "coloc-image",
    version,
    about = "Builds coloc's reproducible node images and seed volumes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build a bootable disk image from a spec and its lockfile.
    Build {
        /// The image spec, e.g. image/specs/node.toml (its lockfile is read
        /// from beside it).
        spec: PathBuf,
        /// Where to write the image; it appears only once complete.
        #[arg(short, long)]
        output: PathBuf,
        /// The coloc-agent binary installed as /usr/bin/coloc-agent.
        #[arg(
            long,
            env = "COLOC_AGENT",
            default_value = "target/release/coloc-agent"
        )]
        agent: PathBuf,
        /// The content-addressed package cache.
        #[arg(long, env = "COLOC_CACHE", default_value = cache::DEFAULT_CACHE)]
        cache: PathBuf,
        /// Where to create the build's scratch directory (default: the
        /// system temporary directory). It needs a few GiB.
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Keep the scratch directory afterwards, for debugging.
        #[arg(long)]
        keep_work_dir: bool,
        /// Also write a manifest of the root tree (one line per file: type,
        /// mode, owner, mtime, size, path, SHA-256), to compare two builds.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Show all of mmdebstrap's output, not only its stages.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Resolve the spec's packages against the mirrors and write its
    /// lockfile (and fill the package cache).
    Lock {
        /// The image spec, e.g. image/specs/node.toml.
        spec: PathBuf,
        /// Where to write the lockfile (default: beside the spec, .lock).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// The content-addressed package cache.
        #[arg(long, env = "COLOC_CACHE", default_value = cache::DEFAULT_CACHE)]
        cache: PathBuf,
        /// Where to create the scratch directory.
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Show all of mmdebstrap's output, not only its stages.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Print the content hash of everything a build of this spec depends
    /// on: the name images are cached under.
    Hash {
        /// The image spec.
        spec: PathBuf,
        /// The coloc-agent binary the image would carry.
        #[arg(
            long,
            env = "COLOC_AGENT",
            default_value = "target/release/coloc-agent"
        )]
        agent: PathBuf,
    },
    /// Write a node's seed volume (docs/IMAGE.md, "Seed volume").
    Seed(seed::SeedArgs),
}

fn main() -> ExitCode {
    // mmdebstrap runs this binary as its customize hook, through a symlink
    // whose name says so (see hook.rs).
    if let Err(e) = runner::watch_signals() {
        eprintln!("coloc-image: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    let mut args = std::env::args();
    let argv0 = args.next().unwrap_or_default();
    if Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n == hook::HOOK_NAME)
    {
        init_tracing();
        let rest: Vec<String> = args.collect();
        return report(hook::main_from_mmdebstrap(&rest));
    }
    init_tracing();
    let cli = Cli::parse();
    report(run(cli.command))
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COLOC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) if runner::interrupted() => {
            eprintln!("coloc-image: interrupted; scratch files and mounts were cleaned up");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("coloc-image: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Build {
            spec,
            output,
            agent,
            cache,
            work_dir,
            keep_work_dir,
            manifest,
            verbose,
        } => {
            let summary = image::build(&image::BuildOptions {
                spec,
                out: output,
                agent,
                cache: DebCache::new(cache),
                work_dir,
                keep_work_dir,
                manifest,
                verbose,
            })?;
            let secs = summary.seconds;
            eprintln!();
            eprintln!("image   {}", summary.path.display());
            eprintln!(
                "size    {} ({} bytes)",
                human_bytes(summary.size),
                summary.size
            );
            eprintln!("sha256  {}", summary.sha256);
            eprintln!("time    {}m{:02}s", (secs as u64) / 60, (secs as u64) % 60);
            Ok(())
        }
        Command::Lock {
            spec,
            output,
            cache,
            work_dir,
            verbose,
        } => lock::run(lock::LockOptions {
            spec,
            out: output,
            cache: DebCache::new(cache),
            work_dir,
            verbose,
        }),
        Command::Hash { spec, agent } => {
            let spec = spec::Spec::load(&spec)?;
            let epoch = inputs::source_date_epoch(&spec.dir())?;
            println!("{}", inputs::cache_key(&spec, &agent, &epoch)?);
            Ok(())
        }
        Command::Seed(args) => seed::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed_and_every_flag_is_documented() {
        Cli::command().debug_assert();
        for sub in Cli::command().get_subcommands() {
            for arg in sub.get_arguments() {
                assert!(
                    arg.get_help().is_some() || arg.get_id() == "help" || arg.get_id() == "version",
                    "{} {} has no help",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }

    #[test]
    fn build_flags_parse() {
        let cli = Cli::try_parse_from([
            "coloc-image",
            "build",
            "image/specs/node.toml",
            "-o",
            "/tmp/node.img",
            "--agent",
            "target/release/coloc-agent",
        ])
        .expect("parses");
        match cli.command {
            Command::Build {
                spec,
                output,
                agent,
                ..
            } => {
                assert_eq!(spec, Path::new("image/specs/node.toml"));
                assert_eq!(output, Path::new("/tmp/node.img"));
                assert_eq!(agent, Path::new("target/release/coloc-agent"));
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
