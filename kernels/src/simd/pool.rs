//! A per-thread pool of large f32 buffers. A training step allocates the same large buffers
//! every time (tapes, input projections, gate gradients, packed operands: tens of MB per layer
//! for the Table 1 models). Fresh from the allocator they are fresh pages, and the kernel spent
//! a fifth of a step faulting and zeroing them; kept here, the next step reuses them warm.
//! Moving memory cannot change a result.
//!
//! Only buffers of at least [`MIN_FLOATS`] values are kept, at most [`MAX_BUFFERS`] of them and
//! [`MAX_BYTES`] in all, the least recently returned going first (a buffer that is given back
//! but never asked for again, like a decoder tape's that grew step by step, ages out instead of
//! crowding out the ones every step reuses); [`release`] frees what this thread holds.

use std::cell::RefCell;

/// Smaller buffers come and go through the allocator as usual (256 KiB).
const MIN_FLOATS: usize = 1 << 16;
const MAX_BUFFERS: usize = 64;
const MAX_BYTES: usize = 1 << 30;

thread_local! {
    static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// The smallest kept buffer with room for `capacity` values, taken out of the pool, as it was
/// given back (its old values kept).
fn kept(capacity: usize) -> Option<Vec<f32>> {
    if capacity < MIN_FLOATS {
        return None;
    }
    FREE.with(|f| {
        let mut free = f.borrow_mut();
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= capacity)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        best.map(|i| free.swap_remove(i))
    })
}

/// An empty buffer with room for at least `capacity` values: the smallest kept one that fits,
/// else a new one.
pub(crate) fn take(capacity: usize) -> Vec<f32> {
    match kept(capacity) {
        Some(mut v) => {
            v.clear();
            v
        }
        None => Vec::with_capacity(capacity),
    }
}

/// A buffer of `len` values for a caller that writes every one of them before reading any: its
/// values are whatever the buffer last held (zeros past that), so the pool's warm buffers are not
/// cleared first only to be overwritten (a training step's input projections and gate gradients
/// are tens of megabytes).
pub(crate) fn scratch(len: usize) -> Vec<f32> {
    match kept(len) {
        Some(mut v) => {
            v.truncate(len);
            v.resize(len, 0.0);
            v
        }
        None => vec![0.0; len],
    }
}

/// `len` zeros in a buffer from [`take`].
pub(crate) fn zeros(len: usize) -> Vec<f32> {
    let mut v = take(len);
    v.resize(len, 0.0);
    v
}

/// Keeps `v` for a later [`take`] on this thread, if it is large and the pool has room.
pub(crate) fn give(v: Vec<f32>) {
    if v.capacity() < MIN_FLOATS {
        return;
    }
    if v.capacity() * 4 > MAX_BYTES {
        return;
    }
    // A thread being torn down drops the buffer instead.
    let _ = FREE.try_with(|f| {
        let mut free = f.borrow_mut();
        free.push(v);
        let mut bytes: usize = free.iter().map(|b| b.capacity() * 4).sum();
        // Oldest first out (`take` removes with swap_remove, so the order is only roughly that
        // of return; good enough for a cache).
        while free.len() > MAX_BUFFERS || bytes > MAX_BYTES {
            bytes -= free.remove(0).capacity() * 4;
        }
    });
}

/// Frees every buffer this thread's pool holds.
pub fn release() {
    FREE.with(|f| f.borrow_mut().clear());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_the_smallest_that_fits() {
        release();
        let (a, b) = (zeros(MIN_FLOATS), zeros(4 * MIN_FLOATS));
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        give(b);
        give(a);
        let c = take(MIN_FLOATS + 1);
        assert_eq!(c.as_ptr(), pb, "only the large one fits");
        assert!(c.is_empty());
        let d = zeros(10);
        assert_ne!(d.as_ptr(), pa, "small requests do not use the pool");
        let e = zeros(MIN_FLOATS);
        assert_eq!(e.as_ptr(), pa);
        assert!(e.iter().all(|&x| x == 0.0));
        // A scratch buffer is a kept one at the length asked, its old values kept.
        let mut f = zeros(2 * MIN_FLOATS);
        f.fill(7.0);
        let pf = f.as_ptr();
        give(f);
        let g = scratch(MIN_FLOATS + 3);
        assert_eq!((g.as_ptr(), g.len()), (pf, MIN_FLOATS + 3));
        assert!(g.iter().all(|&x| x == 7.0));
        give(g);
        let h = scratch(2 * MIN_FLOATS);
        assert!(h[..MIN_FLOATS + 3].iter().all(|&x| x == 7.0));
        assert!(h[MIN_FLOATS + 3..].iter().all(|&x| x == 0.0));
        drop(h);
        give(vec![0.0; 10]);
        FREE.with(|f| assert!(f.borrow().is_empty(), "small buffers are not kept"));
        // A full pool lets its oldest buffer go for a new one.
        let first = zeros(MIN_FLOATS);
        let first_ptr = first.as_ptr();
        give(first);
        for _ in 0..MAX_BUFFERS {
            give(Vec::with_capacity(MIN_FLOATS + 1));
        }
        FREE.with(|f| {
            let free = f.borrow();
            assert_eq!(free.len(), MAX_BUFFERS);
            assert!(free.iter().all(|b| b.as_ptr() != first_ptr));
        });
        release();
    }
}
