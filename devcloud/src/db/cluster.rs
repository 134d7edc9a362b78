//! A private PostgreSQL cluster owned by this process.
//!
//! PostgreSQL refuses to run as root, and CI runs everything as root, so when we are root the
//! cluster runs as an unprivileged user (`postgres` when it exists, else `nobody`). The server
//! listens only on a Unix socket inside the cluster directory: no port can clash with a second
//! devcloud running side by side, and nothing outside this machine can reach it.

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
    #[error(
        "PostgreSQL is not installed (no `initdb` on PATH or in /usr/lib/postgresql/*/bin). \
         Install it with `sudo apt-get install -y postgresql` (Debian/Ubuntu) or \
         `brew install postgresql` (macOS), or pass --database-url"
    )]
    NotInstalled,
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
    pub fn start(root: Option<&Path>) -> Result<Cluster, ClusterError> {
        let bin = find_bin_dir().ok_or(ClusterError::NotInstalled)?;
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

/// `initdb` on PATH, else the newest `/usr/lib/postgresql/<version>/bin`.
fn find_bin_dir() -> Option<PathBuf> {
    find_bin_dir_in(std::env::var_os("PATH"), Path::new("/usr/lib/postgresql"))
}

fn find_bin_dir_in(path: Option<std::ffi::OsString>, versions_root: &Path) -> Option<PathBuf> {
    if let Some(path) = path {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("postgres").is_file() {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(versions_root)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
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
    use super::*;

    fn touch(p: &Path) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"").unwrap();
    }

    #[test]
    fn finds_postgres_on_path_or_the_newest_debian_version() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("lib");
        assert_eq!(find_bin_dir_in(None, &root), None);
        for v in ["13", "16", "9"] {
            touch(&root.join(v).join("bin/initdb"));
        }
        touch(&root.join("notaversion/bin/initdb"));
        assert_eq!(find_bin_dir_in(None, &root), Some(root.join("16/bin")));
        let on_path = t.path().join("pgbin");
        touch(&on_path.join("initdb"));
        touch(&on_path.join("postgres"));
        let path = std::env::join_paths([t.path().join("empty"), on_path.clone()]).unwrap();
        assert_eq!(find_bin_dir_in(Some(path), &root), Some(on_path));
    }

    #[test]
    fn a_missing_installation_says_how_to_install() {
        let msg = ClusterError::NotInstalled.to_string();
        assert!(msg.contains("apt-get install -y postgresql"), "{msg}");
        assert!(msg.contains("--database-url"), "{msg}");
    }
}
