//! `pvegate policy show`: the compiled policy in words — every rule with its guests, access,
//! allowed and refused actions, exemptions and hint, each with the file:line it came from —
//! and the checks on refusal hints (`hint = "…"`).

use std::fmt::Write as _;

use toml::Spanned;

use super::rule::{ActionSet, GuestRule};
use super::Policy;
use crate::pve::Action;

/// The hint that ends a refusal when the policy sets none.
pub const DEFAULT_HINT: &str = "ask whoever runs pvegate to change its policy if you need this";

/// Longest hint accepted: it travels in an HTTP reason phrase and a GUI dialog.
const HINT_MAX: usize = 200;

/// Strings bpg's Terraform provider reads as success or as "retry": a refusal must never
/// contain them, so neither may a hint.
const CLIENT_TRIGGERS: [&str; 4] = [
    "already running",
    "already exists",
    "does not exist",
    "got timeout",
];

/// Validates a `hint`: one line of at most 200 characters, printable, without the strings
/// Terraform's provider treats as success or retry. Returns it trimmed.
pub fn check_hint(h: &Spanned<String>) -> Result<String, String> {
    let text = h.get_ref().trim();
    if text.is_empty() {
        return Err("hint is empty: write what a refused user should do (\"ask @ops in #infra\"), or remove the key".into());
    }
    if text.chars().any(char::is_control) {
        return Err("hint must be one line without control characters (it is sent in an HTTP reason phrase)".into());
    }
    if text.chars().count() > HINT_MAX {
        return Err(format!(
            "hint is {} characters long: keep it under {HINT_MAX} (it is sent in an HTTP reason phrase)",
            text.chars().count()
        ));
    }
    let lower = text.to_ascii_lowercase();
    if let Some(bad) = CLIENT_TRIGGERS.iter().find(|t| lower.contains(*t)) {
        return Err(format!(
            "hint contains {bad:?}, which Terraform's bpg provider reads as success or as a reason to retry: reword it"
        ));
    }
    Ok(text.to_string())
}

fn names(set: impl Iterator<Item = Action>) -> Vec<&'static str> {
    set.map(Action::as_str).collect()
}

fn changes() -> impl Iterator<Item = Action> {
    Action::ALL.iter().copied().filter(|a| !a.is_read())
}

/// "allows" and "refuses" lines for a rule (global `deny_actions` shown separately).
fn action_lines(r: &GuestRule) -> (String, String) {
    let total = changes().count();
    let refused: Vec<&str> = names(changes().filter(|a| r.refuses(*a)));
    let allowed_changes: Vec<&str> = names(changes().filter(|a| !r.refuses(*a)));
    let allows = if refused.is_empty() {
        "reads and every change".to_string()
    } else if allowed_changes.is_empty() {
        "reads only".to_string()
    } else if refused.len() < allowed_changes.len() {
        "reads and every change it does not refuse".to_string()
    } else {
        format!("reads, {}", allowed_changes.join(", "))
    };
    let refuses = if refused.is_empty() {
        "nothing".to_string()
    } else if refused.len() == total {
        format!("every change ({total} actions)")
    } else {
        refused.join(", ")
    };
    (allows, refuses)
}

fn guests_of(r: &GuestRule) -> String {
    if let Some(sel) = &r.selector {
        return format!("guests selected by {}", sel.describe());
    }
    let ids = if r.vmids.0 == r.vmids.1 {
        format!("guest {}", r.vmids.0)
    } else {
        format!("guests {}-{}", r.vmids.0, r.vmids.1)
    };
    match &r.name {
        Some(n) => format!("{ids} '{n}'"),
        None => ids,
    }
}

fn set_names(set: ActionSet) -> Vec<&'static str> {
    names(Action::ALL.iter().copied().filter(|a| set.contains(*a)))
}

