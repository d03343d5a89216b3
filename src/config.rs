//! The configuration file. Everything in it can also be set through
//! [`SnakepitBuilder`](crate::SnakepitBuilder); with neither, the embedded
//! default (`src/default.toml`: one pool of the showcase adapter) applies.
//!
//! ```toml
//! [python]
//! base = "python3"          # builds the managed venv
//! venv = "/srv/snakepit/venv"  # default: `venv` in the data directory
//!                           # or `interpreter = "/usr/bin/python3"` to use one as is
//!
//! [metrics]
//! addr = "127.0.0.1:9568"   # Prometheus endpoint
//!
//! [server]                  # read by `snakepit serve`; flags override it
//! listen = "127.0.0.1:50051"  # or "unix:/run/snakepit.sock"
//! token_file = "/etc/snakepit/token"  # calls need `authorization: Bearer <token>`
//! tls_cert = "cert.pem"     # TLS: both of these
//! tls_key = "key.pem"
//! client_ca = "ca.pem"      # mTLS: clients need a certificate signed by it
//! insecure = false          # true: allow a non-loopback address without a token
//!
//! [remote]                  # node agents dial here (`snakepit agent --connect`)
//! listen = "0.0.0.0:7447"
//! token_file = "/etc/snakepit/agent-token"  # agents must present it
//! tls_cert = "cert.pem"     # TLS, and mTLS with client_ca, as for [server]
//! tls_key = "key.pem"
//! heartbeat_ms = 1000       # each side's heartbeat on the link
//! liveness_timeout_ms = 3000  # silence that ends a link (a partition)
//!
//! [sessions]
//! ttl_ms = 3600000          # unused this long: released
//! max_sessions = 10000
//! cleanup_timeout_ms = 10000
//!
//! [[pools]]
//! name = "default"
//! size = 2
//! adapter = "snakepit_bridge.adapters.showcase.ShowcaseAdapter"
//! queue_timeout_ms = 5000
//! env_passthrough = ["HOME", "LANG", "LC_*"]  # unset: the whole host environment
//! python_path = ["."]       # directories prepended to the workers' sys.path
//!
//! [[pools]]                 # a pool with an environment of its own
//! name = "stats"
//! adapter = "stats_adapter.StatsAdapter"
//! python = "3.12"           # a version to find, a command, or a path
//! requirements = ["psutil>=5"]
//! requirements_file = "requirements.txt"  # relative to this file
//! ```
//!
//! In a file read with [`Config::load`], a relative directory or file path is
//! relative to the file's own directory, wherever snakepit runs from: a
//! pool's `python_path` and `ffi.helper_dirs`, and the `token_file`,
//! `tls_cert`, `tls_key` and `client_ca` of `[server]` and `[remote]`.
//! Interpreters (`[python]`, a pool's `python`) are left as written: a bare
//! name such as `python3` is looked up on `PATH`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use snakepit_actors::{PoolConfig, SessionsConfig};

use crate::Error;

/// The embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// A whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Where Python comes from.
    pub python: PythonSection,
    /// The metrics endpoint.
    pub metrics: MetricsSection,
    /// Session limits and timeouts.
    pub sessions: SessionsConfig,
    /// The gRPC server of `snakepit serve`.
    pub server: ServerSection,
    /// Where node agents attach, for pools declared `remote = true`.
    pub remote: RemoteSection,
    /// The pools.
    pub pools: Vec<PoolConfig>,
}

/// `[python]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PythonSection {
    /// Interpreter that creates the venv.
    pub base: Option<PathBuf>,
    /// Venv directory.
    pub venv: Option<PathBuf>,
    /// Use this interpreter as it is (no venv); it must have the bridge installed.
    pub interpreter: Option<PathBuf>,
}

/// `[metrics]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MetricsSection {
    /// Address of the Prometheus endpoint; unset serves none.
    pub addr: Option<SocketAddr>,
}

