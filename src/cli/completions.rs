//! `snakepit completions SHELL` and `snakepit man`: a shell completion
//! script and the manual pages, generated from the command's own
//! definition, so they name exactly the commands and flags it accepts.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use clap_complete::Shell;

/// `snakepit completions SHELL`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// Prints the completion script of `command` for the chosen shell.
pub fn completions(args: CompletionsArgs, mut command: clap::Command) -> anyhow::Result<ExitCode> {
    let name = command.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, name, &mut script);
    write_stdout(&script)
}

/// `snakepit man`.
#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write `snakepit.1` and a page per subcommand (`snakepit-exec.1`, ...)
    /// into this directory instead of printing `snakepit.1`.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// The exit codes, for the manual's EXIT STATUS section.
const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "success"),
    ("1", "the call, tool or check failed"),
    ("2", "usage: the command line cannot be run as written"),
    (
        "3",
        "environment: the configuration, the Python environment, the state \
         directory or workers that do not start prevent starting",
    ),
    (
        "128+N",
        "ended by signal N after a graceful shutdown: 130 after SIGINT, 143 after SIGTERM",
    ),
];

/// The variables the command reads, for the manual's ENVIRONMENT section.
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "SNAKEPIT_CONFIG",
        "the configuration file when --config is absent",
    ),
    (
        "SNAKEPIT_LOG",
        "the log filter when --log-level is absent (else RUST_LOG)",
    ),
    ("SNAKEPIT_LOG_FORMAT", "json: one JSON object per log line"),
    ("NO_COLOR", "set and not empty: no colours or progress bars"),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "export traces there when --otlp-endpoint is absent",
    ),
];

/// Prints the manual page of `command` (roff, section 1), or writes it and
/// one page per subcommand into `--dir`.
pub fn man(args: ManArgs, command: clap::Command) -> anyhow::Result<ExitCode> {
    let page = main_page(command.clone()).context("cannot render the manual page")?;
    let Some(dir) = args.dir else {
        return write_stdout(&page);
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(command, &dir)
        .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
    let main = dir.join("snakepit.1");
    std::fs::write(&main, page).with_context(|| format!("cannot write {}", main.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// `snakepit.1`: clap's sections, then EXIT STATUS and ENVIRONMENT.
fn main_page(command: clap::Command) -> std::io::Result<Vec<u8>> {
    use clap_mangen::roff::{Roff, bold, roman};
    let man = clap_mangen::Man::new(command);
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    let mut roff = Roff::new();
    for (title, entries) in [("EXIT STATUS", EXIT_STATUS), ("ENVIRONMENT", ENVIRONMENT)] {
        roff.control("SH", [title]);
        for (name, meaning) in entries {
            roff.control("TP", [])
                .text([bold(*name)])
                .text([roman(*meaning)]);
        }
    }
    roff.to_writer(&mut page)?;
    man.render_version_section(&mut page)?;
    Ok(page)
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}
