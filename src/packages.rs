//! Pure-Python packages for a sandbox (`pip install` in its shell).
//!
//! The host resolves requirement names against the operator's package index (the JSON form of
//! the "simple" repository API), downloads wheels, checks each against the sha256 the index
//! lists, and unpacks them into the sandbox's own site-packages folder. Nothing a tenant types
//! becomes a URL: names are parsed as PEP 508 requirements (no URLs, no paths) and looked up
//! under the configured index; files come from the URLs that index lists. Only wheels that run
//! on any Python 3 (`py3-none-any`) are installed: nothing is built and no package code runs
//! in the host. Every size is bounded and the bytes are charged to the sandbox's disk quota.

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use cap_std::fs::Dir;
use pep508_rs::pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::{MarkerEnvironment, MarkerEnvironmentBuilder, PackageName, Requirement};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::engine::DiskQuota;

/// Packages one command may install, dependencies included.
const MAX_PACKAGES: usize = 64;
/// Bytes of one downloaded wheel.
const MAX_WHEEL_BYTES: u64 = 64 << 20;
/// Bytes one wheel may unpack to, and entries it may hold (a zip bomb stops here).
const MAX_UNPACKED_BYTES: u64 = 256 << 20;
const MAX_ENTRIES: usize = 20_000;
/// Bytes of one index page.
const MAX_PAGE_BYTES: u64 = 16 << 20;
/// The Python the markers and `Requires-Python` are evaluated for (the plain runtime's; the
/// data runtime is newer, and a pure wheel that supports one supports the other).
const PYTHON_VERSION: &str = "3.13";

/// Why packages could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The argument is not a requirement this installer takes.
    #[error("invalid requirement '{requirement}': {reason}")]
    BadRequirement {
        /// As typed.
        requirement: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The index has no such project.
    #[error("no package named '{0}' in the package index")]
    NotFound(String),
    /// The project exists but has no wheel for any Python 3 and any platform.
    #[error("{0} has native code (no pure-Python py3-none-any wheel); it cannot be installed in this sandbox")]
    NativeOnly(String),
    /// The sandbox has another version of a package than one asked for.
    #[error(
        "{name} {version} is installed, but '{wanted}' is wanted; `pip uninstall {name}` first"
    )]
    Conflict {
        /// The package.
        name: String,
        /// The version installed.
        version: String,
        /// The constraints asked for.
        wanted: String,
    },
    /// No pure wheel satisfies the version constraints.
    #[error("no pure-Python version of {name} matches '{wanted}'")]
    NoMatchingVersion {
        /// The package.
        name: String,
        /// The constraints asked for.
        wanted: String,
    },
    /// More packages than one command may install.
    #[error("more than {MAX_PACKAGES} packages to install")]
    TooMany,
    /// A download or index page exceeded its bound.
    #[error("{0} is too large")]
    TooLarge(String),
    /// A downloaded wheel does not match the index's digest.
    #[error("{0}: sha256 does not match the package index")]
    HashMismatch(String),
    /// The index lists a file without a sha256 (it cannot be verified).
    #[error("{0}: the package index gives no sha256 for it")]
    Unverifiable(String),
    /// A wheel with an entry outside its folder, a link, or an unreadable archive.
    #[error("{file}: not a safe wheel ({reason})")]
    UnsafeWheel {
        /// The wheel's file name.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The sandbox's disk quota would be exceeded.
    #[error("disk quota exceeded")]
    Quota,
    /// The index could not be reached or answered with an error.
    #[error("package index request for {what} failed")]
    Http {
        /// The project or file asked for.
        what: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The index's answer is not the JSON simple API.
    #[error("package index page for {name} is not the JSON simple API")]
    BadIndexPage {
        /// The project.
        name: String,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// Writing into the sandbox failed.
    #[error("writing {path} in site-packages")]
    Io {
        /// The path inside the site folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// One project page of the JSON simple API.
#[derive(Debug, Deserialize)]
struct ProjectPage {
    files: Vec<IndexFile>,
}

#[derive(Debug, Deserialize)]
struct IndexFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
    #[serde(default, rename = "requires-python")]
    requires_python: Option<String>,
    #[serde(default)]
    yanked: serde_json::Value,
}

impl IndexFile {
    fn is_yanked(&self) -> bool {
        !matches!(
            self.yanked,
            serde_json::Value::Bool(false) | serde_json::Value::Null
        )
    }
}

/// A package that is (now or already) installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    /// Normalised name (`typing-extensions`).
    pub name: String,
    /// Its version.
    pub version: String,
}

/// What an install did, for the command's output.
#[derive(Debug, Default)]
pub struct InstallReport {
    /// Newly installed, in install order.
    pub installed: Vec<Installed>,
    /// Requirements already met in the sandbox's site-packages.
    pub already: Vec<Installed>,
    /// Requirements the runtime itself carries (the data runtime's packages).
    pub bundled: Vec<String>,
}

/// The operator's package index.
pub struct PackageIndex {
    base: url::Url,
    client: reqwest::Client,
}

impl std::fmt::Debug for PackageIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackageIndex")
            .field("base", &self.base.as_str())
            .finish()
    }
}

