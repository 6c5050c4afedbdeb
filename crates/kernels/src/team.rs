//! The threads that run the parallel regions of the kernels (and of `net`'s layers and
//! optimiser): the calling thread plus helper threads that spin-wait between regions.
//!
//! A training step of the MLP 784-600-600-10 at batch 64 is about six parallel
//! regions of 100–250 µs a thread (the GEMMs, the optimiser step) with 10–60 µs of
//! serial work between them. On rayon, the second thread sleeps between regions
//! (rayon parks a worker after a few dozen rounds without work), and on this KVM
//! machine waking it costs 45–60 µs; the caller, which sleeps in turn while waiting
//! for the stolen half, costs another ~40 µs to wake: about 100 µs lost per region,
//! measured as 0.4–0.6 s of a 1.8 s two-thread epoch (the halves themselves ran as
//! fast as alone). The helpers here instead spin for [`SPIN`] after each region before
//! parking, as OpenMP runtimes (`GOMP_SPINCOUNT`) and OpenBLAS's thread server do.
//!
//! How many threads: [`threads`], the size of the caller's rayon pool
//! (`rayon::current_num_threads`), so that `ThreadPool::install` keeps deciding it.
//! Only one region runs on the team at a time. A region started while another runs
//! (another pool, a test running beside another) or from inside a region runs on the
//! calling thread alone, part after part. Work is cut into the same parts either way,
//! and every caller in this workspace makes its result independent of the cut, so
//! results are bit-identical whichever thread runs what.
//!
//! Helpers are spawned on first use (`parts − 1` of them) and live as long as the
//! process, like rayon's global pool.

