//! CPU used outside the lab while a sweep measures. A sweep on a machine where something else
//! eats the CPU measures that something as much as the lab, and a fit over such points reads
//! interference as contention. So each round is bracketed by two readings of /proc: the
//! machine's busy CPU time, less the CPU of everything the sweep runs, is what others used.
//!
//! Inside counts the sweep process itself (its load generator runs in it) and every process
//! below it: a native lab is the sweep's own process tree (the balancer, each node's primary
//! and its workers), whether or not its nodes run in cgroups. A Compose lab's processes live in
//! containers instead, so their cgroups' CPU is added (see `Runner::containers_cpu`).
//!
//! The arithmetic, on /proc's text (proc(5)):
//! - `/proc/stat`'s `cpu` line: ticks (USER_HZ) spent in each state since boot, all CPUs
//!   together; busy = user + nice + system + irq + softirq + steal. Idle and iowait are not
//!   busy; guest time is already inside user and nice.
//! - `/proc/<pid>/stat`: utime + stime (all its threads) + cutime + cstime (its children that
//!   exited and were waited for), in the same ticks. Summed over the sweep and every process
//!   below it, a child that exits between two readings moves its time into its parent's
//!   cutime, so the sum counts it once.
//! - outside, in cores = (Δbusy − Δinside) / Δwall, summed over a point's rounds, and never
//!   below 0 (both sides are sampled by the tick: a few ticks either way).
//!
//! A tour step, where labs start and stop and nodes are killed, is measured by a [`Span`]
//! instead, which samples each process's own CPU every quarter second.
//!
//! What the number is worth: it is a bound on interference, not a measure of it. Work the
//! kernel does for the lab without charging a process (network interrupts taken while a CPU
//! was idle, ksoftirqd) counts as outside, so an idle machine shows a few hundredths of a core;
//! time a hypervisor stole counts too (the lab did not get that CPU either). Above
//! [`NOISY_CORES`] a point is marked noisy: its throughput may be lower, and its latency tail
//! longer, than the lab alone would have given.

use std::time::{Duration, Instant};

/// Above this much CPU used outside the lab while a point was measured, in cores (CPU seconds
/// per second), the point is noisy: a tenth of a core, a few times what the kernel's own
/// uncharged work on the lab's traffic shows on an idle machine.
pub const NOISY_CORES: f64 = 0.1;

/// What a noisy point is worth, in a sentence: the terminal, the report and the tour say it.
pub const WORTH: &str = "something outside the lab used more than a tenth of a core while they were \
                         measured, and took CPU the lab would otherwise have had: their throughput may be \
                         lower and their latency tail longer than the lab's own, so re-run them on an idle \
                         machine before drawing a conclusion from them";

/// The machine's busy CPU and the CPU used inside the lab, since boot, at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    at: Instant,
    busy: Duration,
    inside: Duration,
}

impl Reading {
    /// Reads /proc now: the machine, this process and every process below it, plus
    /// `containers`, the CPU a Compose lab's containers have used so far (zero natively).
    /// `None` where /proc cannot be read.
    pub fn take(containers: Duration) -> Option<Reading> {
        let tick = ticks_per_second()?;
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let busy = busy_ticks(&stat)?;
        let procs = processes();
        let inside = tree_ticks(std::process::id(), &procs);
        let secs = |ticks: u64| Duration::from_secs_f64(ticks as f64 / tick);
        Some(Reading { at: Instant::now(), busy: secs(busy), inside: secs(inside) + containers })
    }
}

/// CPU used outside between readings, summed over the stretches measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Outside {
    /// CPU seconds others used (may dip below 0 by a few ticks).
    pub cpu_s: f64,
    /// Wall-clock seconds measured.
    pub wall_s: f64,
    /// CPU seconds the lab and the sweep used meanwhile.
    pub inside_s: f64,
}

impl Outside {
    /// What others used from `before` to `after`.
    pub fn between(before: &Reading, after: &Reading) -> Outside {
        let busy = after.busy.as_secs_f64() - before.busy.as_secs_f64();
        let inside = after.inside.as_secs_f64() - before.inside.as_secs_f64();
        let wall_s = after.at.saturating_duration_since(before.at).as_secs_f64();
        Outside { cpu_s: busy - inside, wall_s, inside_s: inside }
    }

    /// Adds another stretch (the next round of a point).
    pub fn add(&mut self, other: Outside) {
        self.cpu_s += other.cpu_s;
        self.wall_s += other.wall_s;
        self.inside_s += other.inside_s;
    }

