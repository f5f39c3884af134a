//! Kernels owned by sandboxes: at most one live interpreter per language per sandbox, started on
//! first use, kept between cells, hibernated to the sandbox's directory and restored on demand.
//!
//! A kernel's id is its language (`python`, `javascript`): unique within its sandbox, stable
//! across restarts. Cells of one kernel run one at a time (a per-kernel lock); kernels of
//! different sandboxes share nothing but the host budget.
//!
//! Durability ([`Durability::EachCell`], the default): after every cell that leaves the kernel
//! alive, its image is written atomically (a temporary file renamed over the old one) before the
//! cell's result is returned, so a `kill -9` after an answered cell loses nothing; pause, server
//! shutdown and the live-kernel cap then only drop the instance. [`Durability::OnHibernate`]
//! writes images only on pause, shutdown and eviction: cells are faster (no image per cell) and
//! a crash loses the state since the last hibernation. A missing, corrupt or foreign image gives a fresh kernel and a
//! notice in the next cell's stderr, never an error.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::engine::{ExecResult, Kernel};
use crate::exec::{ExecError, Executor, RunRequest};
use crate::runtimes::Language;
use crate::sandbox::SandboxFs;

/// Where a kernel is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelState {
    /// Live and waiting for a cell.
    Idle,
    /// Running a cell.
    Busy,
    /// Only on disk; the next cell restores it.
    Hibernated,
}

/// What `GET /jupyter/sessions` reports about one kernel.
#[derive(Clone, Debug)]
pub struct KernelInfo {
    /// The kernel's id (its language).
    pub id: String,
    /// Its language.
    pub language: String,
    /// Live, busy or on disk.
    pub state: KernelState,
    /// When it was started (restarts reset it).
    pub created_at: Option<DateTime<Utc>>,
    /// When its last cell ended.
    pub last_used: Option<DateTime<Utc>>,
    /// Cells run since it was started (in this server process).
    pub execution_count: u64,
    /// Bytes of linear memory (live), or of its image on disk (hibernated).
    pub memory_bytes: u64,
}

/// The names the official Python client's docs read (`kernel_id`, `execution_state`,
/// `last_activity`) beside ours, so both work.
impl Serialize for KernelInfo {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(10))?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("kernel_id", &self.id)?;
        map.serialize_entry("language", &self.language)?;
        map.serialize_entry("state", &self.state)?;
        map.serialize_entry("execution_state", &self.state)?;
        map.serialize_entry("created_at", &self.created_at)?;
        map.serialize_entry("last_used", &self.last_used)?;
        map.serialize_entry("last_activity", &self.last_used)?;
        map.serialize_entry("execution_count", &self.execution_count)?;
        map.serialize_entry("memory_bytes", &self.memory_bytes)?;
        map.end()
    }
}

/// The result of one cell.
#[derive(Debug)]
pub struct CellReply {
    /// Output, status, rich outputs.
    pub result: ExecResult,
    /// The kernel was started afresh for this cell although it had state before (a lost or
    /// unusable image, or a cell that killed it).
    pub restarted: bool,
}

/// One kernel slot: live or not, plus what is reported about it.
struct Slot {
    language: Language,
    live: Option<Kernel>,
    image: PathBuf,
    created_at: Option<DateTime<Utc>>,
    last_used: Option<DateTime<Utc>>,
    /// For LRU hibernation.
    touched: Instant,
    execution_count: u64,
    memory_bytes: u64,
    /// A notice for the next cell (e.g. the image could not be restored).
    notice: Option<String>,
    /// The live kernel changed since its image was written.
    dirty: bool,
    /// Bytes of the image file as this process last wrote it, and of its first (whole) part:
    /// appended records are compacted into a whole image when they outgrow it.
    image_bytes: u64,
    base_bytes: u64,
    /// That image file, kept open at its end for the next record (opening it by path cost as
    /// much as writing a record).
    appender: Option<std::fs::File>,
}

type SlotRef = Arc<tokio::sync::Mutex<Slot>>;

