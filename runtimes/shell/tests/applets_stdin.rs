//! No applet panics on what scripts feed it: every applet (`sh --list`) is started with no
//! arguments, once with empty stdin and once with text arriving through a pipe, and must end
//! (or, like `yes`, still be running at the deadline) without a Rust panic.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(3);
const TEXT: &[u8] = b"b 2\na 1\n\nc 3\n\xff\xfe bytes\n";

fn applets() -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_sh"))
        .arg("--list")
        .output()
        .expect("sh --list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Run `name` with stdin `input` (None: empty); returns (status, stderr).
fn run(name: &str, input: Option<&[u8]>) -> (Option<i32>, String) {
    let (status, _, err) = run_with(name, &[], input);
    (status, err)
}

/// Run `name ARGS…` with stdin `input` (None: empty); returns (status, stdout, stderr).
fn run_with(name: &str, args: &[&str], input: Option<&[u8]>) -> (Option<i32>, Vec<u8>, String) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("wbsh-applet-{}-{name}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sh"))
        .arg0(name)
        .args(args)
        .current_dir(&dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("PWD", &dir)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn applet");
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        // the applet may exit without reading: a broken pipe here is fine
        let _ = stdin.write_all(data);
    }
    // drain stdout while waiting (an endless writer like `yes` must not block on a full pipe)
    let mut so = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut v = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(k) = so.read(&mut buf) {
            if k == 0 || v.len() > 1 << 20 {
                break;
            }
            v.extend_from_slice(&buf[..k]);
        }
        v
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st.code(),
            Ok(None) if start.elapsed() > DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let out = reader.join().unwrap_or_default();
    (status, out, err)
}

#[test]
fn no_applet_panics_on_empty_or_piped_stdin() {
    let names = applets();
    assert!(names.len() > 40, "applets: {names:?}");
    let mut bad = Vec::new();
    for name in &names {
        for input in [None, Some(TEXT)] {
            let (status, err) = run(name, input);
            if err.contains("panicked") || matches!(status, Some(101) | Some(134)) {
                let how = if input.is_some() { "piped" } else { "empty" };
                bad.push(format!("{name} ({how} stdin): status {status:?}: {err}"));
            }
        }
    }
    assert!(bad.is_empty(), "applets panicked:\n{}", bad.join("\n"));
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn tarball() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "d/f", &b"hi\n"[..]).unwrap();
    b.into_inner().unwrap()
}

