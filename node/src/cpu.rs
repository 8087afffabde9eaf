//! The calling thread's CPU clock, and burning an exact amount of it.
//!
//! `/op2` must cost the same CPU whatever else runs on the machine, so it measures the thread's
//! own CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time: under contention the burn takes
//! longer on the wall clock but exactly as much CPU. It computes; it never sleeps.

use std::hint::black_box;
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

/// Iterations of arithmetic between two clock reads: a few microseconds of work, so the
/// clock (a system call) costs little and the overshoot stays far below a millisecond.
const CHECK_EVERY: u64 = 4096;

/// CPU time the calling thread has used so far.
pub fn thread_cpu_time() -> nix::Result<Duration> {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map(Duration::from)
}

/// Keeps the calling thread busy until it has used `budget` more CPU time; returns the CPU
/// time actually used (at least `budget`, overshooting by a few microseconds).
pub fn burn(budget: Duration) -> nix::Result<Duration> {
    let start = thread_cpu_time()?;
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    loop {
        for i in 0..CHECK_EVERY {
            // A xorshift-multiply step: real work the optimizer cannot fold away.
            state ^= state << 13;
            state ^= state >> 7;
            state = state.wrapping_mul(0x2545_f491_4f6c_dd1d).wrapping_add(i);
        }
        black_box(state);
        let used = thread_cpu_time()?.saturating_sub(start);
        if used >= budget {
            return Ok(used);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn burns_the_requested_thread_cpu_time() {
        let budget = Duration::from_millis(50);
        let wall = Instant::now();
        let before = thread_cpu_time().unwrap();
        let reported = burn(budget).unwrap();
        let used = thread_cpu_time().unwrap() - before;
        assert!(reported >= budget, "reported {reported:?} < {budget:?}");
        assert!(used >= budget, "used {used:?} < {budget:?}");
        // The clock is read every few microseconds; 5 ms leaves room for a loaded machine.
        assert!(used <= budget + Duration::from_millis(5), "used {used:?} for a {budget:?} budget");
        assert!(wall.elapsed() >= budget, "CPU time cannot exceed wall time");
    }

    #[test]
    fn zero_budget_returns_at_once() {
        let used = burn(Duration::ZERO).unwrap();
        assert!(used < Duration::from_millis(2), "{used:?}");
    }
}
