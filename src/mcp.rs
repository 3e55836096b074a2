//! `pvegate mcp`: a Model Context Protocol server over stdio (the official Rust SDK, `rmcp`)
//! exposing the `pvegate ops` operations as tools. Every tool call runs the same
//! [`crate::ops::commands`] code through the same client, so it goes through pvegate and its
//! policy; a refusal comes back as a tool error (`isError: true`) carrying the gate's message.

use std::collections::BTreeMap;
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::{schemars, tool, tool_handler, tool_router, ServerHandler, ServiceExt};
use serde::Deserialize;

use crate::ops::client::Client;
use crate::ops::commands::{run, Op, Power};
use crate::ops::settings::{parse_vmid, ConnArgs, Settings};
use crate::ops::{OpsError, EXIT_FAILED, EXIT_OK};

/// A guest id.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Vmid {
    /// The guest's VMID (100-999999999).
    pub vmid: u32,
}

/// A power action on a guest.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct PowerParams {
    /// The guest's VMID.
    pub vmid: u32,
    /// Return as soon as Proxmox accepted the task instead of waiting for it (default false).
    #[serde(default)]
    pub no_wait: bool,
}

/// Destroying a guest.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct DestroyParams {
    /// The guest's VMID.
    pub vmid: u32,
    /// Must be true: the guest and its disks are deleted.
    pub confirm: bool,
}

/// The next free VMID.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct NextVmidParams {
    /// A range `LOW-HIGH` (e.g. `100-199`) or a range name from the ops settings; omit for
    /// Proxmox's next free id.
    #[serde(default)]
    pub range: Option<String>,
}

/// Config changes.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ConfigureParams {
    /// The guest's VMID.
    pub vmid: u32,
    /// Config keys and values, e.g. {"memory": "4096", "cores": "4"}; "delete": "key1,key2"
    /// removes keys.
    pub settings: BTreeMap<String, String>,
}

/// Growing a disk.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ResizeParams {
    /// The guest's VMID.
    pub vmid: u32,
    /// The disk key, e.g. scsi0 (LXC: rootfs, mp0).
    pub disk: String,
    /// `+10G` to grow by 10 GiB, or an absolute size such as `64G`.
    pub size: String,
}

/// A new disk.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateDiskParams {
    /// The guest's VMID.
    pub vmid: u32,
    /// The storage id, e.g. local-lvm.
    pub storage: String,
    /// Size in GiB, e.g. 32 or "32G".
    pub size: String,
    /// QEMU bus: scsi (default), virtio, sata, ide.
    #[serde(default)]
    pub bus: Option<String>,
    /// LXC mount point path (default /mnt/mpN).
    #[serde(default)]
    pub mountpoint: Option<String>,
}

/// A clone.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CloneParams {
    /// The VMID of the template (or guest) to clone.
    pub template: u32,
    /// The VMID of the new guest.
    pub newid: u32,
    /// The new guest's name.
    #[serde(default)]
    pub name: Option<String>,
    /// A full clone instead of a linked clone (default false).
    #[serde(default)]
    pub full: bool,
}

/// Waiting for SSH.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct WaitSshParams {
    /// The guest's VMID.
    pub vmid: u32,
    /// Give up after this many seconds (default 300, at most 3600).
    #[serde(default)]
    pub timeout: Option<u64>,
    /// The SSH port (default 22).
    #[serde(default)]
    pub port: Option<u16>,
}

/// The MCP server: one API client, one tool per operation.
#[derive(Clone)]
pub struct OpsServer {
    client: Client,
    tool_router: ToolRouter<Self>,
}

fn check_vmid(v: u32) -> Result<u32, OpsError> {
    parse_vmid(&v.to_string()).map_err(OpsError::Usage)
}

impl OpsServer {
    /// A server using `client` for every call.
    pub fn new(client: Client) -> Self {
        OpsServer {
            client,
            tool_router: Self::tool_router(),
        }
    }

    async fn exec(&self, op: Result<Op, OpsError>) -> CallToolResult {
        let result = match op {
            Ok(op) => run(&self.client, &op).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(report) => {
                let text = serde_json::to_string_pretty(&report.json).unwrap_or_default();
                CallToolResult::success(vec![ContentBlock::text(text)])
            }
            Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
        }
    }

