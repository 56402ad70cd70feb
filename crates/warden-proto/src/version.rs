//! MCP protocol versions and the two generations they belong to (P3.4).
//!
//! Session-based ("legacy") versions negotiate with `initialize` and carry `Mcp-Session-Id`; the
//! stateless 2026-07-28 generation carries its version in every request's `_meta`.

use std::fmt;

/// Where a protocol version sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generation {
    /// `initialize` + `Mcp-Session-Id` (2024-11-05 … 2025-11-25).
    Session,
    /// Per-request `_meta`, `server/discover`, no sessions (2026-07-28).
    Stateless,
}

/// A protocol version Warden speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    V2024_11_05,
    V2025_03_26,
    V2025_06_18,
    V2025_11_25,
    V2026_07_28,
}

impl ProtocolVersion {
    /// Every version Warden accepts, oldest first.
    pub const ALL: [ProtocolVersion; 5] = [
        Self::V2024_11_05,
        Self::V2025_03_26,
        Self::V2025_06_18,
        Self::V2025_11_25,
        Self::V2026_07_28,
    ];
    /// Assumed when a session-based request has no `MCP-Protocol-Version` header (spec errata: 2025-03-26).
    pub const DEFAULT_WITHOUT_HEADER: ProtocolVersion = Self::V2025_03_26;
    /// Newest session-based version.
    pub const LATEST_SESSION: ProtocolVersion = Self::V2025_11_25;
    /// Newest stateless version.
    pub const LATEST_STATELESS: ProtocolVersion = Self::V2026_07_28;

    /// Parse an exact version string (case-sensitive, no trimming).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "2024-11-05" => Self::V2024_11_05,
            "2025-03-26" => Self::V2025_03_26,
            "2025-06-18" => Self::V2025_06_18,
            "2025-11-25" => Self::V2025_11_25,
            "2026-07-28" => Self::V2026_07_28,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2024_11_05 => "2024-11-05",
            Self::V2025_03_26 => "2025-03-26",
            Self::V2025_06_18 => "2025-06-18",
            Self::V2025_11_25 => "2025-11-25",
            Self::V2026_07_28 => "2026-07-28",
        }
    }

    pub fn generation(self) -> Generation {
        if self >= Self::V2026_07_28 {
            Generation::Stateless
        } else {
            Generation::Session
        }
    }

    /// JSON-RPC batches (arrays) were allowed only in 2025-03-26 (J1).
    pub fn allows_batch(self) -> bool {
        self == Self::V2025_03_26
    }

    /// The versions of a generation, as the spec's `supported` lists want them.
    pub fn of_generation(g: Generation) -> impl Iterator<Item = ProtocolVersion> {
        Self::ALL.into_iter().filter(move |v| v.generation() == g)
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_round_trip_and_generations() {
        for v in ProtocolVersion::ALL {
            assert_eq!(ProtocolVersion::parse(v.as_str()), Some(v));
        }
        assert_eq!(ProtocolVersion::parse("2026-07-28 "), None);
        assert_eq!(ProtocolVersion::parse("1999-01-01"), None);
        assert_eq!(
            ProtocolVersion::V2026_07_28.generation(),
            Generation::Stateless
        );
        assert_eq!(
            ProtocolVersion::V2025_11_25.generation(),
            Generation::Session
        );
        assert!(ProtocolVersion::V2025_03_26.allows_batch());
        assert!(!ProtocolVersion::V2025_06_18.allows_batch());
    }
}
