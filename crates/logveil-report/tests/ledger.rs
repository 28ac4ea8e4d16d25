//! The per-audience, hash-chained privacy budget ledger: budgets, free re-releases,
//! all-or-nothing batches, legacy migration, tamper evidence, permissions, concurrency.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use logveil_report::dp::Rational;
use logveil_report::ledger::{
    Budget, GENESIS, Kind, Ledger, LedgerError, Mechanism, Problem, Spend, verify,
};

fn r(text: &str) -> Rational {
    Rational::parse(text).unwrap()
}

fn fixed_clock() -> jiff::Timestamp {
    "2026-12-07T10:00:00Z".parse().unwrap()
}

fn spend(audience: &str, partition: &str, release_id: &str, epsilon: &str) -> Spend {
    Spend {
        audience: audience.into(),
        period: "2026-11".into(),
        report: "pages_daily_dp".into(),
        partition: partition.into(),
        release_id: release_id.into(),
        key_id: "demo-2026".into(),
        mechanism: Mechanism::Dp,
        protection: r#"{"method":"differential_privacy"}"#.to_owned(),
        epsilon: r(epsilon),
        delta: r("1e-7"),
    }
}

fn budget() -> Budget {
    Budget {
        epsilon_per_period: r("1"),
        delta_per_period: r("1e-6"),
    }
}

fn open(state: &Path) -> Ledger {
    Ledger::open(state).unwrap().with_clock(fixed_clock)
}

fn ledger_file(state: &Path, audience: &str) -> PathBuf {
    state.join("ledger").join(format!("{audience}.jsonl"))
}

/// Three DP spends of `public` (ε 0.25 each) in a fresh state directory.
fn chain_of_3() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = open(dir.path());
    for i in 1..=3 {
        let s = spend(
            "public",
            &format!("2026-11-0{i}"),
            &format!("lvr1-{i}"),
            "0.25",
        );
        assert_eq!(ledger.check_and_spend(&[s], &budget()).unwrap().len(), 1);
    }
    let path = ledger_file(dir.path(), "public");
    (dir, path)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// The problem `verify` finds, and on which line.
fn broken(path: &Path) -> (usize, Problem) {
    match verify(path, None) {
        Err(LedgerError::Broken { broken, .. }) => (broken.line, broken.problem),
        other => panic!("tampering must be found, got {other:?}"),
    }
}

#[test]
fn spends_within_budget_are_recorded_in_the_documented_form() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = open(dir.path());
    assert!(ledger.records("public").unwrap().is_empty());
    assert!(ledger.audiences().unwrap().is_empty());
    let first = spend("public", "2026-11-01", "lvr1-a", "0.3");
    let batch = [
        spend("public", "2026-11-02", "lvr1-b", "0.3"),
        spend("public", "2026-11-03", "lvr1-c", "0.4"),
    ];
    assert_eq!(
        ledger
            .check_and_spend(std::slice::from_ref(&first), &budget())
            .unwrap(),
        std::slice::from_ref(&first)
    );
    assert_eq!(ledger.check_and_spend(&batch, &budget()).unwrap(), batch);
    // Exactly at the budget: 0.3 + 0.3 + 0.4 = 1, in exact arithmetic.
    assert_eq!(
        ledger.spent("public", "2026-11").unwrap(),
        (Rational::ONE, r("3e-7"))
    );
    assert_eq!(ledger.audiences().unwrap(), ["public"]);

    let records = ledger.records("public").unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].spend(), first);
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(records.iter().all(|r| r.kind == Kind::Spend));

    let path = ledger_file(dir.path(), "public");
    let l = lines(&path);
    let head = format!(
        r#"{{"seq":1,"time":"2026-12-07T10:00:00Z","kind":"spend","audience":"public","period":"2026-11","report":"pages_daily_dp","partition":"2026-11-01","release_id":"lvr1-a","key_id":"demo-2026","mechanism":"dp","protection":"{{\"method\":\"differential_privacy\"}}","epsilon":"0.3","delta":"0.0000001","prev":"{GENESIS}","hash":""#
    );
    assert!(l[0].starts_with(&head), "{}", l[0]);
    // The documented recipe, independent of the library's types.
    for (i, line) in l.iter().enumerate() {
        let (rest, hash) = line.rsplit_once(",\"hash\":\"").unwrap();
        let hash = hash.strip_suffix("\"}").unwrap();
        assert_eq!(
            blake3::hash(format!("{rest}}}").as_bytes())
                .to_hex()
                .as_str(),
            hash
        );
        assert_eq!(records[i].hash, hash);
        let prev = if i == 0 {
            GENESIS.to_owned()
        } else {
            blake3::hash(l[i - 1].as_bytes()).to_hex().to_string()
        };
        assert!(line.contains(&format!("\"prev\":\"{prev}\"")), "{line}");
    }
    let report = verify(&path, None).unwrap();
    assert_eq!(report.records, 3);
    assert_eq!(report.head_hash.as_deref(), Some(records[2].hash.as_str()));
    // Another period has its own budget.
    let mut next = spend("public", "2026-12-01", "lvr1-d", "1");
    next.period = "2026-12".into();
    ledger.check_and_spend(&[next], &budget()).unwrap();
}

