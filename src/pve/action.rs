//! The action taxonomy: what a request does, in terms a policy author understands.

/// What an API call does. `Read` is every call without side effects; everything else changes
/// something (or, like a console, hands out interactive control).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// No side effect.
    Read,
    /// Anything that changes state and has no more specific class.
    Write,
}

impl Action {
    /// The name used in policy files, denials and logs, e.g. `power.stop`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
        }
    }

    /// True for calls without side effects.
    pub fn is_read(self) -> bool {
        matches!(self, Action::Read)
    }
}
