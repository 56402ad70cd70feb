//! List items: the core applies every guard's `list_item` hook to each item of a
//! `tools/list`, `prompts/list`, `resources/list` or `resources/templates/list` result, on every
//! path (one upstream, several merged, `wrap`), and splices the answer from the original bytes.

use serde_json::value::RawValue;

/// Which list a result is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// `tools/list`
    Tools,
    /// `prompts/list`
    Prompts,
    /// `resources/list`
    Resources,
    /// `resources/templates/list`
    Templates,
}

impl ListKind {
    /// The list a method returns.
    pub fn of(method: &str) -> Option<Self> {
        Some(match method {
            "tools/list" => Self::Tools,
            "prompts/list" => Self::Prompts,
            "resources/list" => Self::Resources,
            "resources/templates/list" => Self::Templates,
            _ => return None,
        })
    }
    /// The member of the result that holds the items.
    pub fn key(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Prompts => "prompts",
            Self::Resources => "resources",
            Self::Templates => "resourceTemplates",
        }
    }
    /// The item member that names it (names for tools and prompts, URIs for resources).
    pub fn name_field(self) -> &'static str {
        match self {
            Self::Tools | Self::Prompts => "name",
            Self::Resources => "uri",
            Self::Templates => "uriTemplate",
        }
    }
}

/// One item of a list result, as the guards see it.
#[derive(Debug, Clone, Copy)]
pub struct ListItem<'a> {
    /// Which list.
    pub kind: ListKind,
    /// The item's JSON object as the upstream sent it (with the name the upstream uses).
    pub raw: &'a RawValue,
    /// The upstream that listed it.
    pub upstream: &'a str,
    /// The name (or URI) the upstream uses.
    pub original: &'a str,
    /// The name (or URI) the client sees (with the upstream's prefix, if any).
    pub exposed: &'a str,
}