impl PackageIndex {
    /// The index at `base` (its "simple" root, e.g. `https://index.example/simple/`).
    pub fn new(base: url::Url) -> Result<Self, reqwest::Error> {
        crate::tls::install_crypto_provider();
        let mut base = base;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("wasmbox/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(60))
            .build()?;
        Ok(Self { base, client })
    }

    /// The index's root URL.
    pub fn url(&self) -> &str {
        self.base.as_str()
    }

    /// Installs `requirements` and their dependencies into `site` (a folder of the sandbox tree,
    /// as a capability: no path in a wheel and no link a tenant planted leads out of it), skipping what `site` already has and what `bundled` names, charging the
    /// unpacked bytes to `quota`. Nothing is written unless every package resolved and verified.
    pub async fn install(
        &self,
        requirements: &[String],
        site: &Dir,
        bundled: &[String],
        quota: Option<&Arc<DiskQuota>>,
    ) -> Result<InstallReport, PackageError> {
        let markers = marker_environment();
        let applies = |requirement: &Requirement, extras: &[pep508_rs::ExtraName]| {
            markers
                .as_ref()
                .map_or(requirement.marker.is_true(), |env| {
                    requirement.evaluate_markers(env, extras)
                })
        };
        let mut report = InstallReport::default();
        let present = installed_in(site);
        // Each requirement with the extras of the package that asked for it.
        let mut queue: VecDeque<(Requirement, Vec<pep508_rs::ExtraName>)> = requirements
            .iter()
            .map(|r| parse_requirement(r).map(|r| (r, Vec::new())))
            .collect::<Result<_, _>>()?;
        let mut wheels: Vec<(Installed, IndexFile, Vec<u8>)> = Vec::new();
        while let Some((requirement, parent_extras)) = queue.pop_front() {
            if !applies(&requirement, &parent_extras) {
                continue;
            }
            let name = requirement.name.to_string();
            let seen = wheels.iter().any(|(w, _, _)| w.name == name)
                || report.already.iter().any(|p| p.name == name)
                || report.bundled.contains(&name);
            if seen {
                continue;
            }
            let specifiers = version_specifiers(&requirement);
            if let Some(version) = present.get(&name) {
                let satisfied =
                    Version::from_str(version).map_or(true, |v| specifiers.contains(&v));
                if !satisfied {
                    return Err(PackageError::Conflict {
                        name,
                        version: version.clone(),
                        wanted: specifiers.to_string(),
                    });
                }
                report.already.push(Installed {
                    name,
                    version: version.clone(),
                });
                continue;
            }
            let files = self.project(&requirement.name).await?;
            let (version, file) = match best_wheel(files, &specifiers) {
                Ok(best) => best,
                Err(Unavailable::NoPureWheel) if bundled.contains(&name) => {
                    report.bundled.push(name);
                    continue;
                }
                Err(Unavailable::NoPureWheel) => return Err(PackageError::NativeOnly(name)),
                Err(Unavailable::NoMatch) => {
                    return Err(PackageError::NoMatchingVersion {
                        name,
                        wanted: specifiers.to_string(),
                    })
                }
            };
            if wheels.len() == MAX_PACKAGES {
                return Err(PackageError::TooMany);
            }
            let bytes = self.download(&file).await?;
            for dependency in wheel_dependencies(&file.filename, &bytes)? {
                queue.push_back((dependency, requirement.extras.clone()));
            }
            let package = Installed {
                name,
                version: version.to_string(),
            };
            wheels.push((package, file, bytes));
        }
        for (package, file, bytes) in wheels {
            unpack_wheel(&file.filename, &bytes, site, quota)?;
            report.installed.push(package);
        }
        Ok(report)
    }

    /// The project's page (its files) from the index.
    async fn project(&self, name: &PackageName) -> Result<Vec<IndexFile>, PackageError> {
        let url =
            self.base
                .join(&format!("{name}/"))
                .map_err(|e| PackageError::BadRequirement {
                    requirement: name.to_string(),
                    reason: e.to_string(),
                })?;
        let http = |source| PackageError::Http {
            what: name.to_string(),
            source,
        };
        let response = self
            .client
            .get(url)
            .header("Accept", "application/vnd.pypi.simple.v1+json")
            .send()
            .await
            .map_err(http)?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(PackageError::NotFound(name.to_string()));
        }
        let body = bounded_body(response.error_for_status().map_err(http)?, MAX_PAGE_BYTES)
            .await
            .map_err(|e| match e {
                Bounded::Http(source) => http(source),
                Bounded::TooLarge => PackageError::TooLarge(format!("the index page of {name}")),
            })?;
        let page: ProjectPage =
            serde_json::from_slice(&body).map_err(|source| PackageError::BadIndexPage {
                name: name.to_string(),
                source,
            })?;
        Ok(page.files)
    }