    /// Cores used outside on average, at least 0; `None` when nothing was measured.
    pub fn cores(&self) -> Option<f64> {
        (self.wall_s > 0.0).then(|| (self.cpu_s / self.wall_s).max(0.0))
    }
}

/// Whether `cores` used outside make a measurement noisy.
pub fn is_noisy(cores: f64) -> bool {
    cores > NOISY_CORES
}

/// How often a [`Span`] looks at the processes.
const SPAN_SAMPLE: Duration = Duration::from_millis(250);

/// A long stretch measured whole, such as a tour step, in which labs start and stop and nodes
/// are killed. There the sums of [`Reading`] do not hold: a worker killed with its primary is
/// reaped by init, and its CPU would leave the sweep's tree and count as outside. So a thread
/// samples the tree every [`SPAN_SAMPLE`] and keeps a ledger of each process's own CPU, first
/// and last seen: a process that dies loses at most its last quarter second.
pub struct Span {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sampler: Option<std::thread::JoinHandle<Option<Outside>>>,
}

impl Span {
    /// Starts sampling.
    pub fn start() -> Span {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let sampler = std::thread::Builder::new()
            .name("outside-cpu".into())
            .spawn(move || sample_span(&flag))
            .map_err(|e| tracing::warn!("cannot measure the CPU used outside the lab: {e}"))
            .ok();
        Span { stop, sampler }
    }

    /// Stops sampling: the cores used outside since the start; `None` where /proc cannot be
    /// read.
    pub fn cores(mut self) -> Option<f64> {
        self.finish()?.cores()
    }

    fn finish(&mut self) -> Option<Outside> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.sampler.take()?.join().ok().flatten()
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The sampling thread of a [`Span`]: runs until `stop`, then says what others used.
fn sample_span(stop: &std::sync::atomic::AtomicBool) -> Option<Outside> {
    let tick = ticks_per_second()?;
    let busy = || busy_ticks(&std::fs::read_to_string("/proc/stat").ok()?);
    let (started, busy_before) = (Instant::now(), busy()?);
    let root = std::process::id();
    let mut ledger = Ledger::default();
    ledger.first_look(&tree(root, &processes()));
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let next = Instant::now() + SPAN_SAMPLE;
        while Instant::now() < next && !stop.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        ledger.look(&tree(root, &processes()));
    }
    let busy_after = busy()?;
    let (busy, inside) = (busy_after.saturating_sub(busy_before) as f64, ledger.inside() as f64);
    Some(Outside {
        cpu_s: (busy - inside) / tick,
        wall_s: started.elapsed().as_secs_f64(),
        inside_s: inside / tick,
    })
}

/// Each process's own CPU (utime + stime) when a [`Span`] first and last saw it, by pid and
/// start time (a pid may be reused).
#[derive(Debug, Default)]
struct Ledger(std::collections::HashMap<(u32, u64), (u64, u64)>);

impl Ledger {
    /// The processes there at the start: only what they use from now on counts.
    fn first_look(&mut self, procs: &[&Proc]) {
        for p in procs {
            self.0.insert((p.pid, p.started), (p.own, p.own));
        }
    }

    /// A later look: a process seen for the first time started within the span, so all its
    /// CPU counts.
    fn look(&mut self, procs: &[&Proc]) {
        for p in procs {
            self.0.entry((p.pid, p.started)).or_insert((0, 0)).1 = p.own;
        }
    }

    /// The ticks used inside between the first look and the last.
    fn inside(&self) -> u64 {
        self.0.values().map(|(first, last)| last.saturating_sub(*first)).sum()
    }
}

/// A step's lesson about the noise, when there was any: how much CPU others used while it ran.
pub fn step_caveat(cores: Option<f64>) -> Option<String> {
    let cores = cores.filter(|c| is_noisy(*c))?;
    Some(format!(
        "Noisy: while this step ran, processes outside the lab used {cores:.2} cores on average \
         (more than a tenth of a core). They took CPU the lab would otherwise have had, so the \
         numbers above may show less throughput and longer tails than the lab alone would: run \
         the tour again on an idle machine before drawing a lesson from them."
    ))
}

/// USER_HZ, the unit of every tick count in /proc.
fn ticks_per_second() -> Option<f64> {
    // SAFETY: sysconf reads a constant of the C library; it has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then_some(hz as f64)
}

