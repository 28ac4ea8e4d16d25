//! The main job on the bundled samples gives exactly the generator's known truth.

use parquet::file::reader::FileReader;
use sha2::Digest;

use crate::util::{assert_matches_truth, project_like, report_rows, run_daily, sorted, truth};

#[test]
fn every_report_matches_generator_truth_exactly() {
    let run = run_daily(&[]);
    let truth = truth();
    for report in ["page_views_hourly", "visitors_daily", "referrers_daily"] {
        let expected = sorted(truth["reports"][report].as_array().unwrap());
        let actual = project_like(&report_rows(&run.out_dir, report), &expected);
        assert_eq!(actual.len(), expected.len(), "{report}: row count");
        for (a, e) in actual.iter().zip(&expected) {
            assert_eq!(a, e, "{report}");
        }
    }
    assert_matches_truth(&run.out_dir, "demographics_daily", "daily");
}

#[test]
fn summary_counts_lines_reasons_rows_and_suppressions() {
    let run = run_daily(&[]);
    let truth = truth();
    let s = &run.summary;
    assert_eq!(s["lines_read"], truth["lines_total"]);
    assert_eq!(s["lines_parsed"], truth["lines_parsed"]);
    for (reason, count) in truth["lines_rejected"].as_object().unwrap() {
        assert_eq!(&s["lines_rejected"][reason], count, "reason {reason}");
    }
    let rejected: u64 = s["lines_rejected"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        rejected + s["lines_parsed"].as_u64().unwrap(),
        s["lines_read"].as_u64().unwrap(),
        "every line is parsed or rejected"
    );
    let demo = &s["reports"]["demographics_daily"];
    // Below k: exactly the generator's count; complementary suppression adds to it.
    let secondary = demo["cells_secondary"].as_u64().unwrap();
    assert_eq!(
        demo["cells_suppressed"].as_u64().unwrap() - secondary,
        truth["reports"]["demographics_daily_suppressed"]
            .as_u64()
            .unwrap()
    );
    assert_eq!(
        demo["rows"].as_u64().unwrap() + secondary,
        truth["reports"]["demographics_daily"]
            .as_array()
            .unwrap()
            .len() as u64
    );
    let joins = &demo["joins"];
    assert!(
        joins["joined"].as_u64().unwrap() > 0
            && joins["no_consent"].as_u64().unwrap() > 0
            && joins["deleted"].as_u64().unwrap() > 0,
        "{joins}"
    );
    assert_eq!(
        s["outputs"].as_array().unwrap().len(),
        8,
        "4 reports × 2 days"
    );
    assert_eq!(s["demo_key"], true);
    // The human summary says the same.
    let out = run.stdout();
    assert!(
        out.contains("19535 read, 19523 parsed, 12 rejected"),
        "{out}"
    );
    assert!(out.contains("DEMO KEY"), "{out}");
}

#[test]
fn files_carry_provenance_metadata_and_zstd() {
    let run = run_daily(&[]);
    let policy = std::fs::read(crate::util::repo().join("pipelines/policy.toml")).unwrap();
    let policy_sha = sha2::Sha256::digest(&policy)
        .iter()
        .fold(String::new(), |mut s, b| {
            use std::fmt::Write;
            let _ = write!(s, "{b:02x}");
            s
        });
    for file in run.summary["outputs"].as_array().unwrap() {
        let path = std::path::Path::new(file.as_str().unwrap());
        let kv = crate::util::key_value_metadata(path);
        let report = path
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(kv["logveil.report"], report);
        assert_eq!(kv["logveil.version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(kv["logveil.key_id"], "demo-2026");
        assert_eq!(kv["logveil.policy_sha256"], policy_sha);
        let (audience, purpose, k) = match report {
            "demographics_daily" => ("partner", "anonymous_reporting", "10"),
            _ => ("internal", "improve_services", "1"),
        };
        assert_eq!(
            (
                kv["logveil.audience"].as_str(),
                kv["logveil.purpose"].as_str(),
                kv["logveil.k_min"].as_str()
            ),
            (audience, purpose, k)
        );
        if report == "demographics_daily" {
            // External: the join outcomes (exact, unprotected counts) stay in the summary.
            assert!(!kv.keys().any(|k| k.starts_with("logveil.join")), "{kv:?}");
            assert!(!kv.contains_key("logveil.release_id"), "{kv:?}");
            crate::util::cell_key_parameters(path);
        } else {
            assert!(kv.contains_key("logveil.suppressed_cells"), "{report}");
        }
        let meta =
            parquet::file::reader::SerializedFileReader::new(std::fs::File::open(path).unwrap())
                .unwrap();
        for rg in meta.metadata().row_groups() {
            for col in rg.columns() {
                assert!(
                    matches!(col.compression(), parquet::basic::Compression::ZSTD(_)),
                    "{:?}",
                    col.compression()
                );
            }
        }
    }
}
