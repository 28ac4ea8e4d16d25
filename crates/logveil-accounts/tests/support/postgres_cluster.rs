//! A throwaway `PostgreSQL` cluster for tests: its own data directory and Unix socket in a
//! temporary directory (no TCP listener), loaded with `sample-logs/accounts.csv` into the
//! README's schema, and stopped when dropped, also when the test fails.
//!
//! Shared by `logveil-accounts/tests/sources.rs` and `logveil/tests/it/account_sources.rs`
//! (`#[path]`); it uses only std and `tempfile`. Needs the server binaries (`initdb`,
//! `pg_ctl`, `psql`), found under `/usr/lib/postgresql/*/bin` (Debian's `postgresql`
//! package, installed by `scripts/setup-test-deps`) or on `PATH`. `initdb` refuses to run as
//! root, so as root the server runs as the `postgres` user (`runuser`).
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The read-only role of the README, which may select from the view and nothing else.
pub const READER: &str = "logveil_reader";
/// Test-only passwords (the cluster lives for one test and listens on no TCP port).
pub const READER_PASSWORD: &str = "rdr-Test-pw-4417";
const SUPERUSER_PASSWORD: &str = "su-Test-pw-9023";

/// Two databases with the same accounts: `crm_typed` stores `birth_date` as `date` and the
/// flags as `boolean`; `crm_plain` stores them as text and integers (as `SQLite` does).
pub const DATABASES: [&str; 2] = ["crm_typed", "crm_plain"];

/// The README's example schema, view and grant (keep the two in step).
const SCHEMA: &str = "
CREATE TABLE accounts (
  account_id          text PRIMARY KEY,
  name                text,
  email               text NOT NULL,
  birth_date          {date},
  gender              text,
  zip_code            text,
  occupation          text,
  industry            text,
  interests           text,
  consent_research    {flag} NOT NULL,
  consent_advertising {flag} NOT NULL,
  newsletter_opt_out  {flag} NOT NULL,
  deleted             {flag} NOT NULL
);
CREATE TABLE account_cookies (
  cookie_id  text PRIMARY KEY,
  account_id text NOT NULL REFERENCES accounts (account_id)
);
CREATE VIEW logveil_accounts AS
  SELECT a.account_id, c.cookie_id, a.birth_date, a.gender,
         a.zip_code, a.occupation, a.industry, a.interests,
         a.consent_research, a.consent_advertising, a.newsletter_opt_out, a.deleted
  FROM accounts a LEFT JOIN account_cookies c ON c.account_id = a.account_id;
GRANT SELECT ON logveil_accounts TO logveil_reader;
";

/// Whether tests must not skip what needs `PostgreSQL` (`CI` set and non-empty).
pub fn required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// A running cluster, or `None` (after a notice on stderr) when `PostgreSQL` is not installed
/// and this is not CI. Under CI a missing `PostgreSQL` fails the test.
pub fn start_or_skip(test: &str) -> Option<Cluster> {
    let Some(bin) = find_bin() else {
        assert!(
            !required(),
            "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH), \
             and CI must test the PostgreSQL account source: run scripts/setup-test-deps"
        );
        eprintln!(
            "notice: {test}: PostgreSQL not installed (run scripts/setup-test-deps); skipping its PostgreSQL part"
        );
        return None;
    };
    Some(Cluster::start(bin))
}

