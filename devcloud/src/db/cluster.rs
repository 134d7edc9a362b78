//! A private PostgreSQL cluster owned by this process.
//!
//! PostgreSQL refuses to run as root, and CI runs everything as root, so when we are root the
//! cluster runs as an unprivileged user (`postgres` when it exists, else `nobody`). The server
//! listens only on a Unix socket inside the cluster directory: no port can clash with a second
//! devcloud running side by side, and nothing outside this machine can reach it.
//! `binaries` decides which server binaries run it (the system's or the embedded package's).

mod binaries;

pub use binaries::Choice;

use std::{
    fs,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::{Pid, User},
};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No usable server binaries; the message says where we looked and what to do.
    #[error("{0}")]
    NotFound(String),
    #[error("{step} failed: {detail}")]
    Step { step: &'static str, detail: String },
    #[error("PostgreSQL did not become ready within {0:?}: {1}")]
    NotReady(Duration, String),
}

fn step(step: &'static str) -> impl Fn(std::io::Error) -> ClusterError {
    move |e| ClusterError::Step {
        step,
        detail: e.to_string(),
    }
}

pub struct Cluster {
    /// Removed on drop unless the caller supplied it.
    _temp: Option<tempfile::TempDir>,
    socket_dir: PathBuf,
    child: Option<Child>,
    log_path: PathBuf,
}

impl Cluster {
    /// Creates (unless `root` already holds one) and starts a cluster under `root`.
    /// The binaries are chosen by `DEVCLOUD_POSTGRES` (see [`binaries`]).
    pub fn start(root: Option<&Path>) -> Result<Cluster, ClusterError> {
        Cluster::start_with(root, Choice::from_env()?)
    }

