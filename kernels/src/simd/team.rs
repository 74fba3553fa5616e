//! The kernels' threads. A training step runs thousands of parallel regions a few microseconds
//! long: one fused LSTM step per time step and layer, one cell backward and one `dh` product per
//! step of backpropagation through time. Handed to a general pool (rayon's `scope` from outside
//! it), each region put the caller to sleep and woke a worker through the kernel, and on 2 threads
//! a MagFluxLSTM epoch spent 48 s in system time and ran at 0.79× libtorch's speed.
//!
//! So a region here costs two atomic stores when the helpers are awake: the caller publishes the
//! job, computes the first part itself, and waits for the others, which the team's helpers pick
//! up while spinning. A helper that has seen no work for [`SPIN`] spins (about a tenth of a
//! millisecond, longer than the gaps inside a step, shorter than a log line) sleeps on a condvar
//! and is woken by the next region.
//!
//! Which thread computes a part cannot change its bits: the parts are disjoint pieces of the
//! output. When the team is busy (another thread's region, or a region inside a part) the parts
//! run one after another on the caller, with the same result.

use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// Spins a helper makes before it sleeps (a `pause` each: ~0.1 ms on current x86-64 cores).
const SPIN: u32 = 1 << 12;
/// Spins the caller makes waiting for its helpers before it starts yielding the core.
const WAIT_SPIN: u32 = 1 << 14;

/// A region's work: part `i` of the region, for `i` in 1..=helpers (the caller takes 0).
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// Bumped once per region, after `job` is written (Release); a helper runs a region when it
    /// sees a new value (Acquire).
    epoch: AtomicU64,
    /// The region's job. Written only by the caller holding `Team::busy` while no helper is
    /// pending; read by helpers between seeing the new epoch and decrementing `pending`.
    job: UnsafeCell<Option<Job>>,
    /// Helpers still inside the current region.
    pending: AtomicUsize,
    panicked: AtomicBool,
    sleepers: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is the only non-Sync field; the protocol above (one writer under `busy`, readers
// only while `pending` holds the writer back) makes its accesses race-free.
unsafe impl Sync for Shared {}
// SAFETY: the job pointer is only dereferenced under that protocol, while its closure lives.
unsafe impl Send for Shared {}

/// A caller and `helpers` threads.
struct Team {
    helpers: usize,
    shared: Arc<Shared>,
    busy: Mutex<()>,
}

impl Team {
    fn new(helpers: usize) -> Team {
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        });
        for i in 0..helpers {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("magpipe-kernels-{}", i + 1))
                .spawn(move || helper(&shared, i + 1))
                .expect("the kernels' helper thread");
        }
        Team {
            helpers,
            shared,
            busy: Mutex::new(()),
        }
    }

    /// Runs `work(i)` for i in 0..=helpers, part 0 on the calling thread; returns once every
    /// part is done. `None` when the team is busy (the caller then runs the parts itself).
    fn run(&self, work: &(dyn Fn(usize) + Sync)) -> Option<()> {
        let _busy = self.busy.try_lock().ok()?;
        let s = &*self.shared;
        // SAFETY: the lifetime is erased only for the helpers' reads, all of which happen before
        // `pending` reaches zero, which this function waits for before it returns (even when
        // part 0 panics).
        let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(work) };
        // SAFETY: `busy` is held and `pending` is zero, so no helper reads `job` now.
        unsafe { *s.job.get() = Some(job) };
        s.pending.store(self.helpers, Ordering::Relaxed);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        let own = catch_unwind(AssertUnwindSafe(|| work(0)));
        wait_for_helpers(s);
        if let Err(p) = own {
            resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::Relaxed) {
            panic!("a kernel thread panicked");
        }
        Some(())
    }
}

fn wait_for_helpers(s: &Shared) {
    let mut spins = 0u32;
    while s.pending.load(Ordering::Acquire) != 0 {
        if spins < WAIT_SPIN {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

fn helper(s: &Shared, part: usize) {
    let mut seen = 0u64;
    loop {
        seen = next_epoch(s, seen);
        // SAFETY: the new epoch was published after `job` (Release/Acquire), and the caller
        // keeps the closure alive until `pending` (decremented below) reaches zero.
        let job = unsafe { (*s.job.get()).expect("a published job") };
        // SAFETY: as above.
        let work = unsafe { &*job };
        if catch_unwind(AssertUnwindSafe(|| work(part))).is_err() {
            s.panicked.store(true, Ordering::Relaxed);
        }
        s.pending.fetch_sub(1, Ordering::Release);
    }
}

/// Waits for an epoch other than `seen`: spinning first, then asleep.
fn next_epoch(s: &Shared, seen: u64) -> u64 {
    for _ in 0..SPIN {
        let e = s.epoch.load(Ordering::Acquire);
        if e != seen {
            return e;
        }
        std::hint::spin_loop();
    }
    let mut guard = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
    s.sleepers.fetch_add(1, Ordering::SeqCst);
    let e = loop {
        let e = s.epoch.load(Ordering::SeqCst);
        if e != seen {
            break e;
        }
        guard = s.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
    };
    s.sleepers.fetch_sub(1, Ordering::SeqCst);
    e
}

/// The team of `n` threads (the caller and n − 1 helpers), made once per count.
fn team(n: usize) -> &'static Team {
    static TEAMS: OnceLock<Mutex<Vec<&'static Team>>> = OnceLock::new();
    let mut teams = TEAMS
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(t) = teams.iter().find(|t| t.helpers + 1 == n) {
        return t;
    }
    // Teams live as long as the process, like their threads.
    let t: &'static Team = Box::leak(Box::new(Team::new(n - 1)));
    teams.push(t);
    t
}

/// Runs `work` on every part, the parts on the kernels' threads when there are several. The
/// parts are disjoint pieces of the output: which thread computes one cannot change its bits.
pub(super) fn run_parts<T: Send>(parts: Vec<T>, work: impl Fn(T) + Sync) {
    if parts.len() <= 1 {
        parts.into_iter().for_each(work);
        return;
    }
    let slots: Vec<Mutex<Option<T>>> = parts.into_iter().map(|p| Mutex::new(Some(p))).collect();
    let run_slot = |i: usize| {
        let part = slots
            .get(i)
            .and_then(|s| s.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(part) = part {
            work(part);
        }
    };
    if team(slots.len()).run(&run_slot).is_none() {
        (0..slots.len()).for_each(run_slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every part runs exactly once, whichever thread takes it, in many regions in a row, from
    /// several callers at once (the busy team's parts then run on the caller).
    #[test]
    fn every_part_runs_once() {
        let callers: Vec<_> = (0..3)
            .map(|c| {
                std::thread::spawn(move || {
                    for round in 0..2000 {
                        let n = 2 + (round + c) % 3;
                        let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                        run_parts((0..n).collect(), |i| {
                            hits[i].fetch_add(1, Ordering::Relaxed);
                        });
                        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
                    }
                })
            })
            .collect();
        for c in callers {
            c.join().unwrap();
        }
    }

    /// A part that panics fails the region on the caller, after the other parts are done, and
    /// the team goes on working.
    #[test]
    fn a_panicking_part_reaches_the_caller() {
        for bad in [0, 1] {
            let r = std::panic::catch_unwind(|| {
                run_parts(vec![0, 1], |i| assert_ne!(i, bad, "part {i}"));
            });
            assert!(r.is_err(), "part {bad}'s panic was lost");
        }
        let hits = AtomicUsize::new(0);
        run_parts(vec![1, 2], |i| {
            hits.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 3);
    }
}