impl Slot {
    /// Drops the live instance, and the image file kept open for it: a kernel without an
    /// instance holds no descriptor, and the next one starts its image afresh.
    fn drop_instance(&mut self) {
        self.live = None;
        self.appender = None;
    }
}

/// When kernel images are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// After every cell, before its result is returned.
    EachCell,
    /// Only when a kernel is hibernated (pause, shutdown, eviction).
    OnHibernate,
}

/// Every sandbox's kernels, with caps on how many are live at once and on their memory.
pub struct Kernels {
    slots: Mutex<HashMap<(String, Language), SlotRef>>,
    max_live: usize,
    max_bytes: u64,
    durability: Durability,
}

/// What [`Kernels::survey`] found.
#[derive(Default)]
struct Survey {
    live: usize,
    bytes: u64,
    oldest_idle: Option<SlotRef>,
}

const IMAGE_SUFFIX: &str = "kernel";
/// Write buffer of image files: small enough to come from the heap, not a fresh mapping whose
/// unmapping would interrupt every other thread of the server (measured in the server: a
/// cell's record took 1.6 ms with a 1 MiB buffer, 0.7 ms with this one).
const IMAGE_BUFFER: usize = 64 << 10;

/// The languages that have kernels.
pub const KERNEL_LANGUAGES: [Language; 3] =
    [Language::Python, Language::JavaScript, Language::DataPython];

