//! `tar` (create `c`, extract `x`, list `t`; `f`, `z`, `C`, `v`, `O`, `--strip-components`,
//! `--exclude`) on the `tar` crate, and `gzip`/`gunzip`/`zcat` on `flate2` (pure Rust).
//!
//! Like GNU tar, member names lose a leading `/` (and leading `../`) when archived and when
//! extracted, and a member whose name still contains `..` is not extracted (`Member name
//! contains '..'`, status 2): nothing is ever written outside the target directory, whatever
//! the archive says. Links whose target leaves the tree are refused the same way. Permission
//! bits go through the shell's mode store (`crate::modes`) both ways; the store itself is never
//! archived.

use flate2::read::{GzEncoder as GzReadEncoder, MultiGzDecoder};
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

#[derive(Default)]
struct Opts {
    mode: Option<char>,
    file: Option<String>,
    gzip: bool,
    dir: Option<String>,
    verbose: bool,
    to_stdout: bool,
    strip: usize,
    exclude: Vec<String>,
    keep_old: bool,
    members: Vec<String>,
}

fn usage(msg: &str) -> i32 {
    eprintln!("tar: {msg}");
    eprintln!("Try 'tar --help' for more information.");
    2
}

pub fn tar(args: &[String]) -> i32 {
    let mut o = Opts::default();
    let mut pending: Vec<char> = Vec::new(); // option letters still owed an argument
    let mut i = 0;
    let mut only_operands = false;
    // a first word without '-' is a bundle of letters (old style: `tar czf out.tgz dir`)
    let mut words: Vec<String> = Vec::new();
    for (k, a) in args.iter().enumerate() {
        if k == 0 && !a.starts_with('-') && !a.is_empty() {
            words.push(format!("-{a}"));
        } else {
            words.push(a.clone());
        }
    }
    while i < words.len() {
        let a = words[i].clone();
        i += 1;
        if let Some(c) = pending.first().copied() {
            if !a.starts_with('-') || a == "-" {
                pending.remove(0);
                if let Err(st) = set_arg(&mut o, c, a) {
                    return st;
                }
                continue;
            }
        }
        if only_operands || a == "-" || !a.starts_with('-') {
            o.members.push(a);
            continue;
        }
        if a == "--" {
            only_operands = true;
            continue;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (k, v) = match long.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (long, None),
            };
            let mut val = |c: char| -> Result<(), i32> {
                let v = match v.clone() {
                    Some(v) => v,
                    None if i < words.len() => {
                        i += 1;
                        words[i - 1].clone()
                    }
                    None => return Err(usage(&format!("option '--{k}' requires an argument"))),
                };
                set_arg(&mut o, c, v)
            };
            let r = match k {
                "create" => set_mode(&mut o, 'c'),
                "extract" | "get" => set_mode(&mut o, 'x'),
                "list" => set_mode(&mut o, 't'),
                "file" => val('f'),
                "directory" => val('C'),
                "strip-components" => val('s'),
                "exclude" => val('e'),
                "gzip" | "gunzip" | "ungzip" => {
                    o.gzip = true;
                    Ok(())
                }
                "verbose" => {
                    o.verbose = true;
                    Ok(())
                }
                "to-stdout" => {
                    o.to_stdout = true;
                    Ok(())
                }
                "keep-old-files" | "skip-old-files" => {
                    o.keep_old = true;
                    Ok(())
                }
                "no-same-owner"
                | "no-same-permissions"
                | "same-owner"
                | "preserve-permissions"
                | "same-permissions"
                | "numeric-owner"
                | "overwrite"
                | "recursive"
                | "auto-compress"
                | "touch"
                | "sort=name" => Ok(()),
                _ if k.starts_with("owner") || k.starts_with("group") || k.starts_with("mtime") => {
                    Ok(())
                }
                "bzip2" | "xz" | "lzma" | "zstd" => {
                    eprintln!("tar: --{k}: only gzip compression is supported here");
                    Err(2)
                }
                _ => Err(usage(&format!("unrecognized option '--{k}'"))),
            };
            if let Err(st) = r {
                return st;
            }
            continue;
        }
        let letters: Vec<char> = a[1..].chars().collect();
        for (n, &c) in letters.iter().enumerate() {
            let r = match c {
                'c' | 'x' | 't' => set_mode(&mut o, c),
                'z' => {
                    o.gzip = true;
                    Ok(())
                }
                'v' => {
                    o.verbose = true;
                    Ok(())
                }
                'O' => {
                    o.to_stdout = true;
                    Ok(())
                }
                'k' => {
                    o.keep_old = true;
                    Ok(())
                }
                'p' | 'o' | 'm' | 'h' | 'P' | 'a' => Ok(()),
                'j' | 'J' => {
                    eprintln!("tar: -{c}: only gzip compression is supported here");
                    Err(2)
                }
                'f' | 'C' => {
                    // dash style with the value attached (-fFILE, -Cdir) or next; old style: next
                    let rest: String = letters[n + 1..].iter().collect();
                    if !rest.is_empty() && k_is_dash_style(args, &a) {
                        if let Err(st) = set_arg(&mut o, c, rest) {
                            return st;
                        }
                        break;
                    }
                    pending.push(c);
                    Ok(())
                }
                _ => Err(usage(&format!("invalid option -- '{c}'"))),
            };
            if let Err(st) = r {
                return st;
            }
        }
    }
    if let Some(c) = pending.first() {
        return usage(&format!("option requires an argument -- '{c}'"));
    }
    let st = match o.mode {
        Some('c') => create(&o),
        Some(m) => read_archive(&o, m == 'x'),
        None => {
            return usage(
                "You must specify one of the '-Acdtrux', '--delete' or '--test-label' options",
            )
        }
    };
    let _ = io::stdout().flush();
    st
}