/// The busy ticks of the `cpu` line of `/proc/stat`'s text.
fn busy_ticks(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let [user, nice, system, _idle, _iowait, irq, softirq, steal, ..] = fields[..] else {
        return None;
    };
    Some(user + nice + system + irq + softirq + steal)
}

/// One process, from its `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Proc {
    pid: u32,
    ppid: u32,
    /// utime + stime + cutime + cstime.
    ticks: u64,
    /// utime + stime: its own threads only.
    own: u64,
    /// When it started, in ticks after boot (with the pid, a name no other process has).
    started: u64,
}

/// Parses a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses itself, so the fields are counted from its last `)`.
fn parse_proc(stat: &str) -> Option<Proc> {
    let (head, tail) = stat.rsplit_once(')')?;
    let pid = head.split_once(' ')?.0.trim().parse().ok()?;
    // Field 3 (state) is the first after the name; ppid is field 4, utime..cstime 14..17,
    // starttime 22.
    let fields: Vec<&str> = tail.split_whitespace().collect();
    let number = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    let own = number(14)? + number(15)?;
    let ticks = own + number(16)? + number(17)?;
    Some(Proc { pid, ppid: u32::try_from(number(4)?).ok()?, ticks, own, started: number(22)? })
}

/// Every process /proc lists now (one that exits while it is read is skipped).
fn processes() -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|text| parse_proc(&text))
        .collect()
}

/// `root` and every process below it in `procs`.
fn tree(root: u32, procs: &[Proc]) -> Vec<&Proc> {
    let mut found: Vec<&Proc> = procs.iter().filter(|p| p.pid == root).collect();
    let mut i = 0;
    while let Some(parent) = found.get(i).map(|p| p.pid) {
        found.extend(procs.iter().filter(|p| p.ppid == parent && p.pid != root));
        i += 1;
    }
    found
}

