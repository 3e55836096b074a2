//! The `pvegate ops` command line: subcommands to [`Op`]s, output, exit codes, and one-line
//! usage errors.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::client::Client;
use super::commands::{run as run_op, Op, Power};
use super::settings::{parse_vmid, ConnArgs, Settings};
use super::{OpsError, EXIT_OK, EXIT_USAGE};

/// `pvegate ops [flags] <command>`.
#[derive(Args, Debug)]
pub struct OpsArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Print JSON (for scripts) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: OpsCommand,
}

fn vmid(s: &str) -> Result<u32, String> {
    parse_vmid(s)
}

/// The operations.
#[derive(Subcommand, Debug)]
pub enum OpsCommand {
    /// List every guest in the cluster.
    List,
    /// Show a guest's current status.
    Status {
        #[arg(value_parser = vmid)]
        id: u32,
    },
    /// Show a guest's configuration.
    Config {
        #[arg(value_parser = vmid)]
        id: u32,
    },
    /// Show a guest's IP addresses (QEMU: from the guest agent; LXC: from the container).
    GetIp {
        #[arg(value_parser = vmid)]
        id: u32,
    },
    /// List the storages of the node(s).
    Storage,
    /// Print the next free VMID, optionally inside a range (100-199 or a name from ops.toml).
    NextVmid {
        #[arg(long)]
        range: Option<String>,
    },
    /// Start a guest and wait for the task.
    Start(PowerArgs),
    /// Stop a guest (hard) and wait for the task.
    Stop(PowerArgs),
    /// Shut a guest down (ACPI/init) and wait for the task.
    Shutdown(PowerArgs),
    /// Reboot a guest and wait for the task.
    Reboot(PowerArgs),
    /// Destroy a stopped guest and its disks (needs --yes).
    Destroy {
        #[arg(value_parser = vmid)]
        id: u32,
        /// Confirm the destruction.
        #[arg(long)]
        yes: bool,
        /// Do not wait for the task.
        #[arg(long)]
        no_wait: bool,
    },
    /// Set configuration keys: key=value … (delete=key1,key2 removes keys).
    Configure {
        #[arg(value_parser = vmid)]
        id: u32,
        #[arg(required = true, value_parser = key_value)]
        settings: Vec<(String, String)>,
    },
    /// Grow a disk, e.g. `resize 110 scsi0 +10G`.
    Resize {
        #[arg(value_parser = vmid)]
        id: u32,
        disk: String,
        #[arg(value_parser = disk_size, allow_hyphen_values = true)]
        size: String,
    },
    /// Add a disk of SIZE GiB on STORAGE in the next free slot (scsiN; LXC: mpN).
    CreateDisk {
        #[arg(value_parser = vmid)]
        id: u32,
        storage: String,
        size: String,
        /// QEMU bus: scsi (default), virtio, sata, ide.
        #[arg(long)]
        bus: Option<String>,
        /// LXC mount point path (default /mnt/mpN).
        #[arg(long)]
        mountpoint: Option<String>,
    },
    /// Clone a guest or template to NEWID.
    Clone {
        #[arg(value_parser = vmid)]
        template: u32,
        #[arg(value_parser = vmid)]
        newid: u32,
        /// Name (hostname for LXC) of the new guest.
        #[arg(long)]
        name: Option<String>,
        /// Full clone instead of a linked clone.
        #[arg(long)]
        full: bool,
        /// Do not wait for the task.
        #[arg(long)]
        no_wait: bool,
    },
    /// Turn a stopped guest into a template.
    Template {
        #[arg(value_parser = vmid)]
        id: u32,
    },
    /// Wait until the guest has an address that accepts TCP on port 22.
    WaitSsh {
        #[arg(value_parser = vmid)]
        id: u32,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// The SSH port.
        #[arg(long, default_value_t = 22)]
        port: u16,
    },
}

/// Arguments of the power commands.
#[derive(Args, Debug)]
pub struct PowerArgs {
    #[arg(value_parser = vmid)]
    id: u32,
    /// Do not wait for the task.
    #[arg(long)]
    no_wait: bool,
}

