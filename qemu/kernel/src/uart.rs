//! The ns16550a UART of QEMU virt at 0x1000_0000; whole lines under a spin lock.
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

const UART: *mut u8 = 0x1000_0000 as *mut u8;
static LOCK: AtomicBool = AtomicBool::new(false);

struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: MMIO transmit register; QEMU's UART is always ready.
            unsafe { UART.write_volatile(b) };
        }
        Ok(())
    }
}

pub fn print_line(args: fmt::Arguments<'_>) {
    while LOCK.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        core::hint::spin_loop();
    }
    let _ = Uart.write_fmt(args);
    let _ = Uart.write_str("\n");
    LOCK.store(false, Ordering::Release);
}

/// For the panic and trap paths: the lock may be held by the hart that faulted.
pub fn force_unlock() {
    LOCK.store(false, Ordering::Release);
}

/// Print one line (atomically with respect to other harts). Never allocates.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::uart::print_line(format_args!($($arg)*)) };
}
