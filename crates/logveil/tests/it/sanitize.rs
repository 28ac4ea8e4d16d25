//! URL sanitising end to end: allow-listed query values and route templates as report
//! dimensions on the samples (which carry `?utm_source=`, `?email=` and `?tel=`), config
//! errors, and the path rules over every request path of the real corpora.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use logveil_privacy::sanitize::{OTHER_PAGE_GROUP, PAGE_CUT_MARKER, PAGE_MAX_BYTES, Page};

use crate::util::{
    EditedPipeline, batch_rows, batch_run, bin, files_under, key_value_metadata, read_batches,
    repo, report_rows, truth,
};

const CAMPAIGNS: &str = r#"
[[report]]
name = "campaigns_daily"
audience = "internal"
purpose = "improve_services"
bucket = "day"
dimensions = ["utm_source", "utm_medium", "utm_campaign", "page_group"]
metrics = ["views", "visitors"]
"#;

/// Every `email=` and `tel=` value of the sample logs' query strings, as logged and decoded.
fn query_pii() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for name in ["access-2026-11-01.log", "access-2026-11-02.log"] {
        let text = String::from_utf8_lossy(&crate::util::sample(name)).into_owned();
        for line in text.lines() {
            for key in ["email=", "tel="] {
                if let Some(at) = line.find(key) {
                    let value: String = line[at + key.len()..]
                        .chars()
                        .take_while(|c| !matches!(c, ' ' | '&' | '"' | '#'))
                        .collect();
                    found.insert(value.replace("%40", "@"));
                    found.insert(value);
                }
            }
        }
    }
    found.retain(|v| v.len() >= 6);
    assert!(
        found.iter().any(|v| v.contains('@')) && found.iter().any(|v| v.starts_with("03")),
        "the samples carry e-mails and phone numbers in query strings: {found:?}"
    );
    found
}

#[test]
fn utm_values_and_page_groups_come_out_and_query_pii_does_not() {
    let pipeline = EditedPipeline::new("utm", |p| format!("{p}\n{CAMPAIGNS}"));
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let summary_path = tmp.path().join("summary.json");
    let out = bin()
        .current_dir(repo())
        .arg("run")
        .arg(&pipeline.0)
        .arg("--out")
        .arg(&out_dir)
        .arg("--summary")
        .arg(&summary_path)
        .arg("--privacy-state")
        .arg(tmp.path().join("privacy-state"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = report_rows(&out_dir, "campaigns_daily");
    let column = |name: &str| -> BTreeSet<String> {
        rows.iter()
            .map(|r| r[name].as_str().unwrap().to_owned())
            .collect()
    };
    let set =
        |values: &[&str]| -> BTreeSet<String> { values.iter().map(|v| (*v).to_owned()).collect() };
    // The samples' campaigns: `utm_source=newsletter&utm_medium=email&utm_campaign=autumn2026`
    // and `utm_source=twitter`; every other view has none.
    assert_eq!(
        column("utm_source"),
        set(&["(none)", "newsletter", "twitter"])
    );
    assert_eq!(column("utm_medium"), set(&["(none)", "email"]));
    assert_eq!(column("utm_campaign"), set(&["(none)", "autumn2026"]));
    let views_where = |name: &str, value: &str| -> i64 {
        rows.iter()
            .filter(|r| r[name] == value)
            .map(|r| r["views"].as_i64().unwrap())
            .sum()
    };
    assert!(views_where("utm_source", "newsletter") > 0);
    assert_eq!(
        views_where("utm_source", "newsletter"),
        views_where("utm_medium", "email")
    );
    assert_eq!(
        views_where("utm_source", "newsletter"),
        views_where("utm_campaign", "autumn2026")
    );

    // Page groups are the shipped templates (or `(other)`), and the main ones occur.
    let shipped: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo().join("pipelines/daily.toml")).unwrap())
            .unwrap();
    let mut templates: BTreeSet<String> = shipped["pages"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    templates.insert(OTHER_PAGE_GROUP.to_owned());
    let groups = column("page_group");
    assert!(groups.is_subset(&templates), "{groups:?}");
    for g in [
        "/{lang}/{city}/hotels",
        "/{lang}/{city}/temples",
        "/{lang}/guides/{guide}",
        "/account/*",
        "/en",
        "/",
        OTHER_PAGE_GROUP,
    ] {
        assert!(groups.contains(g), "{g} in {groups:?}");
    }

    // Views add up to the truth, per day.
    for day in truth()["reports"]["visitors_daily"].as_array().unwrap() {
        let views: i64 = rows
            .iter()
            .filter(|r| r["date"] == day["date"])
            .map(|r| r["views"].as_i64().unwrap())
            .sum();
        assert_eq!(views, day["views"].as_i64().unwrap(), "{}", day["date"]);
    }

    // No e-mail or phone number from a query string anywhere in the output.
    let mut texts = vec![
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        std::fs::read_to_string(&summary_path).unwrap(),
    ];
    let files = files_under(&out_dir);
    assert!(files.len() >= 10, "{files:?}");
    for file in &files {
        let path = out_dir.join(file);
        for batch in read_batches(&path) {
            texts.extend(batch_rows(&batch).iter().map(ToString::to_string));
        }
        texts.extend(
            key_value_metadata(&path)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}")),
        );
    }
    for pii in query_pii() {
        for text in &texts {
            assert!(!text.contains(&pii), "{pii} leaked into the output");
        }
    }
}

