//! The process allocator: mimalloc, asked for a plain block wherever a word's alignment
//! is all the type needs. It never gives `mi_realloc` a block of the aligned path: the
//! same `layout.align()` picks the path of every call on a block.
//!
//! Every record allocates on one task and frees on another: mimalloc's per-thread heaps
//! cost a fraction of glibc's arenas there (see `scripts/bench`). The `mimalloc` crate's
//! allocator asks for every block through `mi_malloc_aligned`. mimalloc 3 takes such a
//! request from its own size class only when a free block of that class is at hand, and
//! otherwise over-allocates (`size + align - 1`), which for a size at the top of a class
//! that is not a power of two means a block of the next class; and that path never
//! refills the request's own class. A row's column list (448 bytes) took 178
//! instructions and a 512-byte block that way. Every mimalloc block is aligned to at
//! least a word, so a layout that needs no more takes `mi_malloc` (its own class, the
//! fast path); any other, `mi_malloc_aligned`.

use std::alloc::{GlobalAlloc, Layout};

use libmimalloc_sys as mi;

/// The streamer's global allocator (`#[global_allocator]` in the binary).
#[derive(Debug, Clone, Copy, Default)]
pub struct Mimalloc;

/// The alignment every mimalloc block has.
const WORD: usize = std::mem::size_of::<usize>();

// SAFETY: each method hands the request to mimalloc, which returns null or a block of at
// least `size` bytes; the plain functions only for alignments every block has, the
// aligned ones for the rest. `dealloc` and `realloc` take only blocks these returned.
unsafe impl GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD {
            mi::mi_malloc(layout.size()).cast()
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD {
            mi::mi_zalloc(layout.size()).cast()
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr.cast());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= WORD {
            mi::mi_realloc(ptr.cast(), new_size).cast()
        } else {
            mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::c_void;

    use super::*;

    extern "C" {
        /// The size of the block behind `p` (mimalloc's, linked in by libmimalloc-sys).
        fn mi_usable_size(p: *const c_void) -> usize;
        /// The size of the block mimalloc's own class for `size` has.
        fn mi_good_size(size: usize) -> usize;
    }

    /// Fills `n` bytes at `p` with a pattern of `seed`.
    unsafe fn fill(p: *mut u8, n: usize, seed: usize) {
        for i in 0..n {
            p.add(i).write((i * 31 + seed) as u8);
        }
    }

    /// Whether the `n` bytes at `p` still hold [`fill`]'s pattern of `seed`.
    unsafe fn holds(p: *const u8, n: usize, seed: usize) -> bool {
        (0..n).all(|i| p.add(i).read() == (i * 31 + seed) as u8)
    }

    /// Blocks held at once per layout: enough that they are not all a page's first.
    const LIVE: usize = 48;

    #[test]
    fn blocks_are_aligned_as_asked_and_keep_their_bytes_through_realloc() {
        let a = Mimalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 7, 8, 24, 100, 448, 1000, 5000, 70_000] {
                let first = Layout::from_size_align(size.max(align), align).unwrap();
                let mut live = Vec::with_capacity(LIVE);
                unsafe {
                    for seed in 0..LIVE {
                        let p = a.alloc(first);
                        assert!(!p.is_null() && p as usize % align == 0, "{first:?} #{seed}");
                        fill(p, first.size(), seed);
                        live.push(p);
                    }
                    for (seed, mut p) in live.into_iter().enumerate() {
                        let mut layout = first;
                        // Shrink, then grow past the block's class.
                        for new_size in [layout.size() / 2 + 1, layout.size() * 3] {
                            let q = a.realloc(p, layout, new_size);
                            assert!(
                                !q.is_null() && q as usize % align == 0,
                                "{layout:?} to {new_size}"
                            );
                            let kept = layout.size().min(new_size);
                            assert!(holds(q, kept, seed), "{layout:?} to {new_size} lost bytes");
                            (p, layout) = (q, Layout::from_size_align(new_size, align).unwrap());
                            fill(p, layout.size(), seed);
                        }
                        a.dealloc(p, layout);
                    }
                    let z = a.alloc_zeroed(first);
                    assert!(!z.is_null() && z as usize % align == 0, "zeroed {first:?}");
                    assert!(
                        (0..first.size()).all(|i| z.add(i).read() == 0),
                        "zeroed {first:?}"
                    );
                    a.dealloc(z, first);
                }
            }
        }
    }

    /// The point of the allocator: a word-aligned block of a size at the top of a size
    /// class that is not a power of two comes from that class, not the next one (as
    /// `mi_malloc_aligned` gave it, 512 bytes for 448).
    #[test]
    fn a_word_aligned_block_is_of_its_own_size_class() {
        let a = Mimalloc;
        // 448 is a class of its own; over-allocated (455 bytes) it went to the next.
        assert_eq!(unsafe { mi_good_size(448) }, 448);
        for size in [448, 24, 40, 48, 56, 80, 96, 112, 160, 192, 320, 640] {
            let layout = Layout::from_size_align(size, 8).unwrap();
            unsafe {
                let live: Vec<*mut u8> = (0..LIVE).map(|_| a.alloc(layout)).collect();
                let own = mi_good_size(size);
                for &p in &live {
                    assert_eq!(mi_usable_size(p.cast()), own, "a block for {size} bytes");
                }
                for p in live {
                    a.dealloc(p, layout);
                }
            }
        }
    }
}