impl Kernels {
    /// Kernels with at most `max_live` live at once holding at most `max_bytes` of linear
    /// memory together; beyond either the least recently used idle ones are hibernated (a
    /// kernel alone over `max_bytes` stays live).
    pub fn new(max_live: usize, max_bytes: u64, durability: Durability) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            max_live: max_live.max(1),
            max_bytes,
            durability,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Language), SlotRef>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn slot(&self, sandbox: &str, language: Language, state_dir: &Path) -> SlotRef {
        self.lock()
            .entry((sandbox.to_string(), language))
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Slot {
                    language,
                    live: None,
                    image: image_path(state_dir, language),
                    created_at: None,
                    last_used: None,
                    touched: Instant::now(),
                    execution_count: 0,
                    memory_bytes: 0,
                    notice: None,
                    dirty: false,
                    image_bytes: 0,
                    base_bytes: 0,
                    appender: None,
                }))
            })
            .clone()
    }

    /// Runs `request` as a cell of the sandbox's kernel for its language, starting or restoring
    /// the kernel first if needed. `state_dir` is where the sandbox's kernel images live.
    pub async fn run_cell(
        &self,
        executor: &Executor,
        sandbox: &str,
        state_dir: &Path,
        fs: &SandboxFs,
        base_env: &BTreeMap<String, String>,
        request: RunRequest,
    ) -> Result<CellReply, ExecError> {
        let language = request.language;
        if !KERNEL_LANGUAGES.contains(&language) {
            return Err(ExecError::NoKernel(language));
        }
        let slot_ref = self.slot(sandbox, language, state_dir);
        let mut slot = slot_ref.lock().await;
        let mut restarted = slot.notice.is_some();
        if slot.live.is_none() {
            self.make_room(&slot_ref, 0).await;
            restarted |= self.bring_up(executor, fs, &mut slot).await?;
        }
        let Some(kernel) = slot.live.as_mut() else {
            return Err(ExecError::NoKernel(language));
        };
        let outcome = executor.run_cell(kernel, fs, base_env, request).await?;
        let mut result = outcome.result;
        if let Some(notice) = slot.notice.take() {
            result.stderr.insert_str(0, &notice);
        }
        slot.last_used = Some(Utc::now());
        slot.touched = Instant::now();
        slot.execution_count += 1;
        if outcome.alive {
            slot.dirty = true;
            let before = slot.memory_bytes;
            if let Some(kernel) = slot.live.as_ref() {
                slot.memory_bytes = kernel.memory_bytes();
            }
            if slot.memory_bytes > before {
                self.make_room(&slot_ref, slot.memory_bytes).await;
            }
            if self.durability == Durability::EachCell {
                if let Err(e) = checkpoint(&mut slot) {
                    tracing::warn!(error = %e, "writing a kernel image failed; the kernel stays live");
                }
            }
        } else {
            // The state is gone: the next cell starts a fresh kernel (and is told so).
            slot.drop_instance();
            let _ = std::fs::remove_file(&slot.image);
            slot.notice = Some(
                "wasmbox: this kernel was restarted after its previous cell was killed; earlier \
                 variables are gone\n"
                    .into(),
            );
        }
        Ok(CellReply { result, restarted })
    }

    /// Starts or restores the slot's kernel; -> whether state was lost on the way.
    async fn bring_up(
        &self,
        executor: &Executor,
        fs: &SandboxFs,
        slot: &mut Slot,
    ) -> Result<bool, ExecError> {
        let language = slot.language;
        let mut lost = false;
        match std::fs::read(&slot.image) {
            Ok(bytes) => match executor.restore_kernel(fs, language, &bytes).await? {
                Ok(kernel) => {
                    slot.memory_bytes = kernel.memory_bytes();
                    slot.live = Some(kernel);
                    slot.image_bytes = 0;
                    slot.dirty = false;
                    slot.created_at
                        .get_or_insert_with(|| file_time(&slot.image));
                    return Ok(false);
                }
                Err(e) => {
                    tracing::warn!(image = %slot.image.display(), error = %e, "kernel image not restored");
                    let _ = std::fs::remove_file(&slot.image);
                    slot.notice = Some(format!(
                        "wasmbox: the kernel was restarted: {e}; earlier variables are gone\n"
                    ));
                    lost = true;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(image = %slot.image.display(), error = %e, "kernel image unreadable");
                slot.notice = Some(
                    "wasmbox: the kernel was restarted: its image could not be read; earlier \
                     variables are gone\n"
                        .into(),
                );
                lost = true;
            }
        }
        let kernel = executor.start_kernel(fs, language).await?;
        slot.memory_bytes = kernel.memory_bytes();
        slot.live = Some(kernel);
        slot.image_bytes = 0;
        slot.dirty = false;
        slot.created_at = Some(Utc::now());
        slot.execution_count = 0;
        Ok(lost)
    }

    /// Hibernates least-recently-used idle kernels until `keep` (holding `own_bytes`, or about
    /// to start) fits under the caps on live kernels and their bytes.
    async fn make_room(&self, keep: &SlotRef, own_bytes: u64) {
        loop {
            let others = self.survey(Some(keep));
            if others.live < self.max_live && others.bytes + own_bytes <= self.max_bytes {
                return;
            }
            let Some(victim) = others.oldest_idle else {
                return;
            };
            if !hibernate(&mut *victim.lock().await) {
                return; // its image could not be written: it stays live
            }
        }
    }

    /// Hibernates the least recently used idle kernel, giving its memory and pool slot back
    /// to the host (called under memory pressure); -> whether there was one.
    pub async fn relieve(&self) -> bool {
        let Some(victim) = self.survey(None).oldest_idle else {
            return false;
        };
        let mut slot = victim.lock().await;
        hibernate(&mut slot)
    }

    /// The live kernels but `skip`: how many, their bytes, and the least recently used idle one.
    fn survey(&self, skip: Option<&SlotRef>) -> Survey {
        let slots: Vec<SlotRef> = self.lock().values().cloned().collect();
        let mut survey = Survey::default();
        let mut oldest: Option<Instant> = None;
        for slot_ref in &slots {
            if skip.is_some_and(|skip| Arc::ptr_eq(slot_ref, skip)) {
                continue;
            }
            let Ok(slot) = slot_ref.try_lock() else {
                survey.live += 1; // busy: live, and not ours to hibernate
                continue;
            };
            if slot.live.is_some() {
                survey.live += 1;
                survey.bytes += slot.memory_bytes;
                if oldest.is_none_or(|t| slot.touched < t) {
                    oldest = Some(slot.touched);
                    survey.oldest_idle = Some(slot_ref.clone());
                }
            }
        }
        survey
    }

    /// Hibernates every kernel of `sandbox` (pause): their images are on disk, the instances go.
    pub async fn hibernate_sandbox(&self, sandbox: &str) {
        for slot_ref in self.of_sandbox(sandbox) {
            hibernate(&mut *slot_ref.lock().await);
        }
    }

    /// Hibernates kernels whose last cell ended more than `idle` ago; -> how many.
    pub async fn hibernate_idle(&self, idle: std::time::Duration) -> usize {
        let slots: Vec<SlotRef> = self.lock().values().cloned().collect();
        let mut hibernated = 0;
        for slot_ref in slots {
            // A busy kernel is not idle.
            let Ok(mut slot) = slot_ref.try_lock() else {
                continue;
            };
            if slot.live.is_some() && slot.touched.elapsed() >= idle {
                hibernated += usize::from(hibernate(&mut slot));
            }
        }
        hibernated
    }

    /// Hibernates every kernel (graceful shutdown).
    pub async fn hibernate_all(&self) {
        let slots: Vec<SlotRef> = self.lock().values().cloned().collect();
        for slot_ref in slots {
            hibernate(&mut *slot_ref.lock().await);
        }
    }

    /// Forgets every kernel of `sandbox` (deleted): its images go with its directory.
    pub fn remove_sandbox(&self, sandbox: &str) {
        self.lock().retain(|(owner, _), _| owner != sandbox);
    }

    /// How many kernels are live (in memory), server-wide; a kernel running a cell counts.
    pub fn live(&self) -> usize {
        let slots: Vec<SlotRef> = self.lock().values().cloned().collect();
        slots
            .iter()
            .filter(|slot| slot.try_lock().map_or(true, |slot| slot.live.is_some()))
            .count()
    }

    fn of_sandbox(&self, sandbox: &str) -> Vec<SlotRef> {
        self.lock()
            .iter()
            .filter(|((owner, _), _)| owner == sandbox)
            .map(|(_, slot)| slot.clone())
            .collect()
    }

    /// The sandbox's kernels: live ones and those only on disk.
    pub fn list(&self, sandbox: &str, state_dir: &Path) -> Vec<KernelInfo> {
        let mut infos = Vec::new();
        for language in KERNEL_LANGUAGES {
            let slot_ref = self.lock().get(&(sandbox.to_string(), language)).cloned();
            let on_disk = std::fs::metadata(image_path(state_dir, language)).ok();
            // What is known without a slot: busy (its lock is held), or only the image.
            let mut info = KernelInfo {
                id: language.name().into(),
                language: language.name().into(),
                state: KernelState::Hibernated,
                created_at: None,
                last_used: None,
                execution_count: 0,
                memory_bytes: 0,
            };
            match slot_ref.as_ref().map(|slot| slot.try_lock()) {
                Some(Err(_)) => info.state = KernelState::Busy,
                Some(Ok(slot)) if slot.live.is_some() || on_disk.is_some() => {
                    info.created_at = slot.created_at;
                    info.last_used = slot.last_used;
                    info.execution_count = slot.execution_count;
                    if slot.live.is_some() {
                        info.state = KernelState::Idle;
                        info.memory_bytes = slot.memory_bytes;
                    } else {
                        info.memory_bytes = on_disk.as_ref().map_or(0, |m| m.len());
                    }
                }
                None if on_disk.is_some() => {
                    let meta = on_disk.as_ref();
                    info.last_used = meta
                        .and_then(|m| m.modified().ok())
                        .map(DateTime::<Utc>::from);
                    info.memory_bytes = meta.map_or(0, |m| m.len());
                }
                _ => continue,
            }
            infos.push(info);
        }
        infos
    }

    /// Drops kernel `language` of `sandbox` and its image: its next cell starts afresh.
    /// -> whether there was such a kernel.
    pub async fn restart(&self, sandbox: &str, state_dir: &Path, language: Language) -> bool {
        let image = image_path(state_dir, language);
        let existed_on_disk = image.exists();
        let slot_ref = self.lock().get(&(sandbox.to_string(), language)).cloned();
        let mut existed = existed_on_disk;
        if let Some(slot_ref) = slot_ref {
            let mut slot = slot_ref.lock().await;
            existed |= slot.live.is_some();
            slot.drop_instance();
            slot.dirty = false;
            slot.created_at = None;
            slot.execution_count = 0;
            slot.notice = None;
        }
        let _ = std::fs::remove_file(&image);
        existed
    }

    /// Like [`Self::restart`], and forgets the slot.
    pub async fn delete(&self, sandbox: &str, state_dir: &Path, language: Language) -> bool {
        let existed = self.restart(sandbox, state_dir, language).await;
        self.lock().remove(&(sandbox.to_string(), language));
        existed
    }
}

