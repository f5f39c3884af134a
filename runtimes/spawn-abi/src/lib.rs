//! The `wasmbox.spawn` wire protocol (`runtimes/shell/ABI.md`), defined once for both ends: the
//! host (`src/engine/spawn/`) deserialises [`Request`] and serialises [`Response`]; the shell
//! guest (`runtimes/shell`) does the opposite.
//!
//! The JSON is fixed (old and new builds of either side interoperate), so the types carry their
//! own serde impls: a stream is a bare name (`"pipe"`) or an object (`{"file":…}`, `{"data":…}`).
//! A name or mode this crate does not know is a deserialisation error, never a silent default,
//! and a stream that makes no sense where it is used (stdout from `{"data":…}`, stdin from
//! `"capture"`) cannot be built at all.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One spawn call: the stages of a pipeline, run concurrently (one stage for a plain command).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Stage *i*'s [`Output::Pipe`] feeds stage *i+1*'s [`Input::Pipe`].
    pub stages: Vec<Stage>,
}

/// One program to start and its standard streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// `argv[0]` names the program; the host resolves it (python, node, else `sh.wasm`).
    pub argv: Vec<String>,
    /// The child's complete environment; the host sets `PWD` to `cwd` itself.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// The child's working directory, a guest path; file redirections are relative to it.
    #[serde(default = "root_dir")]
    pub cwd: String,
    /// Where standard input comes from.
    #[serde(default)]
    pub stdin: Input,
    /// Where standard output goes.
    #[serde(default)]
    pub stdout: Output,
    /// Where standard error goes.
    #[serde(default)]
    pub stderr: Output,
}

fn root_dir() -> String {
    "/".into()
}

/// Where a stage's standard input comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Input {
    /// The spawning shell's stdin, shared: bytes are consumed once.
    #[default]
    Inherit,
    /// The previous stage's output (EOF for the first stage).
    Pipe,
    /// Empty.
    Null,
    /// A file opened for reading (`< f`).
    File {
        /// Guest path, relative to the stage's `cwd`.
        file: String,
        /// Seek here first: the shell passes on a file it has partly read itself.
        offset: Option<u64>,
    },
    /// This text, then EOF (here-documents, `<<<`).
    Data(String),
    /// The read end of the named pipe (`mkfifo`) at this absolute guest path, shared by every
    /// instance of the execution.
    Fifo(String),
}

/// Where a stage's standard output or error goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Output {
    /// The spawning shell's stream of the same name.
    #[default]
    Inherit,
    /// The next stage's input (`/dev/null` for the last stage).
    Pipe,
    /// Discarded.
    Null,
    /// Collected into [`Response::stdout`] / [`Response::stderr`] (for `$(…)`).
    Capture,
    /// The same destination as this stage's stdout (`2>&1`).
    Stdout,
    /// The same destination as this stage's stderr (`>&2`).
    Stderr,
    /// The spawning shell's stdout, whichever stream this is.
    ParentStdout,
    /// The spawning shell's stderr, whichever stream this is.
    ParentStderr,
    /// The write end of the named pipe at this absolute guest path (see [`Input::Fifo`]).
    Fifo(String),
    /// A file opened for writing.
    File {
        /// Guest path, relative to the stage's `cwd`.
        file: String,
        /// How the file is opened.
        mode: OutputMode,
        /// Seek here first.
        offset: Option<u64>,
    },
}

/// How an output file is opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputMode {
    /// Create or truncate (`>`).
    #[default]
    Write,
    /// Create or append (`>>`; also files the shell opened itself and hands on).
    Append,
    /// Create, keep the contents, write from the start (or `offset`).
    ReadWrite,
}

impl OutputMode {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputMode::Write => "write",
            OutputMode::Append => "append",
            OutputMode::ReadWrite => "readwrite",
        }
    }
}

/// What the host answers to a [`Request`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// One exit status per stage (127 unknown program, 126 cannot start, 124 deadline, 137
    /// memory cap, 141 broken pipe).
    #[serde(default)]
    pub statuses: Vec<i32>,
    /// What the stages wrote to [`Output::Capture`] on stdout.
    #[serde(default)]
    pub stdout: String,
    /// What the stages wrote to [`Output::Capture`] on stderr.
    #[serde(default)]
    pub stderr: String,
    /// Set when the host refused the whole request (nothing ran).
    #[serde(default)]
    pub error: Option<String>,
    /// The background job this is about: the handle `spawn_start` gave the request (then
    /// nothing has ended yet) or the job `spawn_wait` reports on. Absent for `spawn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<u32>,
}

impl Response {
    /// A refusal of the whole request.
    pub fn refused(message: impl Into<String>) -> Self {
        Response {
            error: Some(message.into()),
            ..Response::default()
        }
    }
}

