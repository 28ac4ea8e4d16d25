//! The pipeline file: inputs, keys, policy, accounts, output and reports, validated
//! against the policy. Every error names the file, the key and what is allowed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use logveil_ingest::normalize_path as clean;
use logveil_parse::Parser;
use logveil_parse::json::JsonFields;
use logveil_privacy::client::{ClientPolicy, MAX_IPV4_PREFIX, MAX_IPV6_PREFIX, TrustedProxies};
use logveil_privacy::sanitize::{QueryParam, RouteTemplates, SanitizePolicy};
use logveil_privacy::{Audience, Dimension, Policy};
use logveil_report::cellkey::CellKeyMethod;
use logveil_report::dp::Rational;
use logveil_report::ledger::Budget;
use logveil_report::{
    Bucket, BudgetPeriod, Calendar, DpSpec, Filters, LegalClass, Metric, ReportSpec,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    input: InputSection,
    keys: KeysSection,
    policy: PolicySection,
    #[serde(default)]
    pages: Option<PagesSection>,
    #[serde(default)]
    accounts: Option<AccountsSection>,
    output: OutputSection,
    #[serde(default)]
    report: Vec<ReportSection>,
    #[serde(default)]
    audit: Option<AuditSection>,
    #[serde(default)]
    privacy: Option<PrivacySection>,
    /// `logveil daemon` settings (see `daemon::settings`).
    #[serde(default)]
    daemon: Option<crate::daemon::settings::DaemonSection>,
    /// `logveil edge` / `aggregate` / `merge` settings (see `scaleout::settings`).
    #[serde(default)]
    scaleout: Option<crate::scaleout::settings::ScaleoutSection>,
}

/// `[privacy] state_dir = "PATH"`: where the audiences' release ledgers live.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivacySection {
    #[serde(default)]
    state_dir: Option<PathBuf>,
}

/// `[audit] log = "PATH"`: the re-identification audit log (`logveil lookup`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditSection {
    log: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSection {
    paths: Vec<String>,
    format: String,
    #[serde(default)]
    visitor_cookie: Option<String>,
    #[serde(default)]
    max_line_bytes: Option<usize>,
    #[serde(default)]
    max_decompressed_bytes: Option<u64>,
    #[serde(default)]
    dead_letter: Option<PathBuf>,
    /// Proxies whose `X-Forwarded-For` is believed (addresses or CIDR networks).
    #[serde(default)]
    trusted_proxies: Vec<String>,
    /// `ip_prefix` lengths: `{ ipv4 = 24, ipv6 = 48 }`.
    #[serde(default)]
    ip_prefix: Option<IpPrefixSection>,
    /// Field paths for `format = "json"`.
    #[serde(default)]
    json: Option<JsonSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IpPrefixSection {
    #[serde(default = "default_v4")]
    ipv4: u8,
    #[serde(default = "default_v6")]
    ipv6: u8,
}

fn default_v4() -> u8 {
    24
}

fn default_v6() -> u8 {
    48
}

/// Where the fields of a JSON log live: a `layout` to start from, then per-field paths.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSection {
    #[serde(default)]
    layout: Option<String>,
    client: Option<String>,
    time: Option<String>,
    method: Option<String>,
    uri: Option<String>,
    request: Option<String>,
    status: Option<String>,
    bytes: Option<String>,
    referer: Option<String>,
    user_agent: Option<String>,
    cookie: Option<String>,
    forwarded_for: Option<String>,
    host: Option<String>,
    duration_seconds: Option<String>,
}