#[test]
fn over_budget_is_refused_and_nothing_written() {
    let (dir, path) = chain_of_3();
    let mut ledger = open(dir.path());
    let before = std::fs::read(&path).unwrap();
    let err = ledger
        .check_and_spend(
            &[
                spend("public", "2026-11-04", "lvr1-4", "0.2"),
                spend("public", "2026-11-05", "lvr1-5", "0.1"),
            ],
            &budget(),
        )
        .unwrap_err();
    let message = err.to_string();
    for part in [
        "audience `public`",
        "period 2026-11",
        "spent ε 0.75 δ 0.0000003",
        "requested ε 0.3 δ 0.0000002",
        "budget ε 1 δ 0.000001",
    ] {
        assert!(message.contains(part), "{message} lacks {part}");
    }
    assert!(matches!(err, LedgerError::Exceeded(_)));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // δ is budgeted too.
    let mut big_delta = spend("public", "2026-11-04", "lvr1-4", "0.1");
    big_delta.delta = r("1e-6");
    let err = ledger.check_and_spend(&[big_delta], &budget()).unwrap_err();
    assert!(
        err.to_string().contains("requested ε 0.1 δ 0.000001"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // A refused first spend of a new audience does not even create its file.
    let err = ledger
        .check_and_spend(&[spend("partner", "2026-11-01", "x", "2")], &budget())
        .unwrap_err();
    assert!(matches!(err, LedgerError::Exceeded(_)));
    assert!(!ledger_file(dir.path(), "partner").exists());
}

#[test]
fn identical_respend_is_free_and_a_different_release_id_is_charged() {
    let dir = tempfile::tempdir().unwrap();
    let path = ledger_file(dir.path(), "public");
    let mut ledger = open(dir.path());
    let first = spend("public", "2026-11-01", "lvr1-a", "0.6");
    ledger
        .check_and_spend(std::slice::from_ref(&first), &budget())
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    // The same release again, twice in one batch: free, nothing recorded.
    assert!(
        ledger
            .check_and_spend(&[first.clone(), first.clone()], &budget())
            .unwrap()
            .is_empty()
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // In a later period too: the identity has no period.
    let mut later = first.clone();
    later.period = "2026-12".into();
    assert!(
        ledger
            .check_and_spend(&[later], &budget())
            .unwrap()
            .is_empty()
    );
    // A different release id of the same partition is charged: 0.6 + 0.6 > 1.
    let changed = spend("public", "2026-11-01", "lvr1-b", "0.6");
    assert!(matches!(
        ledger.check_and_spend(&[changed], &budget()),
        Err(LedgerError::Exceeded(_))
    ));
    let changed = spend("public", "2026-11-01", "lvr1-b", "0.4");
    assert_eq!(
        ledger.check_and_spend(&[changed], &budget()).unwrap().len(),
        1
    );
    assert_eq!(ledger.spent("public", "2026-11").unwrap().0, Rational::ONE);
    // Another ε or another key is another release: charged, so refused now.
    let other_epsilon = spend("public", "2026-11-01", "lvr1-a", "0.5");
    assert!(ledger.check_and_spend(&[other_epsilon], &budget()).is_err());
    let mut other_key = first;
    other_key.key_id = "demo-2027".into();
    assert!(ledger.check_and_spend(&[other_key], &budget()).is_err());
}

#[test]
fn two_audiences_one_over_budget_neither_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = open(dir.path());
    ledger
        .check_and_spend(&[spend("internal", "2026-11-01", "a", "0.5")], &budget())
        .unwrap();
    let internal = ledger_file(dir.path(), "internal");
    let before = std::fs::read(&internal).unwrap();
    let tight = |audience: &str| {
        if audience == "partner" {
            Budget {
                epsilon_per_period: r("0.1"),
                delta_per_period: r("1e-6"),
            }
        } else {
            budget()
        }
    };
    let err = ledger
        .check_and_spend_with(
            &[
                spend("internal", "2026-11-02", "b", "0.1"),
                spend("partner", "2026-11-02", "b", "0.2"),
            ],
            tight,
        )
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::Exceeded(ref o) if o.audience == "partner"),
        "{err}"
    );
    assert_eq!(std::fs::read(&internal).unwrap(), before);
    assert!(!ledger_file(dir.path(), "partner").exists());
    // Within both budgets: both written, each to its own file.
    let done = ledger
        .check_and_spend_with(
            &[
                spend("partner", "2026-11-02", "b", "0.1"),
                spend("internal", "2026-11-02", "b", "0.1"),
            ],
            tight,
        )
        .unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(ledger.audiences().unwrap(), ["internal", "partner"]);
    assert_eq!(ledger.records("internal").unwrap().len(), 2);
    assert_eq!(ledger.records("partner").unwrap().len(), 1);
}

