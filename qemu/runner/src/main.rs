//! Stand-alone front end to `xtask/src/qemu.rs` (the one implementation), so that
//! `cargo test --target …` inside `qemu/firmware` and `qemu/kernel` can use it as their
//! cargo `runner` (see `.cargo/config.toml` and `qemu/runner.sh`), and so the suites run
//! without the xtask.
//!
//! Usage:
//!   cpuheap-qemu-runner all                        # every suite, like `cargo xtask qemu`
//!   cpuheap-qemu-runner <machine> <elf> [filter]   # one ELF (cargo runner form)
#[path = "../../../xtask/src/qemu.rs"]
mod qemu;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [cmd] if cmd == "all" => qemu::run(),
        [machine, elf, rest @ ..] => {
            // cargo appends libtest-style arguments after the ELF; take the first
            // non-flag one as a name filter, like libtest does.
            let filter = rest.iter().find(|a| !a.starts_with('-')).map(String::as_str);
            qemu::run_elf(machine, std::path::Path::new(elf), filter)
        }
        _ => Err("usage: cpuheap-qemu-runner all | <machine> <elf> [filter]".to_string()),
    };
    match result {
        Ok((_, 0)) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
