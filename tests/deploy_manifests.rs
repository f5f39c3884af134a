//! The Kubernetes manifests in `deploy/kubernetes/` pass an offline schema validator
//! (`kubernetes-validate`, a PyPI package that ships the API schemas), strictly (unknown fields
//! are errors), and the kustomization lists exactly the manifests beside it. The validator is
//! installed into a venv under `target/tmp/deploy-validate/` (reused by later runs).

mod common;

use std::path::Path;
use std::process::Command;

const VALIDATOR: &str = "kubernetes-validate==1.37.0";

#[test]
fn manifests_pass_the_offline_schema_validator() {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy-validate/venv");
    let validator = venv.join("bin/kubernetes-validate");
    if !validator.exists() {
        let _ = std::fs::remove_dir_all(&venv);
        common::run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv (needs python3-venv)",
        );
        common::run(
            Command::new(venv.join("bin/python")).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                VALIDATOR,
            ]),
            "pip install kubernetes-validate",
        );
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut manifests: Vec<String> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    manifests.sort();
    assert!(manifests.len() >= 6, "{manifests:?}");
    let out = Command::new(&validator)
        .arg("--strict")
        .args(&manifests)
        .current_dir(&dir)
        .output()
        .expect("kubernetes-validate");
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    println!("{report}");
    assert!(out.status.success(), "{report}");
    for kind in [
        "statefulset",
        "poddisruptionbudget",
        "ingress",
        "service/wasmbox-nodes",
    ] {
        assert!(
            report.contains(&format!("passed for resource {kind}")),
            "{kind}: {report}"
        );
    }
    // Every manifest is applied by the kustomization, and it names no missing file.
    let kustomization =
        std::fs::read_to_string(dir.join("kustomization.yaml")).expect("kustomization.yaml");
    let mut listed: Vec<String> = kustomization
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter(|name| name.ends_with(".yaml"))
        .map(str::to_string)
        .collect();
    listed.sort();
    assert_eq!(listed, manifests);
}