#[test]
fn cell_key_releases_are_recorded_free_and_listed_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = open(dir.path());
    let release = |partition: &str, key: &str| Spend {
        audience: "public".into(),
        period: "2026-11".into(),
        report: "pages_daily".into(),
        partition: partition.into(),
        release_id: format!("lvr1-{partition}"),
        key_id: key.into(),
        mechanism: Mechanism::CellKey,
        protection: r#"{"method":"cell_key"}"#.to_owned(),
        epsilon: Rational::ZERO,
        delta: Rational::ZERO,
    };
    // The budget is never consulted for ε = δ = 0.
    let never = |_: &str| -> Budget { panic!("no budget needed") };
    ledger
        .check_and_spend_with(&[release("2026-11-01", "k1")], never)
        .unwrap();
    ledger
        .check_and_spend_with(
            &[release("2026-11-01", "k2"), release("2026-11-02", "k1")],
            never,
        )
        .unwrap();
    let earlier = ledger
        .releases_of("public", "pages_daily", "2026-11-01")
        .unwrap();
    assert_eq!(
        earlier
            .iter()
            .map(|r| r.key_id.as_str())
            .collect::<Vec<_>>(),
        ["k1", "k2"]
    );
    assert!(earlier.iter().all(|r| r.kind == Kind::Release));
    assert!(
        ledger
            .releases_of("public", "pages_daily", "2026-11-03")
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ledger.spent("public", "2026-11").unwrap(),
        (Rational::ZERO, Rational::ZERO)
    );
    // A cell-key release claiming ε is refused.
    let mut bad = release("2026-11-03", "k1");
    bad.epsilon = r("0.1");
    assert!(matches!(
        ledger.check_and_spend_with(&[bad], never),
        Err(LedgerError::Invalid(_))
    ));
}