/// `[server]`: what `snakepit serve` listens on and how it lets clients
/// in (see [`ServeConfig::from_section`](crate::server::ServeConfig::from_section)).
/// The runtime does not serve because of it: `snakepit serve`, or
/// [`SnakepitBuilder::serve`](crate::SnakepitBuilder::serve), does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerSection {
    /// `HOST:PORT` or `unix:PATH` (default `127.0.0.1:50051`).
    pub listen: Option<String>,
    /// A file holding the bearer token calls must carry.
    pub token_file: Option<PathBuf>,
    /// The server's certificate chain (PEM); TLS with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Clients must present a certificate signed by this CA (PEM): mTLS.
    pub client_ca: Option<PathBuf>,
    /// Allows a non-loopback address without a token.
    pub insecure: bool,
}

/// `[remote]`: where node agents (`snakepit agent`) dial the host, how
/// they are let in, and how the links are kept. With `listen` set, the
/// runtime listens for agents from its start (embedded or `snakepit
/// serve`); remote pools take their workers from them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RemoteSection {
    /// `HOST:PORT` or `unix:PATH`; unset: no agent can attach.
    pub listen: Option<String>,
    /// A file holding the bearer token agents must present.
    pub token_file: Option<PathBuf>,
    /// The listener's certificate chain (PEM); TLS with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Agents must present a certificate signed by this CA (PEM): mTLS.
    pub client_ca: Option<PathBuf>,
    /// Allows a non-loopback address without a token.
    pub insecure: bool,
    /// How often each side of a link sends a heartbeat.
    #[serde(rename = "heartbeat_ms", with = "snakepit_actors::config::millis")]
    pub heartbeat: std::time::Duration,
    /// A link that carried nothing for this long is ended by either side
    /// (an agent that died without a FIN, or a partition); its workers'
    /// requests fail with `WorkerCrashed` naming the agent.
    #[serde(
        rename = "liveness_timeout_ms",
        with = "snakepit_actors::config::millis"
    )]
    pub liveness_timeout: std::time::Duration,
}

impl Default for RemoteSection {
    fn default() -> Self {
        Self {
            listen: None,
            token_file: None,
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            insecure: false,
            heartbeat: std::time::Duration::from_millis(1000),
            liveness_timeout: std::time::Duration::from_millis(3000),
        }
    }
}

impl Config {
    /// The embedded default.
    pub fn embedded() -> Self {
        Self::parse(DEFAULT_TOML).expect("the embedded default configuration parses")
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let config: Config = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        for pool in &config.pools {
            pool.validate()?;
        }
        Ok(config)
    }

