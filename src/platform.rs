//! What the heap needs to know about the machine it runs on: which CPU is running, and what
//! to do with a fatal misuse of the heap.

use core::fmt;

/// The caller's side of the heap: the current CPU, how a context gets its CPU slot, and the
/// fatal-error hook.
///
/// By default the CPU index is only a hint. It picks a CPU slot (modulo the heap's slot
/// count) whose try-lock guards it; a stale index, a migrated task or an interrupt that
/// re-enters on the same CPU finds the slot taken and goes to the central cache, so any value
/// is correct and the right value is merely fast.
///
/// A platform that can promise more sets [`EXCLUSIVE`](Self::EXCLUSIVE): then the slot an
/// index names is *owned* by one context at a time, and the fast paths enter it with plain
/// loads and stores, no atomic read-modify-write (see [`ExclusiveSlots`]).
pub trait Platform: Sync {
    /// Index of the CPU (or thread slot) running the caller. Without
    /// [`EXCLUSIVE`](Self::EXCLUSIVE) any value is correct; with it, see [`ExclusiveSlots`].
    fn current_cpu(&self) -> usize;

    /// The index for the heap's slow path, asked for when [`current_cpu`](Self::current_cpu)
    /// named no owned slot (an index of `CPUS - shared` or more, see [`ExclusiveSlots`]): a
    /// platform that hands owned indices out on first use claims one here, so that
    /// `current_cpu` can be a single load. The default is `current_cpu()`.
    fn claim_cpu(&self) -> usize {
        self.current_cpu()
    }

    /// Whether slots are owned, and how many at the top are shared (try-locked) instead.
    /// `None` (the default): every slot is shared.
    const EXCLUSIVE: Option<ExclusiveSlots> = None;

    /// A heavy memory barrier for the rare operation on a slot another context owns (a drain
    /// before an out-of-memory null, an invariant check): after it returns `true`, every store
    /// an owning context made before its last compiler fence is visible to the caller, and
    /// the caller's earlier stores to it. On one core a compiler fence is enough (the default
    /// of [`SingleCpu`]); Linux has `membarrier`; a kernel may send an IPI. `false` (the
    /// default) when there is none: remote operations then leave owned slots alone.
    fn remote_barrier(&self) -> bool {
        false
    }

    /// A count that grows each time a context gives up its owned slot for good (a thread that
    /// exits). The heap compares it on its slow paths and then drains the vacant slots it
    /// can [`hold`](Self::hold_vacant), so a dead thread's cache goes back to the central
    /// cache. The default: slots are never vacated.
    fn vacated(&self) -> usize {
        0
    }

    /// Keep owned slot `slot` from being claimed while the heap drains it; `false` if a
    /// context owns it (or it cannot be held). Pairs with [`release_vacant`](Self::release_vacant).
    fn hold_vacant(&self, slot: usize) -> bool {
        let _ = slot;
        false
    }

    /// Let slot `slot`, held by [`hold_vacant`](Self::hold_vacant), be claimed again.
    fn release_vacant(&self, slot: usize) {
        let _ = slot;
    }

    /// Called on a misuse of the heap that it detects: a double free, a pointer the heap did
    /// not hand out, an interior pointer, or a layout whose size class does not match. It is
    /// called with no heap lock held. It must not return. On targets where a panic unwinds,
    /// it must not unwind either (abort instead): it runs inside `GlobalAlloc` methods.
    fn fatal(&self, fault: &Fault) -> !;
}

/// The promise behind [`Platform::EXCLUSIVE`]: which slots are owned. Made only through the
/// `unsafe` [`new`](Self::new), since a broken promise is a data race on a slot's lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExclusiveSlots {
    pub(crate) shared: usize,
    /// Every context runs on one core (see [`on_one_core`](Self::on_one_core)).
    pub(crate) one_core: bool,
}

impl ExclusiveSlots {
    /// Slots `0..CPUS - shared` are owned; the `shared` slots above them are try-locked, and
    /// an index of `CPUS - shared` or more picks one of them (modulo `shared`; with `shared`
    /// 0 such an index goes to the central cache).
    ///
    /// # Safety
    /// For every heap call, an index below `CPUS - shared` that
    /// [`current_cpu`](Platform::current_cpu) or [`claim_cpu`](Platform::claim_cpu) returns
    /// must name a slot that no other context
    /// uses during that call, except one that interrupts the caller on the same CPU and
    /// finishes before the caller resumes (an interrupt or signal handler; the slot's own flag
    /// sends such a handler to the central cache). A thread that owns an index, a CPU whose
    /// code runs with preemption disabled, or a single core all qualify.
    pub const unsafe fn new(shared: usize) -> Self {
        Self {
            shared,
            one_core: false,
        }
    }

    /// [`new(0)`](Self::new) for a heap that only one core ever runs: every slot is owned,
    /// and the owner enters and leaves with plain loads and stores ordered by compiler fences
    /// alone, with no memory barrier (a `dmb` on Arm), since a core sees its own accesses,
    /// and those of the handlers that interrupt it, in program order.
    ///
    /// # Safety
    /// As for [`new`](Self::new), and no second core (or other bus master) touches the heap
    /// while the program runs: the only contexts are the program and the interrupt handlers
    /// of its one core.
    pub const unsafe fn on_one_core() -> Self {
        Self {
            shared: 0,
            one_core: true,
        }
    }
}

