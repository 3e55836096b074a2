//! [`PolicyError`]: a policy file that could not be used, with file:line and what to do.
//!
//! Compiling reports every error at once ([`PolicyError::Many`], one per line), so
//! `pvegate validate` and a failed reload show them all.

use std::path::Path;

/// A policy file that could not be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: String,
        line: usize,
        message: String,
    },
    /// Several errors at once (`validate` and reloads report every one), one per line.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Many(Vec<PolicyError>),
}

impl PolicyError {
    /// An error at a byte offset of `src` (turned into a 1-based line number).
    pub fn at(path: &Path, src: &str, offset: Option<usize>, message: impl Into<String>) -> Self {
        let line = offset.map_or(1, |o| crate::config::line_of(src, o));
        PolicyError::Invalid {
            path: path.display().to_string(),
            line,
            message: message.into(),
        }
    }

    /// One error for a list of them (`None` for an empty list).
    pub fn from_list(mut errors: Vec<PolicyError>) -> Option<Self> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(PolicyError::Many(errors)),
        }
    }

    /// Every single error in this one.
    pub fn list(&self) -> Vec<&PolicyError> {
        match self {
            PolicyError::Many(v) => v.iter().flat_map(|e| e.list()).collect(),
            e => vec![e],
        }
    }

    /// A TOML parse/schema error, located.
    pub fn toml(path: &Path, src: &str, err: &toml::de::Error) -> Self {
        let offset = err.span().map(|s| s.start);
        Self::at(path, src, offset, err.message().trim().to_string())
    }
}
