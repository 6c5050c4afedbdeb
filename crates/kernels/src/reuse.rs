//! Scratch buffers kept by each thread between calls of a kernel.
//!
//! A LeNet-5 training step runs each convolution's backward once on each thread, and
//! each run needs zero-bordered scratch (padded inputs, padded or image-last `dY`) of up
//! to a few hundred KiB: allocating and zeroing it afresh cost ~1.5% of the step. The
//! team's threads live as long as the process, so each keeps the last few buffers it
//! used and takes one back when the next call has the same shape.
//!
//! A buffer's zero borders are part of its contents: a kept value is reused only for a
//! call with the same key (the plan its layout follows), never resized or re-purposed.
//! Each use has a type of its own, so that values of different uses never mix.

use std::any::Any;
use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Values kept per thread: the current kernels use at most four shapes of scratch per
/// step (LeNet-5: two convolutions' forward and backward); a pruning run that changes
/// widths makes new shapes, and the oldest are then dropped.
const KEEP: usize = 8;

thread_local! {
    static KEPT: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// A value taken from this thread's kept values, or newly made; kept again, with its
/// key, when dropped.
pub(crate) struct Reused<K: PartialEq + 'static, T: 'static>(Option<(K, T)>);

impl<K: PartialEq + 'static, T: 'static> Reused<K, T> {
    /// The most recently kept `T` of this thread kept under `key`, or `make()`.
    pub(crate) fn take(key: K, make: impl FnOnce() -> T) -> Self {
        let kept = KEPT
            .try_with(|kept| {
                let mut kept = kept.borrow_mut();
                let i =
                    kept.iter().position(|v| v.downcast_ref::<(K, T)>().is_some_and(|(k, _)| *k == key))?;
                kept.remove(i).downcast::<(K, T)>().ok().map(|v| *v)
            })
            .ok()
            .flatten();
        Self(Some(kept.unwrap_or_else(|| (key, make()))))
    }
}

impl<K: PartialEq + 'static, T: 'static> Deref for Reused<K, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0.as_ref().expect("present until dropped").1
    }
}

impl<K: PartialEq + 'static, T: 'static> DerefMut for Reused<K, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0.as_mut().expect("present until dropped").1
    }
}

impl<K: PartialEq + 'static, T: 'static> Drop for Reused<K, T> {
    fn drop(&mut self) {
        if let Some(v) = self.0.take() {
            // During thread exit the list may be gone already: the value is then dropped.
            let _ = KEPT.try_with(|kept| {
                let mut kept = kept.borrow_mut();
                kept.insert(0, Box::new(v));
                kept.truncate(KEEP);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_comes_back_only_to_a_caller_it_fits() {
        // A type of its own, so that other tests' kept values cannot interfere.
        struct Buf {
            bytes: Vec<u8>,
        }
        {
            let mut a = Reused::take(1usize, || Buf { bytes: vec![0; 4] });
            a.bytes[0] = 7;
        }
        let b = Reused::take(2usize, || Buf { bytes: vec![0; 4] });
        assert_eq!(b.bytes[0], 0, "another shape gets a new value");
        let a = Reused::take(1usize, || Buf { bytes: vec![0; 4] });
        assert_eq!(a.bytes[0], 7, "the same shape gets the kept value back");
        let c = Reused::take(1usize, || Buf { bytes: vec![0; 4] });
        assert_eq!(c.bytes[0], 0, "a value is handed to one taker at a time");
        drop((a, b, c));
        // At most KEEP values stay.
        let many: Vec<_> = (0..KEEP + 3).map(|i| Reused::take(10 + i, || Buf { bytes: vec![] })).collect();
        drop(many);
        let kept =
            KEPT.with_borrow(|k| k.iter().filter(|v| v.downcast_ref::<(usize, Buf)>().is_some()).count());
        assert_eq!(kept, KEEP);
    }
}
