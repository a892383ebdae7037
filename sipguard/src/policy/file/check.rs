//! Diagnostics: every problem found in a policy, with the file and line it is at, so that one run
//! reports all of them.

use std::{
    fmt,
    ops::Range,
    path::{Path, PathBuf},
};

/// Diagnostics reported at most; the rest are counted.
pub(super) const MAX_DIAGNOSTICS: usize = 50;

/// One problem in a policy, pointing at where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is not tied to a line (an unreadable file).
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

/// A policy that cannot be used, with every problem found.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.diagnostics, *.omitted))]
pub struct PolicyError {
    pub diagnostics: Vec<Diagnostic>,
    /// Problems found beyond the ones listed.
    pub omitted: usize,
}

impl PolicyError {
    /// A policy with one problem that stops all further checking.
    pub(super) fn single(file: &Path, line: usize, message: String) -> Self {
        PolicyError {
            diagnostics: vec![Diagnostic {
                file: file.to_path_buf(),
                line,
                message,
            }],
            omitted: 0,
        }
    }
}

fn render(diagnostics: &[Diagnostic], omitted: usize) -> String {
    let mut text = String::from("invalid policy, nothing was applied:");
    for diagnostic in diagnostics {
        text.push_str("\n  ");
        text.push_str(&diagnostic.to_string());
    }
    if omitted > 0 {
        text.push_str(&format!("\n  ... and {omitted} more"));
    }
    text
}

/// Collects problems so that one run reports all of them.
pub(super) struct Checker {
    diagnostics: Vec<Diagnostic>,
    omitted: usize,
}

impl Checker {
    pub(super) fn new() -> Self {
        Checker {
            diagnostics: Vec::new(),
            omitted: 0,
        }
    }

    pub(super) fn report(&mut self, file: &Path, line: usize, message: impl Into<String>) {
        if self.diagnostics.len() < MAX_DIAGNOSTICS {
            self.diagnostics.push(Diagnostic {
                file: file.to_path_buf(),
                line,
                message: message.into(),
            });
        } else {
            self.omitted += 1;
        }
    }

    pub(super) fn finish<T>(self, value: T) -> Result<T, PolicyError> {
        if self.diagnostics.is_empty() {
            Ok(value)
        } else {
            Err(PolicyError {
                diagnostics: self.diagnostics,
                omitted: self.omitted,
            })
        }
    }
}

/// The 1-based line where `span` starts.
pub(super) fn line_of(text: &str, span: &Range<usize>) -> usize {
    let end = span.start.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}
