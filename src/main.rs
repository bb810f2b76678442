// SPDX-License-Identifier: MIT
//! gitlab-runner-auth: parse, set up logging, run, map the error to one log
//! line and an exit code.

use gitlab_runner_auth::{cli, clock, commands, error, logging, metrics, settings, signals};

fn main() {
    // A bug must still end in one log line and the documented exit code.
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
        let msg = format!("internal error (a bug in gitlab-runner-auth{place}); please report it");
        if log::max_level() == log::LevelFilter::Off {
            eprintln!("gitlab-runner-auth: {msg}");
        } else {
            log::error!("{msg}");
        }
    }));
    let code = std::panic::catch_unwind(run).unwrap_or(error::Kind::Internal.exit_code());
    std::process::exit(code);
}

fn run() -> i32 {
    let argv: Vec<_> = std::env::args_os().skip(1).collect();
    let args = match cli::parse(argv, &|k| std::env::var(k).ok()) {
        Ok(a) => a,
        Err(e) => {
            // an option's value is quoted back: it may be a token
            eprintln!(
                "gitlab-runner-auth: {}",
                gitlab_runner_auth::secret::mask_tokens(&e.to_string(), &[])
            );
            return e.exit_code();
        }
    };
    if args.help {
        println!("{}{}", cli::HELP, error::EXIT_CODES);
        return 0;
    }
    if args.version {
        println!(
            "gitlab-runner-auth {} ({})",
            env!("CARGO_PKG_VERSION"),
            env!("TARGET")
        );
        return 0;
    }
    logging::init(args.verbose, args.quiet);
    signals::install();
    let started = std::time::Instant::now();
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from);
    let mut facts = metrics::Facts::default();
    let result = settings::Settings::from_args(&args, credentials)
        .and_then(|s| commands::run(&s, &mut facts));
    let code = match result {
        Ok(outcome) => exit_code(&outcome),
        Err(e) => {
            log::error!(
                "{}",
                gitlab_runner_auth::secret::mask_tokens(&e.to_string(), &[])
            );
            e.exit_code()
        }
    };
    // a failed run writes them too: how it ended is one of the metrics
    let command = metrics::reported(args.command, args.dry_run);
    if let (Some(path), Some(command)) = (&args.metrics_file, command) {
        let report = metrics::Report {
            command,
            finished: clock::now(),
            duration: started.elapsed(),
            exit_code: code,
            facts: &facts,
        };
        metrics::write(path, &report);
    }
    code
}

/// The exit code of a command that ran to its end (`error::EXIT_CODES`).
fn exit_code(outcome: &commands::Outcome) -> i32 {
    use commands::Outcome;
    match outcome {
        Outcome::Planned { pending: true } => 2,
        Outcome::Status { invalid } if *invalid > 0 => error::Kind::Denied.exit_code(),
        Outcome::Doctor { code } => *code,
        _ => 0,
    }
}
