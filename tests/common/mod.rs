//! Shared harness for the integration tests: start real `scalelab` processes on loopback,
//! wait for them with deadlines, speak plain HTTP to them and tear them down by process group.
#![allow(dead_code)] // each test binary uses a different subset

pub mod browser;
pub mod kubernetes;
pub mod podman;
pub mod rig;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Children of a test die with it: if the test process is killed (a timeout), the kernel
/// sends SIGTERM to what it started, so no lab outlives its test.
trait DieWithParent {
    fn die_with_parent(&mut self) -> &mut Self;
}

impl DieWithParent for Command {
    fn die_with_parent(&mut self) -> &mut Self {
        // SAFETY: prctl is async-signal-safe and allocates nothing.
        unsafe {
            self.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        }
    }
}

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_scalelab")
}

/// `scalelab ARGS...`, in its own process group, dying with the test, logging at `RUST_LOG`
/// (default info).
fn scalelab(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .stdin(Stdio::null())
        .process_group(0)
        .die_with_parent();
    cmd
}

/// A loopback port that was free a moment ago (bind port 0, read it, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `n` distinct free ports, all held until every one is chosen so none repeats.
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    held.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// `n` consecutive free ports starting at the returned one (node replicas use port, port+1, ...).
/// Chosen below Linux's ephemeral range (32768+), where the many client sockets a test run
/// leaves in TIME_WAIT cannot take them.
pub fn free_port_run(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(2_654_435_761);
    'outer: for _ in 0..500 {
        let k = NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(7919);
        let base = 20_000 + (seed.wrapping_add(k) % 12_000) as u16;
        let mut held = Vec::new();
        for p in base..base + n {
            match TcpListener::bind(("127.0.0.1", p)) {
                Ok(l) => held.push(l),
                Err(_) => continue 'outer,
            }
        }
        return base;
    }
    panic!("no run of {n} free ports");
}

/// A started `scalelab` process, alone in its own process group. Dropping it stops the whole
/// group (SIGTERM, then SIGKILL after a deadline), so no test leaves processes behind.
pub struct Proc {
    pub child: Child,
    pub name: String,
    /// stdout collected so far, when started with `spawn_capturing`.
    output: Option<std::sync::Arc<std::sync::Mutex<String>>>,
}

impl Proc {
    /// Starts `scalelab ARGS...` with stdout/stderr inherited (shown when a test fails).
    pub fn spawn(args: &[&str]) -> Proc {
        let child = scalelab(args).spawn().expect("start scalelab");
        Proc { child, name: args.first().copied().unwrap_or("").to_string(), output: None }
    }

    /// Like `spawn`, with the open-file limit (soft and hard) lowered to `nofile` first: the
    /// process cannot raise it back.
    pub fn spawn_with_nofile(args: &[&str], nofile: u64) -> Proc {
        let mut cmd = scalelab(args);
        // SAFETY: setrlimit is async-signal-safe and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                let limit = libc::rlimit { rlim_cur: nofile, rlim_max: nofile };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start scalelab");
        Proc { child, name: args.first().copied().unwrap_or("").to_string(), output: None }
    }

    /// Like `spawn`, but stdout and stderr are collected (and echoed) for `output()`.
    pub fn spawn_capturing(args: &[&str]) -> Proc {
        Proc::spawn_capturing_env(args, &[])
    }