/// Whether `word` was written with a dash (not the old-style first bundle).
fn k_is_dash_style(args: &[String], word: &str) -> bool {
    args.first().map(|f| format!("-{f}")) != Some(word.to_string()) || args[0].starts_with('-')
}

fn set_mode(o: &mut Opts, c: char) -> Result<(), i32> {
    if o.mode.is_some_and(|m| m != c) {
        return Err(usage(
            "You may not specify more than one '-Acdtrux', '--delete' or  '--test-label' option",
        ));
    }
    o.mode = Some(c);
    Ok(())
}

fn set_arg(o: &mut Opts, c: char, v: String) -> Result<(), i32> {
    match c {
        'f' => o.file = Some(v),
        'C' => o.dir = Some(v),
        's' => {
            o.strip = v
                .parse()
                .map_err(|_| usage(&format!("{v}: Invalid number of elements")))?
        }
        _ => o.exclude.push(v),
    }
    Ok(())
}

fn excluded(o: &Opts, name: &str) -> bool {
    let base = name
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(name);
    o.exclude.iter().any(|p| {
        let pat: Vec<(char, bool)> = p.chars().map(|c| (c, false)).collect();
        let m = |s: &str| crate::pattern::pat_match(&pat, &s.chars().collect::<Vec<_>>());
        m(base) || m(name.trim_end_matches('/'))
    })
}

/// A member name made safe: leading `/` and `../` removed (said once on stderr), `.`
/// components dropped; None if a `..` remains.
fn clean_name(name: &str, warned: &mut [bool; 2]) -> Option<String> {
    let mut s = name;
    if s.starts_with('/') {
        s = s.trim_start_matches('/');
        if !warned[0] {
            eprintln!("tar: Removing leading `/' from member names");
            warned[0] = true;
        }
    }
    while let Some(r) = s.strip_prefix("../") {
        s = r;
        if !warned[1] {
            eprintln!("tar: Removing leading `../' from member names");
            warned[1] = true;
        }
    }
    if Path::new(s).components().any(|c| c == Component::ParentDir) {
        return None;
    }
    // `t//a` is `t/a`
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    Some(out)
}

// ---------------------------------------------------------------- create