/// The ticks of `root` and of every process below it in `procs`, their waited-for children's
/// included.
fn tree_ticks(root: u32, procs: &[Proc]) -> u64 {
    tree(root, procs).iter().map(|p| p.ticks).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_STAT: &str = "cpu  93468 12 10385 29794 1550 7 133 424 50 0\n\
                             cpu0 45970 6 4755 16322 588 3 33 213 25 0\n\
                             cpu1 47498 6 5630 13471 962 4 99 211 25 0\n\
                             intr 123 4 5\nctxt 42\n";

    #[test]
    fn busy_is_every_state_but_idle_and_iowait() {
        // 93468 + 12 + 10385 + 7 + 133 + 424; guest (50) is already in user.
        assert_eq!(busy_ticks(PROC_STAT), Some(104_429));
        // A kernel older than steal (2.6.11) has too few fields to tell.
        assert_eq!(busy_ticks("cpu  1 2 3 4 5 6 7\n"), None);
        assert_eq!(busy_ticks("cpu0 1 2 3 4 5 6 7 8\n"), None, "the all-CPU line only");
    }

    #[test]
    fn a_process_line_is_read_past_a_name_with_spaces_and_parentheses() {
        let line = "4242 (node (worker) 2) S 4200 4200 4200 0 -1 4194560 1523 0 0 0 \
                    731 208 36 5 20 0 3 0 1234 0 0\n";
        let want = Proc { pid: 4242, ppid: 4200, ticks: 731 + 208 + 36 + 5, own: 731 + 208, started: 1234 };
        assert_eq!(parse_proc(line), Some(want));
        assert_eq!(parse_proc("4242 (cut short) S 1 2 3\n"), None);
    }

    /// ```text
    /// 1 init ── 100 sweep ─┬─ 101 balancer
    ///                      └─ 102 node primary ─┬─ 103 worker
    ///                                           └─ 104 worker
    /// 1 init ── 200 busy loop (outside)
    /// ```
    #[test]
    fn inside_is_the_sweep_and_everything_below_it() {
        let p = |pid, ppid, ticks| Proc { pid, ppid, ticks, own: ticks, started: 0 };
        let procs = [
            p(1, 0, 5),
            p(100, 1, 40),
            p(101, 100, 30),
            p(102, 100, 2),
            p(103, 102, 50),
            p(104, 102, 60),
            p(200, 1, 99),
        ];
        assert_eq!(tree_ticks(100, &procs), 40 + 30 + 2 + 50 + 60);
        assert_eq!(tree_ticks(102, &procs), 2 + 50 + 60);
        assert_eq!(tree_ticks(7, &procs), 0, "a root that is gone counts nothing");
    }

    #[test]
    fn outside_is_busy_less_inside_over_the_wall_time() {
        let start = Instant::now();
        let at = |secs: f64, busy: f64, inside: f64| Reading {
            at: start + Duration::from_secs_f64(secs),
            busy: Duration::from_secs_f64(busy),
            inside: Duration::from_secs_f64(inside),
        };
        // Two rounds of 2 s: the machine busy 3.0 and 2.1 CPU-seconds, the lab and the sweep
        // 1.4 and 1.9 of them: 1.6 + 0.2 outside over 4 s.
        let mut o = Outside::between(&at(0.0, 100.0, 50.0), &at(2.0, 103.0, 51.4));
        o.add(Outside::between(&at(3.0, 104.0, 52.0), &at(5.0, 106.1, 53.9)));
        assert!((o.cpu_s - 1.8).abs() < 1e-9 && (o.wall_s - 4.0).abs() < 1e-9, "{o:?}");
        assert!((o.inside_s - 3.3).abs() < 1e-9, "{o:?}");
        assert!((o.cores().unwrap() - 0.45).abs() < 1e-9);
        assert!(is_noisy(o.cores().unwrap()));
        // A quiet machine: the tick sampling may put inside a little above busy; never below 0.
        let quiet = Outside::between(&at(0.0, 10.0, 8.0), &at(1.0, 11.0, 9.03));
        assert_eq!(quiet.cores(), Some(0.0));
        assert!(!is_noisy(0.08) && is_noisy(0.11));
        assert_eq!(Outside::default().cores(), None, "nothing measured");
    }

    #[test]
    fn a_span_counts_what_each_process_used_while_it_was_seen() {
        let p = |pid, own, started| Proc { pid, ppid: 1, ticks: own, own, started };
        let mut ledger = Ledger::default();
        // At the start: the sweep (100) at 500 ticks, a worker (103) at 40.
        ledger.first_look(&[&p(100, 500, 10), &p(103, 40, 20)]);
        // A node starts (104); the worker works.
        ledger.look(&[&p(100, 520, 10), &p(103, 90, 20), &p(104, 30, 50)]);
        // The worker is killed (gone, its 50 ticks kept); its pid is reused by another process.
        ledger.look(&[&p(100, 530, 10), &p(104, 80, 50), &p(103, 7, 60)]);
        // 30 by the sweep, 50 by the old worker, 80 by the node, 7 by the new 103.
        assert_eq!(ledger.inside(), 30 + 50 + 80 + 7);
    }

    /// This process's CPU so far, by getrusage (not /proc).
    fn own_cpu() -> Duration {
        use nix::sys::resource::{getrusage, UsageWho};
        let usage = getrusage(UsageWho::RUSAGE_SELF).unwrap();
        let time = |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
        time(usage.user_time()) + time(usage.system_time())
    }

    /// Spins until this process has used `cpu` more CPU, however loaded the machine (at most
    /// 30 s).
    fn burn(cpu: Duration) {
        let (start, deadline) = (own_cpu(), Instant::now() + Duration::from_secs(30));
        while own_cpu() < start + cpu {
            assert!(Instant::now() < deadline, "could not get {cpu:?} of CPU in 30 s");
            for _ in 0..10_000 {
                std::hint::black_box(0u64);
            }
        }
    }

    #[test]
    fn a_span_counts_this_process_spinning_inside() {
        let mut span = Span::start();
        burn(Duration::from_millis(500));
        // The spin is inside (what others used meanwhile depends on the machine's load).
        let measured = span.finish().expect("/proc is readable");
        assert!(measured.inside_s >= 0.45 && measured.wall_s >= 0.5, "{measured:?}");
    }

    #[test]
    fn a_reading_of_this_machine_counts_this_process_inside() {
        let before = Reading::take(Duration::ZERO).expect("/proc is readable");
        // 300 ms of CPU burnt here are inside, not outside (to the tick, 10 ms).
        burn(Duration::from_millis(300));
        let after = Reading::take(Duration::ZERO).unwrap();
        let inside = after.inside.saturating_sub(before.inside);
        assert!(inside >= Duration::from_millis(280), "{before:?} {after:?}");
        assert!(after.busy >= before.busy);
    }

    #[test]
    fn a_step_says_so_only_when_noisy() {
        assert_eq!(step_caveat(Some(0.05)), None);
        assert_eq!(step_caveat(None), None);
        let said = step_caveat(Some(0.73)).unwrap();
        assert!(
            said.starts_with("Noisy: while this step ran, processes outside the lab used 0.73 cores"),
            "{said}"
        );
    }
}
