//! `pvegate mcp` as an MCP client drives it: the real binary as a child process speaking
//! JSON-RPC lines over stdio, its calls going through the real gate (homelab policy) to the
//! simulated Proxmox. The handshake, `tools/list` (names, schemas, hints), and `tools/call`
//! with a refusal (a tool error carrying the gate's message, nothing reaching Proxmox) and
//! with successes that change the sim's state.

use crate::common;

use std::time::Duration;

use common::*;
use pvegate_sim::{DEMO_TOKEN_ID, DEMO_TOKEN_SECRET};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

struct Mcp {
    child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
    next_id: u64,
    _home: tempfile::TempDir,
}

impl Mcp {
    fn spawn(url: &str) -> Mcp {
        let home = tempfile::tempdir().unwrap();
        let mut child = Command::new(BIN)
            .arg("mcp")
            .env_clear()
            .env("HOME", home.path())
            .env("PVEGATE_URL", url)
            .env(
                "PVEGATE_TOKEN",
                format!("{DEMO_TOKEN_ID}={DEMO_TOKEN_SECRET}"),
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Mcp {
            child,
            stdin,
            stdout,
            next_id: 1,
            _home: home,
        }
    }

    async fn send(&mut self, msg: Value) {
        let mut line = serde_json::to_string(&msg).unwrap();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Sends a request and returns its response (skipping notifications).
    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        loop {
            let line = tokio::time::timeout(Duration::from_secs(60), self.stdout.next_line())
                .await
                .expect("an answer in time")
                .unwrap()
                .expect("the server is still there");
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout carries only JSON-RPC ({e}): {line}"));
            if v.get("id") == Some(&json!(id)) {
                return v;
            }
            assert!(v.get("id").is_none(), "an answer to another request: {v}");
        }
    }

    async fn call(&mut self, tool: &str, args: Value) -> Value {
        let r = self
            .request("tools/call", json!({"name": tool, "arguments": args}))
            .await;
        r.get("result")
            .cloned()
            .unwrap_or_else(|| panic!("tools/call {tool} failed at the protocol level: {r}"))
    }
}

fn text_of(result: &Value) -> String {
    result["content"][0]["text"].as_str().unwrap().to_owned()
}

fn is_error(result: &Value) -> bool {
    result.get("isError") == Some(&json!(true))
}

async fn handshake(m: &mut Mcp) -> Value {
    let init = m
        .request(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "pvegate-test", "version": "1"}
            }),
        )
        .await;
    m.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    init
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_and_tool_list() {
    let g = start().await;
    let mut m = Mcp::spawn(&g.url);
    let init = handshake(&mut m).await;
    let r = &init["result"];
    assert_eq!(r["protocolVersion"], "2025-06-18", "{init}");
    assert_eq!(r["serverInfo"]["name"], "pvegate");
    assert!(r["capabilities"]["tools"].is_object(), "{init}");
    assert!(r["instructions"]
        .as_str()
        .unwrap()
        .contains("refused by pvegate"));

    let list = m.request("tools/list", json!({})).await;
    let tools = list["result"]["tools"].as_array().unwrap().clone();
    let mut names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "clone",
            "config",
            "configure",
            "create_disk",
            "destroy",
            "get_ip",
            "list",
            "next_vmid",
            "reboot",
            "resize",
            "shutdown",
            "start",
            "status",
            "stop",
            "storage",
            "template",
            "wait_ssh"
        ]
    );
    let tool = |n: &str| tools.iter().find(|t| t["name"] == n).unwrap().clone();
    let hints = |n: &str| {
        let a = tool(n)["annotations"].clone();
        (
            a["readOnlyHint"].as_bool(),
            a["destructiveHint"].as_bool(),
            a["idempotentHint"].as_bool(),
        )
    };
    for read in [
        "list",
        "status",
        "config",
        "get_ip",
        "storage",
        "next_vmid",
        "wait_ssh",
    ] {
        assert_eq!(hints(read).0, Some(true), "{read} is read-only");
    }
    for destructive in [
        "stop",
        "shutdown",
        "reboot",
        "destroy",
        "configure",
        "template",
    ] {
        assert_eq!(hints(destructive).0, Some(false), "{destructive}");
        assert_eq!(
            hints(destructive).1,
            Some(true),
            "{destructive} is destructive"
        );
    }
    assert_eq!(hints("start"), (Some(false), Some(false), Some(false)));
    assert_eq!(
        hints("stop").2,
        Some(true),
        "stopping twice changes nothing more"
    );
    assert_eq!(hints("clone").1, Some(false));

    let status = tool("status")["inputSchema"].clone();
    assert_eq!(status["type"], "object");
    assert_eq!(status["properties"]["vmid"]["type"], "integer");
    assert_eq!(status["required"], json!(["vmid"]));
    let destroy = tool("destroy")["inputSchema"].clone();
    let mut req: Vec<&str> = destroy["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    req.sort();
    assert_eq!(req, ["confirm", "vmid"]);
    let configure = tool("configure")["inputSchema"].clone();
    assert_eq!(configure["properties"]["settings"]["type"], "object");
    let resize = tool("resize")["inputSchema"].clone();
    for p in ["vmid", "disk", "size"] {
        assert!(resize["properties"][p].is_object(), "resize.{p}");
    }
    // Nothing was called yet: nothing reached Proxmox.
    assert_eq!(g.sim.recorder.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_through_the_gate() {
    let g = start().await;
    let mut m = Mcp::spawn(&g.url);
    handshake(&mut m).await;

    // Reads of the readonly guest pass.
    let r = m.call("status", json!({"vmid": 104})).await;
    assert!(!is_error(&r), "{r}");
    let v: Value = serde_json::from_str(&text_of(&r)).unwrap();
    assert_eq!(v["name"], "doc1");
    assert_eq!(v["status"], "running");

    // Changes are refused, as tool errors carrying the gate's message.
    let before = g.sim.recorder.len();
    for (tool, args, action) in [
        ("stop", json!({"vmid": 104}), "power.stop"),
        (
            "configure",
            json!({"vmid": 104, "settings": {"memory": "1"}}),
            "config",
        ),
        ("destroy", json!({"vmid": 104, "confirm": true}), "destroy"),
        ("clone", json!({"template": 9001, "newid": 104}), "clone"),
    ] {
        let r = m.call(tool, args).await;
        assert!(is_error(&r), "{tool}: {r}");
        let t = text_of(&r);
        assert!(
            t.starts_with(&format!("refused by pvegate: {tool} VM 104 'doc1': pvegate: VM 104 'doc1' is readonly: {action}")),
            "{t}"
        );
        assert!(t.contains("(Main services VM)") && !t.contains('\n'), "{t}");
    }
    let reached: Vec<String> = g.sim.recorder.requests()[before..]
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert_eq!(
        reached,
        Vec::<String>::new(),
        "refused calls never reach Proxmox"
    );
    assert!(g.sim.guest(104).unwrap().running);

    // Bad arguments: tool errors too, nothing sent.
    let r = m
        .call("destroy", json!({"vmid": 110, "confirm": false}))
        .await;
    assert!(is_error(&r) && text_of(&r).contains("confirm: true"), "{r}");
    let r = m.call("status", json!({"vmid": 42})).await;
    assert!(is_error(&r) && text_of(&r).contains("not a VMID"), "{r}");
    assert!(g.sim.guest(110).is_some());

    // Changes to a managed guest succeed and land in the sim.
    let r = m.call("stop", json!({"vmid": 110})).await;
    assert!(!is_error(&r), "{r}");
    let v: Value = serde_json::from_str(&text_of(&r)).unwrap();
    assert_eq!(v["status"], "OK");
    assert!(!g.sim.guest(110).unwrap().running);
    let r = m
        .call(
            "clone",
            json!({"template": 9001, "newid": 130, "name": "agent-vm"}),
        )
        .await;
    assert!(!is_error(&r), "{r}");
    assert_eq!(g.sim.guest(130).unwrap().name, "agent-vm");
    let r = m
        .call(
            "configure",
            json!({"vmid": 130, "settings": {"memory": "4096"}}),
        )
        .await;
    assert!(!is_error(&r), "{r}");
    let r = m.call("config", json!({"vmid": 130})).await;
    let v: Value = serde_json::from_str(&text_of(&r)).unwrap();
    assert_eq!(v["memory"], 4096);
    let r = m.call("list", json!({})).await;
    let v: Value = serde_json::from_str(&text_of(&r)).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 6);

    // A failed task is a tool error with its log tail.
    let r = m.call("shutdown", json!({"vmid": 110})).await;
    assert!(is_error(&r), "{r}");
    assert!(
        text_of(&r).contains("TASK ERROR: VM 110 not running"),
        "{r}"
    );

    // Closing stdin ends the server.
    drop(m.stdin);
    let status = tokio::time::timeout(Duration::from_secs(10), m.child.wait())
        .await
        .expect("the server exits when the client goes")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn missing_settings_fail_before_serving() {
    let out = Command::new(BIN)
        .arg("mcp")
        .env_clear()
        .env("HOME", "/nonexistent")
        .env("PVEGATE_URL", "http://127.0.0.1:9")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no API token"), "{err}");
    assert!(out.stdout.is_empty());
}
