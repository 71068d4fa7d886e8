//! The allocator (glibc malloc), tuned for a server that handles big buffers on many
//! threads.

/// Big buffers (argon2's 19 MiB per password check, DATA of large messages) go
/// straight to mmap and back to the system when freed. glibc otherwise raises its mmap
/// threshold after the first such free and keeps later ones in per-thread arenas: a
/// burst of 20 submission logins then pinned ~300 MB for good.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Gives memory freed by big work back to the system. glibc keeps freed chunks in
/// each thread's arena for reuse: after a rescan of a million messages and a purge of
/// 50,000 the server held 400 MB, of which 84 MB was in use (`malloc_trim` brought it
/// there). Called when an admin job ends, on a blocking thread (it walks every arena).
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
