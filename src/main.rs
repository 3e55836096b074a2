//! The `pvegate` command line: argument parsing only; the work is in `pvegate::commands`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
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
        /// Use this policy file instead of the built-in homelab policy (repeatable).
        #[arg(long, value_name = "FILE", conflicts_with = "config")]
        policy: Vec<PathBuf>,
        /// Use this config's policy files (its upstream is replaced by the simulated Proxmox).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Run the simulated Proxmox alone and print its URL, fingerprint and credentials.
    #[cfg(feature = "demo")]
    Sim {
        /// Address to listen on (default: a free port on 127.0.0.1).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Serve plain HTTP instead of HTTPS.
        #[arg(long)]
        plain: bool,
        /// Write the simulator's CA certificate (PEM) to this file, for `[upstream] ca`.
        #[arg(long, value_name = "FILE", conflicts_with = "plain")]
        ca_out: Option<PathBuf>,
        /// Run a cluster of N nodes (pve1…pveN, 1-9) on consecutive ports from --listen
        /// (or free ports); type `stop pve2` / `start pve2` to take a node down and back.
        #[arg(long, value_name = "N")]
        cluster: Option<usize>,
    },
    /// Inspect the policy a config loads.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into --dir.
    Man {
        /// Write pvegate.1 and pvegate-<command>.1 into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Operate guests through pvegate (or Proxmox): list, status, start, clone, … (exit 4: refused by pvegate).
    Ops(pvegate::ops::cli::OpsArgs),
    /// Serve the ops as MCP tools over stdio, for AI agents.
    Mcp(pvegate::ops::settings::ConnArgs),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Every rule with its guests, access, allowed and refused actions, exemptions and file:line.
    Show {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// The CLI definition with the full version text (git commit, catalogue versions).
fn command() -> clap::Command {
    Cli::command()
        .version(pvegate::version::short())
        .long_version(pvegate::version::long())
}

fn main() -> ExitCode {
    let cli = command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
        .unwrap_or_else(|e| pvegate::ops::cli::parse_error(e));
    let code = match cli.command {
        Command::Serve { config } => {
            let result = run_async(commands::serve(&config));
            // Whatever the log still holds (bounded: a stalled reader does not hold up exit).
            pvegate::logsink::flush(std::time::Duration::from_secs(2));
            match result {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            }
        }
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
        Command::Demo {
            listen,
            tour_only,
            policy,
            config,
        } => {
            let opts = pvegate::demo::DemoOptions {
                listen,
                tour_only,
                policy,
                config,
            };
            match run_async(pvegate::demo::run(opts)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            }
        }
        Command::Ops(args) => i32::from(pvegate::ops::cli::run(args)),
        Command::Mcp(args) => i32::from(pvegate::mcp::run_stdio(&args)),
        #[cfg(feature = "demo")]
        Command::Sim {
            listen,
            plain,
            ca_out,
            cluster,
        } => {
            let opts = pvegate::demo::SimOptions {
                listen,
                plain,
                ca_out,
                cluster,
            };
            match run_async(pvegate::demo::run_sim(opts)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            }
        }
        Command::Policy(PolicyCommand::Show { config }) => commands::policy_show(&config),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command(), "pvegate", &mut script);
            write_stdout(&script)
        }
        Command::Man { dir } => man(dir.as_deref()),
    };
    ExitCode::from(code as u8)
}

/// `pvegate man`: the main page on stdout, or every page into `dir`.
fn man(dir: Option<&std::path::Path>) -> i32 {
    let result = match dir {
        Some(d) => std::fs::create_dir_all(d).and_then(|()| clap_mangen::generate_to(command(), d)),
        None => {
            let mut page = Vec::new();
            match clap_mangen::Man::new(command()).render(&mut page) {
                Ok(()) => return write_stdout(&page),
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let place = dir.map_or("stdout".to_string(), |d| d.display().to_string());
            eprintln!("error: cannot write the man page to {place}: {e}");
            1
        }
    }
}

/// Writes generated text to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> i32 {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            1
        }
    }
}

fn run_async<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    commands::runtime()?.block_on(f)
}
