//! The policy model: purposes (may they join accounts, under which consent?) and audiences
//! (who reads a report, how many people must stand behind each published cell, which
//! dimensions they may see). Loaded from a TOML file whose SHA-256 goes into every output.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// A policy file that cannot be used. Messages name the file and the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("{path}: cannot read policy file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A dimension a report can break counts down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// Requested path (query dropped, personal-looking segments redacted).
    Page,
    /// Host of the Referer.
    ReferrerDomain,
    /// `2xx`, `3xx`, … (`-` when the server logged none).
    StatusClass,
    /// Age band of a joined account on the event's date (needs an account join).
    AgeBand,
    /// Gender of a joined account (needs an account join).
    Gender,
    /// `desktop`, `mobile`, `tablet`, `bot`, `other` ([`crate::classify`]).
    DeviceClass,
    /// `chrome`, `edge`, `firefox`, … ([`crate::classify`]).
    BrowserFamily,
}

impl Dimension {
    pub const ALL: [Dimension; 7] = [
        Self::Page,
        Self::ReferrerDomain,
        Self::StatusClass,
        Self::AgeBand,
        Self::Gender,
        Self::DeviceClass,
        Self::BrowserFamily,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Page => "page",
            Self::ReferrerDomain => "referrer_domain",
            Self::StatusClass => "status_class",
            Self::AgeBand => "age_band",
            Self::Gender => "gender",
            Self::DeviceClass => "device_class",
            Self::BrowserFamily => "browser_family",
        }
    }

    /// Whether the dimension comes from the accounts database (and so needs a join).
    pub const fn needs_account(self) -> bool {
        matches!(self, Self::AgeBand | Self::Gender)
    }

    pub fn allowed_names() -> String {
        Self::ALL
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The account flag that must be 1 for a purpose to join an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentColumn {
    ConsentResearch,
    ConsentAdvertising,
}

impl ConsentColumn {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ConsentResearch => "consent_research",
            Self::ConsentAdvertising => "consent_advertising",
        }
    }
}

/// Why data is processed. Only a purpose with `join_accounts = true` may link a visitor to an account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purpose {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub join_accounts: bool,
    /// Required when `join_accounts`: the account must have this flag set.
    pub consent: Option<ConsentColumn>,
    /// A contact/marketing purpose: accounts that opted out of the newsletter are not joined.
    #[serde(default)]
    pub contact: bool,
}

/// Who receives a report.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audience {
    #[serde(default)]
    pub description: String,
    /// A cell is published only if at least this many distinct visitors stand behind it.
    pub k_min: u32,
    /// The dimensions reports for this audience may use.
    pub dimensions: Vec<Dimension>,
    /// Purposes this audience may receive reports for; empty means any.
    #[serde(default)]
    pub purposes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    purpose: BTreeMap<String, Purpose>,
    #[serde(default)]
    audience: BTreeMap<String, Audience>,
}

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub path: PathBuf,
    pub purposes: BTreeMap<String, Purpose>,
    pub audiences: BTreeMap<String, Audience>,
    /// Hex SHA-256 of the policy file's bytes, written into every report.
    pub sha256: String,
}

impl Policy {
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let bytes = std::fs::read(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes(&bytes, path)
    }

    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, PolicyError> {
        let invalid = |message: String| PolicyError::Invalid {
            path: path.to_owned(),
            message,
        };
        let text = std::str::from_utf8(bytes).map_err(|_| invalid("not UTF-8 text".into()))?;
        let file: PolicyFile =
            toml::from_str(text).map_err(|e| invalid(e.to_string().trim_end().to_owned()))?;
        if file.purpose.is_empty() {
            return Err(invalid(
                "no [purpose.NAME] tables: declare at least one purpose".into(),
            ));
        }
        if file.audience.is_empty() {
            return Err(invalid(
                "no [audience.NAME] tables: declare at least one audience".into(),
            ));
        }
        for (name, purpose) in &file.purpose {
            if purpose.join_accounts && purpose.consent.is_none() {
                return Err(invalid(format!(
                    "purpose.{name}.consent: required when join_accounts = true (allowed: consent_research, consent_advertising)"
                )));
            }
            if !purpose.join_accounts && purpose.consent.is_some() {
                return Err(invalid(format!(
                    "purpose.{name}.consent: set but join_accounts is false; remove it or set join_accounts = true"
                )));
            }
        }
        for (name, audience) in &file.audience {
            if audience.k_min == 0 {
                return Err(invalid(format!(
                    "audience.{name}.k_min: must be at least 1"
                )));
            }
            if let Some(p) = audience
                .purposes
                .iter()
                .find(|p| !file.purpose.contains_key(*p))
            {
                return Err(invalid(format!(
                    "audience.{name}.purposes: unknown purpose `{p}` (declared: {})",
                    file.purpose.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        Ok(Self {
            path: path.to_owned(),
            purposes: file.purpose,
            audiences: file.audience,
            sha256: crate::keys::hex(&Sha256::digest(bytes)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Policy, PolicyError> {
        Policy::from_bytes(text.as_bytes(), Path::new("policy.toml"))
    }

    const OK: &str = r#"
[purpose.improve_services]
[purpose.anonymous_reporting]
join_accounts = true
consent = "consent_research"
[audience.internal]
k_min = 1
dimensions = ["page", "age_band"]
[audience.partner]
k_min = 10
dimensions = ["age_band", "gender"]
purposes = ["anonymous_reporting"]
"#;

    #[test]
    fn loads_and_hashes() {
        let p = load(OK).unwrap();
        assert_eq!(p.audiences["partner"].k_min, 10);
        assert_eq!(
            p.purposes["anonymous_reporting"].consent,
            Some(ConsentColumn::ConsentResearch)
        );
        assert_eq!(p.sha256.len(), 64);
    }

    #[test]
    fn errors_name_file_key_and_allowed_values() {
        let e = load(&OK.replace("\"gender\"", "\"shoe_size\""))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("policy.toml:") && e.contains("shoe_size") && e.contains("age_band"),
            "{e}"
        );
        let e = load(&OK.replace("consent = \"consent_research\"", ""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("purpose.anonymous_reporting.consent") && e.contains("consent_advertising"),
            "{e}"
        );
        let e = load(&OK.replace("k_min = 10", "k_min = 0"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("audience.partner.k_min"), "{e}");
        let e = load(&OK.replace(
            "purposes = [\"anonymous_reporting\"]",
            "purposes = [\"spying\"]",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("audience.partner.purposes") && e.contains("spying"),
            "{e}"
        );
    }
}
