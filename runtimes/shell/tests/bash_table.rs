//! Differential table for bash mode: every snippet of bash_cases.txt run by our shell started as
//! `bash` is compared with the stdout and exit status Debian's bash 5.2 gave (recorded in
//! bash_cases.json by `record_cases.py bash`, in the C.UTF-8 locale).
//!
//! Not every case passes yet. Those that do not are listed, one per line with the reason, in
//! bash_known_failures.txt. The test fails when a case outside that list differs (a regression),
//! when a listed case passes (the list must stay honest: delete its line), or when the pass count
//! falls below FLOOR. `BASH_TABLE_REPORT=FILE` writes every difference to FILE.

mod common;

use std::collections::BTreeSet;

/// The least number of passing cases; raise it as cases get fixed.
const FLOOR: usize = 810;

#[test]
fn bash_differential_table() {
    let cases: Vec<common::Case> =
        serde_json::from_str(include_str!("bash_cases.json")).expect("bash_cases.json");
    assert!(
        cases.len() >= 400,
        "the bash table has {} cases",
        cases.len()
    );
    let known: BTreeSet<&str> = include_str!("bash_known_failures.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let names: BTreeSet<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    let stale: Vec<&&str> = known.iter().filter(|n| !names.contains(*n)).collect();
    assert!(
        stale.is_empty(),
        "bash_known_failures.txt names unknown cases: {stale:?}"
    );

    let failures = common::failures("bash", "C.UTF-8", &cases);
    if let Some(path) = std::env::var_os("BASH_TABLE_REPORT") {
        // every difference, for updating bash_known_failures.txt
        let all: Vec<&str> = failures.iter().map(|f| f.1.as_str()).collect();
        std::fs::write(path, all.join("\n")).expect("write BASH_TABLE_REPORT");
    }
    let failed: BTreeSet<&str> = failures.iter().map(|f| f.0.as_str()).collect();
    let passed = cases.len() - failures.len();
    eprintln!(
        "bash table: {passed} of {} cases pass ({:.1} %)",
        cases.len(),
        100.0 * passed as f64 / cases.len() as f64
    );
    let regressions: Vec<&str> = failures
        .iter()
        .filter(|f| !known.contains(f.0.as_str()))
        .map(|f| f.1.as_str())
        .collect();
    let fixed: Vec<&&str> = known.iter().filter(|n| !failed.contains(*n)).collect();
    assert!(
        regressions.is_empty(),
        "{} cases differ from bash and are not in bash_known_failures.txt:\n{}",
        regressions.len(),
        regressions.join("\n")
    );
    assert!(
        fixed.is_empty(),
        "listed in bash_known_failures.txt but passing now (delete their lines): {fixed:?}"
    );
    assert!(
        passed >= FLOOR,
        "{passed} cases pass, below the floor of {FLOOR}"
    );
}
