//! Build checks (BuildKit's linter): placeholder until the rules land.

use serde::Serialize;

use super::error::{ParseError, Span};

#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub description: &'static str,
    pub url: &'static str,
    pub message: String,
    pub span: Span,
}

#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub warnings: Vec<Finding>,
    pub error: Option<ParseError>,
}

pub fn check(text: &str, file_name: &str, _opts: &CheckOptions) -> CheckReport {
    match super::parse(text, file_name) {
        Ok(_) => CheckReport::default(),
        Err(e) => CheckReport {
            warnings: Vec::new(),
            error: Some(e),
        },
    }
}