/// Pages over the cap are cut to it (plus the marker) and counted in `values_cut`, one per
/// line with a cut value; the sample lines around them are not.
#[test]
fn long_pages_are_cut_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let day = crate::util::sample("access-2026-11-01.log");
    let lines: Vec<&[u8]> = day.split_inclusive(|b| *b == b'\n').take(200).collect();
    let template = String::from_utf8(lines[0].to_vec()).unwrap();
    assert!(template.contains("\"GET / HTTP/1.1\""), "{template}");
    let long_paths = [
        format!("/en/{}", "kyoto-temple-guide/".repeat(3_200)),
        format!("/ja/{}", "京都の寺/".repeat(4_700)),
        format!("/search/{}x", "é".repeat(30_000)),
    ];
    let mut input = lines.concat();
    for path in &long_paths {
        assert!(path.len() > 55_000, "{}", path.len());
        input.extend_from_slice(
            template
                .replace("\"GET / ", &format!("\"GET {path}?utm_source=x "))
                .as_bytes(),
        );
    }
    let log = tmp.path().join("long.log");
    std::fs::write(&log, &input).unwrap();
    let out = tmp.path().join("out");
    let summary = batch_run(&repo().join("pipelines/daily.toml"), [&log], &out);
    assert_eq!(summary["lines_parsed"], lines.len() + long_paths.len());
    assert_eq!(summary["values_cut"], long_paths.len());
    let pages: Vec<String> = report_rows(&out, "page_views_hourly")
        .iter()
        .filter_map(|r| r["page"].as_str().map(str::to_owned))
        .collect();
    assert!(pages.len() > 10, "{pages:?}");
    for page in &pages {
        assert!(
            page.len() <= PAGE_MAX_BYTES + PAGE_CUT_MARKER.len(),
            "{}",
            page.len()
        );
    }
}

/// Runs `logveil check` on the shipped pipeline edited by `edit`, with the shipped policy
/// edited by `edit_policy` (written to a temporary file the pipeline points at).
fn check(
    tag: &str,
    edit: impl FnOnce(String) -> String,
    edit_policy: impl FnOnce(String) -> String,
) -> (bool, String) {
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("policy.toml");
    std::fs::write(
        &policy,
        edit_policy(std::fs::read_to_string(repo().join("pipelines/policy.toml")).unwrap()),
    )
    .unwrap();
    let pipeline = EditedPipeline::new(tag, |p| {
        edit(p).replace(
            "file = \"policy.toml\"",
            &format!("file = {:?}", policy.display().to_string()),
        )
    });
    crate::util::check_pipeline(&pipeline.0)
}