    /// A wheel's bytes, checked against the index's sha256.
    async fn download(&self, file: &IndexFile) -> Result<Vec<u8>, PackageError> {
        let expected = file
            .hashes
            .get("sha256")
            .ok_or_else(|| PackageError::Unverifiable(file.filename.clone()))?;
        let url = self
            .base
            .join(&file.url)
            .map_err(|e| PackageError::UnsafeWheel {
                file: file.filename.clone(),
                reason: format!("bad URL: {e}"),
            })?;
        // The index may keep its files elsewhere, but never on a weaker scheme than itself.
        if url.scheme() != "https" && url.scheme() != self.base.scheme() {
            return Err(PackageError::UnsafeWheel {
                file: file.filename.clone(),
                reason: format!("{} URL from an {} index", url.scheme(), self.base.scheme()),
            });
        }
        let http = |source| PackageError::Http {
            what: file.filename.clone(),
            source,
        };
        let response = self.client.get(url).send().await.map_err(http)?;
        let bytes = bounded_body(response.error_for_status().map_err(http)?, MAX_WHEEL_BYTES)
            .await
            .map_err(|e| match e {
                Bounded::Http(source) => http(source),
                Bounded::TooLarge => PackageError::TooLarge(file.filename.clone()),
            })?;
        let digest = Sha256::digest(&bytes);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        if !hex.eq_ignore_ascii_case(expected) {
            return Err(PackageError::HashMismatch(file.filename.clone()));
        }
        Ok(bytes)
    }
}

enum Bounded {
    Http(reqwest::Error),
    TooLarge,
}

/// A response body of at most `limit` bytes.
async fn bounded_body(mut response: reqwest::Response, limit: u64) -> Result<Vec<u8>, Bounded> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(Bounded::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Bounded::Http)? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(Bounded::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A requirement by name with optional extras, version constraints and markers; URLs and paths
/// are refused (they would make the host fetch what a tenant chose).
fn parse_requirement(text: &str) -> Result<Requirement, PackageError> {
    let bad = |reason: String| PackageError::BadRequirement {
        requirement: text.to_string(),
        reason,
    };
    let requirement = Requirement::from_str(text).map_err(|e| bad(e.message.to_string()))?;
    if matches!(
        requirement.version_or_url,
        Some(pep508_rs::VersionOrUrl::Url(_))
    ) {
        return Err(bad(
            "only package names can be installed here, not URLs".into()
        ));
    }
    Ok(requirement)
}

fn version_specifiers(requirement: &Requirement) -> VersionSpecifiers {
    match &requirement.version_or_url {
        Some(pep508_rs::VersionOrUrl::VersionSpecifier(specifiers)) => specifiers.clone(),
        _ => VersionSpecifiers::empty(),
    }
}

/// The environment markers of the sandbox's Python (`None` only if these constants stopped
/// parsing; then only unconditional dependencies apply).
fn marker_environment() -> Option<MarkerEnvironment> {
    MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
        implementation_name: "cpython",
        implementation_version: "3.13.0",
        os_name: "posix",
        platform_machine: "wasm32",
        platform_python_implementation: "CPython",
        platform_release: "",
        platform_system: "WASI",
        platform_version: "",
        python_full_version: "3.13.0",
        python_version: PYTHON_VERSION,
        sys_platform: "wasi",
    })
    .ok()
}

/// Why a project offers nothing to install.
#[derive(Debug, PartialEq, Eq)]
enum Unavailable {
    /// No wheel for any Python 3 on any platform at all (native code).
    NoPureWheel,
    /// Pure wheels exist, none in the wanted versions (or for our Python).
    NoMatch,
}

