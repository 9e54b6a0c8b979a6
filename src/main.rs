//! The `logferry` command: parse the command line, load the config, run until SIGTERM/SIGINT.

use clap::{Parser, Subcommand};
use logferry::config::Config;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    version,
    about = "Ships Kubernetes container logs to Elasticsearch, losing nothing",
    // The demo is not a subcommand: it installs osmem-server with pip, which the binary a node
    // runs must not be able to do. It lives in the dev-only harness and runs this binary.
    after_help = "To watch it ship generated container logs to a local OpenSearch-compatible \
                  server end to end, run scripts/demo from a clone of the repository."
)]
struct Cli {
    /// The TOML config file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "/etc/logferry/logferry.toml"
    )]
    config: PathBuf,
    /// Run: also reload the config when the file's content changes (checked every few seconds;
    /// a ConfigMap update). SIGHUP reloads it either way.
    #[arg(long, global = true)]
    watch_config: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent (the default).
    Run,
    /// Check a config file: prints every problem with file, line and key; exits 1 if any.
    Validate,
    /// Install the index templates and lifecycle policies the config asks for, once, and exit
    /// (for a Kubernetes Job); exits 1 if any could not be installed.
    Setup,
    /// Convert a Fluentd configuration: writes the TOML to --output (stdout when unset), lists
    /// what it could not convert on stderr; exits 2 when it did, 1 on malformed input.
    Convert {
        input: PathBuf,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Run pipeline tests: each case's lines through the config's stages (decode, multiline,
    /// pod metadata, parse, redaction, routing, encoding), offline, against what its
    /// [[case.expect]] say; exits 1 if any case fails, 2 if a case file or the config is broken.
    Test {
        /// Case files (TOML, [[case]] tables); see docs/pipeline-tests.md.
        #[arg(required = true)]
        cases: Vec<PathBuf>,
    },
    /// Watch a running agent in the terminal: health, lines in, documents out, lag, buffer,
    /// latency, CPU and memory, from its /metrics and /health; q quits. Prints one plain
    /// snapshot instead with --once or when stdout is not a terminal.
    Top {
        /// The agent's API, e.g. http://127.0.0.1:2020 (a kubectl port-forward); default: the
        /// config's api.listen, or http://127.0.0.1:2020 without a config.
        #[arg(long)]
        url: Option<String>,
        /// One plain snapshot (rates over one second), for scripts and bug reports.
        #[arg(long)]
        once: bool,
    },
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    // The monotonic clock's zero: liveness deadlines are measured from here, not from the
    // first reading somewhere in a stage.
    let _ = logferry::vocab::clock::now_ms();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Cmd::Run) {
        Cmd::Validate => match Config::load(&cli.config) {
            Ok(cfg) => {
                // Not an error: the volume may be mounted, or emptied, before the agent starts.
                let segment = cfg.buffer.segment_size();
                if let Some(w) = logferry::buffer::check_free_space(&cfg.buffer_dir(), segment) {
                    eprintln!("{}: warning: {w}", cli.config.display());
                }
                for w in cfg.redact.warnings() {
                    eprintln!("{}: warning: {w}", cli.config.display());
                }
                println!("{}: ok", cli.config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Setup => {
            let cfg = match Config::load(&cli.config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let _ = init_logging(&cfg.log_level);
            finish(runtime().and_then(|rt| rt.block_on(setup_once(&cfg))))
        }
        Cmd::Test { cases } => ExitCode::from(logferry::pipetest::run(
            &cli.config,
            &cases,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        )),
        Cmd::Convert { input, output } => convert(&input, output.as_deref()),
        Cmd::Top { url, once } => match logferry::top::run(url.as_deref(), &cli.config, once) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("logferry top: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Run => {
            let cfg = match Config::load(&cli.config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let set_log_level = init_logging(&cfg.log_level);
            raise_open_files_limit();
            let reload = logferry::agent::reload::Options {
                path: cli.config.clone(),
                watch: cli.watch_config,
                set_log_level,
            };
            let agent = logferry::agent::run(cfg, Some(reload), stop_signal());
            finish(runtime().and_then(|rt| rt.block_on(agent)))
        }
    }
}

/// `logferry convert`: 0 converted, 2 converted with warnings, 1 nothing written.
fn convert(input: &std::path::Path, output: Option<&std::path::Path>) -> ExitCode {
    let conversion = match logferry::migrate::convert::convert(input) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    for w in &conversion.warnings {
        eprintln!("{w}");
    }
    let written = match output {
        Some(path) => std::fs::write(path, &conversion.toml),
        None => std::io::Write::write_all(&mut std::io::stdout(), conversion.toml.as_bytes()),
    };
    if let Err(e) = written {
        eprintln!("logferry convert: cannot write the config: {e}");
        return ExitCode::FAILURE;
    }
    if conversion.warnings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// glibc gives each thread that allocates its own arena (up to 8 per core), and memory freed in
/// one is not reused by the others: the tailer, the committer and the runtime's workers would
/// each keep a high-water mark. Two arenas cost no measurable CPU here and cut the benchmark's
/// peak RSS by about a seventh (docs/speed.md, "Speed and cost"). Must run before any thread starts.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// A node's log files each cost the tailer a descriptor while it reads them, and the default
/// soft limit (1024) is far below what a busy node needs, while the hard limit is there to be
/// claimed: raise the soft limit to it. The tailer keeps within whatever it gets (its budget is
/// this limit less a reserve for the buffer, checkpoints, sockets and the API).
fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let (was, hard) = (lim.current, lim.maximum);
    let mut now = was;
    if was < hard || (was.is_some() && hard.is_none()) {
        let raised = Rlimit {
            current: hard,
            maximum: hard,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => now = hard,
            Err(e) => {
                tracing::warn!(error = %std::io::Error::from(e), soft = %limit(was), "cannot raise the open-files limit")
            }
        }
    }
    tracing::info!(was = %limit(was), now = %limit(now), hard = %limit(hard), "open-files limit");
}

/// A resource limit as `ulimit` shows it: a number, or "unlimited".
fn limit(l: Option<u64>) -> String {
    l.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}

/// `logferry setup`: one attempt, each step reported on stdout.
async fn setup_once(cfg: &Config) -> anyhow::Result<()> {
    use logferry::sink::elasticsearch::setup::Setup;
    use std::sync::Arc;
    if cfg.kafka.is_some() {
        println!(
            "nothing to install from this config: records go to Kafka ([kafka]); run setup with the config of the agent that indexes the topic"
        );
        return Ok(());
    }
    let connector = Arc::new(logferry::sink::elasticsearch::Connector::new(
        &cfg.elasticsearch,
    )?);
    let metrics = Arc::new(logferry::metrics::Metrics::new());
    let setup = Setup::for_job(cfg, connector, metrics);
    if setup.plan().is_empty() {
        println!("nothing to install: elasticsearch.setup asks for no templates or policies");
        return Ok(());
    }
    let (steps, result) = setup.attempt().await;
    for step in &steps {
        println!("{} {}: {}", step.kind, step.name, step.outcome.as_str());
    }
    result?;
    let stale = steps.iter().filter(|s| !s.outcome.in_place()).count();
    if stale > 0 {
        anyhow::bail!(
            "{stale} not as the config asks (elasticsearch.setup.overwrite = true replaces the agent's own; someone else's is never touched)"
        );
    }
    Ok(())
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logferry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Two workers: shipping is I/O-bound, and the tailer has a thread of its own.
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Resolves on the first SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// JSON on stderr for log collectors; plain text when a person is watching. The level comes
/// from `LOGFERRY_LOG` when set, else from the config's `log_level`, in `tracing`'s filter
/// syntax. Returns how a config reload changes the level: `None` when `LOGFERRY_LOG` decides it
/// (the environment is the operator's override, and a reload does not undo it).
fn init_logging(level: &str) -> Option<logferry::agent::reload::SetLogLevel> {
    use tracing_subscriber::EnvFilter;
    // kube's client logs every failed request as an error; the agent says it once itself.
    let filter_for = |level: &str| EnvFilter::try_new(format!("{level},kube_client=off"));
    let from_env = EnvFilter::try_from_env("LOGFERRY_LOG").ok();
    let env_decides = from_env.is_some();
    let filter =
        from_env.unwrap_or_else(|| filter_for(level).unwrap_or_else(|_| EnvFilter::new("info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    macro_rules! install {
        ($builder:expr) => {{
            let builder = $builder.with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |level: &str| {
                let filter = filter_for(level).map_err(|e| e.to_string())?;
                handle.reload(filter).map_err(|e| e.to_string())
            }) as logferry::agent::reload::SetLogLevel
        }};
    }
    let set = if std::io::stderr().is_terminal() {
        install!(builder)
    } else {
        install!(builder.json().flatten_event(true))
    };
    (!env_decides).then_some(set)
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::Parser;

    /// The demo installs osmem-server with pip; the binary a node runs must not offer it.
    #[test]
    fn the_shipped_binary_has_no_demo_subcommand() {
        let err = Cli::try_parse_from(["logferry", "demo"])
            .err()
            .expect("`logferry demo` is refused");
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidSubcommand);
    }
}