use std::cell::{Cell, UnsafeCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::claims::Claims;

/// How long a helper spins for the next region before it parks: long enough to bridge
/// the serial work between the regions of a training step (the longest, loading the
/// next batch and the loss, take ~60 µs), short enough that an idle process stops
/// using the CPU within a millisecond. `ACTPRUNE_SPIN_US` overrides it (0: park at
/// once, which shows what the spinning buys).
pub const SPIN: Duration = Duration::from_millis(1);

/// Most helper threads the team will start (a 64-core machine's worth).
const MAX_HELPERS: usize = 63;

thread_local! {
    /// Whether this thread is running a part of a region (helpers: always).
    static IN_REGION: Cell<bool> = const { Cell::new(false) };
}

/// Set while a region runs on the team.
static BUSY: AtomicBool = AtomicBool::new(false);

/// The helpers started so far; helper `i` runs part `i + 1`.
static HELPERS: [OnceLock<&'static Helper>; MAX_HELPERS] = [const { OnceLock::new() }; MAX_HELPERS];

fn spin_window() -> Duration {
    static WINDOW: OnceLock<Duration> = OnceLock::new();
    *WINDOW.get_or_init(|| {
        std::env::var("ACTPRUNE_SPIN_US")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(SPIN, Duration::from_micros)
    })
}

/// How many threads a parallel region started here would use: the current rayon
/// pool's size, or 1 inside a region.
pub fn threads() -> usize {
    if IN_REGION.get() { 1 } else { rayon::current_num_threads() }
}

/// Whether the first `n` helpers are running and spinning for work rather than parked:
/// handing a region to them then costs about a microsecond rather than a wake-up
/// (45–60 µs on this KVM machine). They spin for [`SPIN`] after each region, so inside
/// a training step, whose regions follow each other closely, they stay awake. A
/// helper may park right after this returns `true`; the answer is a hint for sizing
/// work, never needed for correctness.
pub fn helpers_awake(n: usize) -> bool {
    n <= MAX_HELPERS
        && HELPERS[..n].iter().all(|cell| cell.get().is_some_and(|h| !h.parked.load(Ordering::Relaxed)))
}

/// Runs `f(0)`, …, `f(parts − 1)`, each once, on up to `parts` threads (the caller
/// runs part 0), and returns when all have returned. A panic in any part is resumed
/// on the caller after every part has finished.
pub fn run(parts: usize, f: &(dyn Fn(usize) + Sync)) {
    if parts == 0 {
        return;
    }
    if parts == 1
        || IN_REGION.get()
        || BUSY.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err()
    {
        let _region = RegionFlag::enter();
        (0..parts).for_each(f);
        return;
    }
    let _busy = BusyGuard;
    let helpers = start_helpers(parts - 1);
    // SAFETY: `job` and `f` outlive every helper's use of them: this function does not
    // return (nor unwind) before `pending` is 0, and a helper touches neither after
    // its decrement.
    let f_static = unsafe {
        std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync + 'static)>(f)
    };
    let job = Job { f: f_static, pending: AtomicUsize::new(helpers.len()), panic: Mutex::new(None) };
    for h in &helpers {
        h.post(&job);
    }
    let mine = {
        let _region = RegionFlag::enter();
        // Parts no helper could be started for run here, after part 0.
        panic::catch_unwind(AssertUnwindSafe(|| {
            f(0);
            (helpers.len() + 1..parts).for_each(f);
        }))
    };
    let mut spins = 0u32;
    while job.pending.load(Ordering::Acquire) != 0 {
        if spins < 1 << 14 {
            spins += 1;
            std::hint::spin_loop();
        } else {
            // Only when a helper has been descheduled (more threads than cores).
            thread::yield_now();
        }
    }
    if let Err(payload) = mine {
        panic::resume_unwind(payload);
    }
    if let Some(payload) = job.panic.into_inner().unwrap_or_else(PoisonError::into_inner) {
        panic::resume_unwind(payload);
    }
}

/// `f(&mut state, i, item)` for every item, in parallel on up to [`threads`] threads,
/// each with one `init()` state (made when it takes its first item); the results in
/// item order.
///
/// Each thread takes items from the front of its own share, then from the back of the
/// others' (`Claims`), rather than keeping a fixed range: a virtual CPU that the host
/// slows down for a while then takes fewer items instead of holding the others up
/// (inference regions last tens of milliseconds). Claiming from its own share keeps
/// each thread on its own counter: one counter shared by every claim moved between the
/// cores once per item, and claiming took 5–7% of a LeNet conv1 forward at 2 threads
/// (64 images of ~2 µs; the shares made it 12% faster). Which thread, and so which
/// state, sees an item varies from run to run: `f`'s result must not depend on the
/// state's history (scratch buffers, not accumulators).
pub fn map_init<I, S, R>(
    items: Vec<I>,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize, I) -> R + Sync,
) -> Vec<R>
where
    I: Send,
    R: Send,
{
    let n = items.len();
    let parts = threads().min(n);
    if parts <= 1 {
        let mut state = init();
        return items.into_iter().enumerate().map(|(i, item)| f(&mut state, i, item)).collect();
    }
    let items = Slots::new(items.into_iter().map(Some).collect());
    let results = Slots::new((0..n).map(|_| None).collect());
    // More parts than `Claims` deals to share one counter instead.
    let claims = Claims::new(n, parts, 1);
    let next = AtomicUsize::new(0);
    run(parts, &|part| {
        // Made on the first item: a thread that finds none left makes none.
        let mut state = None;
        let mut one = |i| {
            // SAFETY: the claims (or the counter) hand out each index once, so slot i
            // is touched by this thread only.
            let item = unsafe { items.take(i) }.expect("each item is taken once");
            let r = f(state.get_or_insert_with(&init), i, item);
            // SAFETY: as above.
            unsafe { results.put(i, r) };
        };
        match &claims {
            Some(claims) => {
                while let Some(chunk) = claims.next(part) {
                    chunk.for_each(&mut one);
                }
            }
            None => loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                one(i);
            },
        }
    });
    results.into_inner().into_iter().map(|r| r.expect("every part ran to completion")).collect()
}

/// `f(i, item)` for every item, in parallel (see [`map_init`]); the results in item order.
pub fn map<I: Send, R: Send>(items: Vec<I>, f: impl Fn(usize, I) -> R + Sync) -> Vec<R> {
    map_init(items, || (), |(), i, item| f(i, item))
}

/// `f(i, item)` for every item, in parallel (see [`map_init`]).
pub fn for_each<I: Send>(items: Vec<I>, f: impl Fn(usize, I) + Sync) {
    map_init(items, || (), |(), i, item| f(i, item));
}

/// Values handed between threads by index, each index used by one thread only.
struct Slots<T>(Vec<UnsafeCell<Option<T>>>);

// SAFETY: each slot is accessed by one thread (the counter in `map_init` hands out
// each index once), and `run` orders every access before the owner reads the results.
unsafe impl<T: Send> Sync for Slots<T> {}

impl<T> Slots<T> {
    fn new(values: Vec<Option<T>>) -> Self {
        Self(values.into_iter().map(UnsafeCell::new).collect())
    }

