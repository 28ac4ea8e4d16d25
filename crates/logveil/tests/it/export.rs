//! Pseudonymous exports (`visitor_id = true`): one row per visitor, only for audiences
//! with `pseudonymous = true`, no statistics on the pseudonym column.

use std::collections::BTreeSet;

use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::util::{EditedPipeline, bin, files_under, key_value_metadata, report_rows, truth};

const EXPORT: &str = "\n[[report]]\nname = \"visitor_pages\"\naudience = \"security\"\npurpose = \"security\"\nbucket = \"day\"\ndimensions = [\"page\"]\nmetrics = [\"views\"]\nvisitor_id = true\n";

#[test]
fn export_has_one_row_per_visitor_and_page_and_no_pseudonym_statistics() {
    let pipeline = EditedPipeline::new("export", |p| format!("{p}{EXPORT}"));
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let out = bin()
        .arg("run")
        .arg(&pipeline.0)
        .arg("--out")
        .arg(&out_dir)
        .arg("--privacy-state")
        .arg(tmp.path().join("privacy-state"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = report_rows(&out_dir, "visitor_pages");
    let truth = truth();
    for day in truth["reports"]["visitors_daily"].as_array().unwrap() {
        let date = day["date"].as_str().unwrap();
        let of_day: Vec<&serde_json::Value> = rows.iter().filter(|r| r["date"] == date).collect();
        let visitors: BTreeSet<&str> = of_day
            .iter()
            .map(|r| r["visitor_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            visitors.len() as i64,
            day["visitors"].as_i64().unwrap(),
            "{date}: distinct visitor ids"
        );
        let views: i64 = of_day.iter().map(|r| r["views"].as_i64().unwrap()).sum();
        assert_eq!(views, day["views"].as_i64().unwrap(), "{date}: views");
        assert!(
            visitors
                .iter()
                .all(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        );
        assert!(of_day.iter().all(|r| r["key_id"] == "demo-2026"));
    }
    for file in files_under(&out_dir.join("visitor_pages")) {
        let path = out_dir.join("visitor_pages").join(file);
        let kv = key_value_metadata(&path);
        assert_eq!(kv["logveil.pseudonymous"], "true");
        assert!(kv["logveil.disclosure"].starts_with("pseudonymous_export"));
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        for rg in reader.metadata().row_groups() {
            let col = rg
                .columns()
                .iter()
                .find(|c| c.column_path().string() == "visitor_id")
                .unwrap();
            assert!(col.statistics().is_none(), "no min/max for pseudonyms");
        }
    }
    // The aggregate reports of the same run are unchanged.
    assert_eq!(report_rows(&out_dir, "visitors_daily").len(), 2);
}

#[test]
fn export_for_a_non_pseudonymous_audience_is_refused() {
    let pipeline = EditedPipeline::new("export-bad", |p| {
        format!(
            "{p}{}",
            EXPORT
                .replace("audience = \"security\"", "audience = \"internal\"")
                .replace("purpose = \"security\"", "purpose = \"improve_services\"")
        )
    });
    let out = bin().arg("check").arg(&pipeline.0).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "(visitor_pages).visitor_id: audience `internal` may not receive pseudonymous columns"
        ),
        "{err}"
    );
}
