//! The `pvegate` command line: argument parsing only; the work is in `pvegate::commands`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pvegate::commands;

/// mimalloc: a proxy allocates and frees small buffers and header maps for every request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A policy-enforcing reverse proxy for the Proxmox VE API.
#[derive(Parser)]
#[command(name = "pvegate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Decide one request offline and explain it (exit 0 allow, 3 deny, 2 bad input).
    Check {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// HTTP method: GET, POST, PUT or DELETE.
        method: String,
        /// Request target, e.g. /api2/json/nodes/pve/qemu/104/status/stop
        target: String,
        /// Request body (form-encoded unless --content-type says otherwise).
        #[arg(long)]
        data: Option<String>,
        /// Content-Type of --data.
        #[arg(long = "content-type")]
        content_type: Option<String>,
        /// Identity to decide for: user@realm or user@realm!token.
        #[arg(long = "as")]
        identity: Option<String>,
    },
    /// Load config and policy; report every error with file:line.
    Validate {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Start a simulated Proxmox with pvegate in front of it, and show what to try.
    #[cfg(feature = "demo")]
    Demo {
        /// Address for pvegate (default 127.0.0.1:8006, or a free port if taken).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Run the guided tour, print it, and exit instead of serving.
        #[arg(long)]
        tour_only: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve { config } => match run_async(commands::serve(&config)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e:#}");
                1
            }
        },
        Command::Check {
            config,
            method,
            target,
            data,
            content_type,
            identity,
        } => {
            let req = commands::CheckRequest {
                method: &method,
                target: &target,
                data: data.as_deref(),
                content_type: content_type.as_deref(),
                identity: identity.as_deref(),
            };
            commands::check(&config, &req, &mut std::io::stdout())
        }
        Command::Validate { config } => commands::validate(&config),
        #[cfg(feature = "demo")]
        Command::Demo { listen, tour_only } => {
            match run_async(pvegate::demo::run(listen, tour_only)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            }
        }
    };
    ExitCode::from(code as u8)
}

fn run_async<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    commands::runtime()?.block_on(f)
}