// --------------------------------------------------------------------------- the JSON shape

/// A stream as it is on the wire, before it is checked against where it is used.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum WireStream {
    Name(String),
    File {
        file: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
    },
    Data {
        data: String,
    },
    Fifo {
        fifo: String,
    },
}

/// A stream name or mode that is not part of the protocol (or not valid where it is used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    what: &'static str,
    value: String,
    expected: &'static str,
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {} (expected {})",
            self.what, self.value, self.expected
        )
    }
}

impl std::error::Error for UnknownValue {}

const INPUT_NAMES: &str =
    "\"inherit\", \"pipe\", \"null\", {\"file\":…}, {\"data\":…} or {\"fifo\":…}";
const OUTPUT_NAMES: &str = "\"inherit\", \"pipe\", \"null\", \"capture\", \"stdout\", \
                            \"stderr\", \"parent_stdout\", \"parent_stderr\", {\"file\":…} or \
                            {\"fifo\":…}";

impl TryFrom<WireStream> for Input {
    type Error = UnknownValue;

    fn try_from(wire: WireStream) -> Result<Self, UnknownValue> {
        let unknown = |name: String| UnknownValue {
            what: "stdin source",
            value: format!("{name:?}"),
            expected: INPUT_NAMES,
        };
        match wire {
            WireStream::Name(name) => match name.as_str() {
                "inherit" => Ok(Input::Inherit),
                "pipe" => Ok(Input::Pipe),
                "null" => Ok(Input::Null),
                _ => Err(unknown(name)),
            },
            WireStream::File { file, mode, offset } => match mode.as_deref() {
                None | Some("read") => Ok(Input::File { file, offset }),
                Some(other) => Err(UnknownValue {
                    what: "stdin file mode",
                    value: format!("{other:?}"),
                    expected: "\"read\"",
                }),
            },
            WireStream::Data { data } => Ok(Input::Data(data)),
            WireStream::Fifo { fifo } => Ok(Input::Fifo(fifo)),
        }
    }
}

impl From<&Input> for WireStream {
    fn from(input: &Input) -> Self {
        match input {
            Input::Inherit => WireStream::Name("inherit".into()),
            Input::Pipe => WireStream::Name("pipe".into()),
            Input::Null => WireStream::Name("null".into()),
            Input::File { file, offset } => WireStream::File {
                file: file.clone(),
                mode: Some("read".into()),
                offset: *offset,
            },
            Input::Data(data) => WireStream::Data { data: data.clone() },
            Input::Fifo(fifo) => WireStream::Fifo { fifo: fifo.clone() },
        }
    }
}

impl TryFrom<WireStream> for Output {
    type Error = UnknownValue;

    fn try_from(wire: WireStream) -> Result<Self, UnknownValue> {
        let unknown = |name: String| UnknownValue {
            what: "output target",
            value: format!("{name:?}"),
            expected: OUTPUT_NAMES,
        };
        match wire {
            WireStream::Name(name) => match name.as_str() {
                "inherit" => Ok(Output::Inherit),
                "pipe" => Ok(Output::Pipe),
                "null" => Ok(Output::Null),
                "capture" => Ok(Output::Capture),
                "stdout" => Ok(Output::Stdout),
                "stderr" => Ok(Output::Stderr),
                "parent_stdout" => Ok(Output::ParentStdout),
                "parent_stderr" => Ok(Output::ParentStderr),
                _ => Err(unknown(name)),
            },
            WireStream::File { file, mode, offset } => {
                let mode = match mode.as_deref() {
                    None | Some("write") => OutputMode::Write,
                    Some("append") => OutputMode::Append,
                    Some("readwrite") => OutputMode::ReadWrite,
                    Some(other) => {
                        return Err(UnknownValue {
                            what: "output file mode",
                            value: format!("{other:?}"),
                            expected: "\"write\", \"append\" or \"readwrite\"",
                        })
                    }
                };
                Ok(Output::File { file, mode, offset })
            }
            WireStream::Fifo { fifo } => Ok(Output::Fifo(fifo)),
            WireStream::Data { .. } => Err(UnknownValue {
                what: "output target",
                value: "{\"data\":…}".into(),
                expected: OUTPUT_NAMES,
            }),
        }
    }
}

impl From<&Output> for WireStream {
    fn from(output: &Output) -> Self {
        let name = match output {
            Output::Inherit => "inherit",
            Output::Pipe => "pipe",
            Output::Null => "null",
            Output::Capture => "capture",
            Output::Stdout => "stdout",
            Output::Stderr => "stderr",
            Output::ParentStdout => "parent_stdout",
            Output::ParentStderr => "parent_stderr",
            Output::Fifo(fifo) => return WireStream::Fifo { fifo: fifo.clone() },
            Output::File { file, mode, offset } => {
                return WireStream::File {
                    file: file.clone(),
                    mode: Some(mode.as_str().into()),
                    offset: *offset,
                }
            }
        };
        WireStream::Name(name.into())
    }
}