/// The newest non-yanked pure wheel that satisfies `specifiers` and supports our Python:
/// [`Unavailable::NoPureWheel`] when the project has no pure wheel at all.
fn best_wheel(
    files: Vec<IndexFile>,
    specifiers: &VersionSpecifiers,
) -> Result<(Version, IndexFile), Unavailable> {
    let python = Version::from_str(&format!("{PYTHON_VERSION}.0")).ok();
    let mut any_pure = false;
    let mut best: Option<(Version, IndexFile)> = None;
    for file in files {
        let Some(version) = pure_wheel_version(&file.filename) else {
            continue;
        };
        any_pure = true;
        if file.is_yanked() {
            continue;
        }
        if let (Some(requires), Some(python)) = (&file.requires_python, &python) {
            if VersionSpecifiers::from_str(requires).is_ok_and(|r| !r.contains(python)) {
                continue;
            }
        }
        let prerelease_wanted = specifiers.iter().any(|s| s.version().any_prerelease());
        if version.any_prerelease() && !prerelease_wanted {
            continue;
        }
        if !specifiers.contains(&version) {
            continue;
        }
        if best.as_ref().is_none_or(|(v, _)| version > *v) {
            best = Some((version, file));
        }
    }
    match best {
        Some(best) => Ok(best),
        None if any_pure => Err(Unavailable::NoMatch),
        None => Err(Unavailable::NoPureWheel),
    }
}

/// The version of a wheel that runs on any Python 3 on any platform
/// (`name-version[-build]-py3-none-any.whl`, `py2.py3` too), else `None`.
fn pure_wheel_version(filename: &str) -> Option<Version> {
    let stem = filename.strip_suffix(".whl")?;
    let parts: Vec<&str> = stem.split('-').collect();
    if parts.len() != 5 && parts.len() != 6 {
        return None;
    }
    let n = parts.len();
    let (python, abi, platform) = (parts[n - 3], parts[n - 2], parts[n - 1]);
    let py3 = python.split('.').any(|t| t == "py3" || t == "py30");
    if !py3 || abi != "none" || platform != "any" {
        return None;
    }
    Version::from_str(parts[1]).ok()
}

/// The `Requires-Dist` lines of a wheel's metadata.
fn wheel_dependencies(filename: &str, bytes: &[u8]) -> Result<Vec<Requirement>, PackageError> {
    let unsafe_wheel = |reason: String| PackageError::UnsafeWheel {
        file: filename.to_string(),
        reason,
    };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| unsafe_wheel(e.to_string()))?;
    let metadata_name = archive
        .file_names()
        .filter_map(Result::ok)
        .find(|n| n.ends_with(".dist-info/METADATA") && n.matches('/').count() == 1)
        .map(|n| n.into_owned())
        .ok_or_else(|| unsafe_wheel("no .dist-info/METADATA".into()))?;
    let mut metadata = String::new();
    archive
        .by_name(&metadata_name)
        .map_err(|e| unsafe_wheel(e.to_string()))?
        .take(4 << 20)
        .read_to_string(&mut metadata)
        .map_err(|e| unsafe_wheel(e.to_string()))?;
    let mut dependencies = Vec::new();
    for line in metadata.lines() {
        if line.is_empty() {
            break; // the headers end at the first blank line; the description follows
        }
        if let Some(value) = line.strip_prefix("Requires-Dist:") {
            // A dependency that does not parse is one the marker environment could not use
            // either; pip would refuse the wheel, and so do we.
            let requirement = Requirement::from_str(value.trim()).map_err(|e| {
                unsafe_wheel(format!("Requires-Dist '{}': {}", value.trim(), e.message))
            })?;
            dependencies.push(requirement);
        }
    }
    Ok(dependencies)
}