    /// Like `spawn_capturing`, with environment changes (`None` removes the variable).
    pub fn spawn_capturing_env(args: &[&str], env: &[(&str, Option<&str>)]) -> Proc {
        let mut cmd = scalelab(args);
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start scalelab");
        let buf = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let readers: Vec<Box<dyn std::io::Read + Send>> =
            vec![Box::new(child.stdout.take().unwrap()), Box::new(child.stderr.take().unwrap())];
        for r in readers {
            let buf = buf.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(r).lines().map_while(Result::ok) {
                    eprintln!("  | {line}");
                    let mut b = buf.lock().unwrap();
                    b.push_str(&line);
                    b.push('\n');
                }
            });
        }
        Proc { child, name: args.first().copied().unwrap_or("").to_string(), output: Some(buf) }
    }

    /// Everything the process printed so far (`spawn_capturing` only).
    pub fn output(&self) -> String {
        self.output.as_ref().expect("spawned with spawn_capturing").lock().unwrap().clone()
    }

    /// Waits until the output contains `needle`, or panics after `deadline`.
    pub fn wait_output(&self, needle: &str, deadline: Duration) -> String {
        wait_for(&format!("{:?} in the output", needle), deadline, || {
            let out = self.output();
            out.contains(needle).then_some(out)
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `sig` to the process itself (not its group).
    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// SIGTERM, then waits up to `deadline` for the exit status.
    pub fn terminate(&mut self, deadline: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        self.wait_exit(deadline)
    }

    /// Waits up to `deadline` for the process to exit.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pgid = self.pid();
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        if self.wait_exit(Duration::from_secs(8)).is_none() {
            eprintln!("{}: still running after SIGTERM, sending SIGKILL", self.name);
        }
        // Whatever is left of the group (workers of a killed primary) goes too.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// One HTTP response, headers lower-cased.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body as a node's `/info` document.
    pub fn info(&self) -> scalelab_wire::NodeInfo {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not a /info document ({e}): {}", self.body))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `GET http://ADDR PATH`, any status; `Err` only when no response arrived.
pub fn get(addr: impl std::fmt::Display, path: &str) -> Result<Response, String> {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build();
    let resp = match agent.get(&format!("http://{addr}{path}")).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.to_string()),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .filter_map(|n| resp.header(&n).map(|v| (n.to_ascii_lowercase(), v.to_string())))
        .collect();
    let body = resp.into_string().map_err(|e| e.to_string())?;
    Ok(Response { status, headers, body })
}

/// Polls `GET ADDR PATH` until it answers 200 or `deadline` passes (then panics).
pub fn wait_http(addr: impl std::fmt::Display, path: &str, deadline: Duration) -> Response {
    let end = Instant::now() + deadline;
    loop {
        match get(&addr, path) {
            Ok(r) if r.status == 200 => return r,
            other if Instant::now() >= end => panic!("{addr}{path} not ready after {deadline:?}: {other:?}"),
            _ => sleep(Duration::from_millis(50)),
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some` or `deadline` passes (then panics with `what`).
pub fn wait_for<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        sleep(Duration::from_millis(50));
    }
}

/// A temporary directory holding a topology file the test can rewrite.
pub struct TopologyFile {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TopologyFile {
    pub fn new(yaml: &str) -> TopologyFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topology.yaml");
        let t = TopologyFile { dir, path };
        t.write(yaml);
        t
    }

    /// Replaces the file the way editors do: write a sibling, then rename over it.
    pub fn write(&self, yaml: &str) {
        let tmp = self.path.with_extension("yaml.tmp");
        let mut f = std::fs::File::create(&tmp).unwrap();
        f.write_all(yaml.as_bytes()).unwrap();
        f.sync_all().unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

/// A topology with one node group; `extra_group` is appended verbatim under `nodes:`.
pub fn topology_yaml(listen: SocketAddr, admin: SocketAddr, groups: &str) -> String {
    format!(
        "balancer:\n  listen: {listen}\n  admin: {admin}\n  algorithm: round_robin\n  \
         health_check: {{ path: /health, interval_ms: 200, unhealthy_after: 1, healthy_after: 1 }}\n\
         workload:\n  op2_cpu_ms: 20\n  max_cpu_ms: 1000\nnodes:\n{groups}"
    )
}

/// A path relative to the repository root.
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Runs `scalelab ARGS...` to completion (bounded by `deadline`) and returns (exit code,
/// stdout, stderr).
pub fn run_scalelab(args: &[&str], deadline: Duration) -> (i32, String, String) {
    let mut child =
        scalelab(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start scalelab");
    let end = Instant::now() + deadline;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            panic!("scalelab {args:?} still running after {deadline:?}");
        }
        sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A sweep's `results.json` in `dir`, read as the sweep's own type.
pub fn read_results(dir: &Path) -> scalelab_experiment::results::Results {
    let path = dir.join("results.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not the sweep's results: {e}", path.display()))
}

/// Runs `scalelab load ARGS... --json` and reads its report as the load tool's own type.
pub fn load_json(args: &[&str], deadline: Duration) -> scalelab_loadgen::Report {
    let mut full = vec!["load", "--json", "--no-progress"];
    full.extend_from_slice(args);
    let (code, stdout, stderr) = run_scalelab(&full, deadline);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("not a load report ({e}); exit {code}\nstdout: {stdout}\nstderr: {stderr}")
    })
}

/// The state letter and parent pid from `/proc/PID/stat`.
pub fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after its last ')' do not.
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Every live descendant of `pid` (children, and their children).
pub fn descendants_of(pid: i32) -> Vec<i32> {
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            if proc_stat(child).is_some_and(|(_, ppid)| ppid == parent) && !found.contains(&child) {
                found.push(child);
            }
        }
        i += 1;
    }
    found.remove(0);
    found
}

/// Whether `pid` runs (a zombie has exited; it only waits to be reaped).
pub fn alive(pid: i32) -> bool {
    matches!(proc_stat(pid), Some((state, _)) if state != 'Z')
}

/// The value of one series in a Prometheus text exposition (`name` with its labels, exactly as
/// printed, e.g. `scalelab_balancer_retries_total`).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Sends raw bytes and returns whatever the server answers before closing (or timing out).
pub fn raw_exchange(addr: impl std::net::ToSocketAddrs, bytes: &[u8]) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(bytes).expect("send");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// The loopback TCP sockets of one port, from `/proc/net/tcp`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortSockets {
    /// Client connections established to the port.
    pub clients: usize,
    /// Connections waiting in the port's listen queues (every socket listening on it).
    pub queued: usize,
}

/// Counts the client connections to `port` and the connections no process has accepted yet.
pub fn port_sockets(port: u16) -> PortSockets {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let port_of = |addr: &str| u16::from_str_radix(addr.rsplit_once(':')?.1, 16).ok();
    let mut out = PortSockets::default();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, local, remote, state, queues, ..] = fields[..] else { continue };
        match state {
            // ESTABLISHED, seen from the client's end.
            "01" if port_of(remote) == Some(port) => out.clients += 1,
            // LISTEN: for a listening socket, rx_queue is the accept queue.
            "0A" if port_of(local) == Some(port) => {
                let rx = queues.split_once(':').map_or("0", |(_, rx)| rx);
                out.queued += usize::from_str_radix(rx, 16).unwrap_or(0);
            }
            _ => {}
        }
    }
    out
}

/// Opens `n` connections back to back, sends one `Connection: close` request on each, then
/// reads every answer: the connections reach the node together, as in a traffic spike.
/// Returns the `x-worker` of each answer.
pub fn burst(addr: &str, n: usize, path: &str) -> Vec<usize> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let streams: Vec<std::net::TcpStream> = (0..n)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(addr).expect("connect");
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            stream.write_all(request.as_bytes()).expect("send");
            stream
        })
        .collect();
    streams
        .into_iter()
        .map(|mut stream| {
            let mut answer = String::new();
            stream.read_to_string(&mut answer).expect("read the answer");
            let worker = answer
                .lines()
                .find_map(|l| l.strip_prefix("x-worker: "))
                .unwrap_or_else(|| panic!("no x-worker in {answer:?}"));
            worker.trim().parse().expect("x-worker is a number")
        })
        .collect()
}

/// Whether `up` enforces CPU caps here; when not, says so on stderr, and fails when the run
/// requires them (`SCALELAB_REQUIRE_CGROUPS=1`, set by scripts/test.sh where they work).
pub fn cgroups_enforced(output: &str) -> bool {
    if output.contains("CPU caps: enforced") {
        return true;
    }
    let why = output.lines().find(|l| l.contains("NOT enforced")).unwrap_or("no CPU caps line");
    assert!(std::env::var("SCALELAB_REQUIRE_CGROUPS").as_deref() != Ok("1"), "cgroups required: {why}");
    eprintln!("SKIPPED: CPU caps cannot be enforced on this machine: {why}");
    false
}

/// The cgroup directories of the lab run by `up` process `pid` (`scalelab-<pid>-<n>` in each
/// hierarchy this process is in).
pub fn lab_cgroups(pid: i32) -> Vec<std::path::PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mut parents = vec![std::path::PathBuf::from("/sys/fs/cgroup"), "/sys/fs/cgroup/unified".into()];
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        for c in controllers.split(',').filter(|c| ["cpu", "cpuacct"].contains(c)) {
            parents.push(std::path::Path::new("/sys/fs/cgroup").join(c).join(path.trim_start_matches('/')));
        }
    }
    parents
        .iter()
        .filter_map(|parent| std::fs::read_dir(parent).ok())
        .flat_map(|entries| entries.flatten())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("scalelab-{pid}-")))
        })
        .collect()
}