    /// # Safety
    /// No other thread may access slot `i` during the call.
    unsafe fn take(&self, i: usize) -> Option<T> {
        // SAFETY: the caller's contract.
        unsafe { (*self.0[i].get()).take() }
    }

    /// # Safety
    /// As [`Slots::take`].
    unsafe fn put(&self, i: usize, value: T) {
        // SAFETY: the caller's contract.
        unsafe { *self.0[i].get() = Some(value) };
    }

    fn into_inner(self) -> Vec<Option<T>> {
        self.0.into_iter().map(UnsafeCell::into_inner).collect()
    }
}

/// One region as the helpers see it.
struct Job {
    f: *const (dyn Fn(usize) + Sync),
    /// Helpers still running their part.
    pending: AtomicUsize,
    /// The first panic of a helper's part.
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

struct Helper {
    /// The job to run next, null when there is none.
    slot: AtomicPtr<Job>,
    /// Set while the helper is parked or about to park.
    parked: AtomicBool,
    thread: OnceLock<Thread>,
}

impl Helper {
    fn post(&self, job: &Job) {
        // SeqCst on both sides (with `parked` in `next_job`): either the helper sees
        // the job before it parks, or this sees `parked` and unparks it.
        self.slot.store(std::ptr::from_ref(job).cast_mut(), Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst)
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
    }

    /// Spins for the spin window, then parks, until a job is posted.
    fn next_job(&self) -> *const Job {
        let start = Instant::now();
        let window = spin_window();
        let mut spins = 0u32;
        loop {
            let job = self.slot.swap(std::ptr::null_mut(), Ordering::Acquire);
            if !job.is_null() {
                return job;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && start.elapsed() >= window {
                break;
            }
            std::hint::spin_loop();
        }
        loop {
            self.parked.store(true, Ordering::SeqCst);
            let job = self.slot.swap(std::ptr::null_mut(), Ordering::SeqCst);
            if !job.is_null() {
                self.parked.store(false, Ordering::Relaxed);
                return job;
            }
            // Returns at once if `post` unparked since the last park; may return spuriously.
            thread::park();
        }
    }

    fn main(&self, part: usize) {
        IN_REGION.set(true);
        loop {
            let job = self.next_job();
            // SAFETY: `run` keeps the job and its closure alive until `pending` is 0.
            let job = unsafe { &*job };
            // SAFETY: as above.
            let f = unsafe { &*job.f };
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| f(part))) {
                job.panic.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(payload);
            }
            // After this the job may be gone: nothing of it is touched again.
            job.pending.fetch_sub(1, Ordering::Release);
        }
    }
}

/// The first `n` helpers, starting those not yet running; fewer when the OS refuses a
/// thread (their parts then run on the caller).
fn start_helpers(n: usize) -> Vec<&'static Helper> {
    let mut out = Vec::with_capacity(n);
    for (i, cell) in HELPERS.iter().enumerate().take(n.min(MAX_HELPERS)) {
        let helper = match cell.get() {
            Some(h) => *h,
            None => {
                let h: &'static Helper = Box::leak(Box::new(Helper {
                    slot: AtomicPtr::new(std::ptr::null_mut()),
                    parked: AtomicBool::new(false),
                    thread: OnceLock::new(),
                }));
                let spawned = thread::Builder::new()
                    .name(format!("kernels-team-{}", i + 1))
                    .spawn(move || h.main(i + 1));
                match spawned {
                    Ok(handle) => {
                        let _ = h.thread.set(handle.thread().clone());
                        // Only the caller holding BUSY starts helpers, so this cell is empty.
                        let _ = cell.set(h);
                        h
                    }
                    Err(_) => break,
                }
            }
        };
        out.push(helper);
    }
    out
}

/// Releases [`BUSY`] when the region ends, also by a panic.
struct BusyGuard;

impl Drop for BusyGuard {
    fn drop(&mut self) {
        BUSY.store(false, Ordering::Release);
    }
}

/// Marks the calling thread as inside a region for its lifetime.
struct RegionFlag(bool);

impl RegionFlag {
    fn enter() -> Self {
        Self(IN_REGION.replace(true))
    }
}

