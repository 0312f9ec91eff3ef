//! What the heap needs to know about the machine it runs on: which CPU is running, and what
//! to do with a fatal misuse of the heap.

use core::fmt;

/// The caller's side of the heap: the current CPU and the fatal-error hook.
///
/// The CPU index is only a hint. It picks a CPU slot (modulo the heap's slot count) whose
/// try-lock guards it; a stale index, a migrated task or an interrupt that re-enters on the
/// same CPU finds the slot taken and goes to the central cache, so any value is correct and
/// the right value is merely fast.
pub trait Platform: Sync {
    /// Index of the CPU (or thread slot) running the caller. Any value is correct.
    fn current_cpu(&self) -> usize;

    /// Called on a misuse of the heap that it detects: a double free, a pointer the heap did
    /// not hand out, an interior pointer, or a layout whose size class does not match. It is
    /// called with no heap lock held. It must not return. On targets where a panic unwinds,
    /// it must not unwind either (abort instead): it runs inside `GlobalAlloc` methods.
    fn fatal(&self, fault: &Fault) -> !;
}

/// A single-CPU platform: always CPU 0, with a replaceable fatal hook.
///
/// The default hook, with the `std` feature, prints the fault to standard error and aborts
/// the process. Without `std` it panics with the fault's message, which on the usual bare-metal
/// targets (`panic = "abort"`) reaches the program's panic handler and never unwinds. Give your
/// own hook with [`SingleCpu::with_fatal_hook`].
#[derive(Clone, Copy)]
pub struct SingleCpu {
    hook: fn(&Fault) -> !,
}

impl SingleCpu {
    /// CPU 0, default fatal hook.
    pub const fn new() -> Self {
        Self {
            hook: default_fatal,
        }
    }

    /// CPU 0, with `hook` called on a fatal fault.
    pub const fn with_fatal_hook(hook: fn(&Fault) -> !) -> Self {
        Self { hook }
    }
}

impl Default for SingleCpu {
    fn default() -> Self {
        Self::new()
    }
}

impl Platform for SingleCpu {
    #[inline(always)]
    fn current_cpu(&self) -> usize {
        0
    }

    fn fatal(&self, fault: &Fault) -> ! {
        (self.hook)(fault)
    }
}

/// The default fatal hook: print and abort with `std`, panic without it.
pub fn default_fatal(fault: &Fault) -> ! {
    #[cfg(feature = "std")]
    {
        extern crate std;
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{fault}");
        std::process::abort()
    }
    #[cfg(not(feature = "std"))]
    {
        panic!("{}", fault)
    }
}

/// What kind of misuse the heap detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The object was already free.
    DoubleFree,
    /// The pointer does not lie in memory this heap allocates from.
    ForeignPointer,
    /// The pointer lies inside an allocated object but not at its start.
    InteriorPointer,
    /// The layout given to `dealloc` or `realloc` belongs to another size class than the
    /// object (checked builds only).
    SizeMismatch,
}

impl FaultKind {
    /// The fixed words that name the fault in messages.
    pub const fn name(self) -> &'static str {
        match self {
            FaultKind::DoubleFree => "double free",
            FaultKind::ForeignPointer => "not allocated by this heap",
            FaultKind::InteriorPointer => "interior pointer",
            FaultKind::SizeMismatch => "size class mismatch",
        }
    }
}

/// A detected misuse: its kind, the address, and for a size mismatch the two sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// What went wrong.
    pub kind: FaultKind,
    /// The address passed to the heap.
    pub addr: usize,
    /// For [`FaultKind::SizeMismatch`]: the size the layout asked for.
    pub layout_size: usize,
    /// For [`FaultKind::SizeMismatch`] and [`FaultKind::InteriorPointer`]: the object size
    /// of the allocation the address falls in (0 if unknown).
    pub object_size: usize,
}

impl Fault {
    pub(crate) const fn new(kind: FaultKind, addr: usize) -> Self {
        Self {
            kind,
            addr,
            layout_size: 0,
            object_size: 0,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpuheap: {} at {:#x}", self.kind.name(), self.addr)?;
        match self.kind {
            FaultKind::SizeMismatch => write!(
                f,
                " (layout size {}, object size {})",
                self.layout_size, self.object_size
            ),
            FaultKind::InteriorPointer if self.object_size != 0 => {
                write!(f, " (object size {})", self.object_size)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn messages_name_the_fault_and_address() {
        let f = Fault::new(FaultKind::DoubleFree, 0x1000);
        assert_eq!(format!("{f}"), "cpuheap: double free at 0x1000");
        let f = Fault::new(FaultKind::ForeignPointer, 0x20);
        assert_eq!(
            format!("{f}"),
            "cpuheap: not allocated by this heap at 0x20"
        );
        let mut f = Fault::new(FaultKind::SizeMismatch, 0x40);
        f.layout_size = 100;
        f.object_size = 16;
        assert_eq!(
            format!("{f}"),
            "cpuheap: size class mismatch at 0x40 (layout size 100, object size 16)"
        );
        assert_eq!(SingleCpu::new().current_cpu(), 0);
    }
}
