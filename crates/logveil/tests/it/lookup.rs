//! `logveil lookup` and `logveil audit verify` end to end: audited re-identification with a
//! private two-key ring, two pseudonymous audiences, and a hash-chained audit log that
//! notices an edited byte, a deleted record and a cut-off end.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::{EditedPipeline, bin, repo, report_rows, run_with_stdin, sample};

/// A private key ring (a key from 2026-01-01, rotated on 2026-11-02), the shipped policy
/// plus a second pseudonymous audience `fraud`, and a pipeline using both. The audit log
/// is the default: `audit.jsonl` beside the key file.
struct Setup {
    _tmp: tempfile::TempDir,
    pipeline: EditedPipeline,
    log: PathBuf,
    key_ids: Vec<String>,
}

impl Setup {
    fn new(tag: &str) -> Self {
        Self::with_reports(tag, "")
    }

    /// The same, with `reports` (TOML) appended to the pipeline.
    fn with_reports(tag: &str, reports: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("site.key");
        let ok = |out: Output| {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            out
        };
        ok(bin()
            .args(["keygen", "--not-before", "2026-01-01"])
            .arg(&key)
            .output()
            .unwrap());
        ok(bin()
            .args(["keys", "rotate"])
            .arg(&key)
            .args(["--not-before", "2026-11-02"])
            .output()
            .unwrap());
        let list = ok(bin().args(["keys", "list"]).arg(&key).output().unwrap());
        let key_ids = String::from_utf8_lossy(&list.stdout)
            .lines()
            .skip(1)
            .map(|l| l.split('\t').next().unwrap().to_owned())
            .collect();
        let policy = tmp.path().join("policy.toml");
        std::fs::write(
            &policy,
            std::fs::read_to_string(repo().join("pipelines/policy.toml")).unwrap()
                + "\n[audience.fraud]\nk_min = 1\nclasses = [\"public\"]\npseudonymous = true\npurposes = [\"security\"]\n",
        )
        .unwrap();
        let pipeline = EditedPipeline::new(tag, |p| {
            p.replace("../sample-logs/demo.key", key.to_str().unwrap())
                .replace(
                    "file = \"policy.toml\"",
                    &format!("file = \"{}\"", policy.display()),
                )
                + reports
        });
        Self {
            log: tmp.path().join("audit.jsonl"),
            _tmp: tmp,
            pipeline,
            key_ids,
        }
    }

    /// `logveil lookup PIPELINE ARGS…`, with debug logs (which must not leak either).
    fn lookup(&self, args: &[&str]) -> Output {
        bin()
            .env("LOGVEIL_LOG", "debug")
            .current_dir(repo())
            .arg("lookup")
            .arg(&self.pipeline.0)
            .args(args)
            .output()
            .unwrap()
    }

