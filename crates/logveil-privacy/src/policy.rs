//! The policy model: purposes (may they join accounts, under which consent?) and audiences
//! (who reads a report, how many people must stand behind each published cell, which
//! dimensions they may see). Loaded from a TOML file whose SHA-256 goes into every output.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::sanitize::{QueryAllow, QueryParam};

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
    /// The client's network: IPv4 /24, IPv6 /48 by default (`input.ip_prefix`). Class
    /// pseudonymous: for fraud and security audiences only.
    IpPrefix,
    /// The `utm_source` query parameter (needs the policy's `[query] allow`).
    UtmSource,
    /// The `utm_medium` query parameter (needs the policy's `[query] allow`).
    UtmMedium,
    /// The `utm_campaign` query parameter (needs the policy's `[query] allow`).
    UtmCampaign,
    /// The first of the pipeline's `[pages] templates` the page matches, or `(other)`.
    PageGroup,
    /// Prefecture of a joined account's postal code ([`crate::area`]); `unknown` otherwise.
    Area,
    /// Top-level occupation of a joined account ([`crate::generalize::OCCUPATIONS`]).
    Occupation,
    /// JSIC division of a joined account's industry ([`crate::generalize::INDUSTRIES`]).
    Industry,
    /// Interests of a joined account ([`crate::generalize::INTERESTS`]): multi-valued, a
    /// view counts once in the cell of each interest. Class sensitive.
    Interests,
}

/// How identifying a dimension is; audiences allow whole classes or single dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DimensionClass {
    /// Says nothing about a person: pages, referrers, status, device and browser.
    Public,
    /// Harmless alone, identifying in combination (age band, gender, area…).
    QuasiIdentifier,
    /// Special categories (interests, health…): need an audience that names them.
    Sensitive,
    /// Links records to one person or network (`ip_prefix`, `visitor_id`): only for
    /// audiences with `pseudonymous = true`.
    Pseudonymous,
}

impl DimensionClass {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::QuasiIdentifier => "quasi_identifier",
            Self::Sensitive => "sensitive",
            Self::Pseudonymous => "pseudonymous",
        }
    }
}

impl fmt::Display for DimensionClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Dimension {
    pub const ALL: [Dimension; 16] = [
        Self::Page,
        Self::ReferrerDomain,
        Self::StatusClass,
        Self::AgeBand,
        Self::Gender,
        Self::DeviceClass,
        Self::BrowserFamily,
        Self::IpPrefix,
        Self::UtmSource,
        Self::UtmMedium,
        Self::UtmCampaign,
        Self::PageGroup,
        Self::Area,
        Self::Occupation,
        Self::Industry,
        Self::Interests,
    ];

    /// The dimension's class in the catalogue.
    pub const fn class(self) -> DimensionClass {
        match self {
            Self::Page
            | Self::ReferrerDomain
            | Self::StatusClass
            | Self::DeviceClass
            | Self::BrowserFamily
            | Self::UtmSource
            | Self::UtmMedium
            | Self::UtmCampaign
            | Self::PageGroup => DimensionClass::Public,
            Self::AgeBand | Self::Gender | Self::Area | Self::Occupation | Self::Industry => {
                DimensionClass::QuasiIdentifier
            }
            Self::Interests => DimensionClass::Sensitive,
            Self::IpPrefix => DimensionClass::Pseudonymous,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Page => "page",
            Self::ReferrerDomain => "referrer_domain",
            Self::StatusClass => "status_class",
            Self::AgeBand => "age_band",
            Self::Gender => "gender",
            Self::DeviceClass => "device_class",
            Self::BrowserFamily => "browser_family",
            Self::IpPrefix => "ip_prefix",
            Self::UtmSource => "utm_source",
            Self::UtmMedium => "utm_medium",
            Self::UtmCampaign => "utm_campaign",
            Self::PageGroup => "page_group",
            Self::Area => "area",
            Self::Occupation => "occupation",
            Self::Industry => "industry",
            Self::Interests => "interests",
        }
    }

