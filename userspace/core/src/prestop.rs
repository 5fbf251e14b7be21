//! The preStop hook of a container as the kubelet records it: the
//! `io.kubernetes.container.preStopHandler` annotation on the CRI container config (JSON of the
//! pod spec's `lifecycle.preStop` handler), or the pod spec itself. Pure parsing, bounded: the
//! handler is written by whoever wrote the pod spec.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The CRI container annotation that holds the handler.
pub const PRESTOP_ANNOTATION: &str = "io.kubernetes.container.preStopHandler";

/// Longest annotation read, and at most this many arguments of this many bytes are kept:
/// an exec handler longer than that cannot be matched exactly and is not kept at all.
const MAX_ANNOTATION: usize = 16 * 1024;
const MAX_ARGS: usize = 64;
const MAX_ARG: usize = 1024;

/// Which kind of hook (`PreStopStarted.handler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HandlerKind {
    /// A command the kubelet runs in the container through the runtime's ExecSync.
    Exec,
    /// The kubelet's own HTTP GET to the pod.
    Http,
    /// A pause in the kubelet between the deletion and the stop signal (no process).
    Sleep,
}

impl HandlerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::Http => "http",
            Self::Sleep => "sleep",
        }
    }
}

/// A preStop handler, as much of it as podlife uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreStop {
    Exec {
        argv: Vec<String>,
    },
    /// `port` is null for a named port (the kubelet resolves it from the container's ports).
    Http {
        port: Option<u16>,
        path: String,
    },
    Sleep {
        seconds: u64,
    },
}

impl PreStop {
    pub fn kind(&self) -> HandlerKind {
        match self {
            Self::Exec { .. } => HandlerKind::Exec,
            Self::Http { .. } => HandlerKind::Http,
            Self::Sleep { .. } => HandlerKind::Sleep,
        }
    }

    /// The handler of the annotation's JSON. `Err` says why it was not taken.
    pub fn from_annotation(json: &str) -> Result<Self, PreStopError> {
        if json.len() > MAX_ANNOTATION {
            return Err(PreStopError::TooLong(json.len()));
        }
        let v: Value = serde_json::from_str(json).map_err(|e| PreStopError::Json(e.to_string()))?;
        Self::from_value(&v)
    }

    /// The handler of a `LifecycleHandler` object (`exec`, `httpGet` or `sleep`).
    pub fn from_value(v: &Value) -> Result<Self, PreStopError> {
        if let Some(cmd) = v.pointer("/exec/command") {
            let args = cmd.as_array().ok_or(PreStopError::Shape("exec.command"))?;
            if args.is_empty() || args.len() > MAX_ARGS {
                return Err(PreStopError::Shape("exec.command"));
            }
            let argv = args
                .iter()
                .map(|a| {
                    a.as_str()
                        .filter(|s| s.len() <= MAX_ARG)
                        .map(str::to_string)
                })
                .collect::<Option<Vec<_>>>()
                .ok_or(PreStopError::Shape("exec.command"))?;
            return Ok(Self::Exec { argv });
        }
        if let Some(h) = v.get("httpGet") {
            let port = h
                .get("port")
                .and_then(|p| match p {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.parse().ok(),
                    _ => None,
                })
                .and_then(|p| u16::try_from(p).ok());
            let path: String = h
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or("/")
                .chars()
                .take(MAX_ARG)
                .collect();
            return Ok(Self::Http { port, path });
        }
        if let Some(s) = v.pointer("/sleep/seconds") {
            let seconds = s.as_u64().ok_or(PreStopError::Shape("sleep.seconds"))?;
            return Ok(Self::Sleep { seconds });
        }
        Err(PreStopError::Shape("exec, httpGet or sleep"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreStopError {
    TooLong(usize),
    Json(String),
    Shape(&'static str),
}

impl std::fmt::Display for PreStopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLong(n) => write!(
                f,
                "the preStop annotation has {n} bytes, more than {MAX_ANNOTATION}: not read"
            ),
            Self::Json(e) => write!(f, "the preStop annotation is not JSON: {e}"),
            Self::Shape(what) => write!(f, "the preStop annotation has no valid {what}"),
        }
    }
}

impl std::error::Error for PreStopError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_handlers_as_the_kubelet_writes_them() {
        assert_eq!(
            PreStop::from_annotation(r#"{"exec":{"command":["sh","-c","sleep 1"]}}"#),
            Ok(PreStop::Exec {
                argv: vec!["sh".into(), "-c".into(), "sleep 1".into()]
            })
        );
        assert_eq!(
            PreStop::from_annotation(
                r#"{"httpGet":{"path":"/drain","port":8080,"host":"","scheme":"HTTP"}}"#
            ),
            Ok(PreStop::Http {
                port: Some(8080),
                path: "/drain".into()
            })
        );
        assert_eq!(
            PreStop::from_annotation(r#"{"httpGet":{"port":"http"}}"#),
            Ok(PreStop::Http {
                port: None,
                path: "/".into()
            }),
            "a named port is unknown here"
        );
        assert_eq!(
            PreStop::from_annotation(r#"{"sleep":{"seconds":5}}"#),
            Ok(PreStop::Sleep { seconds: 5 })
        );
    }

    #[test]
    fn bad_handlers_are_errors_not_panics() {
        for bad in [
            "",
            "{",
            "[]",
            "{}",
            r#"{"exec":{"command":[]}}"#,
            r#"{"exec":{"command":"sleep 1"}}"#,
            r#"{"exec":{"command":["a",1]}}"#,
            r#"{"sleep":{"seconds":-1}}"#,
            r#"{"tcpSocket":{"port":80}}"#,
        ] {
            let e = PreStop::from_annotation(bad).expect_err(bad);
            assert!(!e.to_string().is_empty());
        }
        let long = format!(
            r#"{{"exec":{{"command":["{}"]}}}}"#,
            "x".repeat(MAX_ANNOTATION)
        );
        assert!(matches!(
            PreStop::from_annotation(&long),
            Err(PreStopError::TooLong(_))
        ));
        let many: Vec<String> = (0..=MAX_ARGS).map(|i| format!("\"{i}\"")).collect();
        let many = format!(r#"{{"exec":{{"command":[{}]}}}}"#, many.join(","));
        assert!(PreStop::from_annotation(&many).is_err());
    }
}
