//! How a backup thread stands aside for mail: a lower CPU priority for all of it, and
//! the idle I/O class once its snapshot is taken.
//!
//! Plain libc calls: two system calls, no crate wraps `ioprio_set`.

/// Nice 10 for the calling thread (zstd's workers, started later, inherit it): below
/// sessions and delivery, yet never starved as `SCHED_IDLE` could be under a flood (a
/// backup must finish).
pub fn lower_cpu() {
    // SAFETY: a plain syscall on the calling thread; no memory is passed.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// The idle I/O class for the calling thread: the disk serves the store's commits and
/// message reads first; mq-deadline and BFQ still serve a waiting idle request within
/// seconds, so the backup slows under load but finishes.
///
/// An incremental backup's snapshot is not put there: it is short, and while it holds
/// its read transaction open no checkpoint can pass it, so it should not queue behind
/// background I/O such as the text index catching up (not measured apart from the
/// other changes of 2026-12-05; bench/RESULTS.md, Backup). The thread drops to idle
/// after it, or from the start when the snapshot is a whole copy of the database,
/// which reads as much as a full backup's packs do.
pub fn idle_io() {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
    // SAFETY: a plain syscall on the calling thread; no memory is passed.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::c_long;
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            tid,
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        );
    }
}