#[test]
fn query_and_template_config_errors_name_the_rule() {
    let with_report = |p: String| format!("{p}\n{CAMPAIGNS}");
    let (ok, msg) = check("utm-ok", with_report, |p| p);
    assert!(ok, "{msg}");

    // A dimension for a parameter the policy does not keep.
    let (ok, msg) = check("utm-notallowed", with_report, |p| {
        p.replace(
            r#"allow = ["utm_source", "utm_medium", "utm_campaign"]"#,
            r#"allow = ["utm_medium"]"#,
        )
    });
    assert!(!ok);
    assert!(
        msg.contains("report[4] (campaigns_daily).dimensions: `utm_source` is a query parameter the policy does not keep: add it to `[query] allow`")
            && msg.contains("(allowed now: utm_medium)"),
        "{msg}"
    );

    // A parameter that cannot be a dimension.
    let (ok, msg) = check(
        "utm-gclid",
        |p| p,
        |p| {
            p.replace(
                r#"allow = ["utm_source""#,
                r#"allow = ["gclid", "utm_source""#,
            )
        },
    );
    assert!(!ok);
    assert!(
        msg.contains(
            "query.allow: `gclid` is not supported (allowed: utm_source, utm_medium, utm_campaign)"
        ),
        "{msg}"
    );

    // `page_group` without templates, and a template that cannot match.
    let without_pages = |p: String| {
        let (start, end) = (p.find("[pages]").unwrap(), p.find("[accounts]").unwrap());
        format!("{}{}\n{CAMPAIGNS}", &p[..start], &p[end..])
    };
    let (ok, msg) = check("utm-nopages", without_pages, |p| p);
    assert!(!ok);
    assert!(
        msg.contains("report[4] (campaigns_daily).dimensions: `page_group` needs route templates"),
        "{msg}"
    );
    let (ok, msg) = check(
        "utm-badtemplate",
        |p| p.replace(r#""/{lang}/{city}/temples","#, r#""{lang}/temples","#),
        |p| p,
    );
    assert!(!ok);
    assert!(
        msg.contains("pages.templates[2] `{lang}/temples`: must start with `/`"),
        "{msg}"
    );
}

/// `../shared/corpora` beside the workspace, or `None` (after a notice) outside CI.
fn corpora_dir() -> Option<PathBuf> {
    let dir = repo().join("../shared/corpora");
    if dir.is_dir() {
        return Some(dir);
    }
    let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    assert!(
        !in_ci,
        "corpora directory {} is missing: CI must provide ../shared/corpora beside the workspace",
        dir.display()
    );
    eprintln!(
        "skipping: ../shared/corpora not present (looked in {})",
        dir.display()
    );
    None
}

/// Every distinct request target (`"METHOD /…`) of every corpus file, with its first file.
fn corpus_targets(dir: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut targets = BTreeMap::new();
    let mut corpora: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    corpora.sort();
    for corpus in corpora.iter().filter(|c| c.is_dir()) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(corpus)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().is_some_and(|n| n != "SOURCE.txt"))
            .collect();
        files.sort();
        for file in files {
            let raw = std::fs::read(&file).unwrap();
            let data = if raw.starts_with(&[0x1f, 0x8b]) {
                let mut out = Vec::new();
                flate2::read::MultiGzDecoder::new(&raw[..])
                    .read_to_end(&mut out)
                    .unwrap();
                out
            } else {
                raw
            };
            let name = format!(
                "{}/{}",
                corpus.file_name().unwrap().to_string_lossy(),
                file.file_name().unwrap().to_string_lossy()
            );
            for (i, _) in data.iter().enumerate().filter(|(_, b)| **b == b'"') {
                let rest = &data[i + 1..];
                let method = rest.iter().take_while(|b| b.is_ascii_uppercase()).count();
                if method == 0 || !rest[method..].starts_with(b" /") {
                    continue;
                }
                let target: Vec<u8> = rest[method + 1..]
                    .iter()
                    .copied()
                    .take_while(|b| !matches!(b, b' ' | b'"' | b'\n' | b'\r' | b'\t'))
                    .collect();
                targets.entry(target).or_insert_with(|| name.clone());
            }
        }
    }
    targets
}