fn find_bin() -> Option<PathBuf> {
    let version = |p: &Path| -> Vec<u32> {
        p.iter()
            .filter_map(|c| c.to_str())
            .nth_back(1)
            .unwrap_or_default()
            .split('.')
            .map(|n| n.parse().unwrap_or(0))
            .collect()
    };
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
        .collect();
    debian.sort_by_key(|b| version(b));
    if let Some(newest) = debian.pop() {
        return Some(newest);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter_map(|dir| dir.join("initdb").canonicalize().ok())
        .filter_map(|initdb| initdb.parent().map(Path::to_path_buf))
        .find(|bin| bin.join("pg_ctl").is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn check(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub struct Cluster {
    bin: PathBuf,
    /// Holds the socket, `data/`, the log; removed after the server stops.
    dir: tempfile::TempDir,
    pub port: u16,
    as_postgres: bool,
    started: bool,
}

impl Cluster {
    fn start(bin: PathBuf) -> Self {
        // Under /tmp whatever TMPDIR says: the `postgres` user must reach it, and a Unix
        // socket path has at most ~100 bytes.
        let dir = tempfile::Builder::new()
            .prefix("logveil-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let port = 20_000 + ((nanos ^ std::process::id().wrapping_mul(7919)) % 40_000) as u16;
        let mut cluster = Self {
            bin,
            dir,
            port,
            as_postgres: is_root(),
            started: false,
        };
        let pwfile = cluster.dir.path().join("pwfile");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).unwrap();
        if cluster.as_postgres {
            check(
                "chown postgres",
                &Command::new("chown")
                    .args(["-R", "postgres:"])
                    .arg(cluster.dir.path())
                    .output()
                    .unwrap(),
            );
        }
        let data = cluster.data();
        check(
            "initdb",
            &cluster
                .server_command("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "-A", "scram-sha-256", "-E", "UTF8"])
                .args(["--no-locale", "--no-sync", "--no-instructions"])
                .arg(format!("--pwfile={}", pwfile.display()))
                .output()
                .unwrap(),
        );
        let started = cluster
            .server_command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(cluster.dir.path().join("server.log"))
            .arg("-o")
            .arg(format!(
                "-k {} -p {port} -c listen_addresses='' -c fsync=off",
                cluster.dir.path().display()
            ))
            .args(["-w", "-t", "60", "start"])
            .output()
            .unwrap();
        cluster.started = true;
        if !started.status.success() {
            let log =
                std::fs::read_to_string(cluster.dir.path().join("server.log")).unwrap_or_default();
            panic!(
                "pg_ctl start failed: {}{}\n{log}",
                String::from_utf8_lossy(&started.stdout),
                String::from_utf8_lossy(&started.stderr)
            );
        }
        cluster.load_accounts();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `initdb` and `pg_ctl`, as the `postgres` user when we are root.
    fn server_command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    /// Runs `sql` with `psql` as `user`, stopping at the first error.
    pub fn psql(&self, user: &str, password: &str, database: &str, sql: &str) -> Output {
        Command::new(self.bin.join("psql"))
            .env("PGPASSWORD", password)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", user, "-d", database, "-c", sql])
            .output()
            .unwrap()
    }

    fn load_accounts(&self) {
        let csv = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../sample-logs/accounts.csv")
            .canonicalize()
            .unwrap();
        let su = |database: &str, sql: &str| {
            check(
                &format!("psql in {database}"),
                &self.psql("postgres", SUPERUSER_PASSWORD, database, sql),
            );
        };
        su(
            "postgres",
            &format!("CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'"),
        );
        for database in DATABASES {
            su("postgres", &format!("CREATE DATABASE {database}"));
            let typed = database == "crm_typed";
            let (date, flag) = if typed {
                ("date", "boolean")
            } else {
                ("text", "integer")
            };
            let flag_value = |c: &str| {
                if typed {
                    format!("{c}::boolean")
                } else {
                    format!("{c}::integer")
                }
            };
            let mut sql = String::from(
                "CREATE TEMP TABLE staging (account_id text, cookie_id text, email text, \
                 birth_date text, gender text, zip_code text, occupation text, industry text, \
                 interests text, consent_research text, consent_advertising text, \
                 newsletter_opt_out text, deleted text);\n",
            );
            sql.push_str(&SCHEMA.replace("{date}", date).replace("{flag}", flag));
            // psql -c takes one command per flag; `\copy` is a meta-command, so the whole
            // script goes through a file.
            let _ = writeln!(
                sql,
                "\\copy staging FROM '{}' WITH (FORMAT csv, HEADER true)",
                csv.display().to_string().replace('\'', "''")
            );
            let _ = writeln!(
                sql,
                "INSERT INTO accounts SELECT DISTINCT ON (account_id) account_id, NULL, email, \
                 NULLIF(birth_date, '')::{date}, NULLIF(gender, ''), zip_code, \
                 NULLIF(occupation, ''), NULLIF(industry, ''), NULLIF(interests, ''), \
                 {}, {}, {}, {} FROM staging ORDER BY account_id;\n\
                 INSERT INTO account_cookies SELECT cookie_id, account_id FROM staging;",
                flag_value("consent_research"),
                flag_value("consent_advertising"),
                flag_value("newsletter_opt_out"),
                flag_value("deleted"),
            );
            let script = self.dir.path().join(format!("{database}.sql"));
            std::fs::write(&script, sql).unwrap();
            let out = Command::new(self.bin.join("psql"))
                .env("PGPASSWORD", SUPERUSER_PASSWORD)
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
                .arg(self.dir.path())
                .arg("-p")
                .arg(self.port.to_string())
                .args(["-U", "postgres", "-d", database, "-f"])
                .arg(&script)
                .output()
                .unwrap();
            check(&format!("loading {database}"), &out);
        }
    }

    /// `postgresql://USER[:PASSWORD]@<socket dir>:PORT/DATABASE`, the socket directory
    /// percent-encoded as the host.
    pub fn url(&self, user: &str, password: Option<&str>, database: &str) -> String {
        let host = self
            .dir
            .path()
            .display()
            .to_string()
            .replace('%', "%25")
            .replace('/', "%2F");
        let creds = match password {
            Some(pw) => format!("{user}:{pw}"),
            None => user.to_owned(),
        };
        format!("postgresql://{creds}@{host}:{}/{database}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.started {
            let _ = self
                .server_command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}