fn image_path(state_dir: &Path, language: Language) -> PathBuf {
    state_dir.join(format!("{}.{IMAGE_SUFFIX}", language.name()))
}

fn file_time(path: &Path) -> DateTime<Utc> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(DateTime::<Utc>::from)
        .unwrap_or_else(|_| Utc::now())
}

/// Writes the live kernel's image if it changed since the last one: a record of the changed
/// chunks appended to the image this process wrote, or a whole new image (written beside it and
/// renamed over it) the first time and when the appended records outgrow the whole part.
fn checkpoint(slot: &mut Slot) -> std::io::Result<()> {
    if !slot.dirty {
        return Ok(());
    }
    let Some(kernel) = slot.live.as_mut() else {
        return Ok(());
    };
    let compact = slot.image_bytes > 2 * slot.base_bytes + (4 << 20);
    if slot.image_bytes > 0 && !compact {
        let file = match slot.appender.take() {
            Some(file) => Ok(file),
            None => std::fs::OpenOptions::new().append(true).open(&slot.image),
        };
        let appended = file.and_then(|file| {
            let mut out = std::io::BufWriter::with_capacity(IMAGE_BUFFER, &file);
            let written = kernel
                .write_changes(&mut out)
                .map_err(std::io::Error::other)?;
            out.flush()?;
            drop(out);
            Ok((written, file))
        });
        match appended {
            Ok((Some(written), file)) => {
                slot.image_bytes += written;
                slot.appender = Some(file);
                slot.dirty = false;
                return Ok(());
            }
            Ok((None, _)) => {}
            Err(e) => {
                // A partial record must not stay in front of later ones: rewrite it whole.
                tracing::warn!(error = %e, "appending to a kernel image failed; rewriting it");
                kernel.forget_image();
            }
        }
    }
    let dir = slot
        .image
        .parent()
        .ok_or_else(|| std::io::Error::other("kernel image path has no parent"))?;
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    let written = {
        let mut out = std::io::BufWriter::with_capacity(IMAGE_BUFFER, file.as_file_mut());
        let written = match kernel.write_image(&mut out) {
            Ok(written) => written,
            Err(crate::engine::ImageError::Unsupported) => return Ok(()),
            Err(e) => return Err(std::io::Error::other(e)),
        };
        out.flush()?;
        written
    };
    // The file stays open at its end: the next record is appended through it.
    slot.appender = Some(file.persist(&slot.image).map_err(|e| e.error)?);
    slot.image_bytes = written;
    slot.base_bytes = written;
    slot.dirty = false;
    Ok(())
}

/// Makes sure the slot's state is on disk, then drops its instance; -> whether the slot holds
/// no instance now (false: its image could not be written, and it stays live).
fn hibernate(slot: &mut Slot) -> bool {
    if slot.live.is_none() {
        return true;
    }
    if let Err(e) = checkpoint(slot) {
        tracing::warn!(error = %e, "hibernating a kernel failed; it stays live");
        return false;
    }
    if slot.image.exists() {
        slot.drop_instance();
    }
    slot.live.is_none()
}