fn create(o: &Opts) -> i32 {
    if o.members.is_empty() {
        eprintln!("tar: Cowardly refusing to create an empty archive");
        return usage("");
    }
    let to_stdout = o.file.as_deref().is_none_or(|f| f == "-");
    let out: Box<dyn Write> = if to_stdout {
        Box::new(io::stdout().lock())
    } else {
        let f = o.file.as_deref().unwrap_or("-");
        match std::fs::File::create(f) {
            Ok(f) => Box::new(io::BufWriter::new(f)),
            Err(e) => {
                eprintln!("tar: {f}: Cannot open: {}", crate::exec::io_err_msg(&e));
                eprintln!("tar: Error is not recoverable: exiting now");
                return 2;
            }
        }
    };
    let archive_id = o
        .file
        .as_deref()
        .filter(|f| *f != "-")
        .and_then(|f| crate::modes::file_id(Path::new(f)));
    let out: Box<dyn Write> = if o.gzip {
        Box::new(GzEncoder::new(out, Compression::default()))
    } else {
        out
    };
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let base = o.dir.clone().map(PathBuf::from).unwrap_or_default();
    let mut st = 0;
    let mut warned = [false; 2];
    // verbose names go to stdout, or to stderr when the archive is written there
    let verbose = o.verbose;
    let mut log = |s: &str| {
        if !verbose {
        } else if to_stdout {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    };
    for m in &o.members {
        let Some(name) = clean_name(m, &mut warned) else {
            eprintln!("tar: {m}: Member name contains '..'");
            st = 2;
            continue;
        };
        let name = if name.is_empty() { ".".into() } else { name };
        if let Err(e) = add(&mut b, &base.join(m), &name, o, archive_id, &mut log) {
            eprintln!("tar: {m}: Cannot stat: {}", crate::exec::io_err_msg(&e));
            st = 2;
        }
    }
    let r = b.into_inner().and_then(|w| finish(w, o.gzip));
    if let Err(e) = r {
        eprintln!("tar: write error: {}", crate::exec::io_err_msg(&e));
        return 2;
    }
    if st == 2 {
        eprintln!("tar: Exiting with failure status due to previous errors");
    }
    st
}

fn finish(mut w: Box<dyn Write>, _gz: bool) -> io::Result<()> {
    // a GzEncoder finishes its stream when dropped; flush the layers under it first
    w.flush()?;
    drop(w);
    Ok(())
}

fn add<W: Write>(
    b: &mut tar::Builder<W>,
    path: &Path,
    name: &str,
    o: &Opts,
    archive_id: Option<(u64, u64)>,
    log: &mut dyn FnMut(&str),
) -> io::Result<()> {
    if excluded(o, name) {
        return Ok(());
    }
    let md = std::fs::symlink_metadata(path)?;
    let mut h = tar::Header::new_gnu();
    h.set_mtime(
        md.modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    h.set_mode(crate::modes::mode_of(path, &md));
    h.set_uid(super::uid() as u64);
    h.set_gid(super::uid() as u64);
    let user = super::user();
    let _ = h.set_username(&user);
    let _ = h.set_groupname(&user);
    let ft = md.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(path)?;
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        log(name);
        if name.len() <= 100 && h.set_link_name(&target).is_ok() {
            append_named(b, &mut h, name, io::empty())?;
        } else {
            b.append_link(&mut h, name, target)?;
        }
    } else if ft.is_dir() {
        let dname = if name.ends_with('/') {
            name.to_string()
        } else {
            format!("{name}/")
        };
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        log(&dname);
        append_named(b, &mut h, &dname, io::empty())?;
        let mut names: Vec<String> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok())
            .filter(|e| !crate::modes::is_store_name(&e.file_name()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            let child = format!("{dname}{n}");
            if let Err(e) = add(b, &path.join(&n), &child, o, archive_id, log) {
                eprintln!("tar: {child}: {}", crate::exec::io_err_msg(&e));
            }
        }
    } else {
        if archive_id.is_some() && crate::modes::file_id(path) == archive_id {
            eprintln!("tar: {name}: file is the archive; not dumped");
            return Ok(());
        }
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(md.len());
        log(name);
        let f = std::fs::File::open(path)?;
        append_named(b, &mut h, name, f)?;
    }
    Ok(())
}

/// Append a member under `name` exactly as given (the tar crate's own path setter drops `./`
/// components, which GNU tar keeps); names longer than the header's field go through the
/// crate's GNU long-name support.
fn append_named<W: Write, R: Read>(
    b: &mut tar::Builder<W>,
    h: &mut tar::Header,
    name: &str,
    data: R,
) -> io::Result<()> {
    if name.len() > 100 {
        return b.append_data(h, name, data);
    }
    let field = &mut h.as_old_mut().name;
    field.fill(0);
    field[..name.len()].copy_from_slice(name.as_bytes());
    h.set_cksum();
    b.append(h, data)
}

// ---------------------------------------------------------------- list / extract

/// The archive's bytes, gunzipped when they start with the gzip magic (whatever `z` says).
fn archive_reader(o: &Opts) -> io::Result<Box<dyn Read>> {
    let raw: Box<dyn Read> = match o.file.as_deref() {
        None | Some("-") => Box::new(io::stdin()),
        Some(f) => Box::new(crate::vfs::open_read(f)?),
    };
    let mut br = BufReader::new(raw);
    let head = br.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(MultiGzDecoder::new(br)))
    } else if o.gzip && !head.is_empty() {
        Err(io::Error::other("not in gzip format"))
    } else {
        Ok(Box::new(br))
    }
}