/// What the page would be without redaction: the path, `;params` dropped.
fn unredacted(target: &[u8]) -> String {
    let end = target
        .iter()
        .position(|b| matches!(b, b'?' | b'#'))
        .unwrap_or(target.len());
    let path: Vec<&[u8]> = target[..end]
        .split(|b| *b == b'/')
        .map(|s| s.split(|b| *b == b';').next().unwrap())
        .collect();
    String::from_utf8_lossy(&path.join(&b'/')).into_owned()
}

/// Every corpus path the sanitiser changes, and how: e-mail addresses (four real ones) and
/// token-shaped file names (Google Fonts content hashes). Nothing else of ~9,800 paths.
const CHANGED: &[(&str, &str)] = &[
    (
        "/bar/foo/users/1/username%40example.com/authenticate",
        "/bar/foo/users/1/:redacted/authenticate",
    ),
    (
        "/mailman/options/cnc_notice/arobin%40shaw.c",
        "/mailman/options/cnc_notice/:redacted",
    ),
    (
        "/mailman/options/ppwc/ppwctwentynine--at--shaw.com",
        "/mailman/options/ppwc/:redacted",
    ),
    (
        "/mailman/options/ppwc/ppwctwentynine@shaw.com",
        "/mailman/options/ppwc/:redacted",
    ),
    (
        "/persons/nasa-cm/mailto:dumoulin@titan.ksc.nasa.gov",
        "/persons/nasa-cm/:redacted",
    ),
    (
        "/presentations/logstash-monitorama-2013/css/fonts/cJZKeOuBrn4kERxqtaUH3aCWcynf_cDxXwCLxiixG1c.ttf",
        "/presentations/logstash-monitorama-2013/css/fonts/:redacted",
    ),
    (
        "/presentations/logstash-monitorama-2013/css/fonts/k3k702ZOKiLJc3WVjuplzInF5uFdDttMLvmWuJdhhgs.ttf",
        "/presentations/logstash-monitorama-2013/css/fonts/:redacted",
    ),
    (
        "/presentations/logstash-monitorama-2013/css/fonts/xjAJXh38I15wypJXxuGMBp0EAVxt0G0biEntp43Qt6E.ttf",
        "/presentations/logstash-monitorama-2013/css/fonts/:redacted",
    ),
    (
        "/presentations/logstash-preso-1.0/css/fonts/cJZKeOuBrn4kERxqtaUH3aCWcynf_cDxXwCLxiixG1c.ttf",
        "/presentations/logstash-preso-1.0/css/fonts/:redacted",
    ),
    (
        "/presentations/logstash-preso-1.0/css/fonts/xjAJXh38I15wypJXxuGMBp0EAVxt0G0biEntp43Qt6E.ttf",
        "/presentations/logstash-preso-1.0/css/fonts/:redacted",
    ),
    (
        "/presentations/logstash-scale11x/css/fonts/PRmiXeptR36kaC0GEAetxp_TkvowlIOtbR7ePgFOpF4.ttf",
        "/presentations/logstash-scale11x/css/fonts/:redacted",
    ),
    (
        "/presentations/logstash-scale11x/css/fonts/cJZKeOuBrn4kERxqtaUH3aCWcynf_cDxXwCLxiixG1c.ttf",
        "/presentations/logstash-scale11x/css/fonts/:redacted",
    ),
    (
        "/presentations/logstash-scale11x/css/fonts/k3k702ZOKiLJc3WVjuplzInF5uFdDttMLvmWuJdhhgs.ttf",
        "/presentations/logstash-scale11x/css/fonts/:redacted",
    ),
    (
        "/presentations/logstash-scale11x/css/fonts/xjAJXh38I15wypJXxuGMBp0EAVxt0G0biEntp43Qt6E.ttf",
        "/presentations/logstash-scale11x/css/fonts/:redacted",
    ),
];

#[test]
fn corpus_paths_survive_unless_personal() {
    let Some(dir) = corpora_dir() else { return };
    let targets = corpus_targets(&dir);
    assert!(targets.len() > 9000, "{} targets", targets.len());
    let mut changed = BTreeMap::new();
    for target in targets.keys() {
        let page = Page::from_target(target).as_str().to_owned();
        let path = unredacted(target);
        if page != path {
            changed.insert(path, page);
        }
    }
    let expected: BTreeMap<String, String> = CHANGED
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    assert_eq!(changed, expected);
}