impl Drop for RegionFlag {
    fn drop(&mut self) {
        IN_REGION.set(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn pool(n: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap()
    }

    #[test]
    fn helpers_are_awake_after_a_region_and_parked_after_the_spin_window() {
        // Other tests use the team meanwhile (a region then runs on its caller, or wakes
        // the helper), so each direction is retried: only a wrong answer every time fails.
        pool(2).install(|| {
            let awake_once = (0..200).any(|_| {
                thread::sleep(Duration::from_millis(1));
                let reached = AtomicBool::new(false);
                run(2, &|part| {
                    if part == 1 && thread::current().name().is_some_and(|n| n.starts_with("kernels-team")) {
                        reached.store(true, Ordering::Relaxed);
                    }
                });
                reached.load(Ordering::Relaxed) && helpers_awake(1)
            });
            assert!(awake_once, "a helper that has just run a part is spinning");
            let parked_once = (0..20).any(|_| {
                thread::sleep(spin_window() + Duration::from_millis(20));
                !helpers_awake(1)
            });
            assert!(parked_once, "a helper idle for longer than its spin window parks");
        });
        assert!(!helpers_awake(MAX_HELPERS + 1));
    }

    #[test]
    fn every_part_runs_once() {
        for parts in [0, 1, 2, 3, 7] {
            let seen: Vec<AtomicU64> = (0..parts).map(|_| AtomicU64::new(0)).collect();
            run(parts, &|t| {
                seen[t].fetch_add(1, Ordering::Relaxed);
            });
            assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1), "parts {parts}");
        }
    }

    /// On per-thread shares, and (17 threads, more parts than `Claims` deals to) on one
    /// shared counter.
    #[test]
    fn map_init_keeps_item_order_with_at_most_one_state_per_thread() {
        for threads in [1, 2, 3, 17] {
            let (out, inits) = pool(threads).install(|| {
                let inits = AtomicU64::new(0);
                let out = map_init(
                    (0..40u64).collect(),
                    || {
                        inits.fetch_add(1, Ordering::Relaxed);
                        0u64
                    },
                    |seen, i, item| {
                        *seen += 1;
                        (i as u64, item * item, *seen)
                    },
                );
                (out, inits.into_inner())
            });
            assert_eq!(
                out.iter().map(|&(i, sq, _)| (i, sq)).collect::<Vec<_>>(),
                (0..40).map(|i| (i, i * i)).collect::<Vec<_>>()
            );
            assert!((1..=threads as u64).contains(&inits), "{inits} states for {threads} threads");
            // Each state saw its items one after another: the counts over all states add up.
            let firsts = out.iter().filter(|&&(_, _, seen)| seen == 1).count() as u64;
            assert_eq!(firsts, inits);
        }
    }

    #[test]
    fn mutable_chunks_are_handed_out() {
        let mut data = vec![0u32; 1000];
        pool(2).install(|| {
            for_each(data.chunks_mut(64).collect(), |i, chunk| chunk.iter_mut().for_each(|x| *x = i as u32));
        });
        assert!(data.iter().enumerate().all(|(j, &x)| x == (j / 64) as u32));
    }

    #[test]
    fn nested_regions_run_on_the_calling_thread() {
        let inner_threads = AtomicU64::new(0);
        pool(2).install(|| {
            run(2, &|_| {
                inner_threads.fetch_max(threads() as u64, Ordering::Relaxed);
                let sum = AtomicU64::new(0);
                run(3, &|t| {
                    sum.fetch_add(t as u64 + 1, Ordering::Relaxed);
                });
                assert_eq!(sum.into_inner(), 6);
            });
        });
        assert_eq!(inner_threads.into_inner(), 1);
    }

    #[test]
    fn a_panicking_part_reaches_the_caller_after_all_parts_finish() {
        let finished = AtomicU64::new(0);
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            run(2, &|t| {
                if t == 1 {
                    panic!("part one failed");
                }
                std::thread::sleep(Duration::from_millis(20));
                finished.fetch_add(1, Ordering::Relaxed);
            });
        }));
        let payload = result.expect_err("the panic is resumed");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"part one failed"));
        assert_eq!(finished.into_inner(), 1, "part 0 ran to the end before the panic was resumed");
        // The team is free again.
        let ran = AtomicU64::new(0);
        run(2, &|_| {
            ran.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(ran.into_inner(), 2);
    }

    #[test]
    fn regions_from_many_threads_at_once() {
        // Some run on the team, the others serially; every part runs once either way.
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let sum = AtomicU64::new(0);
                        run(2, &|t| {
                            sum.fetch_add(t as u64 + 1, Ordering::Relaxed);
                        });
                        assert_eq!(sum.into_inner(), 3);
                    }
                });
            }
        });
    }
}