/// Unpacks a verified wheel into `site`: regular files only, every path inside `site`, sizes
/// and counts bounded, bytes charged to the quota first.
fn unpack_wheel(
    filename: &str,
    bytes: &[u8],
    site: &Dir,
    quota: Option<&Arc<DiskQuota>>,
) -> Result<(), PackageError> {
    let unsafe_wheel = |reason: String| PackageError::UnsafeWheel {
        file: filename.to_string(),
        reason,
    };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| unsafe_wheel(e.to_string()))?;
    if archive.len() > MAX_ENTRIES {
        return Err(unsafe_wheel(format!("more than {MAX_ENTRIES} entries")));
    }
    // Check every entry before writing any.
    let mut total: u64 = 0;
    let mut plan: Vec<(usize, PathBuf)> = Vec::new();
    for i in 0..archive.len() {
        let entry = archive
            .by_index(i)
            .map_err(|e| unsafe_wheel(e.to_string()))?;
        let shown = entry
            .name()
            .map_or_else(|_| format!("entry {i}"), |n| n.into_owned());
        if entry.is_symlink() {
            return Err(unsafe_wheel(format!("{shown} is a link")));
        }
        let Some(relative) = entry.enclosed_name() else {
            return Err(unsafe_wheel(format!("{shown} leaves the wheel")));
        };
        // `name.data/purelib` and `platlib` go to site-packages; scripts and headers are not
        // installed (nothing would run them).
        let relative = match data_dir_target(&relative) {
            Some(DataTarget::Site(path)) => path,
            Some(DataTarget::Skip) => continue,
            None => relative,
        };
        if entry.is_dir() {
            continue;
        }
        total = total.saturating_add(entry.size());
        if total > MAX_UNPACKED_BYTES {
            return Err(unsafe_wheel("unpacks to more than 256 MiB".into()));
        }
        plan.push((i, relative));
    }
    if let Some(quota) = quota {
        if !quota.try_charge(total) {
            return Err(PackageError::Quota);
        }
    }
    for (i, relative) in plan {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| unsafe_wheel(e.to_string()))?;
        if let Some(parent) = relative.parent().filter(|p| !p.as_os_str().is_empty()) {
            site.create_dir_all(parent).map_err(io_at(parent))?;
        }
        let mut file = site.create(&relative).map_err(io_at(&relative))?;
        let mut limited = (&mut entry).take(MAX_UNPACKED_BYTES);
        std::io::copy(&mut limited, &mut file).map_err(io_at(&relative))?;
    }
    Ok(())
}

/// An I/O error at a path inside the site folder.
fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> PackageError {
    let path = path.to_path_buf();
    move |source| PackageError::Io { path, source }
}

enum DataTarget {
    Site(PathBuf),
    Skip,
}

/// Where an entry under `NAME.data/` goes, if it is under one.
fn data_dir_target(relative: &Path) -> Option<DataTarget> {
    let mut components = relative.components();
    let first = components.next()?.as_os_str().to_str()?;
    if !first.ends_with(".data") {
        return None;
    }
    let kind = components.next()?.as_os_str().to_str()?;
    let rest: PathBuf = components.collect();
    Some(match kind {
        "purelib" | "platlib" if !rest.as_os_str().is_empty() => DataTarget::Site(rest),
        _ => DataTarget::Skip,
    })
}

/// Packages installed in `site`: normalised name → (version, `.dist-info` folder).
fn dist_infos(site: &Dir) -> BTreeMap<String, (String, PathBuf)> {
    let mut found = BTreeMap::new();
    let Ok(entries) = site.entries() else {
        return found;
    };
    for entry in entries.flatten() {
        let folder = entry.file_name();
        let Some(stem) = folder.to_str().and_then(|n| n.strip_suffix(".dist-info")) else {
            continue;
        };
        if let Some((project, version)) = stem.rsplit_once('-') {
            if let Ok(project) = PackageName::from_str(project) {
                found.insert(project.to_string(), (version.to_string(), folder.into()));
            }
        }
    }
    found
}

/// Packages installed in `site`: normalised name → version.
pub fn installed_in(site: &Dir) -> BTreeMap<String, String> {
    dist_infos(site)
        .into_iter()
        .map(|(name, (version, _))| (name, version))
        .collect()
}