    fn records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn success(o: Output) -> Output {
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    o
}

/// The client address and `jt_uid` of the first sample line that has the cookie.
fn sample_client_and_cookie() -> (String, String) {
    let text = String::from_utf8(sample("access-2026-11-01.log")).unwrap();
    text.lines()
        .find_map(|line| {
            let at = line.find("jt_uid=")? + "jt_uid=".len();
            let uid: String = line[at..]
                .chars()
                .take_while(|c| !matches!(c, ';' | '"' | ' '))
                .collect();
            let ip = line.split(' ').next()?.to_owned();
            (uid.len() >= 6 && ip.contains('.')).then_some((ip, uid))
        })
        .unwrap()
}

/// Rows of lookup output, split at tabs.
fn rows(o: &Output) -> Vec<Vec<String>> {
    stdout(o)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

fn assert_absent(what: &str, needle: &str, haystacks: &[(&str, String)]) {
    for (name, text) in haystacks {
        assert!(!text.contains(needle), "the raw {what} appears in {name}");
    }
}

fn verify(log: &Path, extra: &[&str]) -> Output {
    bin()
        .args(["audit", "verify"])
        .arg(log)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn cookie_lookup_prints_one_line_per_key_and_audience_and_is_audited_first() {
    let s = Setup::new("lookup-cookie");
    let (_, cookie) = sample_client_and_cookie();
    let reason = "court order 2026-17 (legal request)";
    let first = success(s.lookup(&["--cookie", &cookie, "--reason", reason]));
    let got = rows(&first);
    assert_eq!(got.len(), 4, "2 keys × 2 pseudonymous audiences");
    let mut expected_keys = Vec::new();
    for (id, from) in s.key_ids.iter().zip(["2026-01-01", "2026-11-02"]) {
        for audience in ["fraud", "security"] {
            expected_keys.push(vec![id.clone(), from.to_owned(), audience.to_owned()]);
        }
    }
    assert_eq!(
        got.iter().map(|r| r[..3].to_vec()).collect::<Vec<_>>(),
        expected_keys
    );
    let ids: Vec<&str> = got.iter().map(|r| r[3].as_str()).collect();
    for id in &ids {
        assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(
        distinct.len(),
        4,
        "another audience or another key, another visitor id"
    );

    // The record came first and holds the pseudonyms, not the cookie.
    let records = s.records();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["seq"], 1);
    assert_eq!(r["kind"], "cookie");
    assert_eq!(r["reason"], reason);
    assert_eq!(r["audience"], serde_json::json!(["fraud", "security"]));
    assert_eq!(r["prev"], "0".repeat(64));
    let recorded: Vec<(String, String)> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["key_id"].as_str().unwrap().to_owned(),
                x["visitor_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        got.iter()
            .map(|r| (r[0].clone(), r[3].clone()))
            .collect::<Vec<_>>()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&s.log).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // From standard input (out of shell history): the same ids; one audience: a subset.
    let args = [
        "lookup".as_ref(),
        s.pipeline.0.as_os_str(),
        "--cookie".as_ref(),
        "-".as_ref(),
        "--reason".as_ref(),
        "fraud case F-9".as_ref(),
    ];
    let piped = success(run_with_stdin(&args, format!("{cookie}\n").as_bytes()));
    assert_eq!(stdout(&piped), stdout(&first), "stable across lookups");
    let security = success(s.lookup(&[
        "--cookie",
        &cookie,
        "--reason",
        "fraud case F-9",
        "--audience",
        "security",
    ]));
    assert_eq!(
        rows(&security),
        got.iter()
            .filter(|r| r[2] == "security")
            .cloned()
            .collect::<Vec<_>>()
    );

    // Audiences that never receive visitor ids are refused, and leave no record.
    let refused = s.lookup(&[
        "--cookie",
        &cookie,
        "--reason",
        "curious",
        "--audience",
        "internal",
    ]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--audience internal: refused")
            && stderr(&refused).contains("pseudonymous = true"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(s.records().len(), 3);

    let log = std::fs::read_to_string(&s.log).unwrap();
    assert_absent(
        "cookie",
        &cookie,
        &[
            ("stdout", stdout(&first)),
            ("stderr", stderr(&first)),
            ("piped stderr", stderr(&piped)),
            ("refusal", stderr(&refused)),
            ("the audit log", log),
        ],
    );
    let v = success(verify(&s.log, &[]));
    assert!(
        stdout(&v).starts_with("3 records, chain intact\n"),
        "{}",
        stdout(&v)
    );
}

#[test]
fn ip_lookup_finds_the_visitors_of_an_address_without_echoing_it() {
    let s = Setup::new("lookup-ip");
    let (ip, cookie) = sample_client_and_cookie();
    let first = success(s.lookup(&["--ip", &ip, "--reason", "fraud case F-12"]));
    let got = rows(&first);
    assert!(!got.is_empty(), "the address has lines in the samples");
    for r in &got {
        assert_eq!(
            r.len(),
            5,
            "key_id, from, audience, visitor_id, lines: {r:?}"
        );
        assert!(s.key_ids.contains(&r[0]));
        assert!(r[4].parse::<u64>().unwrap() >= 1);
    }
    let again = success(s.lookup(&["--ip", &ip, "--reason", "fraud case F-12"]));
    assert_eq!(stdout(&again), stdout(&first), "stable across lookups");

    // The address's line carries a cookie: the cookie's visitor id (under the key of
    // that day) is among the address's ids — both paths pseudonymize like a run does.
    let by_cookie = success(s.lookup(&["--cookie", &cookie, "--reason", "fraud case F-12"]));
    let cookie_ids: Vec<(String, String, String)> = rows(&by_cookie)
        .into_iter()
        .map(|r| (r[0].clone(), r[2].clone(), r[3].clone()))
        .collect();
    let ip_ids: Vec<(String, String, String)> = got
        .iter()
        .map(|r| (r[0].clone(), r[2].clone(), r[3].clone()))
        .collect();
    for audience in ["fraud", "security"] {
        assert!(
            ip_ids
                .iter()
                .any(|x| x.1 == audience && cookie_ids.contains(x)),
            "{audience}: {ip_ids:?} vs {cookie_ids:?}"
        );
    }
    // Audiences do not share ids.
    let fraud: Vec<_> = ip_ids
        .iter()
        .filter(|x| x.1 == "fraud")
        .map(|x| &x.2)
        .collect();
    assert!(
        ip_ids
            .iter()
            .filter(|x| x.1 == "security")
            .all(|x| !fraud.contains(&&x.2))
    );

    let records = s.records();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["kind"], "ip");
    assert_eq!(records[0]["results"].as_array().unwrap().len(), got.len());
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert_absent(
        "address",
        &ip,
        &[
            ("stdout", stdout(&first)),
            ("stderr", stderr(&first)),
            ("the audit log", log.clone()),
        ],
    );
    assert_absent("cookie", &cookie, &[("the audit log", log)]);
}

#[test]
fn a_lookup_without_a_reason_is_refused_and_leaves_no_trace() {
    let s = Setup::new("lookup-reason");
    let (ip, cookie) = sample_client_and_cookie();
    let missing = s.lookup(&["--cookie", &cookie]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("--reason"),
        "{}",
        stderr(&missing)
    );
    let blank = s.lookup(&["--cookie", &cookie, "--reason", "   "]);
    assert!(!blank.status.success());
    assert!(
        stderr(&blank).contains("--reason is empty"),
        "{}",
        stderr(&blank)
    );
    let leaky = s.lookup(&["--ip", &ip, "--reason", &format!("who is {ip}?")]);
    assert!(!leaky.status.success());
    assert!(
        stderr(&leaky).contains("--reason contains the --ip value itself"),
        "{}",
        stderr(&leaky)
    );
    let neither = s.lookup(&["--reason", "case"]);
    assert!(!neither.status.success());
    for o in [&missing, &blank, &leaky, &neither] {
        assert!(o.stdout.is_empty(), "nothing shown");
        assert!(!stderr(o).contains(&cookie) && !stderr(o).contains(&ip));
    }
    assert!(!s.log.exists(), "no record for a refused lookup");
}

#[test]
fn audit_verify_names_the_edited_and_the_deleted_record() {
    let s = Setup::new("lookup-verify");
    let (_, cookie) = sample_client_and_cookie();
    for case in ["case 1", "case 2", "case 3"] {
        success(s.lookup(&["--cookie", &cookie, "--reason", case]));
    }
    let ok = success(verify(&s.log, &[]));
    let head = stdout(&ok)
        .lines()
        .find_map(|l| l.strip_prefix("head: record 3 hash "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap()
        .to_owned();
    success(verify(&s.log, &["--anchor", &head]));
    let original = std::fs::read_to_string(&s.log).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let tampered = s.log.with_file_name("tampered.jsonl");
    let check = |text: &str, expected: &str| {
        std::fs::write(&tampered, text).unwrap();
        let o = verify(&tampered, &[]);
        assert_eq!(o.status.code(), Some(1), "{expected}");
        assert!(
            stderr(&o).contains(expected),
            "expected `{expected}` in: {}",
            stderr(&o)
        );
    };

    // One byte of record 2 changed: a hex digit of its first visitor id.
    let mut edited: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let at = edited[1].find("\"visitor_id\":\"").unwrap() + 14;
    let digit = if &edited[1][at..=at] == "a" { "b" } else { "a" };
    edited[1].replace_range(at..=at, digit);
    check(
        &(edited.join("\n") + "\n"),
        "record 2 (line 2): hash mismatch (edited)",
    );

    // Record 2 deleted.
    check(
        &format!("{}\n{}\n", lines[0], lines[2]),
        "record 3 (line 2): prev does not match record 1 (a record was deleted or reordered)",
    );

    // The end cut off mid-record.
    check(
        &original[..original.len() - 30],
        "line 3: incomplete record",
    );

    // The last record deleted whole: the chain alone cannot tell, the anchor can.
    std::fs::write(&tampered, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
    success(verify(&tampered, &[]));
    let o = verify(&tampered, &["--anchor", &head]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is not in the log"), "{}", stderr(&o));

    // The untouched log still verifies.
    success(verify(&s.log, &[]));
}

#[test]
fn concurrent_lookups_append_one_whole_record_each() {
    let s = Setup::new("lookup-concurrent");
    let (_, cookie) = sample_client_and_cookie();
    std::thread::scope(|scope| {
        for i in 0..6 {
            let (s, cookie) = (&s, &cookie);
            scope.spawn(move || {
                success(s.lookup(&["--cookie", cookie, "--reason", &format!("case {i}")]));
            });
        }
    });
    let v = success(verify(&s.log, &[]));
    assert!(
        stdout(&v).starts_with("6 records, chain intact"),
        "{}",
        stdout(&v)
    );
    let seqs: Vec<u64> = s
        .records()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
}

#[test]
fn looked_up_ids_are_the_ids_of_visitor_id_exports() {
    let export = |name: &str, audience: &str| {
        format!(
            "\n[[report]]\nname = \"{name}\"\naudience = \"{audience}\"\npurpose = \"security\"\nbucket = \"day\"\ndimensions = [\"page\"]\nmetrics = [\"views\"]\nvisitor_id = true\n"
        )
    };
    let s = Setup::with_reports(
        "lookup-export",
        &(export("security_visitors", "security") + &export("fraud_visitors", "fraud")),
    );
    let out = s.log.with_file_name("out");
    success(
        bin()
            .arg("run")
            .arg(&s.pipeline.0)
            .arg("--out")
            .arg(&out)
            .arg("--privacy-state")
            .arg(s.log.with_file_name("privacy-state"))
            .output()
            .unwrap(),
    );
    let exported = |report: &str| -> std::collections::BTreeSet<(String, String)> {
        report_rows(&out, report)
            .iter()
            .map(|r| {
                (
                    r["key_id"].as_str().unwrap().to_owned(),
                    r["visitor_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let (security, fraud) = (exported("security_visitors"), exported("fraud_visitors"));
    assert!(!security.is_empty() && security.is_disjoint(&fraud));

    let (ip, cookie) = sample_client_and_cookie();
    for (flag, value) in [("--cookie", &cookie), ("--ip", &ip)] {
        let found = rows(&success(s.lookup(&[flag, value, "--reason", "case E-1"])));
        for (audience, export) in [("security", &security), ("fraud", &fraud)] {
            let hits = found
                .iter()
                .filter(|r| r[2] == audience && export.contains(&(r[0].clone(), r[3].clone())))
                .count();
            assert!(
                hits >= 1,
                "{flag}: no {audience} id of {found:?} is in the {audience} export"
            );
        }
    }
}
