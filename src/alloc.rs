//! The process allocator: mimalloc, asked for a plain block wherever a word's alignment
//! is all the type needs.
//!
//! Every record allocates on one task and frees on another: mimalloc's per-thread heaps
//! cost a fraction of glibc's arenas there (see `scripts/bench`). The `mimalloc` crate's
//! allocator asks for every block through `mi_malloc_aligned`, and mimalloc 3 serves an
//! aligned request whose size class is not a power of two by over-allocating from a
//! larger class, on every call: its fast path looks for a free block of the request's
//! own class, which that path never fills. A row's column list (448 bytes) took 178
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
    use super::*;

    /// Fills `n` bytes at `p` with a pattern of `seed`.
    unsafe fn fill(p: *mut u8, n: usize, seed: usize) {
        for i in 0..n {
            p.add(i).write((i * 31 + seed) as u8);
        }
    }

    unsafe fn holds(p: *const u8, n: usize, seed: usize) -> bool {
        (0..n).all(|i| p.add(i).read() == (i * 31 + seed) as u8)
    }

    #[test]
    fn blocks_are_aligned_as_asked_and_keep_their_bytes_through_realloc() {
        let a = Mimalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 7, 8, 24, 100, 448, 1000, 5000, 70_000] {
                let mut layout = Layout::from_size_align(size.max(align), align).unwrap();
                unsafe {
                    let mut p = a.alloc(layout);
                    assert!(!p.is_null() && p as usize % align == 0, "{layout:?}");
                    fill(p, layout.size(), size);
                    // Shrink, then grow past the block's class.
                    for new_size in [layout.size() / 2 + 1, layout.size() * 3] {
                        let q = a.realloc(p, layout, new_size);
                        assert!(
                            !q.is_null() && q as usize % align == 0,
                            "{layout:?} to {new_size}"
                        );
                        let kept = layout.size().min(new_size);
                        assert!(holds(q, kept, size), "{layout:?} to {new_size} lost bytes");
                        (p, layout) = (q, Layout::from_size_align(new_size, align).unwrap());
                        fill(p, layout.size(), size);
                    }
                    a.dealloc(p, layout);
                    let z = a.alloc_zeroed(layout);
                    assert!(!z.is_null() && z as usize % align == 0, "zeroed {layout:?}");
                    assert!(
                        (0..layout.size()).all(|i| z.add(i).read() == 0),
                        "zeroed {layout:?}"
                    );
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