/// Removes an installed package: the files its `RECORD` lists (plain relative paths only) and
/// its `.dist-info` folder. `None` when it is not installed.
pub fn uninstall(site: &Dir, name: &str) -> Result<Option<Installed>, PackageError> {
    let Ok(name) = PackageName::from_str(name) else {
        return Ok(None);
    };
    let Some((version, info)) = dist_infos(site).remove(name.as_ref()) else {
        return Ok(None);
    };
    let record = site.read_to_string(info.join("RECORD")).unwrap_or_default();
    let mut parents = Vec::new();
    for line in record.lines() {
        let path = Path::new(line.split(',').next().unwrap_or_default());
        let plain = path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain || path.as_os_str().is_empty() {
            continue;
        }
        let _ = site.remove_file(path);
        // Python's bytecode of a removed module (`__pycache__/mod.cpython-313.pyc`) goes too.
        if let (Some(stem), Some(parent)) =
            (path.file_stem().and_then(|s| s.to_str()), path.parent())
        {
            let cache = parent.join("__pycache__");
            if path.extension().is_some_and(|e| e == "py") {
                if let Ok(entries) = site.read_dir(&cache) {
                    for entry in entries.flatten() {
                        let name = entry.file_name();
                        let name = name.to_string_lossy();
                        if name.starts_with(&format!("{stem}.")) && name.ends_with(".pyc") {
                            let _ = site.remove_file(cache.join(&*name));
                        }
                    }
                }
                parents.push(cache);
            }
        }
        parents.extend(
            path.ancestors()
                .skip(1)
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf),
        );
    }
    // Folders the package emptied go too (deepest first); shared ones stay.
    parents.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    parents.dedup();
    for parent in parents {
        let _ = site.remove_dir(parent);
    }
    if site.exists(&info) {
        site.remove_dir_all(&info).map_err(io_at(&info))?;
    }
    Ok(Some(Installed {
        name: name.to_string(),
        version,
    }))
}

/// The normalised names of the packages a runtime's library archive carries (its
/// `.dist-info` folders), e.g. the data runtime's numpy and pandas.
pub fn bundled_in_archive(archive: &Path) -> Vec<String> {
    let Ok(file) = std::fs::File::open(archive) else {
        return Vec::new();
    };
    let Ok(zip) = zip::ZipArchive::new(file) else {
        return Vec::new();
    };
    let mut names: Vec<String> = zip
        .file_names()
        .filter_map(Result::ok)
        .filter_map(|n| {
            let folder = n.split('/').find(|part| part.ends_with(".dist-info"))?;
            let (project, _) = folder.strip_suffix(".dist-info")?.rsplit_once('-')?;
            PackageName::from_str(project).ok().map(|p| p.to_string())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wheels_for_any_python3_and_platform_are_pure() {
        let v = |f: &str| pure_wheel_version(f).map(|v| v.to_string());
        assert_eq!(
            v("tabulate-0.9.0-py3-none-any.whl").as_deref(),
            Some("0.9.0")
        );
        assert_eq!(
            v("six-1.16.0-py2.py3-none-any.whl").as_deref(),
            Some("1.16.0")
        );
        assert_eq!(v("x-1.0-1-py3-none-any.whl").as_deref(), Some("1.0"));
        assert_eq!(v("numpy-2.0.0-cp313-cp313-manylinux_2_17_x86_64.whl"), None);
        assert_eq!(v("old-1.0-py2-none-any.whl"), None);
        assert_eq!(v("pkg-1.0.tar.gz"), None);
    }

    #[test]
    fn urls_and_bad_names_are_not_requirements() {
        assert!(parse_requirement("requests>=2,<3").is_ok());
        assert!(parse_requirement("tabulate[widechars]").is_ok());
        assert!(matches!(
            parse_requirement("evil @ https://example.invalid/x.whl"),
            Err(PackageError::BadRequirement { .. })
        ));
        assert!(parse_requirement("../../etc").is_err());
    }

    #[test]
    fn the_newest_matching_version_wins_and_native_only_is_named() {
        let file = |name: &str| IndexFile {
            filename: name.into(),
            url: name.into(),
            hashes: BTreeMap::new(),
            requires_python: None,
            yanked: serde_json::Value::Bool(false),
        };
        let files = || {
            vec![
                file("p-1.0-py3-none-any.whl"),
                file("p-2.0-py3-none-any.whl"),
                file("p-3.0b1-py3-none-any.whl"),
                file("p-2.5-cp313-cp313-linux_x86_64.whl"),
            ]
        };
        let any = VersionSpecifiers::empty();
        assert_eq!(
            best_wheel(files(), &any)
                .map(|b| b.0.to_string())
                .ok()
                .as_deref(),
            Some("2.0")
        );
        let older = VersionSpecifiers::from_str("<2").expect("specifiers");
        assert_eq!(
            best_wheel(files(), &older)
                .map(|b| b.0.to_string())
                .ok()
                .as_deref(),
            Some("1.0")
        );
        assert_eq!(
            best_wheel(vec![file("n-1.0-cp313-cp313-linux_x86_64.whl")], &any).err(),
            Some(Unavailable::NoPureWheel)
        );
        let newer = VersionSpecifiers::from_str(">4").expect("specifiers");
        assert_eq!(
            best_wheel(files(), &newer).err(),
            Some(Unavailable::NoMatch)
        );
    }
}