    /// Reads and parses a file; its relative paths are then relative to the
    /// file's directory (see the module's documentation).
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut config = Self::parse(&text).map_err(|e| match e {
            Error::Config(msg) => Error::Config(format!("{}: {msg}", path.display())),
            other => other,
        })?;
        let dir = std::path::absolute(path)
            .map_err(|e| Error::Config(format!("cannot resolve {}: {e}", path.display())))?;
        config.resolve_paths(dir.parent().unwrap_or(Path::new("/")));
        Ok(config)
    }

    /// Makes the relative directory and file paths relative to `dir`.
    fn resolve_paths(&mut self, dir: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                let mut joined = dir.to_path_buf();
                joined.extend(
                    path.components()
                        .filter(|c| *c != std::path::Component::CurDir),
                );
                *path = joined;
            }
        };
        for section in [
            (
                &mut self.server.token_file,
                &mut self.server.tls_cert,
                &mut self.server.tls_key,
                &mut self.server.client_ca,
            ),
            (
                &mut self.remote.token_file,
                &mut self.remote.tls_cert,
                &mut self.remote.tls_key,
                &mut self.remote.client_ca,
            ),
        ] {
            let (token, cert, key, ca) = section;
            for path in [token, cert, key, ca].into_iter().flatten() {
                resolve(path);
            }
        }
        for pool in &mut self.pools {
            pool.python_path.iter_mut().for_each(resolve);
            pool.ffi.helper_dirs.iter_mut().for_each(resolve);
            pool.requirements_file.iter_mut().for_each(resolve);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_loaded_file_resolves_its_relative_paths_against_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("snakepit.toml");
        std::fs::write(
            &file,
            r#"
            [server]
            token_file = "secrets/token"
            tls_cert = "/etc/cert.pem"
            [[pools]]
            name = "a"
            python = "python3"
            python_path = [".", "lib", "/opt/x"]
            ffi = { helper_dirs = ["helpers"] }
            "#,
        )
        .unwrap();
        let config = Config::load(&file).unwrap();
        let pool = &config.pools[0];
        let root = dir.path();
        assert_eq!(
            pool.python_path,
            [
                root.to_path_buf(),
                root.join("lib"),
                PathBuf::from("/opt/x")
            ]
        );
        assert_eq!(pool.ffi.helper_dirs, [root.join("helpers")]);
        assert_eq!(pool.python.as_deref(), Some(Path::new("python3")));
        assert_eq!(config.server.token_file, Some(root.join("secrets/token")));
        assert_eq!(
            config.server.tls_cert.as_deref(),
            Some(Path::new("/etc/cert.pem"))
        );
    }

    #[test]
    fn the_embedded_default_has_one_showcase_pool() {
        let config = Config::embedded();
        assert_eq!(config.pools.len(), 1);
        assert_eq!(config.pools[0].adapter, snakepit_actors::SHOWCASE_ADAPTER);
    }

    #[test]
    fn a_file_sets_pool_fields_and_keeps_defaults_for_the_rest() {
        let config = Config::parse(
            r#"
            [python]
            venv = "/tmp/v"
            [[pools]]
            name = "ml"
            size = 3
            adapter = "my.Adapter"
            profile = "thread"
            queue_timeout_ms = 100
            env = { A = "1" }
            "#,
        )
        .unwrap();
        let pool = &config.pools[0];
        assert_eq!((pool.name.as_str(), pool.size), ("ml", 3));
        assert_eq!(pool.profile, snakepit_actors::Profile::Thread);
        assert_eq!(pool.queue_timeout, Duration::from_millis(100));
        assert_eq!(pool.queue_capacity, 1000);
        assert_eq!(pool.env["A"], "1");
    }

    #[test]
    fn the_commented_supervision_settings_parse_as_written() {
        // The embedded file documents every supervision option in comments;
        // uncommented, they must parse to exactly what they say.
        let text: String = DEFAULT_TOML
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|r| r.contains('=') || r.starts_with('['))
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = Config::parse(&text).unwrap();
        let pool = &config.pools[0];
        assert_eq!(pool.worker_ttl, Some(Duration::from_secs(3600)));
        assert_eq!(pool.max_requests, Some(10_000));
        assert_eq!(pool.max_memory_mb, Some(2048));
        assert_eq!(pool.drain_timeout, Duration::from_secs(30));
        assert_eq!(pool.restart, snakepit_actors::RestartPolicy::default());
        assert_eq!(pool.heartbeat, snakepit_actors::HeartbeatConfig::default());
        assert_eq!(config.sessions, snakepit_actors::SessionsConfig::default());
        assert_eq!(config.server.listen.as_deref(), Some("127.0.0.1:50051"));
        assert!(!config.server.insecure);
    }

    #[test]
    fn the_server_section_reads_every_field() {
        let config = Config::parse(
            r#"
            [server]
            listen = "unix:/tmp/s.sock"
            token_file = "t"
            tls_cert = "c.pem"
            tls_key = "k.pem"
            client_ca = "ca.pem"
            insecure = true
            "#,
        )
        .unwrap();
        let s = &config.server;
        assert_eq!(s.listen.as_deref(), Some("unix:/tmp/s.sock"));
        assert_eq!(s.token_file.as_deref(), Some(Path::new("t")));
        assert_eq!(s.client_ca.as_deref(), Some(Path::new("ca.pem")));
        assert!(s.insecure);
        assert!(Config::parse("[server]\nport = 1\n").is_err());
    }

    #[test]
    fn the_remote_section_reads_every_field_and_checks_the_link() {
        let config = Config::parse(
            r#"
            [remote]
            listen = "0.0.0.0:7447"
            token_file = "t"
            tls_cert = "c.pem"
            tls_key = "k.pem"
            client_ca = "ca.pem"
            heartbeat_ms = 500
            liveness_timeout_ms = 2000

            [[pools]]
            name = "gpu"
            remote = true
            "#,
        )
        .unwrap();
        let r = &config.remote;
        assert_eq!(r.listen.as_deref(), Some("0.0.0.0:7447"));
        assert_eq!(
            (r.heartbeat, r.liveness_timeout),
            (Duration::from_millis(500), Duration::from_millis(2000))
        );
        assert!(config.pools[0].remote);
        assert!(!Config::embedded().pools[0].remote);
        assert_eq!(Config::embedded().remote, RemoteSection::default());
        assert!(
            Config::parse(
                "[remote]
port = 1
"
            )
            .is_err()
        );
        // No address: no listener.
        let none = crate::AttachConfig::from_section(&RemoteSection::default()).unwrap();
        assert!(none.is_none());
        let silly = RemoteSection {
            listen: Some("127.0.0.1:0".into()),
            heartbeat: Duration::from_millis(1000),
            liveness_timeout: Duration::from_millis(1500),
            ..RemoteSection::default()
        };
        let err = crate::AttachConfig::from_section(&silly).unwrap_err();
        assert!(err.to_string().contains("at least twice"), "{err}");
        // Off loopback it needs a token, as the API server does.
        let open = RemoteSection {
            listen: Some("0.0.0.0:7447".into()),
            ..RemoteSection::default()
        };
        let err = crate::AttachConfig::from_section(&open)
            .unwrap()
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("without a token"), "{err}");
    }

    #[test]
    fn a_requirements_file_is_relative_to_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snakepit.toml");
        std::fs::write(
            &path,
            "[[pools]]\nname = \"p\"\npython = \"3.12\"\nrequirements = [\"psutil>=5\"]\n\
             requirements_file = \"reqs.txt\"\n",
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        let pool = &config.pools[0];
        assert_eq!(pool.requirements, ["psutil>=5"]);
        assert_eq!(pool.python.as_deref(), Some(Path::new("3.12")));
        assert_eq!(pool.requirements_file, Some(dir.path().join("reqs.txt")));
        let err =
            Config::parse("[[pools]]\nname = \"p\"\nrequirements = [\"-e .\"]\n").unwrap_err();
        assert!(err.to_string().contains("requirements entry"), "{err}");
    }

    #[test]
    fn unknown_fields_and_bad_values_are_errors() {
        let err = Config::parse("[[pools]]\nname = \"x\"\nsise = 2\n").unwrap_err();
        assert!(err.to_string().contains("sise"), "{err}");
        let err = Config::parse("[[pools]]\nname = \"x\"\nsize = 0\n").unwrap_err();
        assert!(err.to_string().contains("size must be at least 1"), "{err}");
    }

    #[test]
    fn env_passthrough_entries_must_be_names_or_prefixes() {
        for bad in ["", "*", "A*B", "A=B", "**"] {
            let mut cfg = PoolConfig::named("bad").with_env_passthrough([bad]);
            cfg.size = 1;
            let err = cfg.validate().expect_err(bad);
            assert!(matches!(err, Error::Config(_)), "{bad:?}: {err:?}");
        }
        let toml = "[[pools]]\nname = \"p\"\nenv_passthrough = [\"HOME\", \"LC_*\"]\n";
        let config = Config::parse(toml).expect("parses");
        assert_eq!(
            config.pools[0].env_passthrough,
            Some(vec!["HOME".to_string(), "LC_*".to_string()])
        );
    }
}