/// The archive applets read their data from stdin in every form a script gives it: empty,
/// text that is not an archive, a gzip stream, a tar archive, a gzipped one, and here-documents
/// through the shell. None may panic or hang; the valid inputs give the right output.
#[test]
fn archive_applets_on_stdin() {
    let text = TEXT.to_vec();
    let inputs: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("empty", None),
        ("text", Some(text.clone())),
        ("gzip", Some(gz(&text))),
        ("tar", Some(tarball())),
        ("tgz", Some(gz(&tarball()))),
    ];
    let commands: &[(&str, &[&str])] = &[
        ("tar", &["tf", "-"]),
        ("tar", &["tvf", "-"]),
        ("tar", &["-tzf", "-"]),
        ("tar", &["xf", "-"]),
        ("tar", &["xzvf", "-", "-C", "."]),
        ("tar", &["-xOf", "-"]),
        ("tar", &["t"]),
        ("gzip", &[]),
        ("gzip", &["-d"]),
        ("gzip", &["-dc", "-"]),
        ("gunzip", &[]),
        ("zcat", &[]),
        ("mkfifo", &["p"]),
    ];
    let mut bad = Vec::new();
    for (name, args) in commands {
        for (what, input) in &inputs {
            let (status, _, err) = run_with(name, args, input.as_deref());
            if status.is_none() || err.contains("panicked") || matches!(status, Some(101 | 134)) {
                bad.push(format!(
                    "{name} {args:?} ({what} stdin): status {status:?}: {err}"
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "archive applets failed:\n{}",
        bad.join("\n")
    );

    // what must come out
    let (st, out, _) = run_with("zcat", &[], Some(&gz(&text)));
    assert_eq!((st, out), (Some(0), text.clone()));
    let (st, out, _) = run_with("gzip", &["-c"], Some(&text));
    assert_eq!(st, Some(0));
    let (st, back, _) = run_with("gunzip", &[], Some(&out));
    assert_eq!((st, back), (Some(0), text.clone()));
    let (st, out, _) = run_with("tar", &["tzf", "-"], Some(&gz(&tarball())));
    assert_eq!((st, out), (Some(0), b"d/f\n".to_vec()));
    let (st, out, _) = run_with("tar", &["-xOf", "-"], Some(&tarball()));
    assert_eq!((st, out), (Some(0), b"hi\n".to_vec()));
    let (st, _, err) = run_with("gzip", &["-d"], Some(&text));
    assert_eq!(st, Some(1), "{err}");
    let (st, _, err) = run_with("mkfifo", &[], None);
    assert_eq!(st, Some(1));
    assert!(err.contains("mkfifo: missing operand"), "{err}");

    // here-documents and pipes through the shell
    let script = "base64 -d <<'EOF' | tar tz\n".to_string()
        + &b64(&gz(&tarball()))
        + "\nEOF\nprintf 'x\\n' | gzip | zcat\ngzip -d <<< notgz; echo st=$?\n";
    let (st, out, err) = run_with("bash", &["-c", &script], None);
    assert_eq!(
        (st, String::from_utf8_lossy(&out).into_owned()),
        (Some(0), "d/f\nx\nst=1\n".to_string()),
        "{err}"
    );
}

fn b64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                s.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// `tar x` never writes outside the directory it extracts into: leading `/` is stripped, members
/// with `..` are refused (GNU tar's messages, status 2) and a member below a symlink an earlier
/// member made is not written through it.
#[test]
fn tar_extracts_only_inside() {
    let base = std::env::temp_dir().join(format!("wbsh-tar-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let work = base.join("work");
    let outside = base.join("outside");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for name in ["../evil", "/abs/x", "a/../../b", "ok/f"] {
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        // set_path refuses these names: write them into the header as they are
        let field = &mut h.as_old_mut().name;
        field[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, &b"x\n"[..]).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "l", &outside).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "l/f", &b"x\n"[..]).unwrap();
    let data = b.into_inner().unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_sh"))
        .arg0("tar")
        .arg("xf")
        .arg("-")
        .current_dir(&work)
        .env_clear()
        .env("PWD", &work)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tar");
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("../evil: Member name contains '..'"), "{err}");
    assert!(
        err.contains("a/../../b: Member name contains '..'"),
        "{err}"
    );
    assert!(
        err.contains("Removing leading `/' from member names"),
        "{err}"
    );
    assert!(work.join("abs/x").is_file());
    assert!(work.join("ok/f").is_file());
    assert!(!work.join("evil").exists() && !base.join("evil").exists());
    assert!(!base.join("b").exists());
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "{err}");
    let _ = std::fs::remove_dir_all(&base);
}

/// Every applet speaks words, not message ids: uucore looks its messages up by id, and an
/// applet whose strings were not embedded (as happened to the vendored `ls` on a machine that
/// never downloaded the original crate) prints the id itself. Each applet is asked for its
/// help and given a name that does not exist in its scratch folder (relative: the
/// applets run natively here, and `touch` or `mkdir` would create it).
#[test]
fn applets_print_messages_not_message_ids() {
    let mut bad = Vec::new();
    for name in &applets() {
        for args in [&["--help"][..], &["no-such-file-here"][..]] {
            let (_, out, err) = run_with(name, args, None);
            let text = format!("{}{err}", String::from_utf8_lossy(&out));
            let ids = [
                format!("{name}-about"),
                format!("{name}-usage"),
                format!("{name}-error-"),
            ];
            if let Some(id) = ids.iter().find(|id| text.contains(id.as_str())) {
                bad.push(format!("{name} {args:?}: message id {id}… in {text:?}"));
            }
        }
    }
    assert!(bad.is_empty(), "raw message ids:\n{}", bad.join("\n"));
    let (status, out, err) = run_with("sh", &["-c", "ls no-such-file-here 2>&1"], None);
    let err = format!("{status:?} {}{err}", String::from_utf8_lossy(&out));
    assert!(
        err.contains("cannot access 'no-such-file-here': No such file or directory"),
        "{err}"
    );
}
