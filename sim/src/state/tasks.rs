//! The node's tasks (workers): creating them, their status as clients poll it, logs, stop, list.

use serde_json::{json, Value};

use super::{State, Task};
use crate::auth::now;
use crate::params::{Params, ParamsExt};
use crate::reply::ApiError;

impl State {
    /// Creates a finished task; returns its UPID.
    pub fn task(
        &mut self,
        ttype: &str,
        id: &str,
        user: &str,
        outcome: Result<Vec<String>, String>,
    ) -> String {
        self.next_pid += 1;
        let starttime = now();
        let pid = self.next_pid;
        let upid = format!(
            "UPID:{}:{:08X}:{:08X}:{:08X}:{ttype}:{id}:{user}:",
            self.node, pid, self.pstart, starttime
        );
        let (log, exitstatus) = match outcome {
            Ok(log) => (log, "OK".to_owned()),
            Err(e) => (Vec::new(), e),
        };
        self.tasks.push(Task {
            upid: upid.clone(),
            node: self.node.clone(),
            ttype: ttype.to_owned(),
            id: id.to_owned(),
            user: user.to_owned(),
            pid,
            pstart: self.pstart,
            starttime,
            endtime: starttime + 1,
            exitstatus,
            polls_left: self.running_polls,
            log,
        });
        upid
    }

    fn find_task(&mut self, upid: &str) -> Result<&mut Task, ApiError> {
        let upid = upid.trim_end_matches('\n');
        let parts: Vec<&str> = upid.split(':').collect();
        if parts.len() != 9 || parts[0] != "UPID" || !parts[8].is_empty() {
            return Err(ApiError::param(
                "upid",
                format!("unable to parse worker upid '{upid}'"),
            ));
        }
        if parts[1] != self.node {
            return Err(ApiError::die(format!(
                "no such task - wrong node '{}'",
                parts[1]
            )));
        }
        self.tasks
            .iter_mut()
            .find(|t| t.upid == upid)
            .ok_or_else(|| {
                ApiError::die(format!(
                    "unable to open file '/var/log/pve/tasks/{}' - No such file or directory",
                    upid
                ))
            })
    }

    /// `GET /nodes/{node}/tasks/{upid}/status`; counts a poll.
    pub fn task_status(&mut self, upid: &str) -> Result<Value, ApiError> {
        let t = self.find_task(upid)?;
        let mut v = t.entry();
        if t.running() {
            v["status"] = json!("running");
            t.polls_left -= 1;
        } else {
            v["status"] = json!("stopped");
            v["exitstatus"] = json!(t.exitstatus);
        }
        Ok(v)
    }

    /// `GET /nodes/{node}/tasks/{upid}/log`: (lines from `start`, at most `limit`; total).
    pub fn task_log(
        &mut self,
        upid: &str,
        start: usize,
        limit: usize,
    ) -> Result<(Value, usize), ApiError> {
        let t = self.find_task(upid)?;
        let lines = t.lines();
        let total = lines.len();
        let data: Vec<Value> = lines
            .iter()
            .enumerate()
            .skip(start)
            .take(limit)
            .map(|(i, l)| json!({"n": i + 1, "t": l}))
            .collect();
        Ok((Value::Array(data), total))
    }

    /// The task's log lines, for `download=1`.
    pub fn task_log_text(&mut self, upid: &str) -> Result<String, ApiError> {
        let t = self.find_task(upid)?;
        let mut s = t.lines().join("\n");
        s.push('\n');
        Ok(s)
    }

    /// `DELETE /nodes/{node}/tasks/{upid}`.
    pub fn task_stop(&mut self, upid: &str) -> Result<(), ApiError> {
        let t = self.find_task(upid)?;
        if t.running() {
            t.polls_left = 0;
            t.exitstatus = "interrupted by signal".into();
        }
        Ok(())
    }

    /// `GET /nodes/{node}/tasks`, newest first.
    pub fn task_list(&self, p: &Params) -> Value {
        let vmid = p.str("vmid");
        let typefilter = p.str("typefilter");
        let userfilter = p.str("userfilter");
        let errors = p.flag("errors");
        let start: usize = p.str("start").and_then(|s| s.parse().ok()).unwrap_or(0);
        let limit: usize = p.str("limit").and_then(|s| s.parse().ok()).unwrap_or(50);
        let list: Vec<Value> = self
            .tasks
            .iter()
            .rev()
            .filter(|t| t.node == self.node)
            .filter(|t| vmid.map_or(true, |v| t.id == v))
            .filter(|t| typefilter.map_or(true, |f| t.ttype == f))
            .filter(|t| userfilter.map_or(true, |u| t.user.contains(u)))
            .filter(|t| !errors || (!t.running() && t.exitstatus != "OK"))
            .skip(start)
            .take(limit)
            .map(Task::entry)
            .collect();
        Value::Array(list)
    }

    /// `GET /cluster/tasks`: the tasks of every node, newest first (the most recent 50, as
    /// the cluster log keeps them).
    pub fn cluster_tasks(&self) -> Value {
        Value::Array(self.tasks.iter().rev().take(50).map(Task::entry).collect())
    }
}
