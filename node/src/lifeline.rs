//! How a worker notices that its primary is gone, even after a SIGKILL that gave the primary
//! no chance to clean up. Two cheap mechanisms, because each has a gap:
//! - `PR_SET_PDEATHSIG(SIGTERM)`, armed between fork and exec: the kernel signals the worker
//!   when the thread that started it exits;
//! - a pipe whose write end only the primary holds: when the primary dies the kernel closes it
//!   and the worker reads EOF, whatever thread started it.
//!
//! Either way the worker drains and exits like on a SIGTERM.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use command_fds::FdMapping;
use nix::fcntl::OFlag;
use tokio::io::AsyncReadExt;

/// Where a worker finds the read end of the lifeline.
pub const LIFELINE_FD: RawFd = 4;

/// The primary's side: the pipe whose write end it keeps until it exits.
#[derive(Debug)]
pub struct Lifeline {
    /// Close-on-exec, never passed on: if a worker held it, EOF would never come.
    _write_end: OwnedFd,
    /// Duplicated into each worker at [`LIFELINE_FD`].
    read_end: OwnedFd,
}

impl Lifeline {
    /// Creates the pipe (both ends close-on-exec).
    pub fn new() -> nix::Result<Lifeline> {
        let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        Ok(Lifeline { _write_end: write_end, read_end })
    }

    /// A mapping that places a copy of the read end at [`LIFELINE_FD`] in a child.
    pub fn pass_to_child(&self) -> io::Result<FdMapping> {
        Ok(FdMapping { parent_fd: self.read_end.try_clone()?, child_fd: LIFELINE_FD })
    }
}

/// Arms the parent-death signal in the child of `cmd`, between fork and exec.
pub fn arm_parent_death_signal(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the hook only makes async-signal-safe system calls and does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The primary may have died before the signal was armed: then it never comes.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Resolves when the primary is gone: the inherited read end `fd` reports EOF (or fails).
pub fn primary_gone(fd: RawFd) -> io::Result<impl std::future::Future<Output = ()>> {
    // SAFETY: the primary placed the read end at `fd` for this process alone; nothing else in
    // the worker opens or owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(owned)?;
    Ok(async move {
        let mut byte = [0u8; 1];
        // The primary never writes: any return means the write end closed (or the pipe broke).
        loop {
            match pipe.read(&mut byte).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
}
