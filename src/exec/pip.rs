//! The shell's `pip` (`pip3`, `python3 -m pip`): answered by the host for one sandbox, with
//! [`crate::packages`] doing the resolving, verifying and unpacking. Packages land in the
//! sandbox's own [`SITE_PACKAGES`], which every later Python run of that sandbox has on its path.

use std::sync::{Arc, OnceLock};

use cap_std::fs::Dir;

use crate::engine::{CommandFuture, CommandOutput, DiskQuota, HostCommand};
use crate::packages::{self, PackageIndex};
use crate::sandbox::SandboxFs;

/// The sandbox's site-packages, as the guest sees it (pip's `--user` place under `HOME`).
pub const SITE_PACKAGES: &str = "/workspace/.local/lib/python3/site-packages";

/// [`SITE_PACKAGES`] relative to the sandbox root.
fn site_relative() -> &'static str {
    SITE_PACKAGES.trim_start_matches('/')
}

/// Whether the sandbox has installed packages (then its Python runs get them on their path).
pub(super) fn has_site_packages(fs: &SandboxFs) -> bool {
    fs.dir()
        .map(|dir| dir.is_dir(site_relative()))
        .unwrap_or(false)
}

/// Packages the data runtime carries, read once from its library archive when first needed.
pub(super) type BundledPackages = Arc<OnceLock<Vec<String>>>;

/// `pip` for one sandbox.
pub(super) struct SandboxPip {
    /// `None`: installation is disabled (no `--package-index`).
    pub(super) index: Option<Arc<PackageIndex>>,
    pub(super) fs: SandboxFs,
    pub(super) quota: Option<Arc<DiskQuota>>,
    pub(super) bundled: BundledPackages,
    /// The data runtime's library archive.
    pub(super) data_archive: std::path::PathBuf,
}

impl HostCommand for SandboxPip {
    fn run(&self, args: Vec<String>, cwd: String) -> CommandFuture<'_> {
        Box::pin(async move { self.command(&args, &cwd).await })
    }
}

fn fail(message: String, status: i32) -> CommandOutput {
    CommandOutput {
        stdout: String::new(),
        stderr: format!("ERROR: {message}\n"),
        status,
    }
}

fn say(stdout: String) -> CommandOutput {
    CommandOutput {
        stdout,
        stderr: String::new(),
        status: 0,
    }
}

impl SandboxPip {
    async fn command(&self, args: &[String], cwd: &str) -> CommandOutput {
        let Some(subcommand) = args.first() else {
            return fail(usage(), 1);
        };
        let rest = &args[1..];
        match subcommand.as_str() {
            "install" => self.install(rest, cwd).await,
            "uninstall" => self.uninstall(rest),
            "list" | "freeze" => self.list(subcommand == "freeze"),
            "show" => self.show(rest),
            "--version" | "-V" => say(format!(
                "pip (wasmbox host installer) for {SITE_PACKAGES} (python 3)\n"
            )),
            "help" | "--help" | "-h" => say(format!("{}\n", usage())),
            other => fail(format!("unknown command \"{other}\"\n{}", usage()), 1),
        }
    }

    /// The site folder as a capability on the sandbox tree (made if missing when `create`).
    fn site(&self, create: bool) -> std::io::Result<Dir> {
        let root = self.fs.dir()?;
        if create {
            root.create_dir_all(site_relative())?;
        }
        root.open_dir(site_relative())
    }

