//! `pvegate ops` and `pvegate mcp`: day-to-day guest operations as a client of the Proxmox
//! API, meant to run *through* pvegate so that the gate's policy holds for people and agents.
//!
//! - [`settings`]: where to connect and with which token (flags, environment, `ops.toml`).
//! - [`client`]: the HTTP client (reqwest + rustls with pvegate's upstream trust), the API
//!   envelope, refusal detection, task waiting.
//! - [`commands`]: every operation as an [`commands::Op`], run to a [`commands::Report`]
//!   (JSON for scripts and MCP, a table for people). The CLI and the MCP server share it.
//! - [`output`]: plain-text tables.
//! - [`cli`]: the `pvegate ops` argument parser and exit codes.
//!
//! Exit codes of `pvegate ops`: 0 done; 1 the operation failed (a Proxmox error, a failed
//! task, a timeout); 2 unusable input (unknown command or flag, malformed VMID, missing
//! token, unreachable URL, rejected token, `destroy` without `--yes`); 4 refused by pvegate
//! (3 is `pvegate check`'s "deny", so a script can tell the two apart).

pub mod cli;
pub mod client;
pub mod commands;
pub mod output;
pub mod settings;

/// Exit code: the operation succeeded.
pub const EXIT_OK: u8 = 0;
/// Exit code: the operation failed (Proxmox error, failed task, timeout).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: unusable input or settings (also: unreachable URL, rejected token).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: pvegate refused the operation (its policy protects the guest).
pub const EXIT_REFUSED: u8 = 4;

/// Why an operation did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// Unusable input or settings: exit 2.
    #[error("{0}")]
    Usage(String),
    /// pvegate refused the request; the text is the one-line refusal: exit 4.
    #[error("{0}")]
    Refused(String),
    /// Proxmox (or the network) said no, or a task failed; the text says what: exit 1.
    #[error("{0}")]
    Failed(String),
}

impl OpsError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            OpsError::Usage(_) => EXIT_USAGE,
            OpsError::Refused(_) => EXIT_REFUSED,
            OpsError::Failed(_) => EXIT_FAILED,
        }
    }
}