fn write_legacy(path: &Path) {
    let body = r#"{
  "version": 1,
  "spends": [
    {"audience": "public", "period": "2026-11", "report": "pages_daily_dp", "partition": "2026-11-01", "input_digest": "d1", "epsilon": "0.5", "delta": "0.0000001"},
    {"audience": "public", "period": "2026-11", "report": "pages_daily_dp", "partition": "2026-11-02", "input_digest": "d2", "epsilon": "0.25", "delta": "0.0000001"},
    {"audience": "partner", "period": "2026-11", "report": "pages_daily_dp", "partition": "2026-11-01", "input_digest": "d1", "epsilon": "1/3", "delta": "0"}
  ]
}
"#;
    std::fs::write(path, body).unwrap();
}

#[test]
fn migrated_legacy_spends_count_and_migrate_twice_imports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let legacy = out.path().join("privacy-ledger.json");
    write_legacy(&legacy);
    let digest: String = {
        use sha2::Digest as _;
        let sum = sha2::Sha256::digest(std::fs::read(&legacy).unwrap());
        sum.iter()
            .fold(String::new(), |hex, b| hex + &format!("{b:02x}"))
    };
    let mut ledger = open(dir.path());
    assert_eq!(ledger.migrate_legacy(&legacy).unwrap(), 3);
    // Renamed, not deleted.
    assert!(!legacy.exists());
    let migrated = out.path().join("privacy-ledger.json.migrated");
    assert!(migrated.exists());
    assert_eq!(ledger.audiences().unwrap(), ["partner", "public"]);

    let records = ledger.records("public").unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].kind, Kind::Migrated);
    assert_eq!(records[0].mechanism, Mechanism::Legacy);
    assert_eq!(records[0].release_id, "d1");
    assert_eq!(records[0].key_id, "");
    assert_eq!(records[0].legacy_sha256.as_deref(), Some(digest.as_str()));
    let l = lines(&ledger_file(dir.path(), "public"));
    assert!(
        l[0].contains(&format!(
            r#""kind":"migrated","audience":"public","period":"2026-11","report":"pages_daily_dp","partition":"2026-11-01","release_id":"d1","key_id":"","mechanism":"legacy","protection":"legacy","epsilon":"0.5","delta":"0.0000001","legacy_sha256":"{digest}","prev":""#
        )),
        "{}",
        l[0]
    );
    verify(&ledger_file(dir.path(), "public"), None).unwrap();
    verify(&ledger_file(dir.path(), "partner"), None).unwrap();

    // They count: 0.75 spent, so 0.3 more is refused and 0.25 fits.
    assert_eq!(ledger.spent("public", "2026-11").unwrap().0, r("0.75"));
    assert!(matches!(
        ledger.check_and_spend(&[spend("public", "2026-11-03", "n1", "0.3")], &budget()),
        Err(LedgerError::Exceeded(ref o)) if o.spent_epsilon == r("0.75")
    ));
    ledger
        .check_and_spend(&[spend("public", "2026-11-03", "n1", "0.25")], &budget())
        .unwrap();

    // Migrating again: the file is gone but was migrated: nothing.
    let public = ledger_file(dir.path(), "public");
    let before = std::fs::read(&public).unwrap();
    assert_eq!(ledger.migrate_legacy(&legacy).unwrap(), 0);
    // The same file restored (a backup, a crash before the rename): nothing imported, and
    // the earlier `.migrated` is kept.
    std::fs::copy(&migrated, &legacy).unwrap();
    assert_eq!(ledger.migrate_legacy(&legacy).unwrap(), 0);
    assert_eq!(std::fs::read(&public).unwrap(), before);
    assert_eq!(ledger.records("partner").unwrap().len(), 1);
    assert!(!legacy.exists());
    assert!(migrated.exists());
    assert!(out.path().join("privacy-ledger.json.migrated.2").exists());
}