fn long_listing(h: &tar::Header, name: &str) -> String {
    let kind = match h.entry_type() {
        tar::EntryType::Directory => 'd',
        tar::EntryType::Symlink => 'l',
        tar::EntryType::Link => 'h',
        _ => '-',
    };
    let mode = h.mode().unwrap_or(0o644);
    let perms = uucore::fs::display_permissions_unix(mode, false);
    let owner = format!(
        "{}/{}",
        h.username().ok().flatten().unwrap_or("root"),
        h.groupname().ok().flatten().unwrap_or("root")
    );
    let size = h.size().unwrap_or(0);
    let mtime = h.mtime().unwrap_or(0) as i64;
    let (y, mo, d, hh, mm) = civil(mtime);
    let mut s =
        format!("{kind}{perms} {owner} {size:>9} {y:04}-{mo:02}-{d:02} {hh:02}:{mm:02} {name}");
    if let Ok(Some(l)) = h.link_name() {
        let arrow = if kind == 'h' { " link to " } else { " -> " };
        s.push_str(arrow);
        s.push_str(&l.to_string_lossy());
    }
    s
}

/// UTC calendar date and time of a Unix time.
fn civil(t: i64) -> (i64, u32, u32, u32, u32) {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d, (secs / 3600) as u32, (secs % 3600 / 60) as u32)
}

fn wanted(o: &Opts, name: &str, seen: &mut [bool]) -> bool {
    if o.members.is_empty() {
        return true;
    }
    let n = name.trim_end_matches('/');
    for (k, m) in o.members.iter().enumerate() {
        let m = m.trim_end_matches('/');
        if n == m || n.starts_with(&format!("{m}/")) {
            seen[k] = true;
            return true;
        }
    }
    false
}

fn read_archive(o: &Opts, extract: bool) -> i32 {
    let name = o.file.clone().unwrap_or_else(|| "-".into());
    let input = match archive_reader(o) {
        Ok(r) => r,
        Err(e) => {
            let msg = crate::exec::io_err_msg(&e);
            if msg == "not in gzip format" {
                eprintln!("gzip: stdin: not in gzip format");
                eprintln!("tar: Child returned status 1");
            } else {
                eprintln!("tar: {name}: Cannot open: {msg}");
            }
            eprintln!("tar: Error is not recoverable: exiting now");
            return 2;
        }
    };
    let base = o.dir.clone().map(PathBuf::from).unwrap_or_default();
    if extract && !o.to_stdout && !base.as_os_str().is_empty() && !base.is_dir() {
        eprintln!(
            "tar: {}: Cannot open: No such file or directory",
            base.display()
        );
        eprintln!("tar: Error is not recoverable: exiting now");
        return 2;
    }
    let mut ar = tar::Archive::new(input);
    let entries = match ar.entries() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("tar: {name}: {}", crate::exec::io_err_msg(&e));
            return 2;
        }
    };
    let mut st = 0;
    let mut warned = [false; 2];
    let mut seen = vec![false; o.members.len()];
    let mut dir_times: Vec<(PathBuf, u64)> = Vec::new();
    let mut out = io::stdout().lock();
    for e in entries {
        let mut e = match e {
            Ok(e) => e,
            Err(err) => {
                eprintln!("tar: This does not look like a tar archive");
                eprintln!("tar: {}", crate::exec::io_err_msg(&err));
                eprintln!("tar: Exiting with failure status due to previous errors");
                return 2;
            }
        };
        let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        if !wanted(o, &raw, &mut seen) || excluded(o, &raw) {
            continue;
        }
        if !extract {
            let line = if o.verbose {
                long_listing(e.header(), &raw)
            } else {
                raw.clone()
            };
            let _ = writeln!(out, "{line}");
            continue;
        }
        // GNU tar refuses every member with a `..` component, leading ones included
        let clean = clean_name(&raw, &mut warned).filter(|_| {
            !Path::new(&raw)
                .components()
                .any(|c| c == Component::ParentDir)
        });
        let Some(clean) = clean else {
            eprintln!("tar: {raw}: Member name contains '..'");
            st = 2;
            continue;
        };
        let comps: Vec<&str> = clean
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if comps.len() <= o.strip {
            continue;
        }
        let rel: PathBuf = comps[o.strip..].iter().collect();
        if o.verbose && !o.to_stdout {
            let _ = writeln!(out, "{raw}");
        }
        let dest = base.join(&rel);
        // never write through a symlink an earlier member made (`l -> /elsewhere`, then `l/f`)
        let mut through = base.clone();
        let mut via_link = false;
        for c in rel.parent().into_iter().flat_map(|p| p.components()) {
            through.push(c);
            via_link |=
                std::fs::symlink_metadata(&through).is_ok_and(|m| m.file_type().is_symlink());
        }
        if via_link {
            // GNU tar's words for the same refusal
            eprintln!("tar: {raw}: Cannot open: Not a directory");
            st = 2;
            continue;
        }
        if let Err(err) = unpack(&mut e, &dest, o, &mut out, &mut dir_times) {
            eprintln!(
                "tar: {}: Cannot open: {}",
                rel.display(),
                crate::exec::io_err_msg(&err)
            );
            st = 2;
        }
    }
    for (k, m) in o.members.iter().enumerate() {
        if !seen[k] {
            eprintln!("tar: {m}: Not found in archive");
            st = 2;
        }
    }
    // directories get their times last (extracting into them changed them)
    for (d, t) in dir_times {
        if let Ok(f) = std::fs::File::open(&d) {
            let _ = f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t));
        }
    }
    let _ = out.flush();
    if st == 2 {
        eprintln!("tar: Exiting with failure status due to previous errors");
    }
    st
}

