//! Differential table: every snippet of cases.txt run by our shell in sh mode (native build,
//! applets via the native spawner) must give the stdout and exit status that Debian's dash gave
//! (recorded in cases.json by `record_cases.py dash`).

mod common;

#[test]
fn dash_differential_table() {
    let cases: Vec<common::Case> =
        serde_json::from_str(include_str!("cases.json")).expect("cases.json");
    assert!(cases.len() >= 60);
    let failures = common::failures("sh", "C", &cases);
    if !failures.is_empty() {
        let reports: Vec<&str> = failures.iter().map(|f| f.1.as_str()).collect();
        panic!(
            "{} of {} cases differ from dash:\n{}",
            failures.len(),
            cases.len(),
            reports.join("\n")
        );
    }
}