    /// The query parameter a dimension shows (it must be in the policy's `[query] allow`).
    pub const fn query_param(self) -> Option<QueryParam> {
        match self {
            Self::UtmSource => Some(QueryParam::UtmSource),
            Self::UtmMedium => Some(QueryParam::UtmMedium),
            Self::UtmCampaign => Some(QueryParam::UtmCampaign),
            _ => None,
        }
    }

    /// Whether the dimension comes from the accounts database (and so needs a join).
    pub const fn needs_account(self) -> bool {
        matches!(
            self,
            Self::AgeBand
                | Self::Gender
                | Self::Area
                | Self::Occupation
                | Self::Industry
                | Self::Interests
        )
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
    /// Dimensions this audience may see, one by one…
    #[serde(default)]
    pub dimensions: Vec<Dimension>,
    /// …and whole classes it may see (`public`, `quasi_identifier`, `sensitive`).
    #[serde(default)]
    pub classes: Vec<DimensionClass>,
    /// Whether pseudonymous columns (`ip_prefix`, `visitor_id` exports) may be given to
    /// this audience: internal fraud and security work only.
    #[serde(default)]
    pub pseudonymous: bool,
    /// Purposes this audience may receive reports for; empty means any.
    #[serde(default)]
    pub purposes: Vec<String>,
    /// Clients outside the site: complementary suppression is on by default and files are
    /// `statistics` by default.
    #[serde(default)]
    pub external: bool,
    /// Withhold further cells so no withheld cell can be derived from published cells and
    /// totals; default: `external`.
    #[serde(default)]
    pub complementary_suppression: Option<bool>,
    /// `internal-pseudonymous` or `statistics` (written as `logveil.legal_class`); default:
    /// `statistics` for external audiences, `internal-pseudonymous` otherwise.
    #[serde(default)]
    pub legal_class: Option<String>,
    /// Differential privacy for every report of this audience.
    #[serde(default)]
    pub dp: Option<AudienceDp>,
    /// Cell-key perturbation for every report of this audience: the default for external
    /// audiences without DP (an absent table means the defaults).
    #[serde(default)]
    pub cell_key: Option<AudienceCellKey>,
}

/// `[audience.NAME.cell_key]` (an internal audience that declares it is perturbed too; an
/// external audience without DP always is): the perturbation table, generated from `max_noise` and
/// `variance` or read from a `ptable` file (CSV `count,noise,probability`, relative to
/// the policy file), and the relative noise on views and bytes. Validated by the pipeline
/// loader.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceCellKey {
    /// Largest noise added to a count.
    #[serde(default)]
    pub max_noise: Option<u32>,
    /// Variance of the noise on large counts.
    #[serde(default, deserialize_with = "optional_number_text")]
    pub variance: Option<String>,
    /// A perturbation table file instead of `max_noise` and `variance`.
    #[serde(default)]
    pub ptable: Option<PathBuf>,
    /// Relative noise on views and bytes (`0.05` = up to 5 % of the cell, at least one
    /// person's views).
    #[serde(default, deserialize_with = "optional_number_text")]
    pub magnitude: Option<String>,
}

fn optional_number_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    number_text(d).map(Some)
}

/// `[audience.NAME.dp]`: differential privacy parameters, as exact decimals or fractions
/// (`"0.5"`, `"1e-6"`, `"1/3"`; TOML numbers are accepted too). Validated by the pipeline
/// loader, which knows the exact arithmetic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceDp {
    /// ε of each bucket's release.
    #[serde(deserialize_with = "number_text")]
    pub epsilon: String,
    /// δ of each bucket's release (the chance a key with one visitor is released anyway).
    #[serde(deserialize_with = "number_text")]
    pub delta: String,
    /// Cells one visitor may add to per bucket (more are dropped at random).
    #[serde(default = "one")]
    pub max_cells_per_visitor: u64,
    /// Views one visitor may add to one cell (more are clamped).
    #[serde(default = "one")]
    pub max_views_per_cell: u64,
    /// Total ε this audience may receive per `budget_period`.
    #[serde(deserialize_with = "number_text")]
    pub budget_epsilon: String,
    /// Total δ per `budget_period`.
    #[serde(deserialize_with = "number_text")]
    pub budget_delta: String,
    /// `day` or `month` (of the partition released).
    #[serde(default = "month")]
    pub budget_period: String,
}

