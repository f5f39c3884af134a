//! What one client does per operation (library call, native spawn, HTTP request), and the
//! sandbox scale check.

use super::*;

pub(super) fn library_job(
    executor: Arc<Executor>,
    fs: Arc<SandboxFs>,
    language: Language,
    code: &'static str,
) -> Job {
    let env = Arc::new(BTreeMap::new());
    Arc::new(move || {
        let (executor, fs, env) = (executor.clone(), fs.clone(), env.clone());
        Box::pin(async move {
            let result = executor
                .run(&fs, &env, RunRequest::new(language, code, TIMEOUT))
                .await
                .with_context(|| format!("running {language} through the library"))?;
            check_output(
                &format!("{language} (library)"),
                &result.stdout,
                result.success(),
                || format!("exit {}, stderr {:?}", result.exit_code, result.stderr),
            )?;
            Ok(Some(result.duration))
        })
    })
}

pub(super) fn native_job(binary: PathBuf, args: [&'static str; 2]) -> Job {
    Arc::new(move || {
        let binary = binary.clone();
        Box::pin(async move {
            let out = tokio::process::Command::new(&binary)
                .args(args)
                .output()
                .await
                .with_context(|| format!("spawning {}", binary.display()))?;
            check_output(
                &binary.display().to_string(),
                &String::from_utf8_lossy(&out.stdout),
                out.status.success(),
                || {
                    format!(
                        "{}, stderr {:?}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    )
                },
            )?;
            Ok(None)
        })
    })
}

pub(super) struct HttpSandbox {
    id: String,
    /// The sandbox's agent base URL (`public_host`).
    agent_url: String,
    token: String,
}

pub(super) fn http_client() -> Result<reqwest::Client> {
    wasmbox::tls::install_crypto_provider();
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(None)
        .build()
        .context("building the HTTP client")
}

/// Sends `request` and returns the JSON body of a 2xx answer (else an error with the body).
pub(super) async fn send_json(request: reqwest::RequestBuilder, what: &str) -> Result<Value> {
    let response = request
        .send()
        .await
        .with_context(|| format!("{what}: request failed"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .with_context(|| format!("{what}: reading the response"))?;
    ensure!(status.is_success(), "{what}: HTTP {status}: {body}");
    serde_json::from_str(&body).with_context(|| format!("{what}: response is not JSON: {body}"))
}

pub(super) async fn create_sandbox(
    client: &reqwest::Client,
    base_url: &str,
) -> Result<HttpSandbox> {
    let body = send_json(
        client
            .post(format!("{base_url}/v1/sandboxes"))
            .header("X-API-Key", API_KEY)
            // The `python` template: these rows are the plain CPython 3.13 (code-interpreter's
            // python is the data runtime, measured by `cargo bench --bench data`).
            .json(&json!({ "template_name": "python" })),
        "POST /v1/sandboxes",
    )
    .await?;
    let field = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| anyhow!("POST /v1/sandboxes: no `{name}` in {body}"))
    };
    Ok(HttpSandbox {
        id: field("id")?,
        agent_url: field("public_host")?,
        token: field("auth_token")?,
    })
}

/// `POST {public_host}/execute`, checked; returns the server-reported execution time.
pub(super) async fn execute(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    language: Language,
    code: &str,
) -> Result<Duration> {
    let what = format!("POST /execute ({language})");
    let body = send_json(
        client.post(url).bearer_auth(token).json(&json!({
            "language": language.name(),
            "code": code,
            "timeout": TIMEOUT.as_secs(),
        })),
        &what,
    )
    .await?;
    let stdout = body.get("stdout").and_then(Value::as_str).unwrap_or("");
    let ok = body.get("success").and_then(Value::as_bool) == Some(true);
    check_output(&what, stdout, ok, || format!("response {body}"))?;
    let seconds = body
        .get("execution_time")
        .and_then(Value::as_f64)
        .ok_or_else(|| anyhow!("{what}: no execution_time in {body}"))?;
    Ok(Duration::from_secs_f64(seconds))
}

pub(super) fn http_job(
    client: reqwest::Client,
    sandbox: &HttpSandbox,
    language: Language,
    code: &'static str,
) -> Job {
    let url: Arc<str> = format!("{}/execute", sandbox.agent_url).into();
    let token: Arc<str> = sandbox.token.clone().into();
    Arc::new(move || {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        Box::pin(async move { Ok(Some(execute(&client, &url, &token, language, code).await?)) })
    })
}

pub(super) struct Scale {
    pub(super) count: usize,
    pub(super) clients: usize,
    pub(super) total: Duration,
    pub(super) rss_before_kib: u64,
    pub(super) rss_after_kib: u64,
    pub(super) hwm_kib: u64,
    /// Whether the peak (VmHWM) was reset at the start of the phase.
    pub(super) hwm_reset: bool,
}

/// `VmRSS` and `VmHWM` of this process, in KiB.
pub(super) fn memory_kib() -> Result<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self")?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no {name} in /proc/self/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

pub(super) async fn scale_check(base_url: &str, count: usize) -> Result<Scale> {
    const CLIENTS: usize = 8;
    // Reset the peak-RSS mark so VmHWM covers this phase only (Linux >= 4.0).
    let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let (rss_before_kib, _) = memory_kib()?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let base_url = base_url.to_string();
        tasks.push(tokio::spawn(async move {
            let http = http_client()?;
            let mut ids = Vec::new();
            for n in (client..count).step_by(CLIENTS) {
                let sandbox = create_sandbox(&http, &base_url)
                    .await
                    .with_context(|| format!("sandbox #{n}"))?;
                let url = format!("{}/execute", sandbox.agent_url);
                execute(
                    &http,
                    &url,
                    &sandbox.token,
                    Language::JavaScript,
                    "console.log('hello')",
                )
                .await
                .with_context(|| format!("sandbox #{n} ({})", sandbox.id))?;
                ids.push(sandbox.id);
            }
            Ok::<_, anyhow::Error>(ids)
        }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        ids.extend(task.await.context("client task panicked")??);
    }
    let total = started.elapsed();
    ensure!(
        ids.len() == count,
        "expected {count} distinct sandboxes, got {}",
        ids.len()
    );
    let (rss_after_kib, hwm_kib) = memory_kib()?;
    Ok(Scale {
        count,
        clients: CLIENTS,
        total,
        rss_before_kib,
        rss_after_kib,
        hwm_kib,
        hwm_reset,
    })
}

/// The real interpreter binary behind `program` (pyenv and similar install shell-script shims
/// whose own start-up would be counted otherwise).
pub(super) fn real_binary(program: &str) -> Result<PathBuf> {
    let probe: Option<[&str; 2]> = match program {
        "python3" => Some(["-c", "import sys; print(sys.executable)"]),
        "node" => Some(["-e", "console.log(process.execPath)"]),
        _ => None,
    };
    let path = match probe {
        Some(args) => {
            let out = Command::new(program)
                .args(args)
                .output()
                .with_context(|| format!("native baseline: cannot run `{program}`"))?;
            ensure!(
                out.status.success(),
                "native baseline: `{program}` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
        None => std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
            .ok_or_else(|| anyhow!("native baseline: `{program}` is not on PATH"))?,
    };
    ensure!(
        path.is_file(),
        "native baseline: `{program}` resolved to {}, which is not a file",
        path.display()
    );
    Ok(path)
}
