//! Go-style command-line flags, as containerd passes them to every shim.
//!
//! containerd invokes `containerd-shim-<name>-v2 -namespace NS -address A -publish-binary B -id ID
//! [-bundle B] [-debug] start|delete`, using Go's `flag` package conventions: one or two dashes,
//! `-name value` or `-name=value`, booleans without a value, and the first non-flag word is the action.

use std::fmt;

/// Everything containerd (or a user) can put on the shim's command line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Flags {
    pub namespace: String,
    pub id: String,
    pub address: String,
    pub publish_binary: String,
    pub bundle: String,
    pub socket: String,
    pub debug: bool,
    pub version: bool,
    pub info: bool,
    /// `start`, `delete`, or empty (serve as the daemon when re-executed by `start`).
    pub action: String,
}

/// A command line containerd would never produce: an unknown flag or a missing value.
#[derive(Debug, PartialEq, Eq)]
pub struct FlagError(pub String);

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid command line: {}", self.0)
    }
}

impl std::error::Error for FlagError {}

fn parse_bool(name: &str, v: &str) -> Result<bool, FlagError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(FlagError(format!(
            "invalid boolean value {v:?} for -{name}"
        ))),
    }
}

impl Flags {
    /// Parses the arguments after the program name.
    pub fn parse<I, S>(args: I) -> Result<Flags, FlagError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut flags = Flags::default();
        let mut it = args.into_iter().map(Into::into).peekable();
        while let Some(arg) = it.next() {
            if arg == "--" {
                if let Some(action) = it.next() {
                    flags.action = action;
                }
                break;
            }
            let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                // Go's flag package stops at the first non-flag argument: the action.
                flags.action = arg;
                break;
            };
            if body.is_empty() {
                return Err(FlagError(format!("bad flag syntax: {arg}")));
            }
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (body.to_string(), None),
            };
            let boolean = match name.as_str() {
                "debug" => Some(&mut flags.debug),
                "v" => Some(&mut flags.version),
                "info" => Some(&mut flags.info),
                _ => None,
            };
            if let Some(slot) = boolean {
                *slot = match inline {
                    Some(v) => parse_bool(&name, &v)?,
                    None => true,
                };
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .ok_or_else(|| FlagError(format!("flag needs an argument: -{name}")))?,
            };
            let slot = match name.as_str() {
                "namespace" => &mut flags.namespace,
                "id" => &mut flags.id,
                "address" => &mut flags.address,
                "publish-binary" => &mut flags.publish_binary,
                "bundle" => &mut flags.bundle,
                "socket" => &mut flags.socket,
                other => {
                    return Err(FlagError(format!(
                        "flag provided but not defined: -{other}"
                    )))
                }
            };
            *slot = value;
        }
        Ok(flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_containerd_start_line() {
        let f = Flags::parse([
            "-namespace",
            "default",
            "-address",
            "/run/containerd/containerd.sock",
            "-publish-binary",
            "/usr/bin/containerd",
            "-id",
            "c1",
            "-debug",
            "start",
        ])
        .unwrap();
        assert_eq!(f.namespace, "default");
        assert_eq!(f.address, "/run/containerd/containerd.sock");
        assert_eq!(f.publish_binary, "/usr/bin/containerd");
        assert_eq!(f.id, "c1");
        assert!(f.debug);
        assert_eq!(f.action, "start");
    }

    #[test]
    fn accepts_equals_and_double_dash() {
        let f = Flags::parse(["--id=x", "-bundle=/b", "-debug=false", "delete"]).unwrap();
        assert_eq!(f.id, "x");
        assert_eq!(f.bundle, "/b");
        assert!(!f.debug);
        assert_eq!(f.action, "delete");
    }

    #[test]
    fn version_and_info() {
        assert!(Flags::parse(["-v"]).unwrap().version);
        assert!(Flags::parse(["-info"]).unwrap().info);
    }

    #[test]
    fn rejects_unknown_and_missing_values() {
        assert!(Flags::parse(["-bogus", "1"]).is_err());
        assert!(Flags::parse(["-id"]).is_err());
        assert!(Flags::parse(["-debug=maybe"]).is_err());
        assert!(Flags::parse(["-"]).is_err());
    }

    #[test]
    fn action_stops_parsing() {
        let f = Flags::parse(["-id", "a", "start", "-id", "b"]).unwrap();
        assert_eq!(f.id, "a");
        assert_eq!(f.action, "start");
    }
}