/// `key=value` for `configure`.
pub fn key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not key=value"))?;
    let ok = k.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        return Err(format!("{k:?} is not a Proxmox config key"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// `+10G`, `32G`, `512M`, `1.5T`.
pub fn disk_size(s: &str) -> Result<String, String> {
    let body = s.strip_prefix('+').unwrap_or(s);
    let num = body.trim_end_matches(['K', 'M', 'G', 'T']);
    let unit_len = body.len() - num.len();
    let ok = unit_len <= 1
        && !num.is_empty()
        && num.chars().all(|c| c.is_ascii_digit() || c == '.')
        && num.parse::<f64>().is_ok_and(|n| n > 0.0);
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not a size like +10G or 64G"))
    }
}

impl OpsCommand {
    /// The operation, or a usage error (destroy without --yes).
    pub fn to_op(&self) -> Result<Op, OpsError> {
        let power = |a: &PowerArgs, action| Op::Power {
            vmid: a.id,
            action,
            wait: !a.no_wait,
        };
        Ok(match self {
            OpsCommand::List => Op::List,
            OpsCommand::Status { id } => Op::Status { vmid: *id },
            OpsCommand::Config { id } => Op::Config { vmid: *id },
            OpsCommand::GetIp { id } => Op::GetIp { vmid: *id },
            OpsCommand::Storage => Op::Storage,
            OpsCommand::NextVmid { range } => Op::NextVmid {
                range: range.clone(),
            },
            OpsCommand::Start(a) => power(a, Power::Start),
            OpsCommand::Stop(a) => power(a, Power::Stop),
            OpsCommand::Shutdown(a) => power(a, Power::Shutdown),
            OpsCommand::Reboot(a) => power(a, Power::Reboot),
            OpsCommand::Destroy { id, yes, no_wait } => {
                if !yes {
                    return Err(OpsError::Usage(format!(
                        "destroy {id} deletes the guest and its disks: add --yes to confirm"
                    )));
                }
                Op::Destroy {
                    vmid: *id,
                    wait: !no_wait,
                }
            }
            OpsCommand::Configure { id, settings } => Op::Configure {
                vmid: *id,
                settings: settings.clone(),
            },
            OpsCommand::Resize { id, disk, size } => Op::Resize {
                vmid: *id,
                disk: disk.clone(),
                size: size.clone(),
            },
            OpsCommand::CreateDisk {
                id,
                storage,
                size,
                bus,
                mountpoint,
            } => Op::CreateDisk {
                vmid: *id,
                storage: storage.clone(),
                size: size.clone(),
                bus: bus.clone(),
                mountpoint: mountpoint.clone(),
            },
            OpsCommand::Clone {
                template,
                newid,
                name,
                full,
                no_wait,
            } => Op::Clone {
                source: *template,
                newid: *newid,
                name: name.clone(),
                full: *full,
                wait: !no_wait,
            },
            OpsCommand::Template { id } => Op::Template { vmid: *id },
            OpsCommand::WaitSsh { id, timeout, port } => Op::WaitSsh {
                vmid: *id,
                timeout: Duration::from_secs(*timeout),
                port: *port,
            },
        })
    }
}

/// Runs `pvegate ops`; returns the exit code. Results go to stdout, errors to stderr (one
/// line, except a failed task's log tail).
pub fn run(args: OpsArgs) -> u8 {
    let result = (|| {
        let op = args.command.to_op()?;
        let settings = Settings::resolve(&args.conn)?;
        let client = Client::new(settings)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| OpsError::Failed(format!("cannot start the async runtime: {e}")))?;
        rt.block_on(run_op(&client, &op))
    })();
    match result {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report.json).unwrap_or_default()
                );
            } else if !report.text.is_empty() {
                println!("{}", report.text);
            }
            EXIT_OK
        }
        Err(e) => {
            match &e {
                OpsError::Refused(line) => eprintln!("{line}"),
                other => eprintln!("error: {other}"),
            }
            if args.json {
                let kind = match &e {
                    OpsError::Usage(_) => "usage",
                    OpsError::Refused(_) => "refused",
                    OpsError::Failed(_) => "failed",
                };
                println!(
                    "{}",
                    serde_json::json!({"error": kind, "message": e.to_string(), "exit": e.exit_code()})
                );
            }
            e.exit_code()
        }
    }
}

/// A command-line parse error of `pvegate ops`/`mcp` as one line on stderr, exit 2; help and
/// version output stay as clap prints them.
pub fn parse_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        _ => {
            let cmd = std::env::args().nth(1).unwrap_or_default();
            if cmd != "ops" && cmd != "mcp" {
                e.exit()
            }
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("error: bad arguments");
            eprintln!("{first} (pvegate {cmd} --help)");
            std::process::exit(i32::from(EXIT_USAGE))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_shapes() {
        assert_eq!(
            key_value("ipconfig0=ip=10.0.0.5/24").unwrap(),
            ("ipconfig0".into(), "ip=10.0.0.5/24".into())
        );
        assert!(key_value("Memory=1").is_err());
        assert!(key_value("memory").is_err());
        for ok in ["+10G", "64G", "512M", "+1.5T", "100"] {
            assert!(disk_size(ok).is_ok(), "{ok}");
        }
        for bad in ["+", "10GG", "-5G", "abc", "+0G"] {
            assert!(disk_size(bad).is_err(), "{bad}");
        }
    }
}
