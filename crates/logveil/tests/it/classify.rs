//! `device_class` and `browser_family`: a real run over the samples, views reconciled with
//! the truth, values from the documented sets, bots only with `include_bots = true`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::util::{bin, repo, report_rows, truth};

const DEVICES: &[&str] = &["desktop", "mobile", "tablet", "bot", "other"];
const BROWSERS: &[&str] = &[
    "chrome", "edge", "firefox", "safari", "opera", "samsung", "ie", "bot", "tool", "other",
];

/// A pipeline written beside `pipelines/daily.toml` (so its relative paths resolve),
/// removed when dropped, also when the test fails.
struct TempPipeline(PathBuf);

impl TempPipeline {
    fn new(reports: &str) -> Self {
        let original = std::fs::read_to_string(repo().join("pipelines/daily.toml")).unwrap();
        let header = &original[..original.find("[[report]]").expect("daily.toml has reports")];
        let path = repo().join("pipelines").join(format!(
            ".test-classify-{}-{:?}.toml",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, format!("{header}{reports}")).unwrap();
        Self(path)
    }
}

impl Drop for TempPipeline {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const REPORTS: &str = r#"
[[report]]
name = "devices_daily"
audience = "internal"
purpose = "improve_services"
bucket = "day"
dimensions = ["device_class", "browser_family"]
metrics = ["views"]

[[report]]
name = "devices_daily_with_bots"
audience = "internal"
purpose = "improve_services"
bucket = "day"
dimensions = ["device_class", "browser_family"]
metrics = ["views"]
include_bots = true
"#;

fn field<'a>(row: &'a serde_json::Value, name: &str) -> &'a str {
    row[name].as_str().unwrap()
}

/// Views per date.
fn views_by_date<'a>(
    rows: impl IntoIterator<Item = &'a serde_json::Value>,
) -> BTreeMap<String, i64> {
    let mut by_date = BTreeMap::new();
    for row in rows {
        *by_date.entry(field(row, "date").to_owned()).or_default() +=
            row["views"].as_i64().unwrap();
    }
    by_date
}

#[test]
fn device_and_browser_dimensions_reconcile_with_truth() {
    let pipeline = TempPipeline::new(REPORTS);
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let check = bin().arg("check").arg(&pipeline.0).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let output = bin()
        .current_dir(repo())
        .arg("run")
        .arg(&pipeline.0)
        .arg("--out")
        .arg(&out_dir)
        .arg("--privacy-state")
        .arg(tmp.path().join("privacy-state"))
        .output()
        .unwrap();
    drop(pipeline);
    assert!(
        output.status.success(),
        "logveil run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let rows = report_rows(&out_dir, "devices_daily");
    let with_bots = report_rows(&out_dir, "devices_daily_with_bots");
    assert!(!rows.is_empty() && !with_bots.is_empty());

    // Every value is from the documented sets; bot device ⇔ bot/tool browser.
    for row in rows.iter().chain(&with_bots) {
        let (device, browser) = (field(row, "device_class"), field(row, "browser_family"));
        assert!(DEVICES.contains(&device), "{row}");
        assert!(BROWSERS.contains(&browser), "{row}");
        assert_eq!(device == "bot", matches!(browser, "bot" | "tool"), "{row}");
    }

    // Bots are not views: the views are exactly those of visitors_daily in the truth.
    let truth = truth();
    let expected: BTreeMap<String, i64> = truth["reports"]["visitors_daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (field(r, "date").to_owned(), r["views"].as_i64().unwrap()))
        .collect();
    assert_eq!(views_by_date(&rows), expected);
    assert!(rows.iter().all(|r| field(r, "device_class") != "bot"));

    // The sample's browsers (crates/logveil-samplegen/src/catalog.rs) land where the
    // classifier's table says; a missing user agent is other/other.
    let combos: BTreeSet<(&str, &str)> = rows
        .iter()
        .map(|r| (field(r, "device_class"), field(r, "browser_family")))
        .collect();
    let sample: BTreeSet<(&str, &str)> = [
        ("desktop", "chrome"),
        ("desktop", "edge"),
        ("desktop", "firefox"),
        ("desktop", "safari"),
        ("mobile", "chrome"),
        ("mobile", "safari"),
        ("mobile", "samsung"),
        ("mobile", "other"),
        ("tablet", "safari"),
    ]
    .into_iter()
    .collect();
    let mut allowed = sample.clone();
    allowed.insert(("other", "other"));
    assert!(
        sample.is_subset(&combos) && combos.is_subset(&allowed),
        "{combos:?}"
    );

    // include_bots = true: the same non-bot rows, plus bot and tool rows.
    let (bots, humans): (Vec<_>, Vec<_>) = with_bots
        .iter()
        .partition(|r| field(r, "device_class") == "bot");
    assert_eq!(humans.into_iter().cloned().collect::<Vec<_>>(), rows);
    let bot_browsers: BTreeSet<&str> = bots.iter().map(|r| field(r, "browser_family")).collect();
    assert_eq!(bot_browsers, BTreeSet::from(["bot", "tool"]));
    assert!(views_by_date(bots).values().all(|v| *v > 0));
}
