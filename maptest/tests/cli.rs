//! The programs' command lines, as a user meets them: `--help` prints help and exits 0; a wrong
//! argument prints one line naming the problem and exits 2. (Everything else they do needs the
//! driver, and runs in the guest.)

use std::process::{Command, Output};

/// The programs and, for each, a command line with an option it does not take.
const PROGRAMS: &[(&str, &str, &[&str])] = &[
    (
        "maptest",
        env!("CARGO_BIN_EXE_maptest"),
        &["--bogus", "/dev/mapdrv"],
    ),
    ("mapcheck", env!("CARGO_BIN_EXE_mapcheck"), &["--bogus"]),
    (
        "mapstress",
        env!("CARGO_BIN_EXE_mapstress"),
        &["fuzz", "--bogus"],
    ),
    (
        "mapbench",
        env!("CARGO_BIN_EXE_mapbench"),
        &["touch", "--bogus"],
    ),
];

fn run(exe: &str, args: &[&str]) -> Output {
    Command::new(exe)
        .args(args)
        .output()
        .expect("the program runs")
}

/// Exit status 2 and exactly one line on stderr: the program's name, the problem, `(see --help)`.
fn usage_error(name: &str, out: &Output, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{name} {what}: {err}");
    assert_eq!(err.lines().count(), 1, "{name} {what}: {err:?}");
    assert!(
        err.starts_with(&format!("{name}: ")),
        "{name} {what}: {err:?}"
    );
}

#[test]
fn help_exits_0() {
    for &(name, exe, _) in PROGRAMS {
        let out = run(exe, &["--help"]);
        assert_eq!(out.status.code(), Some(0), "{name} --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("USAGE:"), "{name} --help: {text}");
    }
}

#[test]
fn unknown_option_is_one_line_and_exit_2() {
    for &(name, exe, args) in PROGRAMS {
        let out = run(exe, args);
        usage_error(name, &out, "with an unknown option");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--bogus"), "{name}: {err:?}");
    }
}

#[test]
fn missing_or_bad_values_are_usage_errors() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("maptest", env!("CARGO_BIN_EXE_maptest"), &[]),
        (
            "maptest",
            env!("CARGO_BIN_EXE_maptest"),
            &["--pages", "x", "/dev/mapdrv"],
        ),
        (
            "maptest",
            env!("CARGO_BIN_EXE_maptest"),
            &["walk", "--rows"],
        ),
        ("maptest", env!("CARGO_BIN_EXE_maptest"), &["fragment", "0"]),
        (
            "maptest",
            env!("CARGO_BIN_EXE_maptest"),
            &["layout", "extra"],
        ),
        (
            "mapcheck",
            env!("CARGO_BIN_EXE_mapcheck"),
            &["no_such_test"],
        ),
        ("mapstress", env!("CARGO_BIN_EXE_mapstress"), &[]),
        (
            "mapstress",
            env!("CARGO_BIN_EXE_mapstress"),
            &["fuzz", "--seed", "x"],
        ),
        ("mapbench", env!("CARGO_BIN_EXE_mapbench"), &[]),
        (
            "mapbench",
            env!("CARGO_BIN_EXE_mapbench"),
            &["touch", "--name", "t"],
        ),
        (
            "mapbench",
            env!("CARGO_BIN_EXE_mapbench"),
            &["read", "--pages", "0"],
        ),
    ];
    for &(name, exe, args) in cases {
        usage_error(name, &run(exe, args), &format!("{args:?}"));
    }
}

#[test]
fn insmod_without_a_file_is_a_usage_error() {
    let out = run(env!("CARGO_BIN_EXE_insmod"), &[]);
    assert_eq!(out.status.code(), Some(2));
}
