//! `fluentd-address`: where the fluentd driver sends, parsed the way dockerd reads it.
//!
//! dockerd accepts `tcp://host:port`, `unix:///path`, and a bare `host:port`; a missing port is
//! 24224 and an empty value is `tcp://127.0.0.1:24224`. Where dockerd's parser goes wrong (a
//! bare `host` without a port loses the host and silently reaches 127.0.0.1), Scribe keeps the
//! host. `udp://`, `unixgram://` and `tls://` are refused: fluent-logger-golang cannot speak
//! the forward protocol over datagrams, and Scribe has no TLS client.

use std::fmt;

/// fluentd's default forward port.
pub const DEFAULT_PORT: u16 = 24224;

/// The address used when `fluentd-address` is not given: dockerd's default host (its code
/// says 127.0.0.1, not `localhost` as its docs do: no name lookup).
pub const DEFAULT_ADDRESS: &str = "tcp://127.0.0.1:24224";

/// A parsed `fluentd-address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A TCP peer: a host name or IP literal (IPv6 without brackets) and a port.
    Tcp {
        /// Host name or IP.
        host: String,
        /// Port.
        port: u16,
    },
    /// A unix stream socket.
    Unix(String),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            Address::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Address::Unix(p) => write!(f, "unix://{p}"),
        }
    }
}

impl Address {
    /// Parses a `fluentd-address` value; `""` is [`DEFAULT_ADDRESS`]. Errors say what is wrong.
    pub fn parse(value: &str) -> Result<Address, String> {
        let v = value.trim();
        if v.is_empty() {
            return Address::parse(DEFAULT_ADDRESS);
        }
        let rest = match v.split_once("://") {
            Some(("unix", path)) => {
                if !path.starts_with('/') {
                    return Err(
                        "a unix:// address needs an absolute path (unix:///run/fluentd.sock)"
                            .into(),
                    );
                }
                return Ok(Address::Unix(path.to_owned()));
            }
            Some(("tcp", rest)) => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "scheme {scheme}:// is not supported: expected tcp://host:port or unix:///path"
                ))
            }
            None => v,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err("a tcp address takes no path".into());
        }
        let (host, port) = split_host_port(rest)?;
        if host.is_empty() {
            return Err("no host given".into());
        }
        Ok(Address::Tcp {
            host: host.to_owned(),
            port,
        })
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(s: &str) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(r) = s.strip_prefix('[') {
        let (h, after) = r
            .split_once(']')
            .ok_or_else(|| "missing ] after an IPv6 address".to_string())?;
        match after {
            "" => (h, None),
            p => (
                h,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("unexpected {p:?} after ]"))?,
                ),
            ),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err("an IPv6 address needs brackets: [::1]:24224".into())
            }
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("invalid port {p:?}")),
        },
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(h: &str, p: u16) -> Address {
        Address::Tcp {
            host: h.into(),
            port: p,
        }
    }

    #[test]
    fn dockerd_forms() {
        assert_eq!(Address::parse("").unwrap(), tcp("127.0.0.1", 24224));
        assert_eq!(
            Address::parse("tcp://1.2.3.4:9").unwrap(),
            tcp("1.2.3.4", 9)
        );
        assert_eq!(Address::parse("tcp://fl:9/").unwrap(), tcp("fl", 9));
        assert_eq!(Address::parse("fl:9").unwrap(), tcp("fl", 9));
        assert_eq!(Address::parse("fl").unwrap(), tcp("fl", 24224));
        assert_eq!(Address::parse("tcp://fl").unwrap(), tcp("fl", 24224));
        assert_eq!(Address::parse("[::1]:7").unwrap(), tcp("::1", 7));
        assert_eq!(
            Address::parse("unix:///run/f.sock").unwrap(),
            Address::Unix("/run/f.sock".into())
        );
        assert_eq!(tcp("::1", 7).to_string(), "tcp://[::1]:7");
        assert_eq!(
            Address::parse("unix:///a").unwrap().to_string(),
            "unix:///a"
        );
    }

    #[test]
    fn refused() {
        for bad in [
            "udp://h:1",
            "tls://h:1",
            "unix://rel",
            "tcp://h:x",
            "tcp://h:0",
            "tcp://h:99999",
            "tcp://h:1/path",
            "tcp://:1",
            "::1",
            "[::1",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }
}