#[test]
fn a_missing_or_corrupt_legacy_ledger_is_an_error_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let legacy = out.path().join("privacy-ledger.json");
    let mut ledger = open(dir.path());
    assert!(matches!(
        ledger.migrate_legacy(&legacy),
        Err(LedgerError::Io { .. })
    ));
    for (body, detail) in [
        ("{\"version\": 1, \"spends\": [", "EOF"),
        ("not json", "expected"),
        ("{\"version\": 2, \"spends\": []}", "version 2"),
        (
            "{\"version\": 1, \"spends\": [{\"audience\": \"a\", \"period\": \"p\", \"report\": \"r\", \"partition\": \"x\", \"input_digest\": \"d\", \"epsilon\": \"-1\", \"delta\": \"0\"}]}",
            "-1",
        ),
        (
            "{\"version\": 1, \"spends\": [{\"audience\": \"../x\", \"period\": \"p\", \"report\": \"r\", \"partition\": \"x\", \"input_digest\": \"d\", \"epsilon\": \"1\", \"delta\": \"0\"}]}",
            "spend 1: audience \"../x\"",
        ),
    ] {
        std::fs::write(&legacy, body).unwrap();
        let err = ledger.migrate_legacy(&legacy).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, LedgerError::Legacy { .. }), "{message}");
        assert!(message.contains("privacy-ledger.json"), "{message}");
        assert!(message.contains(detail), "{message} lacks {detail}");
        assert!(message.contains("nothing was imported"), "{message}");
        assert_eq!(std::fs::read_to_string(&legacy).unwrap(), body);
        assert!(ledger.audiences().unwrap().is_empty());
    }
}

#[test]
fn verify_detects_an_edited_byte() {
    let (_dir, path) = chain_of_3();
    let mut l = lines(&path);
    l[1] = l[1].replace("2026-11-02", "2026-11-09");
    write_lines(&path, &l);
    assert_eq!(broken(&path), (2, Problem::HashMismatch));
    let err = verify(&path, None).unwrap_err().to_string();
    assert!(
        err.contains("public.jsonl: record 2 (line 2): hash mismatch"),
        "{err}"
    );
}

#[test]
fn verify_detects_a_deleted_middle_line() {
    let (_dir, path) = chain_of_3();
    let mut l = lines(&path);
    l.remove(1);
    write_lines(&path, &l);
    assert_eq!(broken(&path), (2, Problem::PrevMismatch { previous: 1 }));
}

#[test]
fn verify_detects_reordered_lines() {
    let (_dir, path) = chain_of_3();
    let mut l = lines(&path);
    l.swap(1, 2);
    write_lines(&path, &l);
    assert_eq!(broken(&path), (2, Problem::PrevMismatch { previous: 1 }));
    // The first line removed: not the start of a chain.
    let mut l = lines(&path);
    l.swap(1, 2);
    l.remove(0);
    write_lines(&path, &l);
    assert_eq!(broken(&path), (1, Problem::NotChainStart));
}

#[test]
fn verify_detects_a_torn_last_line_and_spending_refuses_it() {
    let (dir, path) = chain_of_3();
    let data = std::fs::read(&path).unwrap();
    for cut in [1, 2, 40] {
        std::fs::write(&path, &data[..data.len() - cut]).unwrap();
        assert_eq!(broken(&path), (3, Problem::Incomplete), "cut {cut}");
    }
    let mut ledger = open(dir.path());
    let err = ledger
        .check_and_spend(&[spend("public", "2026-11-09", "x", "0.1")], &budget())
        .unwrap_err();
    assert!(
        err.to_string().contains("line 3: incomplete record"),
        "{err}"
    );
    assert!(err.to_string().contains("never delete it"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), &data[..data.len() - 40]);
}

#[test]
fn verify_detects_a_non_canonical_line() {
    let (_dir, path) = chain_of_3();
    let mut l = lines(&path);
    l[0] = l[0].replacen(",\"time\"", ", \"time\"", 1);
    write_lines(&path, &l);
    assert_eq!(broken(&path), (1, Problem::NotCanonical));
    // Garbage and unknown members are named too.
    let (_dir, path) = chain_of_3();
    let mut l = lines(&path);
    l[1] = l[1].replacen("{\"seq\"", "{\"extra\":1,\"seq\"", 1);
    write_lines(&path, &l);
    assert!(matches!(broken(&path), (2, Problem::NotARecord(_))));
}