impl Serialize for Input {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireStream::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Input::try_from(WireStream::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Output {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireStream::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Output {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Output::try_from(WireStream::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact bytes the shell sent before this crate existed: old and new builds interoperate.
    #[test]
    fn request_json_is_unchanged() {
        let req = Request {
            stages: vec![
                Stage {
                    argv: vec!["cat".into(), "f".into()],
                    env: vec![("K".into(), "V".into())],
                    cwd: "/workspace".into(),
                    stdin: Input::File {
                        file: "in".into(),
                        offset: Some(3),
                    },
                    stdout: Output::Pipe,
                    stderr: Output::Stdout,
                },
                Stage {
                    argv: vec!["wc".into()],
                    env: vec![],
                    cwd: "/".into(),
                    stdin: Input::Data("x\n".into()),
                    stdout: Output::File {
                        file: "out".into(),
                        mode: OutputMode::Append,
                        offset: None,
                    },
                    stderr: Output::ParentStdout,
                },
            ],
        };
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(
            json,
            r#"{"stages":[{"argv":["cat","f"],"env":[["K","V"]],"cwd":"/workspace","stdin":{"file":"in","mode":"read","offset":3},"stdout":"pipe","stderr":"stdout"},{"argv":["wc"],"env":[],"cwd":"/","stdin":{"data":"x\n"},"stdout":{"file":"out","mode":"append"},"stderr":"parent_stdout"}]}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), req);
    }

    /// Named pipes travel as `{"fifo": PATH}` on either side.
    #[test]
    fn fifo_streams_round_trip() {
        let json = r#"{"stages":[{"argv":["cat"],"env":[],"cwd":"/","stdin":{"fifo":"/w/p"},"stdout":{"fifo":"/w/q"},"stderr":"inherit"}]}"#;
        let req: Request = serde_json::from_str(json).unwrap();
        assert_eq!(req.stages[0].stdin, Input::Fifo("/w/p".into()));
        assert_eq!(req.stages[0].stdout, Output::Fifo("/w/q".into()));
        assert_eq!(serde_json::to_string(&req).unwrap(), json);
    }

    #[test]
    fn defaults_of_older_requests_hold() {
        let req: Request =
            serde_json::from_str(r#"{"stages":[{"argv":["ls"],"stdout":{"file":"o"}}]}"#).unwrap();
        let stage = &req.stages[0];
        assert_eq!(stage.cwd, "/");
        assert_eq!(stage.stdin, Input::Inherit);
        assert_eq!(stage.stderr, Output::Inherit);
        assert_eq!(
            stage.stdout,
            Output::File {
                file: "o".into(),
                mode: OutputMode::Write,
                offset: None
            }
        );
    }

    #[test]
    fn unknown_values_are_errors() {
        for bad in [
            r#"{"stages":[{"argv":["ls"],"stdout":"inhert"}]}"#,
            r#"{"stages":[{"argv":["ls"],"stdin":"capture"}]}"#,
            r#"{"stages":[{"argv":["ls"],"stdout":{"data":"x"}}]}"#,
            r#"{"stages":[{"argv":["ls"],"stdout":{"file":"o","mode":"truncate"}}]}"#,
            r#"{"stages":[{"argv":["ls"],"stdin":{"file":"o","mode":"write"}}]}"#,
        ] {
            let err = serde_json::from_str::<Request>(bad)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("unknown "), "{bad}: {err}");
        }
    }

    #[test]
    fn response_json_is_unchanged() {
        let json = serde_json::to_string(&Response::refused("no")).unwrap();
        assert_eq!(
            json,
            r#"{"statuses":[],"stdout":"","stderr":"","error":"no"}"#
        );
        let old: Response = serde_json::from_str(r#"{"statuses":[0,1]}"#).unwrap();
        assert_eq!(old.statuses, [0, 1]);
        assert_eq!(old.job, None);
    }

    /// `spawn_start` and `spawn_wait` name the job; plain `spawn` results stay as they were.
    #[test]
    fn job_results_name_the_job() {
        let started = Response {
            job: Some(3),
            ..Response::default()
        };
        let json = serde_json::to_string(&started).unwrap();
        assert_eq!(
            json,
            r#"{"statuses":[],"stdout":"","stderr":"","error":null,"job":3}"#
        );
        assert_eq!(serde_json::from_str::<Response>(&json).unwrap(), started);
    }
}
