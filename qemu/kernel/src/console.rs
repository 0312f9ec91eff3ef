//! The console: semihosting's stdout (QEMU's), one whole line at a time across harts.
use core::fmt;

static CONSOLE: spin::Mutex<()> = spin::Mutex::new(());

/// Print one line; lines from different harts do not interleave. Never allocates.
pub fn print_line(args: fmt::Arguments<'_>) {
    let _guard = CONSOLE.lock();
    semihosting::println!("{}", args);
}

/// Print one line (atomically with respect to other harts). Never allocates.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::console::print_line(format_args!($($arg)*)) };
}