    async fn power(&self, p: PowerParams, action: Power) -> CallToolResult {
        let op = check_vmid(p.vmid).map(|vmid| Op::Power {
            vmid,
            action,
            wait: !p.no_wait,
        });
        self.exec(op).await
    }
}

#[tool_router]
impl OpsServer {
    #[tool(
        description = "List every guest (VM and container) in the cluster: vmid, name, type, node, status, template.",
        annotations(title = "List guests", read_only_hint = true, open_world_hint = false)
    )]
    async fn list(&self) -> CallToolResult {
        self.exec(Ok(Op::List)).await
    }

    #[tool(
        description = "A guest's current status (running/stopped, uptime, memory, CPU).",
        annotations(title = "Guest status", read_only_hint = true, open_world_hint = false)
    )]
    async fn status(&self, Parameters(p): Parameters<Vmid>) -> CallToolResult {
        self.exec(check_vmid(p.vmid).map(|vmid| Op::Status { vmid }))
            .await
    }

    #[tool(
        description = "A guest's configuration (disks, network, memory, cores, cloud-init…).",
        annotations(title = "Guest config", read_only_hint = true, open_world_hint = false)
    )]
    async fn config(&self, Parameters(p): Parameters<Vmid>) -> CallToolResult {
        self.exec(check_vmid(p.vmid).map(|vmid| Op::Config { vmid }))
            .await
    }

    #[tool(
        description = "A guest's IP addresses (QEMU: from the guest agent, which must be running; LXC: from the container). Loopback and link-local addresses are left out.",
        annotations(
            title = "Guest IP addresses",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn get_ip(&self, Parameters(p): Parameters<Vmid>) -> CallToolResult {
        self.exec(check_vmid(p.vmid).map(|vmid| Op::GetIp { vmid }))
            .await
    }

    #[tool(
        description = "The storages of the node(s): type, content types, free and total space.",
        annotations(title = "Storages", read_only_hint = true, open_world_hint = false)
    )]
    async fn storage(&self) -> CallToolResult {
        self.exec(Ok(Op::Storage)).await
    }

    #[tool(
        description = "The next free VMID, optionally inside a range such as 100-199 or a named range.",
        annotations(
            title = "Next free VMID",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn next_vmid(&self, Parameters(p): Parameters<NextVmidParams>) -> CallToolResult {
        self.exec(Ok(Op::NextVmid { range: p.range })).await
    }

    #[tool(
        description = "Start a guest and wait for the start task to finish.",
        annotations(
            title = "Start guest",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn start(&self, Parameters(p): Parameters<PowerParams>) -> CallToolResult {
        self.power(p, Power::Start).await
    }

    #[tool(
        description = "Stop a guest immediately (like pulling the plug) and wait for the task.",
        annotations(
            title = "Stop guest",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn stop(&self, Parameters(p): Parameters<PowerParams>) -> CallToolResult {
        self.power(p, Power::Stop).await
    }

    #[tool(
        description = "Shut a guest down cleanly (ACPI / init) and wait for the task.",
        annotations(
            title = "Shut down guest",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn shutdown(&self, Parameters(p): Parameters<PowerParams>) -> CallToolResult {
        self.power(p, Power::Shutdown).await
    }

    #[tool(
        description = "Reboot a running guest and wait for the task.",
        annotations(
            title = "Reboot guest",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn reboot(&self, Parameters(p): Parameters<PowerParams>) -> CallToolResult {
        self.power(p, Power::Reboot).await
    }

    #[tool(
        description = "Destroy a stopped guest and all its disks. Irreversible; needs confirm: true.",
        annotations(
            title = "Destroy guest",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn destroy(&self, Parameters(p): Parameters<DestroyParams>) -> CallToolResult {
        let op = check_vmid(p.vmid).and_then(|vmid| {
            if p.confirm {
                Ok(Op::Destroy { vmid, wait: true })
            } else {
                Err(OpsError::Usage(format!(
                    "destroy {vmid} deletes the guest and its disks: call again with confirm: true"
                )))
            }
        });
        self.exec(op).await
    }

    #[tool(
        description = "Set configuration keys of a guest (memory, cores, net0, ipconfig0, tags…); \"delete\": \"key1,key2\" removes keys.",
        annotations(
            title = "Configure guest",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn configure(&self, Parameters(p): Parameters<ConfigureParams>) -> CallToolResult {
        let op = check_vmid(p.vmid).and_then(|vmid| {
            let mut settings = Vec::new();
            for (k, v) in p.settings {
                let (k, v) =
                    crate::ops::cli::key_value(&format!("{k}={v}")).map_err(OpsError::Usage)?;
                settings.push((k, v));
            }
            Ok(Op::Configure { vmid, settings })
        });
        self.exec(op).await
    }

    #[tool(
        description = "Grow a guest's disk, e.g. disk scsi0, size +10G. Disks cannot shrink.",
        annotations(
            title = "Resize disk",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn resize(&self, Parameters(p): Parameters<ResizeParams>) -> CallToolResult {
        let op = check_vmid(p.vmid).and_then(|vmid| {
            let size = crate::ops::cli::disk_size(&p.size).map_err(OpsError::Usage)?;
            Ok(Op::Resize {
                vmid,
                disk: p.disk,
                size,
            })
        });
        self.exec(op).await
    }

    #[tool(
        description = "Add a new disk of SIZE GiB on STORAGE to a guest in the next free slot (QEMU scsiN by default; LXC mpN).",
        annotations(
            title = "Create disk",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn create_disk(&self, Parameters(p): Parameters<CreateDiskParams>) -> CallToolResult {
        let op = check_vmid(p.vmid).map(|vmid| Op::CreateDisk {
            vmid,
            storage: p.storage,
            size: p.size,
            bus: p.bus,
            mountpoint: p.mountpoint,
        });
        self.exec(op).await
    }

    #[tool(
        description = "Clone a template (or guest) to a new VMID and wait for the clone task.",
        annotations(
            title = "Clone guest",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn clone(&self, Parameters(p): Parameters<CloneParams>) -> CallToolResult {
        let op = check_vmid(p.template).and_then(|source| {
            Ok(Op::Clone {
                source,
                newid: check_vmid(p.newid)?,
                name: p.name,
                full: p.full,
                wait: true,
            })
        });
        self.exec(op).await
    }

    #[tool(
        description = "Turn a stopped guest into a template (irreversible).",
        annotations(
            title = "Make template",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn template(&self, Parameters(p): Parameters<Vmid>) -> CallToolResult {
        self.exec(check_vmid(p.vmid).map(|vmid| Op::Template { vmid }))
            .await
    }

    #[tool(
        description = "Wait until a guest reports an IP address that accepts TCP connections on the SSH port; returns the address.",
        annotations(title = "Wait for SSH", read_only_hint = true, open_world_hint = true)
    )]
    async fn wait_ssh(&self, Parameters(p): Parameters<WaitSshParams>) -> CallToolResult {
        let op = check_vmid(p.vmid).map(|vmid| Op::WaitSsh {
            vmid,
            timeout: Duration::from_secs(p.timeout.unwrap_or(300).min(3600)),
            port: p.port.unwrap_or(22),
        });
        self.exec(op).await
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "pvegate",
    instructions = "Operate Proxmox VE guests through pvegate. Guests pvegate protects can be read but not changed: a refused call returns an error whose text starts with 'refused by pvegate:' and names the guest, the operation and the reason. Do not retry a refused call or look for another way around it; tell the user."
)]
impl ServerHandler for OpsServer {}

/// Runs `pvegate mcp` on stdin/stdout until the client disconnects; returns the exit code.
/// Settings errors are one line on stderr (exit 2) before anything is served.
pub fn run_stdio(args: &ConnArgs) -> u8 {
    let client = match Settings::resolve(args).and_then(Client::new) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return e.exit_code();
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_FAILED;
        }
    };
    let result = rt.block_on(async move {
        let service = OpsServer::new(client)
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| e.to_string())?;
        service.waiting().await.map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    });
    // stdin may still be blocked in a reader thread: do not wait for it.
    rt.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: MCP session ended: {e}");
            EXIT_FAILED
        }
    }
}
