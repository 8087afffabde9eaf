//! Every bound a topology is held to, in one place. A user or a client controls these values,
//! so each has a ceiling (and a floor) that `scalelab check` enforces and names in its error;
//! `topology.yaml`'s comments quote the same numbers.

/// Node groups in one topology. Also keeps validation's pairwise port check cheap.
pub const MAX_GROUPS: usize = 32;
/// Replicas (nodes) in one group.
pub const MAX_REPLICAS: usize = 64;
/// Worker processes in one node.
pub const MAX_WORKERS: usize = 64;
/// Processes the whole lab may run: every node's primary and workers, plus the balancer.
pub const MAX_PROCESSES: usize = 256;
/// The smallest CPU cap: one hundredth of a core (the kernel's quota floor is 1 ms per
/// 100 ms period).
pub const MIN_CPUS: f64 = 0.01;
/// The largest CPU cap, in cores.
pub const MAX_CPUS: f64 = 1024.0;
/// Proxy threads per core of the machine the balancer runs on.
pub const THREADS_PER_CORE: usize = 4;
/// The shortest health-check interval, ms.
pub const MIN_HEALTH_INTERVAL_MS: u64 = 50;
/// The longest health-check interval or timeout, ms (5 minutes).
pub const MAX_HEALTH_MS: u64 = 300_000;
/// Consecutive health results needed to flip a node, at most.
pub const MAX_HEALTH_STREAK: usize = 100;
/// Client header timeout bounds, ms: from 100 ms to 5 minutes.
pub const HEADER_TIMEOUT_MS: (u64, u64) = (100, 300_000);
/// Client keep-alive (idle) timeout bounds, ms: from 100 ms to 10 minutes.
pub const KEEPALIVE_TIMEOUT_MS: (u64, u64) = (100, 600_000);
/// Idle upstream connections the balancer may keep per thread, at most.
pub const MAX_POOL_SIZE: usize = 10_000;
/// The longest upstream connection age before it is no longer reused, ms (1 hour).
pub const MAX_UPSTREAM_AGE_MS: u64 = 3_600_000;
/// Bounds of `balancer.upstream.read_timeout_ms`, the wait for a node's response head, ms:
/// from 100 ms to 10 minutes.
pub const READ_TIMEOUT_MS: (u64, u64) = (100, 600_000);
/// The derived read timeout is at least this, ms (a slow health check or a busy machine
/// should not turn a small workload's requests into 504s).
pub const DEFAULT_MIN_READ_TIMEOUT_MS: u64 = 10_000;
/// Concurrent client connections the balancer may hold, at most.
pub const MAX_CONNECTIONS: usize = 100_000;
/// The largest CPU cost of one `/op2` request (`max_cpu_ms`), ms. A worker burns it without
/// answering anything else, so this is also the longest a request can stall its worker.
pub const MAX_CPU_MS: u64 = 10_000;
/// Requests a worker may hold waiting for its CPU, at most.
pub const MAX_QUEUE: usize = 4096;
/// How often an autoscaler may decide, ms: from 0.5 s to 10 minutes.
pub const AUTOSCALE_SYNC_MS: (u64, u64) = (500, 600_000);
/// An autoscaler's stabilization windows, ms: from none to 1 hour.
pub const AUTOSCALE_WINDOW_MS: (u64, u64) = (0, 3_600_000);
/// An autoscaler's CPU initialization period, ms: from none to 10 minutes (Kubernetes'
/// default, 5 minutes, fits).
pub const AUTOSCALE_CPU_INITIALIZATION_MS: (u64, u64) = (0, 600_000);
/// The largest autoscaler tolerance (a relative distance from the target).
pub const MAX_AUTOSCALE_TOLERANCE: f64 = 1.0;
/// Autoscaler targets per metric, (lowest, highest): `cpu` is a fraction of the node's cap,
/// `in_flight` requests per node, `rps` requests per second per node.
pub const AUTOSCALE_CPU_TARGET: (f64, f64) = (0.05, 1.0);
pub const AUTOSCALE_IN_FLIGHT_TARGET: (f64, f64) = (0.1, 10_000.0);
pub const AUTOSCALE_RPS_TARGET: (f64, f64) = (0.1, 1_000_000.0);
/// Ports below this are privileged; a topology must say `allow_privileged_ports: true` to
/// use them.
pub const FIRST_UNPRIVILEGED_PORT: u16 = 1024;
/// The largest topology file, bytes.
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// The longest health-check path, bytes.
pub const MAX_PATH_BYTES: usize = 1024;

/// The machine's CPU cores (what the process may use, cgroup quotas included), at least 1.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The most proxy threads this machine allows: [`THREADS_PER_CORE`] per core.
pub fn max_threads() -> usize {
    THREADS_PER_CORE * cores()
}