    pub fn start_with(root: Option<&Path>, choice: Choice) -> Result<Cluster, ClusterError> {
        let found = binaries::locate(choice)?;
        let (temp, root) = match root {
            Some(r) => {
                fs::create_dir_all(r).map_err(step("creating --data-dir"))?;
                (None, r.to_path_buf())
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("oboto-devcloud-")
                    .tempdir()
                    .map_err(step("creating a temporary directory"))?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let owner = unprivileged_owner();
        let pgdata = root.join("pgdata");
        let socket_dir = root.join("run");
        let log_path = root.join("postgres.log");
        fs::create_dir_all(&socket_dir).map_err(step("creating the socket directory"))?;
        if let Some(user) = &owner {
            // The postgres user must be able to enter the cluster root and own what it writes.
            fs::set_permissions(&root, fs::Permissions::from_mode(0o755))
                .map_err(step("setting permissions"))?;
            chown(&socket_dir, user)?;
            if pgdata.exists() {
                chown_recursive(&pgdata, user)?;
            }
            if !log_path.exists() {
                fs::write(&log_path, b"").map_err(step("creating the log"))?;
            }
            chown(&log_path, user)?;
            if !pgdata.exists() {
                fs::create_dir_all(&pgdata).map_err(step("creating pgdata"))?;
                chown(&pgdata, user)?;
            }
        }

        let bin = match &found.embedded {
            None => found.bin,
            Some(native) => embedded_bin_dir(native, &root, owner.as_ref())?,
        };
        tracing::info!(bin = %bin.display(), embedded = found.embedded.is_some(), "PostgreSQL");

        if !pgdata.join("PG_VERSION").exists() {
            let mut cmd = Command::new(bin.join("initdb"));
            cmd.arg("-D")
                .arg(&pgdata)
                .args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "-N",
                ])
                .stdin(Stdio::null());
            run_as(&mut cmd, owner.as_ref());
            let out = cmd.output().map_err(step("running initdb"))?;
            if !out.status.success() {
                return Err(ClusterError::Step {
                    step: "initdb",
                    detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
        }

        let log = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(step("opening the log"))?;
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D")
            .arg(&pgdata)
            .arg("-k")
            .arg(&socket_dir)
            .args([
                "-c",
                "listen_addresses=",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=64MB",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        run_as(&mut cmd, owner.as_ref());
        // Its own process group: a terminal's Ctrl-C reaches devcloud, which then stops
        // postgres after its own connections are closed, instead of both at once.
        cmd.process_group(0);
        // SAFETY: prctl is async-signal-safe. If devcloud dies without cleaning up (SIGKILL),
        // the kernel tells postgres to do a fast shutdown instead of leaving it orphaned.
        #[cfg(target_os = "linux")]
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGINT).map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn().map_err(step("starting postgres"))?;
        let mut cluster = Cluster {
            _temp: temp,
            socket_dir,
            child: Some(child),
            log_path,
        };
        cluster.wait_ready(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// The directory holding the cluster, its socket and the stored objects.
    pub fn root(&self) -> &Path {
        self.socket_dir.parent().unwrap_or(&self.socket_dir)
    }

    /// libpq-style connection string for the superuser over the private socket.
    pub fn connection_string(&self) -> String {
        format!(
            "host={} user=postgres dbname=postgres",
            self.socket_dir.display()
        )
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), ClusterError> {
        let socket = self.socket_dir.join(".s.PGSQL.5432");
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(ClusterError::Step {
                        step: "postgres",
                        detail: format!("exited with {status}: {}", self.log_tail()),
                    });
                }
            }
            if socket.exists() && self.log_tail().contains("ready to accept connections") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(ClusterError::NotReady(limit, self.log_tail()))
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// Fast shutdown (SIGINT): disconnect clients, stop, wait for the postmaster to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, Signal::SIGINT);
            let started = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if started.elapsed() > Duration::from_secs(10) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The embedded package's `bin`, made runnable: its library links created (npm's postinstall
/// does that, `--ignore-scripts` does not), and, when the cluster's user cannot run it where it
/// is (a checkout under a directory only root may enter, a read-only `node_modules`), a copy
/// inside the cluster root, which is removed with it.
fn embedded_bin_dir(
    native: &Path,
    root: &Path,
    owner: Option<&User>,
) -> Result<PathBuf, ClusterError> {
    let hydrated = binaries::hydrate_symlinks(native);
    let bin = native.join("bin");
    let in_place = match (&hydrated, runs(&bin, owner)) {
        (Ok(()), Ok(())) => return Ok(bin),
        (Err(e), _) => format!("creating its library links: {e}"),
        (Ok(()), Err(e)) => e,
    };
    // Keeps the package's layout: its symlink list names paths under `native/`.
    let copy = root.join("embedded-postgres").join("native");
    if !copy.join("bin").is_dir() {
        binaries::copy_tree(native, &copy).map_err(|e| ClusterError::Step {
            step: "copying the embedded PostgreSQL",
            detail: format!("{}: {e} (after {in_place})", native.display()),
        })?;
    }
    binaries::hydrate_symlinks(&copy)
        .map_err(step("linking the embedded PostgreSQL's libraries"))?;
    let bin = copy.join("bin");
    runs(&bin, owner).map_err(|detail| ClusterError::Step {
        step: "running the embedded PostgreSQL",
        detail,
    })?;
    Ok(bin)
}

/// `initdb --version` and `postgres --version` as the cluster's user: the files are readable
/// and executable by it and their shared libraries resolve.
fn runs(bin: &Path, owner: Option<&User>) -> Result<(), String> {
    for tool in ["initdb", "postgres"] {
        let mut cmd = Command::new(bin.join(tool));
        cmd.arg("--version").stdin(Stdio::null());
        run_as(&mut cmd, owner);
        match cmd.output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return Err(format!(
                    "{tool} --version: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
            Err(e) => return Err(format!("{tool}: {e}")),
        }
    }
    Ok(())
}

fn unprivileged_owner() -> Option<User> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    ["postgres", "nobody"]
        .iter()
        .find_map(|name| User::from_name(name).ok().flatten())
}

fn run_as(cmd: &mut Command, user: Option<&User>) {
    if let Some(u) = user {
        cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
        // Root's environment may point HOME somewhere the unprivileged user cannot read.
        cmd.env("HOME", "/tmp");
        cmd.current_dir("/");
    }
}

fn chown(path: &Path, user: &User) -> Result<(), ClusterError> {
    nix::unistd::chown(path, Some(user.uid), Some(user.gid)).map_err(|e| ClusterError::Step {
        step: "chown",
        detail: format!("{}: {e}", path.display()),
    })
}

fn chown_recursive(path: &Path, user: &User) -> Result<(), ClusterError> {
    chown(path, user)?;
    if path.is_dir() {
        for entry in fs::read_dir(path).map_err(step("reading pgdata"))? {
            let entry = entry.map_err(step("reading pgdata"))?;
            chown_recursive(&entry.path(), user)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use tokio_postgres::{AsyncMessage, NoTls};

    use super::*;

    async fn next_note(
        notes: &mut tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    ) -> (String, String) {
        tokio::time::timeout(Duration::from_secs(10), notes.recv())
            .await
            .expect("a notification within 10 s")
            .expect("the listener is alive")
    }

    /// Change capture (a plpgsql trigger that calls pg_notify, a LISTENing session) on the
    /// embedded binaries, run as the unprivileged user when we are root. Skipped when the
    /// package is not installed (`npm install` in the checkout installs it).
    #[test]
    fn the_embedded_binaries_run_plpgsql_triggers_and_notify() {
        let cluster = match Cluster::start_with(None, Choice::Embedded) {
            Ok(c) => c,
            Err(ClusterError::NotFound(why)) => {
                eprintln!("skipped: {why}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let root = cluster.root().to_path_buf();
        let conn = cluster.connection_string();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (listener, mut connection) = tokio_postgres::connect(&conn, NoTls).await.unwrap();
            let (tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(Ok(m)) = messages.next().await {
                    if let AsyncMessage::Notification(n) = m {
                        let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
                    }
                }
            });
            let (writer, connection) = tokio_postgres::connect(&conn, NoTls).await.unwrap();
            tokio::spawn(connection);
            writer
                .batch_execute(
                    "CREATE TABLE items (id int PRIMARY KEY, name text);
                     CREATE FUNCTION capture() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN
                       PERFORM pg_notify('changes',
                         json_build_object('op', TG_OP, 'record', row_to_json(NEW))::text);
                       RETURN NEW;
                     END $$;
                     CREATE TRIGGER items_capture AFTER INSERT OR UPDATE ON items
                       FOR EACH ROW EXECUTE FUNCTION capture();",
                )
                .await
                .unwrap();
            listener.batch_execute("LISTEN changes").await.unwrap();
            writer
                .batch_execute("INSERT INTO items VALUES (1, 'a'); UPDATE items SET name = 'b'")
                .await
                .unwrap();
            let (channel, payload) = next_note(&mut notes).await;
            assert_eq!(channel, "changes");
            let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
            assert_eq!(v["op"], "INSERT");
            assert_eq!(v["record"]["name"], "a");
            let (_, payload) = next_note(&mut notes).await;
            let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
            assert_eq!(
                (&v["op"], &v["record"]["name"]),
                (&"UPDATE".into(), &"b".into())
            );
        });
        drop(runtime);
        drop(cluster);
        assert!(!root.exists(), "the temporary cluster is removed on drop");
    }
}