    async fn install(&self, args: &[String], cwd: &str) -> CommandOutput {
        let Some(index) = &self.index else {
            return fail(
                "package installation is disabled on this server (the operator has not configured \
                 a package index: `wasmbox serve --package-index URL`)"
                    .into(),
                1,
            );
        };
        let mut requirements = Vec::new();
        let mut quiet = false;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "-q" | "--quiet" => quiet = true,
                // Accepted for compatibility: the place and the cache are fixed here.
                "--user"
                | "--no-cache-dir"
                | "-U"
                | "--upgrade"
                | "--no-warn-script-location"
                | "--disable-pip-version-check"
                | "--root-user-action=ignore" => {}
                "-r" | "--requirement" => {
                    let Some(file) = args.next() else {
                        return fail("-r option requires 1 argument".into(), 2);
                    };
                    match self.read_requirements(cwd, file) {
                        Ok(lines) => requirements.extend(lines),
                        Err(e) => {
                            return fail(format!("could not open requirements file {file}: {e}"), 1)
                        }
                    }
                }
                "-i" | "--index-url" | "--extra-index-url" | "-f" | "--find-links" => {
                    return fail(
                        format!("{arg} is not available: packages come from the operator's index"),
                        2,
                    )
                }
                option if option.starts_with('-') => {
                    return fail(format!("no such option: {option}"), 2)
                }
                requirement => requirements.push(requirement.to_string()),
            }
        }
        if requirements.is_empty() {
            return fail(
                "You must give at least one requirement to install (see \"pip help install\")"
                    .into(),
                1,
            );
        }
        let site = match self.site(true) {
            Ok(site) => site,
            Err(e) => return fail(format!("cannot use {SITE_PACKAGES}: {e}"), 1),
        };
        let bundled = self
            .bundled
            .get_or_init(|| packages::bundled_in_archive(&self.data_archive));
        match index
            .install(&requirements, &site, bundled, self.quota.as_ref())
            .await
        {
            Ok(report) => {
                let mut out = String::new();
                if !quiet {
                    for p in &report.already {
                        out.push_str(&format!(
                            "Requirement already satisfied: {} in {SITE_PACKAGES} ({})\n",
                            p.name, p.version
                        ));
                    }
                    for name in &report.bundled {
                        out.push_str(&format!(
                            "Requirement already satisfied: {name} (bundled with the data runtime: \
                             language python-data and the templates configured for it)\n"
                        ));
                    }
                }
                if !report.installed.is_empty() {
                    let names: Vec<String> = report
                        .installed
                        .iter()
                        .map(|p| format!("{}-{}", p.name, p.version))
                        .collect();
                    out.push_str(&format!("Successfully installed {}\n", names.join(" ")));
                }
                say(out)
            }
            Err(e) => fail(crate::describe_error(&e), 1),
        }
    }

    /// The requirements of a file in the sandbox (one per line; `#` comments and options
    /// skipped).
    fn read_requirements(&self, cwd: &str, file: &str) -> Result<Vec<String>, String> {
        let guest = if file.starts_with('/') {
            file.to_string()
        } else {
            format!("{cwd}/{file}")
        };
        let relative = crate::sandbox::fs::normalize(&guest).map_err(|e| e.to_string())?;
        let text = self
            .fs
            .dir()
            .and_then(|dir| dir.read_to_string(&relative))
            .map_err(|e| e.to_string())?;
        Ok(text
            .lines()
            .map(|l| l.split('#').next().unwrap_or_default().trim())
            .filter(|l| !l.is_empty() && !l.starts_with('-'))
            .map(str::to_string)
            .collect())
    }

    fn uninstall(&self, args: &[String]) -> CommandOutput {
        let names: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
        if names.is_empty() {
            return fail(
                "You must give at least one requirement to uninstall".into(),
                1,
            );
        }
        let Ok(site) = self.site(false) else {
            let mut out = CommandOutput::default();
            for name in names {
                out.stderr.push_str(&format!(
                    "WARNING: Skipping {name} as it is not installed.\n"
                ));
            }
            return out;
        };
        let mut out = CommandOutput::default();
        for name in names {
            match packages::uninstall(&site, name) {
                Ok(Some(p)) => out.stdout.push_str(&format!(
                    "Successfully uninstalled {}-{}\n",
                    p.name, p.version
                )),
                Ok(None) => out.stderr.push_str(&format!(
                    "WARNING: Skipping {name} as it is not installed.\n"
                )),
                Err(e) => {
                    out.stderr
                        .push_str(&format!("ERROR: {}\n", crate::describe_error(&e)));
                    out.status = 1;
                }
            }
        }
        if let Some(quota) = &self.quota {
            quota.freed();
        }
        out
    }

    fn installed(&self) -> std::collections::BTreeMap<String, String> {
        self.site(false)
            .map(|site| packages::installed_in(&site))
            .unwrap_or_default()
    }

    fn list(&self, freeze: bool) -> CommandOutput {
        let installed = self.installed();
        let mut out = String::new();
        if freeze {
            for (name, version) in &installed {
                out.push_str(&format!("{name}=={version}\n"));
            }
        } else {
            let width = installed.keys().map(String::len).max().unwrap_or(7).max(7);
            out.push_str(&format!("{:width$} Version\n", "Package"));
            out.push_str(&format!("{} -------\n", "-".repeat(width)));
            for (name, version) in &installed {
                out.push_str(&format!("{name:width$} {version}\n"));
            }
        }
        say(out)
    }

    fn show(&self, args: &[String]) -> CommandOutput {
        let installed = self.installed();
        let mut out = CommandOutput::default();
        for name in args.iter().filter(|a| !a.starts_with('-')) {
            let key = name.to_ascii_lowercase().replace(['_', '.'], "-");
            match installed.get(&key) {
                Some(version) => out.stdout.push_str(&format!(
                    "Name: {key}\nVersion: {version}\nLocation: {SITE_PACKAGES}\n"
                )),
                None => {
                    out.stderr
                        .push_str(&format!("WARNING: Package(s) not found: {name}\n"));
                    out.status = 1;
                }
            }
        }
        out
    }
}

fn usage() -> String {
    "Usage: pip install [-q] [-r FILE] PACKAGE...\n       pip uninstall PACKAGE...\n       pip list | pip freeze | pip show PACKAGE\n(pure-Python wheels from the operator's package index, into this sandbox)".into()
}