#[test]
fn anchor_found_and_not_found() {
    let (_dir, path) = chain_of_3();
    let report = verify(&path, None).unwrap();
    assert_eq!(report.anchor_seq, None);
    let head = report.head_hash.unwrap();
    assert_eq!(verify(&path, Some(&head)).unwrap().anchor_seq, Some(3));
    assert_eq!(
        verify(&path, Some(&head.to_ascii_uppercase()))
            .unwrap()
            .anchor_seq,
        Some(3)
    );
    // The last record dropped: the chain is fine, the anchor is not found.
    let l = lines(&path);
    write_lines(&path, &l[..2]);
    assert_eq!(verify(&path, None).unwrap().records, 2);
    let err = verify(&path, Some(&head)).unwrap_err();
    assert!(matches!(err, LedgerError::AnchorNotFound { .. }), "{err}");
    assert!(err.to_string().contains(&head), "{err}");
    assert!(matches!(
        verify(&path, Some("not-a-hash")),
        Err(LedgerError::Invalid(_))
    ));
}

#[cfg(unix)]
#[test]
fn modes_are_private_and_a_group_readable_ledger_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let (dir, path) = chain_of_3();
    assert_eq!(mode(&dir.path().join("ledger")), 0o700);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("ledger/public.lock")), 0o600);
    let before = std::fs::read(&path).unwrap();

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mut ledger = open(dir.path());
    let err = ledger
        .check_and_spend(&[spend("public", "2026-11-09", "x", "0.1")], &budget())
        .unwrap_err();
    assert!(matches!(err, LedgerError::Permissions { .. }), "{err}");
    assert!(err.to_string().contains("mode 0640"), "{err}");
    assert!(err.to_string().contains("chmod 600"), "{err}");
    assert!(ledger.records("public").is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // A ledger directory open to others is refused when opened.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(
        dir.path().join("ledger"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let err = Ledger::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("chmod 700"), "{err}");
}

#[test]
fn concurrent_spends_never_exceed_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let state = dir.path().to_owned();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut ledger = Ledger::open(&state).unwrap();
                barrier.wait();
                let s = spend("public", "2026-11-01", &format!("lvr1-{i}"), "0.25");
                match ledger.check_and_spend(&[s], &budget()) {
                    Ok(_) => true,
                    Err(LedgerError::Exceeded(_)) => false,
                    Err(e) => panic!("{e}"),
                }
            })
        })
        .collect();
    let granted = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|ok| *ok)
        .count();
    assert_eq!(granted, 4);
    let ledger = Ledger::open(dir.path()).unwrap();
    assert_eq!(ledger.records("public").unwrap().len(), 4);
    assert_eq!(ledger.spent("public", "2026-11").unwrap().0, Rational::ONE);
    assert_eq!(
        verify(&ledger_file(dir.path(), "public"), None)
            .unwrap()
            .records,
        4
    );
}

#[test]
fn invalid_audience_names_and_fields_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = open(dir.path());
    for audience in ["../x", "", "Public", "a/b", "a.jsonl"] {
        let err = ledger
            .check_and_spend(&[spend(audience, "2026-11-01", "x", "0.1")], &budget())
            .unwrap_err();
        assert!(
            matches!(err, LedgerError::Invalid(_)),
            "{audience:?}: {err}"
        );
        assert!(ledger.records(audience).is_err(), "{audience:?}");
        assert!(ledger.path_of(audience).is_err(), "{audience:?}");
    }
    let mut no_key = spend("public", "2026-11-01", "x", "0.1");
    no_key.key_id = String::new();
    assert!(ledger.check_and_spend(&[no_key], &budget()).is_err());
    let mut legacy = spend("public", "2026-11-01", "x", "0.1");
    legacy.mechanism = Mechanism::Legacy;
    assert!(ledger.check_and_spend(&[legacy], &budget()).is_err());
    // Nothing at all was created besides the directory.
    assert_eq!(
        std::fs::read_dir(dir.path().join("ledger"))
            .unwrap()
            .count(),
        0
    );
    assert!(!dir.path().join("x.jsonl").exists());
}
