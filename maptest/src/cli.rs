//! Command lines: the programs' options, parsed with `lexopt`, and their usage errors.
//!
//! Every program takes the same shape of command line (`--name VALUE`, flags, `-h`/`--help`)
//! and treats a wrong one the same way: one line, `PROGRAM: what is wrong (see --help)`, on
//! standard error, and exit status 2. `--help` prints the program's help on standard output
//! and exits 0.
//!
//! ```
//! use maptest::cli::{Arg, Cli, ValueExt};
//!
//! let mut cli = Cli::new("demo", ["--pages", "16", "/dev/mapdrv"]);
//! let (mut pages, mut file) = (0usize, None);
//! while let Some(arg) = cli.next().unwrap() {
//!     match arg {
//!         Arg::Long("pages") => pages = cli.value("--pages").unwrap(),
//!         Arg::Value(v) => file = Some(v.string().unwrap()),
//!         other => panic!("{}", Cli::unexpected(other)),
//!     }
//! }
//! assert_eq!((pages, file.as_deref()), (16, Some("/dev/mapdrv")));
//! ```

use std::ffi::OsString;
use std::fmt::Display;
use std::process::ExitCode;
use std::str::FromStr;

pub use lexopt::{Arg, ValueExt};

/// A command line being parsed.
pub struct Cli {
    prog: &'static str,
    parser: lexopt::Parser,
}

impl Cli {
    /// The command line of this process, after the program name (and after `skip` more
    /// arguments: a subcommand's name).
    pub fn from_env(prog: &'static str, skip: usize) -> Cli {
        Cli::new(prog, std::env::args_os().skip(1 + skip))
    }

    /// A command line from a list of arguments (without the program name).
    pub fn new<I>(prog: &'static str, args: I) -> Cli
    where
        I: IntoIterator,
        I::Item: Into<OsString>,
    {
        Cli {
            prog,
            parser: lexopt::Parser::from_args(args),
        }
    }

    /// The program's name, for messages.
    pub fn prog(&self) -> &'static str {
        self.prog
    }

    /// The next option or value; `None` at the end. (Not an `Iterator`: the item borrows the
    /// parser, as in `lexopt`.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Arg<'_>>, String> {
        self.parser.next().map_err(|e| describe(&e))
    }

    /// The value of option `opt`, parsed as a `T` (a number, mostly).
    pub fn value<T: FromStr>(&mut self, opt: &str) -> Result<T, String>
    where
        T::Err: Display,
    {
        let v = self.string(opt)?;
        v.parse()
            .map_err(|e| format!("{opt}: bad value {v:?}: {e}"))
    }

    /// The value of option `opt`, as text.
    pub fn string(&mut self, opt: &str) -> Result<String, String> {
        let v = self
            .parser
            .value()
            .map_err(|_| format!("{opt} needs a value"))?;
        v.into_string()
            .map_err(|v| format!("{opt}: not valid UTF-8: {v:?}"))
    }

    /// The message for an argument the program does not take.
    pub fn unexpected(arg: Arg<'_>) -> String {
        match arg {
            Arg::Short(c) => format!("unknown option -{c}"),
            Arg::Long(name) => format!("unknown option --{name}"),
            Arg::Value(v) => format!("unexpected argument {v:?}"),
        }
    }

    /// Prints `PROGRAM: msg (see --help)` as a usage error and gives the exit status for it, 2.
    pub fn usage_error(&self, msg: impl Display) -> ExitCode {
        usage_error(self.prog, msg)
    }
}

/// Prints `prog: msg (see --help)` as a usage error and gives the exit status for it, 2.
pub fn usage_error(prog: &str, msg: impl Display) -> ExitCode {
    eprintln!("{prog}: {msg} (see --help)");
    ExitCode::from(2)
}

fn describe(e: &lexopt::Error) -> String {
    match e {
        lexopt::Error::MissingValue {
            option: Some(option),
        } => format!("{option} needs a value"),
        lexopt::Error::UnexpectedOption(o) => format!("unknown option {o}"),
        lexopt::Error::UnexpectedValue { option, .. } => format!("{option} takes no value"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<(u64, bool), String> {
        let mut cli = Cli::new("t", args.iter().copied());
        let (mut n, mut flag) = (0, false);
        while let Some(arg) = cli.next()? {
            match arg {
                Arg::Long("n") => n = cli.value("--n")?,
                Arg::Short('f') | Arg::Long("flag") => flag = true,
                other => return Err(Cli::unexpected(other)),
            }
        }
        Ok((n, flag))
    }

    #[test]
    fn options_and_errors() {
        assert_eq!(parse(&["--n", "5", "-f"]), Ok((5, true)));
        assert_eq!(parse(&["--n=7"]), Ok((7, false)));
        assert_eq!(parse(&["--n"]).unwrap_err(), "--n needs a value");
        assert!(parse(&["--n", "x"])
            .unwrap_err()
            .starts_with("--n: bad value \"x\""));
        assert_eq!(parse(&["--bogus"]).unwrap_err(), "unknown option --bogus");
        assert_eq!(parse(&["-x"]).unwrap_err(), "unknown option -x");
        assert_eq!(parse(&["--flag=1"]).unwrap_err(), "--flag takes no value");
    }
}