impl JsonSection {
    fn fields(self) -> Result<JsonFields, String> {
        let mut f = match self.layout.as_deref() {
            None | Some("caddy") => JsonFields::caddy(),
            Some("nginx") => JsonFields::nginx(),
            Some(other) => {
                return Err(format!(
                    "input.json.layout: `{other}` is not a layout (allowed: caddy, nginx)"
                ));
            }
        };
        if let Some(v) = self.client {
            f.client = v;
        }
        if let Some(v) = self.time {
            f.time = v;
        }
        for (slot, value) in [
            (&mut f.method, self.method),
            (&mut f.uri, self.uri),
            (&mut f.request, self.request),
            (&mut f.status, self.status),
            (&mut f.bytes, self.bytes),
            (&mut f.referer, self.referer),
            (&mut f.user_agent, self.user_agent),
            (&mut f.cookie, self.cookie),
            (&mut f.forwarded_for, self.forwarded_for),
            (&mut f.host, self.host),
            (&mut f.duration_seconds, self.duration_seconds),
        ] {
            if value.is_some() {
                *slot = value;
            }
        }
        Ok(f)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysSection {
    file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicySection {
    file: PathBuf,
}

/// `[pages] templates = ["/en/{city}/hotels", …]`: route templates for `page_group`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PagesSection {
    #[serde(default)]
    templates: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsSection {
    source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputSection {
    dir: PathBuf,
    #[serde(default)]
    timezone: Option<String>,
    /// The ledger of the old layout (before `[privacy] state_dir`): read once, migrated
    /// into the state directory. Default `privacy-ledger.json` in `dir`.
    #[serde(default)]
    ledger: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportSection {
    name: String,
    audience: String,
    purpose: String,
    bucket: Bucket,
    #[serde(default)]
    dimensions: Vec<Dimension>,
    metrics: Vec<Metric>,
    #[serde(default)]
    include_bots: bool,
    /// A pseudonymous export (one row per visitor): needs a `pseudonymous = true` audience.
    #[serde(default)]
    visitor_id: bool,
    /// Also publish a total per bucket and per value of the first dimension.
    #[serde(default)]
    totals: bool,
    /// Status classes counted (`["2xx", "3xx"]` by default).
    #[serde(default)]
    status: Option<Vec<String>>,
    /// Only pages under these prefixes (sanitised paths, e.g. `/en/`).
    #[serde(default)]
    path_prefix: Vec<String>,
    /// Under differential privacy: release every combination of the dimensions' public
    /// value lists instead of thresholding the keys found in the data.
    #[serde(default)]
    public_keys: bool,
}

/// What an audience's policy entry says about disclosure control.
struct AudienceDisclosure {
    /// `[audience.NAME.dp]` is present (even when invalid: then `dp` is `None` and the
    /// error is already reported).
    dp_declared: bool,
    complementary_suppression: bool,
    dp: Option<DpSpec>,
    legal_class: LegalClass,
    external: bool,
    perturbation: Option<Arc<CellKeyMethod>>,
}

/// Resolves and validates an audience's disclosure settings; problems name the policy file
/// and key.
fn audience_disclosure(
    name: &str,
    audience: &Audience,
    policy_path: &Path,
    errors: &mut Vec<String>,
) -> AudienceDisclosure {
    let at = format!("{}: audience.{name}", policy_path.display());
    let legal_class = match audience.legal_class.as_deref() {
        None if audience.external => LegalClass::Statistics,
        None => LegalClass::InternalPseudonymous,
        Some(text) => LegalClass::parse(text).unwrap_or_else(|| {
            errors.push(format!(
                "{at}.legal_class: `{text}` is not allowed (allowed: internal-pseudonymous, statistics)"
            ));
            LegalClass::InternalPseudonymous
        }),
    };
    if audience.external
        && legal_class != LegalClass::Statistics
        && audience
            .legal_class
            .as_deref()
            .and_then(LegalClass::parse)
            .is_some()
    {
        errors.push(format!(
            "{at}.legal_class: an external audience may only receive `statistics`"
        ));
    }
    let dp = audience.dp.as_ref().and_then(|dp| {
        let number = |key: &str, text: &str, errors: &mut Vec<String>| {
            Rational::parse(text)
                .map_err(|e| errors.push(format!("{at}.dp.{key}: {e}")))
                .ok()
        };
        let epsilon = number("epsilon", &dp.epsilon, errors);
        let delta = number("delta", &dp.delta, errors);
        let budget_epsilon = number("budget_epsilon", &dp.budget_epsilon, errors);
        let budget_delta = number("budget_delta", &dp.budget_delta, errors);
        let period = BudgetPeriod::parse(&dp.budget_period);
        if period.is_none() {
            errors.push(format!(
                "{at}.dp.budget_period: `{}` is not allowed (allowed: day, month)",
                dp.budget_period
            ));
        }
        for (key, value) in [
            ("max_cells_per_visitor", dp.max_cells_per_visitor),
            ("max_views_per_cell", dp.max_views_per_cell),
        ] {
            if value == 0 || value > 10_000 {
                errors.push(format!(
                    "{at}.dp.{key}: {value} is not allowed (allowed: 1 to 10000)"
                ));
            }
        }
        let (epsilon, delta, budget_epsilon, budget_delta, period) =
            (epsilon?, delta?, budget_epsilon?, budget_delta?, period?);
        if epsilon == Rational::ZERO {
            errors.push(format!("{at}.dp.epsilon: must be positive"));
        }
        if delta == Rational::ZERO || delta >= Rational::ONE {
            errors.push(format!("{at}.dp.delta: must be in (0, 1), not {delta}"));
        }
        if let Err(e) =
            logveil_report::dp::release_threshold(epsilon, delta, dp.max_cells_per_visitor.max(1))
        {
            errors.push(format!("{at}.dp: {e}"));
        }
        Some(DpSpec {
            epsilon,
            delta,
            max_cells_per_visitor: dp.max_cells_per_visitor,
            max_views_per_cell: dp.max_views_per_cell,
            public_keys: false,
            budget: Budget {
                epsilon_per_period: budget_epsilon,
                delta_per_period: budget_delta,
            },
            period,
        })
    });
    let perturbation = audience_perturbation(audience, &at, policy_path, errors);
    AudienceDisclosure {
        dp_declared: audience.dp.is_some(),
        complementary_suppression: audience
            .complementary_suppression
            .unwrap_or(audience.external),
        dp,
        legal_class,
        external: audience.external,
        perturbation,
    }
}

/// The audience's cell-key perturbation: declared (`[audience.NAME.cell_key]`), or the
/// defaults for an external audience without DP.
fn audience_perturbation(
    audience: &Audience,
    at: &str,
    policy_path: &Path,
    errors: &mut Vec<String>,
) -> Option<Arc<CellKeyMethod>> {
    use logveil_report::cellkey::{DEFAULT_MAGNITUDE, DEFAULT_MAX_NOISE, DEFAULT_VARIANCE, PTable};
    if audience.dp.is_some() {
        if audience.cell_key.is_some() {
            errors.push(format!(
                "{at}.cell_key: the audience has [dp]; differential privacy and cell-key perturbation do not combine (keep one)"
            ));
        }
        return None;
    }
    if !audience.external && audience.cell_key.is_none() {
        return None;
    }
    let ck = audience.cell_key.clone().unwrap_or_default();
    let number =
        |key: &str, text: Option<&String>, default: f64, errors: &mut Vec<String>| match text {
            None => Some(default),
            Some(t) => match t.trim().parse::<f64>() {
                Ok(v) if v.is_finite() => Some(v),
                _ => {
                    errors.push(format!("{at}.cell_key.{key}: `{t}` is not a number"));
                    None
                }
            },
        };
    let ptable = match (&ck.ptable, ck.max_noise, &ck.variance) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            errors.push(format!(
                "{at}.cell_key: give either `ptable` or `max_noise`/`variance`, not both"
            ));
            None
        }
        (Some(file), None, None) => {
            let dir = policy_path.parent().unwrap_or_else(|| Path::new("."));
            PTable::from_csv_file(&clean(&dir.join(file)))
                .map_err(|e| errors.push(format!("{at}.cell_key.ptable: {e}")))
                .ok()
        }
        (None, max_noise, variance) => {
            let variance = number("variance", variance.as_ref(), DEFAULT_VARIANCE, errors)?;
            PTable::generate(max_noise.unwrap_or(DEFAULT_MAX_NOISE), variance)
                .map_err(|e| errors.push(format!("{at}.cell_key: {e}")))
                .ok()
        }
    }?;
    let magnitude = number(
        "magnitude",
        ck.magnitude.as_ref(),
        DEFAULT_MAGNITUDE,
        errors,
    )?;
    if !(0.0..=1.0).contains(&magnitude) {
        errors.push(format!(
            "{at}.cell_key.magnitude: {magnitude} is not allowed (allowed: 0 to 1, a fraction of the cell)"
        ));
        return None;
    }
    Some(Arc::new(CellKeyMethod {
        ptable: Arc::new(ptable),
        magnitude,
    }))
}

fn report_filters(r: &ReportSection, at: &str, errors: &mut Vec<String>) -> Filters {
    let mut filters = Filters::default();
    if let Some(status) = &r.status {
        filters.status_classes.clear();
        for class in status {
            match class.as_bytes() {
                [d @ b'1'..=b'5', b'x', b'x'] => filters.status_classes.push(u16::from(d - b'0')),
                _ => errors.push(format!(
                    "{at}.status: `{class}` is not allowed (allowed: 1xx, 2xx, 3xx, 4xx, 5xx)"
                )),
            }
        }
        if status.is_empty() {
            errors.push(format!(
                "{at}.status: empty (allowed: 1xx, 2xx, 3xx, 4xx, 5xx)"
            ));
        }
    }
    for prefix in &r.path_prefix {
        if !prefix.starts_with('/') {
            errors.push(format!("{at}.path_prefix: `{prefix}` must start with `/`"));
        }
    }
    filters.path_prefixes.clone_from(&r.path_prefix);
    filters
}

/// Combinations the disclosure regimes do not support.
fn check_disclosure(
    r: &ReportSection,
    at: &str,
    disclosure: &AudienceDisclosure,
    errors: &mut Vec<String>,
) {
    if r.totals && r.visitor_id {
        errors.push(format!("{at}.totals: a pseudonymous export has no totals"));
    }
    if r.totals && r.dimensions.is_empty() {
        errors.push(format!(
            "{at}.totals: a report without dimensions is its own total; remove `totals`"
        ));
    }
    if !disclosure.dp_declared {
        if r.public_keys {
            errors.push(format!(
                "{at}.public_keys: only for audiences with differential privacy ([audience.{}.dp])",
                r.audience
            ));
        }
        return;
    }
    if r.visitor_id {
        errors.push(format!(
            "{at}.visitor_id: audience `{}` uses differential privacy; pseudonymous exports are not noised",
            r.audience
        ));
    }
    if r.totals {
        errors.push(format!(
            "{at}.totals: not with differential privacy (sum the noisy cells instead; a separately noised total would cost budget and disagree with them)"
        ));
    }
    if let Some(m) = r
        .metrics
        .iter()
        .find(|m| matches!(m, Metric::Bytes | Metric::Accounts))
    {
        errors.push(format!(
            "{at}.metrics: `{m}` is not supported under differential privacy (allowed: views, visitors): its per-person contribution has no bound"
        ));
    }
    if r.public_keys {
        for d in &r.dimensions {
            if !logveil_report::disclose::has_public_domain(*d) {
                errors.push(format!(
                    "{at}.public_keys: `{d}` has no public value list (allowed: {})",
                    logveil_report::disclose::PUBLIC_DOMAIN_DIMENSIONS
                        .iter()
                        .map(|d| d.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
}

/// Command-line overrides of the pipeline file (relative paths are from the current directory).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub inputs: Vec<String>,
    pub format: Option<String>,
    pub accounts: Option<String>,
    pub out: Option<PathBuf>,
    pub dead_letter: Option<PathBuf>,
    /// `--privacy-state DIR`: instead of `[privacy] state_dir`.
    pub privacy_state: Option<PathBuf>,
}

/// A loaded, validated pipeline with every path resolved.
#[derive(Debug)]
pub struct Pipeline {
    pub path: PathBuf,
    /// Input patterns and the directory they are relative to.
    pub inputs: Vec<String>,
    pub inputs_base: PathBuf,
    pub parser: Parser,
    pub client_policy: ClientPolicy,
    pub max_line_bytes: usize,
    /// Cap on the decompressed size of each compressed input.
    pub max_decompressed_bytes: u64,
    /// Where rejected lines go, redacted (JSON lines); none when unset.
    pub dead_letter: Option<PathBuf>,
    pub key_file: PathBuf,
    pub policy: Policy,
    /// `csv:PATH` / `sqlite:PATH` and the directory PATH is relative to.
    pub accounts: Option<(String, PathBuf)>,
    pub out_dir: PathBuf,
    pub calendar: Calendar,
    pub reports: Vec<ReportSpec>,
    /// What the sanitiser keeps besides the page: the policy's allow-listed query parameters
    /// and the pipeline's route templates (`[pages]`), each only if some report shows it.
    pub sanitize: SanitizePolicy,
    /// `[audit] log` (relative to the pipeline file); default `audit.jsonl` beside the key file.
    pub audit_log: PathBuf,
    /// `[daemon]`: state directory, lateness, intervals, metrics address.
    pub daemon: crate::daemon::settings::DaemonSettings,
    /// `[privacy] state_dir`: the audiences' release ledgers (default `logveil-state/`
    /// beside the pipeline file; never derived from the key file or the output).
    pub state_dir: PathBuf,
    /// The configured output directory (before any `--out`): a DP run refuses a state
    /// directory under it as under the override.
    pub configured_out_dir: PathBuf,
    /// Where ledgers of the old layout may be (`[output] ledger`, else
    /// `privacy-ledger.json` in the configured output directory and in a `--out` override):
    /// each one found is migrated into the state directory.
    pub legacy_ledgers: Vec<PathBuf>,
    /// `[scaleout]`: site, partitions, partials location, windows and replays.
    pub scaleout: crate::scaleout::ScaleoutSettings,
}

/// All problems found in a pipeline file, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigErrors(pub Vec<String>);

const REPORT_NAME_RULE: &str = "lower-case letters, digits and `_`, starting with a letter";

impl Pipeline {
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Self, ConfigErrors> {
        let shown = path.display().to_string();
        let one = |message: String| ConfigErrors(vec![format!("{shown}: {message}")]);
        let text = std::fs::read_to_string(path)
            .map_err(|e| one(format!("cannot read pipeline file: {e}")))?;
        let mut file: PipelineFile = toml::from_str(&text)
            .map_err(|e| one(logveil_privacy::secrets::toml_error(&text, &e)))?;
        let base = path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let cwd = PathBuf::from(".");
        let mut errors = Vec::new();
        let daemon = crate::daemon::settings::DaemonSettings::from_section(
            file.daemon.take(),
            &shown,
            &clean(&base),
            &mut errors,
        );
        let scaleout = crate::scaleout::ScaleoutSettings::from_section(
            file.scaleout.take(),
            &shown,
            &clean(&base),
            &mut errors,
        );

        let format_spec = overrides.format.as_deref().unwrap_or(&file.input.format);
        let format_key = if overrides.format.is_some() {
            "--format"
        } else {
            "input.format"
        };
        if file.input.json.is_some() && format_spec != "json" {
            errors.push(format!(
                "{shown}: input.json: only used with format = \"json\" (format is `{format_spec}`)"
            ));
        }
        let json_fields = match file.input.json.map(JsonSection::fields).transpose() {
            Ok(fields) => fields,
            Err(e) => {
                errors.push(format!("{shown}: {e}"));
                None
            }
        };
        let parser = match Parser::new(
            format_spec,
            file.input.visitor_cookie.as_deref(),
            json_fields,
        ) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(format!("{shown}: {format_key}: {e}"));
                None
            }
        };
        let (ipv4_prefix, ipv6_prefix) = file
            .input
            .ip_prefix
            .as_ref()
            .map_or((24, 48), |p| (p.ipv4, p.ipv6));
        if !(8..=MAX_IPV4_PREFIX).contains(&ipv4_prefix)
            || !(16..=MAX_IPV6_PREFIX).contains(&ipv6_prefix)
        {
            errors.push(format!(
                "{shown}: input.ip_prefix: ipv4 = {ipv4_prefix}, ipv6 = {ipv6_prefix} (allowed: ipv4 8 to {MAX_IPV4_PREFIX}, ipv6 16 to {MAX_IPV6_PREFIX}: a prefix must never single out one address)"
            ));
        }
        let trusted_proxies =
            TrustedProxies::parse(&file.input.trusted_proxies).unwrap_or_else(|e| {
                errors.push(format!("{shown}: input.trusted_proxies: {e}"));
                TrustedProxies::default()
            });
        if let Some(cookie) = &file.input.visitor_cookie
            && (cookie.is_empty()
                || cookie
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b == b'=' || b == b';'))
        {
            errors.push(format!("{shown}: input.visitor_cookie: `{cookie}` is not a cookie name (no spaces, `=` or `;`)"));
        }
        if file.input.paths.is_empty() && overrides.inputs.is_empty() {
            errors.push(format!(
                "{shown}: input.paths: empty; list at least one file or glob"
            ));
        }
        let max_line_bytes = file
            .input
            .max_line_bytes
            .unwrap_or(logveil_parse::DEFAULT_MAX_LINE_BYTES);
        if !(256..=64 * 1024 * 1024).contains(&max_line_bytes) {
            errors.push(format!("{shown}: input.max_line_bytes: {max_line_bytes} is out of range (allowed: 256 to 67108864)"));
        }
        let max_decompressed_bytes = file
            .input
            .max_decompressed_bytes
            .unwrap_or(logveil_ingest::DEFAULT_MAX_DECOMPRESSED_BYTES);
        if max_decompressed_bytes == 0 {
            errors.push(format!(
                "{shown}: input.max_decompressed_bytes: 0 is out of range (allowed: at least 1)"
            ));
        }

        let policy = Policy::load(&clean(&base.join(&file.policy.file))).map_err(|e| {
            let mut all = std::mem::take(&mut errors);
            all.push(format!("{shown}: policy.file: {e}"));
            ConfigErrors(all)
        })?;
        let routes = RouteTemplates::parse(
            file.pages
                .as_ref()
                .map_or(&[][..], |p| p.templates.as_slice()),
        )
        .unwrap_or_else(|e| {
            errors.push(format!("{shown}: pages.{e}"));
            RouteTemplates::default()
        });
        let calendar = match file
            .output
            .timezone
            .as_deref()
            .map(Calendar::from_name)
            .transpose()
        {
            Ok(c) => c.unwrap_or(Calendar::Utc),
            Err(e) => {
                errors.push(format!("{shown}: output.timezone: {e}"));
                Calendar::Utc
            }
        };

        let accounts = match (&overrides.accounts, &file.accounts) {
            (Some(spec), _) => Some((spec.clone(), cwd.clone())),
            (None, Some(a)) => Some((a.source.clone(), clean(&base))),
            (None, None) => None,
        };

        if file.report.is_empty() {
            errors.push(format!(
                "{shown}: no [[report]] tables: declare at least one report"
            ));
        }
        let mut names = BTreeSet::new();
        let mut reports = Vec::new();
        // Each audience's disclosure settings are validated once, whether or not a report
        // uses it: a policy error is an error.
        let disclosures: std::collections::BTreeMap<&str, AudienceDisclosure> = policy
            .audiences
            .iter()
            .map(|(name, audience)| {
                (
                    name.as_str(),
                    audience_disclosure(name, audience, &policy.path, &mut errors),
                )
            })
            .collect();
        for (i, r) in file.report.into_iter().enumerate() {
            let at = format!("{shown}: report[{i}] ({})", r.name);
            if !valid_report_name(&r.name) {
                errors.push(format!(
                    "{at}.name: `{}` is not allowed ({REPORT_NAME_RULE})",
                    r.name
                ));
            }
            if !names.insert(r.name.clone()) {
                errors.push(format!("{at}.name: duplicate report name"));
            }
            let Some(audience) = policy.audiences.get(&r.audience) else {
                errors.push(format!(
                    "{at}.audience: `{}` is not declared in {} (declared: {})",
                    r.audience,
                    policy.path.display(),
                    policy
                        .audiences
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                continue;
            };
            let Some(purpose) = policy.purposes.get(&r.purpose) else {
                errors.push(format!(
                    "{at}.purpose: `{}` is not declared in {} (declared: {})",
                    r.purpose,
                    policy.path.display(),
                    policy
                        .purposes
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                continue;
            };
            if !audience.purposes.is_empty() && !audience.purposes.contains(&r.purpose) {
                errors.push(format!(
                    "{at}.purpose: audience `{}` may not receive reports for purpose `{}` (allowed: {})",
                    r.audience,
                    r.purpose,
                    audience.purposes.join(", ")
                ));
            }
            let mut seen = BTreeSet::new();
            for d in &r.dimensions {
                if !seen.insert(*d) {
                    errors.push(format!("{at}.dimensions: `{d}` listed twice"));
                }
                if let Err(rule) = audience.allows(*d) {
                    errors.push(format!(
                        "{at}.dimensions: audience `{}`: {rule}",
                        r.audience
                    ));
                }
                if let Some(param) = d.query_param()
                    && !policy.query_allow.allows(param)
                {
                    let kept: Vec<&str> =
                        policy.query_allow.iter().map(QueryParam::as_str).collect();
                    errors.push(format!(
                        "{at}.dimensions: `{d}` is a query parameter the policy does not keep: add it to `[query] allow` in {} (allowed now: {})",
                        policy.path.display(),
                        if kept.is_empty() { "none".to_owned() } else { kept.join(", ") }
                    ));
                }
                if *d == Dimension::PageGroup && routes.is_empty() {
                    errors.push(format!(
                        "{at}.dimensions: `page_group` needs route templates: declare `[pages] templates = [\"/{{lang}}/{{city}}/hotels\", …]` in the pipeline"
                    ));
                }
                if d.needs_account() && !purpose.join_accounts {
                    errors.push(format!(
                        "{at}.dimensions: `{d}` comes from accounts, but purpose `{}` does not allow joining accounts",
                        r.purpose
                    ));
                }
            }
            if r.visitor_id && !audience.pseudonymous {
                errors.push(format!(
                    "{at}.visitor_id: audience `{}` may not receive pseudonymous columns (only audiences with `pseudonymous = true` in the policy may)",
                    r.audience
                ));
            }
            if r.metrics.is_empty() {
                errors.push(format!(
                    "{at}.metrics: empty (allowed: views, visitors, bytes, accounts)"
                ));
            }
            if r.metrics.contains(&Metric::Accounts) && !purpose.join_accounts {
                errors.push(format!(
                    "{at}.metrics: `accounts` needs a purpose that joins accounts; `{}` does not",
                    r.purpose
                ));
            }
            let filters = report_filters(&r, &at, &mut errors);
            let disclosure = &disclosures[r.audience.as_str()];
            check_disclosure(&r, &at, disclosure, &mut errors);
            let spec = ReportSpec {
                name: r.name,
                audience: r.audience,
                purpose_name: r.purpose,
                purpose: purpose.clone(),
                bucket: r.bucket,
                dimensions: r.dimensions,
                metrics: r.metrics,
                include_bots: r.include_bots,
                visitor_id: r.visitor_id,
                k_min: audience.k_min,
                filters,
                totals: r.totals,
                complementary_suppression: disclosure.complementary_suppression,
                dp: disclosure.dp.clone().map(|mut dp| {
                    dp.public_keys = r.public_keys;
                    dp
                }),
                legal_class: disclosure.legal_class,
                external: disclosure.external,
                perturbation: disclosure.perturbation.clone(),
            };
            if spec.needs_join() && accounts.is_none() {
                errors.push(format!(
                    "{at}: needs account data but the pipeline has no [accounts] source"
                ));
            }
            reports.push(spec);
        }

        let key_file = clean(&base.join(&file.keys.file));
        let audit_log = file.audit.as_ref().map_or_else(
            || key_file.with_file_name("audit.jsonl"),
            |a| clean(&base.join(&a.log)),
        );
        if audit_log.starts_with(clean(&base.join(&file.output.dir))) {
            errors.push(format!(
                "{shown}: audit.log: `{}` is under output.dir; keep it with the key file (it must never be published)",
                audit_log.display()
            ));
        }

        let Some(parser) = parser.filter(|_| errors.is_empty()) else {
            return Err(ConfigErrors(errors));
        };
        let (inputs, inputs_base) = if overrides.inputs.is_empty() {
            (file.input.paths, clean(&base))
        } else {
            (overrides.inputs.clone(), cwd)
        };
        let configured_out_dir = clean(&base.join(&file.output.dir));
        let out_dir = overrides
            .out
            .clone()
            .unwrap_or_else(|| configured_out_dir.clone());
        let state_dir = match (&overrides.privacy_state, &file.privacy) {
            (Some(dir), _) => clean(dir),
            (
                None,
                Some(PrivacySection {
                    state_dir: Some(dir),
                }),
            ) => clean(&base.join(dir)),
            (None, _) => clean(&base.join("logveil-state")),
        };
        Ok(Self {
            path: path.to_owned(),
            inputs,
            inputs_base,
            parser: parser.with_max_line_bytes(max_line_bytes),
            client_policy: ClientPolicy {
                trusted_proxies,
                ipv4_prefix,
                ipv6_prefix,
            },
            max_line_bytes,
            max_decompressed_bytes,
            dead_letter: match (&overrides.dead_letter, &file.input.dead_letter) {
                (Some(path), _) => Some(clean(path)),
                (None, Some(path)) => Some(clean(&base.join(path))),
                (None, None) => None,
            },
            key_file,
            // Only what some report shows: no query parsing or page matching for nothing.
            sanitize: SanitizePolicy {
                query_allow: reports
                    .iter()
                    .flat_map(|r| &r.dimensions)
                    .filter_map(|d| d.query_param())
                    .filter(|p| policy.query_allow.allows(*p))
                    .collect(),
                routes: if reports
                    .iter()
                    .any(|r| r.dimensions.contains(&Dimension::PageGroup))
                {
                    routes
                } else {
                    RouteTemplates::default()
                },
            },
            policy,
            accounts,
            legacy_ledgers: {
                let mut legacy = vec![
                    configured_out_dir.join("privacy-ledger.json"),
                    out_dir.join("privacy-ledger.json"),
                ];
                if let Some(l) = &file.output.ledger {
                    legacy.push(clean(&base.join(l)));
                }
                legacy.dedup();
                legacy
            },
            state_dir,
            configured_out_dir,
            out_dir,
            calendar,
            reports,
            audit_log,
            daemon,
            scaleout,
        })
    }
}

fn valid_report_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