fn one() -> u64 {
    1
}

fn month() -> String {
    "month".to_owned()
}

/// A number written as a string or as a TOML number, kept as text for exact parsing.
fn number_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Text(String),
        Int(u64),
        Float(f64),
    }
    Ok(match Number::deserialize(d)? {
        Number::Text(t) => t,
        Number::Int(i) => i.to_string(),
        // Rust prints the shortest text that reads back as the same double: `0.1`, `1e-6`.
        Number::Float(f) => format!("{f:?}"),
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    purpose: BTreeMap<String, Purpose>,
    #[serde(default)]
    audience: BTreeMap<String, Audience>,
    #[serde(default)]
    query: Option<QuerySection>,
}

/// `[query] allow = ["utm_source", …]`: the only query parameters that are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuerySection {
    #[serde(default)]
    allow: Vec<String>,
}

impl Audience {
    /// Whether the audience may see `dimension`, and if not, the rule that says so.
    pub fn allows(&self, dimension: Dimension) -> Result<(), String> {
        let class = dimension.class();
        if class == DimensionClass::Pseudonymous && !self.pseudonymous {
            return Err(format!(
                "`{dimension}` is {class}: only audiences with `pseudonymous = true` may see it"
            ));
        }
        if self.dimensions.contains(&dimension) || self.classes.contains(&class) {
            return Ok(());
        }
        if class == DimensionClass::Pseudonymous {
            return Ok(());
        }
        let mut allowed: Vec<&str> = self.dimensions.iter().map(|d| d.as_str()).collect();
        allowed.extend(self.classes.iter().map(|c| c.as_str()));
        Err(format!(
            "`{dimension}` ({class}) is not allowed (allowed: {})",
            if allowed.is_empty() {
                "nothing".to_owned()
            } else {
                allowed.join(", ")
            }
        ))
    }
}

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub path: PathBuf,
    pub purposes: BTreeMap<String, Purpose>,
    pub audiences: BTreeMap<String, Audience>,
    /// `[query] allow`: the query parameters kept (as dimensions); every other is dropped.
    pub query_allow: QueryAllow,
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
            toml::from_str(text).map_err(|e| invalid(crate::secrets::toml_error(text, &e)))?;
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
            if let Some(c) = audience
                .classes
                .iter()
                .find(|c| **c == DimensionClass::Pseudonymous)
            {
                return Err(invalid(format!(
                    "audience.{name}.classes: `{c}` cannot be listed; set `pseudonymous = true` instead"
                )));
            }
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
        let mut query_allow = QueryAllow::default();
        for name in file.query.iter().flat_map(|q| &q.allow) {
            let Some(param) = QueryParam::from_name(name.as_bytes()) else {
                return Err(invalid(format!(
                    "query.allow: `{name}` is not supported (allowed: {})",
                    QueryParam::allowed_names()
                )));
            };
            if query_allow.allows(param) {
                return Err(invalid(format!("query.allow: `{name}` listed twice")));
            }
            query_allow = query_allow.with(param);
        }
        Ok(Self {
            path: path.to_owned(),
            purposes: file.purpose,
            audiences: file.audience,
            query_allow,
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
    fn audiences_allow_by_dimension_class_and_pseudonymous_flag() {
        let audience =
            |extra: &str| -> Audience { toml::from_str(&format!("k_min = 1\n{extra}")).unwrap() };
        let internal = audience("classes = [\"public\", \"quasi_identifier\"]");
        assert!(internal.allows(Dimension::Page).is_ok());
        assert!(internal.allows(Dimension::AgeBand).is_ok());
        let e = internal.allows(Dimension::IpPrefix).unwrap_err();
        assert!(
            e.contains("`ip_prefix` is pseudonymous") && e.contains("pseudonymous = true"),
            "{e}"
        );
        let security = audience("classes = [\"public\"]\npseudonymous = true");
        assert!(security.allows(Dimension::IpPrefix).is_ok());
        let e = security.allows(Dimension::Gender).unwrap_err();
        assert_eq!(
            e,
            "`gender` (quasi_identifier) is not allowed (allowed: public)"
        );
        let partner = audience("dimensions = [\"age_band\"]");
        assert!(
            partner.allows(Dimension::AgeBand).is_ok()
                && partner.allows(Dimension::Gender).is_err()
        );
        for d in Dimension::ALL {
            assert!(!d.as_str().is_empty() && !d.class().as_str().is_empty());
        }
    }

    #[test]
    fn account_dimensions_parse_and_interests_need_sensitive() {
        #[derive(Deserialize)]
        struct D {
            d: Vec<Dimension>,
        }
        let parsed: D =
            toml::from_str("d = [\"area\", \"occupation\", \"industry\", \"interests\"]").unwrap();
        assert_eq!(
            parsed.d,
            [
                Dimension::Area,
                Dimension::Occupation,
                Dimension::Industry,
                Dimension::Interests
            ]
        );
        for d in &parsed.d {
            assert!(d.needs_account());
            assert_eq!(d.as_str(), format!("{d:?}").to_lowercase());
        }
        assert_eq!(Dimension::Interests.class(), DimensionClass::Sensitive);
        for d in [Dimension::Area, Dimension::Occupation, Dimension::Industry] {
            assert_eq!(d.class(), DimensionClass::QuasiIdentifier);
        }
        let audience =
            |extra: &str| -> Audience { toml::from_str(&format!("k_min = 1\n{extra}")).unwrap() };
        let internal = audience("classes = [\"public\", \"quasi_identifier\"]");
        assert!(internal.allows(Dimension::Area).is_ok());
        assert!(internal.allows(Dimension::Industry).is_ok());
        let e = internal.allows(Dimension::Interests).unwrap_err();
        assert_eq!(
            e,
            "`interests` (sensitive) is not allowed (allowed: public, quasi_identifier)"
        );
        let research = audience("classes = [\"public\", \"quasi_identifier\", \"sensitive\"]");
        assert!(research.allows(Dimension::Interests).is_ok());
        assert!(research.allows(Dimension::IpPrefix).is_err());
        let partner = audience("dimensions = [\"age_band\", \"gender\"]");
        for d in parsed.d {
            assert!(partner.allows(d).is_err());
        }
    }

    #[test]
    fn query_allowlist_names_only_supported_parameters() {
        assert!(load(OK).unwrap().query_allow.is_empty());
        let p = load(&format!(
            "{OK}[query]\nallow = [\"utm_source\", \"utm_campaign\"]\n"
        ))
        .unwrap();
        assert_eq!(
            p.query_allow.iter().collect::<Vec<_>>(),
            [QueryParam::UtmSource, QueryParam::UtmCampaign]
        );
        let e = load(&format!(
            "{OK}[query]\nallow = [\"utm_source\", \"email\"]\n"
        ))
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "policy.toml: query.allow: `email` is not supported (allowed: utm_source, utm_medium, utm_campaign)"
        );
        let e = load(&format!(
            "{OK}[query]\nallow = [\"utm_source\", \"utm_source\"]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("`utm_source` listed twice"), "{e}");
        let e = load(&format!("{OK}[query]\nkeep = []\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("keep"), "{e}");
        for d in [
            Dimension::UtmSource,
            Dimension::UtmMedium,
            Dimension::UtmCampaign,
        ] {
            assert_eq!(d.query_param().unwrap().as_str(), d.as_str());
            assert_eq!(d.class(), DimensionClass::Public);
        }
        assert_eq!(Dimension::PageGroup.query_param(), None);
    }

    #[test]
    fn pseudonymous_class_cannot_be_listed() {
        let e = load(&OK.replace(
            "dimensions = [\"page\", \"age_band\"]",
            "classes = [\"pseudonymous\"]",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("audience.internal.classes") && e.contains("pseudonymous = true"),
            "{e}"
        );
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
