//! `eden-reconcile`: the command-line face of eden-consistency.
//!
//! A thin layer: parse the command line, load the config, call the library, print the
//! result, and map it to the exit codes of the contract: **0** all consistent / all done,
//! **1** differences found or conflicts left unresolved, **2** usage, config, connection or
//! any other error (printed once, as `eden-reconcile: <sentence>` on stderr).

mod cache;
mod cli;
mod commands;
mod output;
mod print;
mod summary;
mod unattended;

use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(e) => return cli::report_parse_error(e),
    };
    let started = std::time::Instant::now();
    let verbose = cli.global.verbose;
    init_logging(verbose);
    let mut summary = summary::Summary::new(
        unattended::command_name(&cli.command),
        unattended::database(&cli.command).map(str::to_string),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eden-reconcile: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let delivery = unattended::Delivery::new(&cli.global);
    let mut metrics = unattended::start(&cli);
    let code = match runtime.block_on(unattended::until_stopped(commands::run(
        cli,
        &mut metrics,
        &mut summary,
    ))) {
        Ok(outcome) => outcome.code(),
        Err(err) => {
            eprintln!("eden-reconcile: {}", one_line(&format!("{err:#}")));
            2
        }
    };
    // Metrics are written on every path, errors included; failing to deliver them is an
    // error of its own.
    if let Some(e) = runtime.block_on(delivery.deliver(&metrics, code)) {
        eprintln!("eden-reconcile: {}", one_line(&e));
        return ExitCode::from(2);
    }
    // One summary line per run for cron logs. A failed run (exit 2) says what went wrong
    // in its one error sentence; the summary follows it only with -v.
    if code != 2 || verbose > 0 {
        eprintln!("{}", summary.line(started.elapsed(), code as u8));
    }
    ExitCode::from(code as u8)
}

/// Errors are one sentence on one line, whatever the layers below wrote.
fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Logs go to stderr through `tracing`: the tool's own at `warn`, `-v` `info` (the phases
/// per table), `-vv` `debug`; the dependencies' (tokio_postgres, rustls, ...) only at `warn`
/// unless `EDEN_LOG` (a `tracing` filter such as `debug` or `eden_consistency=debug,
/// tokio_postgres=debug`) asks for more. `EDEN_LOG` replaces the whole filter.
fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "warn,eden_consistency=info,eden_reconcile=info",
        _ => "warn,eden_consistency=debug,eden_reconcile=debug",
    };
    let filter = std::env::var("EDEN_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