/// What a platform does with a fatal misuse of the heap (see [`Platform::fatal`]).
///
/// Implement it on a zero-sized type of your own to keep the heap value all zero bytes, so
/// that a `static` heap is placed in `.bss` and costs no flash for an initial image:
///
/// ```
/// use cpuheap::{FatalHook, Fault};
///
/// struct OnFatal;
/// impl FatalHook for OnFatal {
///     fn fatal(&self, fault: &Fault) -> ! {
///         panic!("{}", fault) // or log it, then reset
///     }
/// }
/// ```
///
/// A function pointer (`fn(&Fault) -> !`) is a hook too, but it is stored in the heap: a
/// `static` heap with one is initialised data (`.data`), its image in flash.
pub trait FatalHook: Sync {
    /// Called on a misuse the heap detects, with no heap lock held. Must not return, nor
    /// unwind (it runs inside `GlobalAlloc` methods).
    fn fatal(&self, fault: &Fault) -> !;
}

/// The default fatal hook, [`default_fatal`]: print and abort with the `std` feature, panic
/// without it. Zero-sized.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultFatal;

impl FatalHook for DefaultFatal {
    fn fatal(&self, fault: &Fault) -> ! {
        default_fatal(fault)
    }
}

impl FatalHook for fn(&Fault) -> ! {
    fn fatal(&self, fault: &Fault) -> ! {
        self(fault)
    }
}

/// A single-CPU platform: always CPU 0, with a replaceable fatal hook.
///
/// The default hook, with the `std` feature, prints the fault to standard error and aborts
/// the process. Without `std` it panics with the fault's message, which on the usual bare-metal
/// targets (`panic = "abort"`) reaches the program's panic handler and never unwinds. Give your
/// own hook with [`SingleCpu::with_fatal_hook`].
#[derive(Clone, Copy)]
pub struct SingleCpu<H: FatalHook = DefaultFatal> {
    hook: H,
}

impl SingleCpu {
    /// CPU 0, default fatal hook.
    pub const fn new() -> Self {
        Self { hook: DefaultFatal }
    }
}

impl<H: FatalHook> SingleCpu<H> {
    /// CPU 0, with `hook` called on a fatal fault: a [`FatalHook`] type of your own, or a
    /// function `fn(&Fault) -> !` (then the platform's type is `SingleCpu<fn(&Fault) -> !>`).
    pub const fn with_fatal_hook(hook: H) -> Self {
        Self { hook }
    }
}

impl Default for SingleCpu {
    fn default() -> Self {
        Self::new()
    }
}

impl<H: FatalHook> Platform for SingleCpu<H> {
    #[inline(always)]
    fn current_cpu(&self) -> usize {
        0
    }

    fn fatal(&self, fault: &Fault) -> ! {
        self.hook.fatal(fault)
    }
}

/// One core: CPU 0, and its one slot is *owned*, so the fast paths use no atomic
/// read-modify-write at all (on thumbv6m, none of the emulated ones either). Interrupt
/// handlers may allocate: one that interrupts the heap inside its slot finds the slot's flag
/// set and uses the central cache, whose lock (for example `CriticalSectionRawMutex`) masks
/// interrupts.
///
/// Unlike [`SingleCpu`], which is correct anywhere, this is a promise, made with `unsafe` at
/// construction: nothing runs the heap on a second core (or a second thread) at the same time.
///
/// Its hook is a [`FatalHook`]: with a zero-sized one (the default, or a type of your own) the
/// platform is zero-sized, and a `static` heap over a static region is all zero bytes (`.bss`).
#[derive(Clone, Copy)]
pub struct SingleCore<H: FatalHook = DefaultFatal> {
    hook: H,
}

impl SingleCore {
    /// One core, default fatal hook.
    ///
    /// # Safety
    /// Every context that calls into the heap runs on one core: the program and the
    /// interrupt handlers that interrupt it (each of which finishes before what it interrupted
    /// resumes). No second core or preemptive thread scheduler shares the heap.
    pub const unsafe fn new() -> Self {
        Self { hook: DefaultFatal }
    }
}

impl<H: FatalHook> SingleCore<H> {
    /// One core, with `hook` called on a fatal fault: a [`FatalHook`] type of your own (keeps
    /// the platform zero-sized), or a function `fn(&Fault) -> !` (then the platform's type is
    /// `SingleCore<fn(&Fault) -> !>`, and a `static` heap is initialised data).
    ///
    /// # Safety
    /// As for [`new`](SingleCore::new).
    pub const unsafe fn with_fatal_hook(hook: H) -> Self {
        Self { hook }
    }
}

impl<H: FatalHook> Platform for SingleCore<H> {
    #[inline(always)]
    fn current_cpu(&self) -> usize {
        0
    }

    // SAFETY: `SingleCore` is only made through its `unsafe` constructors, whose callers
    // promise one core: the only contexts are the program and the handlers that interrupt it.
    const EXCLUSIVE: Option<ExclusiveSlots> = Some(unsafe { ExclusiveSlots::on_one_core() });

    fn remote_barrier(&self) -> bool {
        // One core sees its own stores in program order; only the compiler must not reorder.
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        true
    }

    fn fatal(&self, fault: &Fault) -> ! {
        self.hook.fatal(fault)
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
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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

/// The same message as `Display`, for firmware that logs with defmt (feature `defmt`).
#[cfg(feature = "defmt")]
impl defmt::Format for Fault {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "cpuheap: {=str} at {=usize:#x}",
            self.kind.name(),
            self.addr
        );
        match self.kind {
            FaultKind::SizeMismatch => defmt::write!(
                f,
                " (layout size {=usize}, object size {=usize})",
                self.layout_size,
                self.object_size
            ),
            FaultKind::InteriorPointer if self.object_size != 0 => {
                defmt::write!(f, " (object size {=usize})", self.object_size)
            }
            _ => {}
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