fn unpack<R: Read>(
    e: &mut tar::Entry<R>,
    dest: &Path,
    o: &Opts,
    out: &mut dyn Write,
    dir_times: &mut Vec<(PathBuf, u64)>,
) -> io::Result<()> {
    let h = e.header().clone();
    let kind = h.entry_type();
    if o.to_stdout {
        if kind.is_file() {
            io::copy(e, out)?;
        }
        return Ok(());
    }
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mode = h.mode().ok().map(|m| m & 0o7777);
    let mtime = h.mtime().unwrap_or(0);
    if kind.is_dir() {
        std::fs::create_dir_all(dest)?;
        if let Some(m) = mode {
            let _ = crate::modes::set_mode(dest, m);
        }
        dir_times.push((dest.to_path_buf(), mtime));
        return Ok(());
    }
    if o.keep_old && std::fs::symlink_metadata(dest).is_ok() {
        return Ok(());
    }
    if kind.is_symlink() || kind.is_hard_link() {
        let target = e
            .link_name()?
            .ok_or_else(|| io::Error::other("link without a target"))?
            .into_owned();
        let tgt = target.to_string_lossy().into_owned();
        let escapes = tgt.starts_with('/')
            || Path::new(&tgt)
                .components()
                .any(|c| c == Component::ParentDir);
        let _ = std::fs::remove_file(dest);
        if kind.is_hard_link() {
            if escapes {
                return Err(io::Error::other("hard link target outside the archive"));
            }
            let src = o
                .dir
                .clone()
                .map(PathBuf::from)
                .unwrap_or_default()
                .join(&target);
            return std::fs::hard_link(src, dest);
        }
        // a symlink may point anywhere (it is only a name); the sandbox confines its use
        return uu_ln::symlink(&target, dest);
    }
    let _ = std::fs::remove_file(dest);
    let mut f = std::fs::File::create(dest)?;
    io::copy(e, &mut f)?;
    let _ = f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime));
    drop(f);
    if let Some(m) = mode {
        crate::modes::set_mode(dest, m)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- gzip

/// `gzip`, `gunzip`, `zcat`.
pub fn gzip(name: &str, args: &[String]) -> i32 {
    let mut decompress = name == "gunzip" || name == "zcat";
    let mut to_stdout = name == "zcat";
    let mut keep = false;
    let mut force = false;
    let mut level = 6;
    let mut files = Vec::new();
    let mut only_files = false;
    for a in args {
        if only_files || a == "-" || !a.starts_with('-') {
            files.push(a.clone());
            continue;
        }
        match a.as_str() {
            "--" => only_files = true,
            "--decompress" | "--uncompress" => decompress = true,
            "--stdout" | "--to-stdout" => to_stdout = true,
            "--keep" => keep = true,
            "--force" => force = true,
            "--quiet" | "--no-name" | "--name" | "--verbose" | "--fast" | "--best" => {}
            l if l.starts_with("--") => {
                eprintln!("{name}: unrecognized option '{l}'");
                return 1;
            }
            _ => {
                for c in a[1..].chars() {
                    match c {
                        'd' => decompress = true,
                        'c' => to_stdout = true,
                        'k' => keep = true,
                        'f' => force = true,
                        'q' | 'n' | 'N' | 'v' => {}
                        '1'..='9' => level = c as u32 - '0' as u32,
                        _ => {
                            eprintln!("{name}: invalid option -- '{c}'");
                            return 1;
                        }
                    }
                }
            }
        }
    }
    if files.is_empty() {
        files.push("-".into());
    }
    let mut st = 0;
    for f in &files {
        let r = if f == "-" || to_stdout {
            gzip_stream(f, decompress, level)
        } else {
            gzip_file(name, f, decompress, level, keep, force)
        };
        match r {
            Ok(s) => st = st.max(s),
            Err(e) => {
                let shown = if f == "-" { "stdin" } else { f };
                eprintln!("{name}: {shown}: {}", crate::exec::io_err_msg(&e));
                st = 1;
            }
        }
    }
    st
}

fn code(decompress: bool, level: u32, input: Box<dyn Read>, out: &mut dyn Write) -> io::Result<()> {
    if decompress {
        let mut br = BufReader::new(input);
        if br.fill_buf()?.is_empty() {
            return Ok(());
        }
        if !br.fill_buf()?.starts_with(&[0x1f, 0x8b]) {
            return Err(io::Error::other("not in gzip format"));
        }
        io::copy(&mut MultiGzDecoder::new(br), out)?;
    } else {
        io::copy(&mut GzReadEncoder::new(input, Compression::new(level)), out)?;
    }
    Ok(())
}

fn gzip_stream(f: &str, decompress: bool, level: u32) -> io::Result<i32> {
    let input = crate::vfs::open_read(f)?;
    let mut out = io::stdout().lock();
    code(decompress, level, input, &mut out)?;
    out.flush()?;
    Ok(0)
}

fn gzip_file(
    name: &str,
    f: &str,
    decompress: bool,
    level: u32,
    keep: bool,
    force: bool,
) -> io::Result<i32> {
    let p = Path::new(f);
    let md = std::fs::metadata(p)?;
    if md.is_dir() {
        eprintln!("{name}: {f} is a directory -- ignored");
        return Ok(2);
    }
    let target = if decompress {
        if let Some(s) = f.strip_suffix(".gz") {
            s.to_string()
        } else if let Some(s) = f.strip_suffix(".tgz") {
            format!("{s}.tar")
        } else if let Some(s) = f.strip_suffix(".z") {
            s.to_string()
        } else {
            eprintln!("{name}: {f}: unknown suffix -- ignored");
            return Ok(2);
        }
    } else {
        if f.ends_with(".gz") || f.ends_with(".tgz") {
            eprintln!("{name}: {f} already has .gz suffix -- unchanged");
            return Ok(2);
        }
        format!("{f}.gz")
    };
    if !force && std::fs::symlink_metadata(&target).is_ok() {
        eprintln!("{name}: {target} already exists;\tnot overwritten");
        return Ok(2);
    }
    let input = Box::new(std::fs::File::open(p)?);
    let tmp = format!("{target}.wasmbox-tmp");
    let r = (|| {
        let mut out = io::BufWriter::new(std::fs::File::create(&tmp)?);
        code(decompress, level, input, &mut out)?;
        out.flush()
    })();
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &target)?;
    // the new file keeps the old one's mode and modification time, as with gzip
    let mode = crate::modes::mode_of(p, &md);
    let _ = crate::modes::set_mode(Path::new(&target), mode);
    if let (Ok(t), Ok(out)) = (
        md.modified(),
        std::fs::OpenOptions::new().write(true).open(&target),
    ) {
        let _ = out.set_modified(t);
    }
    if !keep {
        std::fs::remove_file(p)?;
    }
    Ok(0)
}