impl Policy {
    /// The policy as `pvegate policy show` prints it: settings, then every rule in VMID order
    /// with file:line, access, allowed and refused actions, exemptions, reason and hint.
    pub fn show(&self) -> String {
        let mut out = String::new();
        let files: Vec<String> = self.files.iter().map(|p| p.display().to_string()).collect();
        let _ = writeln!(out, "policy files: {}", files.join(", "));
        let d = &self.default_rule;
        let _ = writeln!(out, "settings:");
        let origin = if d.origin == "default" {
            "built-in default".to_string()
        } else {
            d.origin.clone()
        };
        let _ = writeln!(
            out,
            "  default_access  {}  ({origin}): guests no rule names",
            d.access.as_str()
        );
        let (allows, refuses) = action_lines(d);
        let _ = writeln!(out, "      allows   {allows}");
        let _ = writeln!(out, "      refuses  {refuses}");
        let _ = writeln!(
            out,
            "  strict          {}",
            if self.strict {
                "on: changes to endpoints outside pvegate's catalogue are refused"
            } else {
                "off: endpoints outside pvegate's catalogue are decided by their guests"
            }
        );
        let denied = set_names(self.deny_actions);
        let _ = writeln!(
            out,
            "  deny_actions    {}",
            if denied.is_empty() {
                "none".to_string()
            } else {
                format!("{} (refused for every guest and none)", denied.join(", "))
            }
        );
        let approve = set_names(self.approve);
        if !approve.is_empty() {
            let _ = writeln!(
                out,
                "  approve         {} (need {} approver(s) other than the requester, for every guest)",
                approve.join(", "),
                self.approvers
            );
        }
        let exempt: Vec<String> = self.exempt.patterns().collect();
        let _ = writeln!(
            out,
            "  exempt          {}",
            if exempt.is_empty() {
                "nobody".to_string()
            } else {
                format!("{} (no rule applies to them)", exempt.join(", "))
            }
        );
        let _ = writeln!(
            out,
            "  hint            {}",
            self.hint
                .as_deref()
                .map_or_else(|| format!("{DEFAULT_HINT} (built-in)"), str::to_string)
        );
        let mut rules: Vec<&GuestRule> = self.rules.iter().collect();
        rules.sort_by_key(|r| r.vmids);
        let _ = writeln!(out, "rules: {}", rules.len());
        for r in rules {
            let _ = writeln!(
                out,
                "  {}  {}  {}",
                r.origin,
                guests_of(r),
                r.access.as_str()
            );
            let (allows, refuses) = action_lines(r);
            let _ = writeln!(out, "      allows   {allows}");
            let _ = writeln!(out, "      refuses  {refuses}");
            let approve = set_names(r.approve);
            if !approve.is_empty() {
                let n = if r.approvers > 0 {
                    r.approvers
                } else {
                    self.approvers
                };
                let _ = writeln!(
                    out,
                    "      approve  {} (need {n} approver(s) other than the requester)",
                    approve.join(", ")
                );
            }
            let exempt: Vec<String> = r.exempt.patterns().collect();
            if !exempt.is_empty() {
                let _ = writeln!(out, "      exempt   {}", exempt.join(", "));
            }
            if let Some(why) = &r.reason {
                let _ = writeln!(out, "      reason   {why}");
            }
            if let Some(h) = &r.hint {
                let _ = writeln!(out, "      hint     {h}");
            }
        }
        out
    }

    /// The hint that ends a refusal by `rule` (`None`: a setting or the default access).
    pub fn hint_for<'a>(&'a self, rule: Option<&'a GuestRule>) -> &'a str {
        rule.and_then(|r| r.hint.as_deref())
            .or(self.hint.as_deref())
            .unwrap_or(DEFAULT_HINT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = r#"[settings]
deny_actions = ["node.shell"]
exempt = ["root@pam", "ops@pve!*"]
hint = "ask @ops in #infra"

[[guest]]
vmid = 104
name = "doc1"
access = "readonly"
allow = ["snapshot.*"]
reason = "Main services VM"

[[guest]]
vmids = "9000-9099"
name = "templates"
access = "managed"
deny = ["destroy"]
hint = "templates belong to the image pipeline"
"#;

    #[test]
    fn show_lists_every_rule_with_origin_actions_and_exemptions() {
        let p = Policy::from_toml_str("t.toml", SRC).unwrap();
        let s = p.show();
        assert!(s.contains("t.toml:7  guest 104 'doc1'  readonly"), "{s}");
        assert!(s.contains("allows   reads, snapshot.create"), "{s}");
        assert!(
            s.contains("t.toml:14  guests 9000-9099 'templates'  managed"),
            "{s}"
        );
        assert!(s.contains("refuses  destroy\n"), "{s}");
        assert!(s.contains("exempt          root@pam, ops@pve!*"), "{s}");
        assert!(s.contains("deny_actions    node.shell"), "{s}");
        assert!(
            s.contains("hint     templates belong to the image pipeline"),
            "{s}"
        );
        assert!(
            s.contains("default_access  managed  (built-in default)"),
            "{s}"
        );
    }

    #[test]
    fn bad_hints_are_located() {
        let cases = [
            ("[settings]\nhint = \"\"\n", "t.toml:2", "empty"),
            (
                "[[guest]]\nvmid = 104\naccess = \"readonly\"\nhint = \"VM does not exist\"\n",
                "t.toml:4",
                "does not exist",
            ),
            ("[settings]\nhint = \"a\\nb\"\n", "t.toml:2", "one line"),
        ];
        for (src, at, needle) in cases {
            let e = Policy::from_toml_str("t.toml", src)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(at) && e.contains(needle), "{src:?} -> {e}");
        }
        let long = format!("[settings]\nhint = \"{}\"\n", "x".repeat(201));
        let e = Policy::from_toml_str("t.toml", &long)
            .unwrap_err()
            .to_string();
        assert!(e.contains("201 characters"), "{e}");
    }
}
