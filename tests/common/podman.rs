//! A private podman for the Kubernetes tests: `podman kube play` runs a rendered manifest's
//! ConfigMap and Deployments on this machine, with nothing shared with any other podman.
//!
//! Everything lives under one directory ([`Podman::DIR`] in the temp dir): its
//! `containers.conf` and `storage.conf` (given to every podman call through `CONTAINERS_CONF`
//! and `CONTAINERS_STORAGE_CONF`), the image store (vfs: plain directories, no mounts to leak),
//! podman's run and state directories, and the network: a CNI bridge of our own
//! ([`NETWORK`], bridge `scalelab-k8s0`, [`SUBNET`] inside 198.18.0.0/15, the range reserved
//! for network tests) with its address leases kept in the same directory. The bridge does no
//! NAT and the network has no port mapping or firewall plugin, so no iptables rule is made.
//!
//! The configuration, and why each line:
//! - `default_ulimits` within the machine's hard limits: without it runc fails with "error
//!   setting rlimit type 6/7: operation not permitted";
//! - `runtime = "runc"`: Debian's crun 1.8 refuses this machine's hybrid cgroups ("cgroups in
//!   hybrid mode not supported");
//! - `cgroup_manager = "cgroupfs"`, `events_logger = "file"`: there is no systemd;
//! - `dns_servers = ["127.0.0.1"]`: the balancer resolves group names every second, and pods
//!   would otherwise ask the machine's resolver (podman 4.3 implements no Services, so those
//!   names cannot resolve here anyway); 127.0.0.1 in the pod's own namespace answers nothing,
//!   so no query leaves the pod;
//! - `default_subnet` for podman's default network, which is never used (every pod joins
//!   [`NETWORK`]), inside the test range too.
//!
//! One test at a time: [`Podman::start`] takes a file lock for its lifetime. It first removes
//! what a killed earlier run left (the private store knows its pods), and [`Drop`] removes
//! what this run made: pods, containers, volumes, the network and its bridge, the pods'
//! cgroups (podman 4.3 with cgroupfs leaves them), and the directory.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The network every pod joins.
pub const NETWORK: &str = "scalelab-k8s";
/// Its bridge on the host.
pub const BRIDGE: &str = "scalelab-k8s0";
/// Its addresses: inside 198.18.0.0/15 (RFC 2544), at the top of the range the Docker checks
/// give Swarm (198.19.0.0/16, allocated from the bottom).
pub const SUBNET: &str = "198.19.255.0/24";
const GATEWAY: &str = "198.19.255.1";
const UNUSED_DEFAULT_SUBNET: &str = "198.19.254.0/24";
/// A podman call that takes longer has hung.
const CALL_DEADLINE: Duration = Duration::from_secs(120);
/// How long to wait for another run's lock.
const LOCK_WAIT: Duration = Duration::from_secs(600);

/// The private podman; see the module documentation.
pub struct Podman {
    dir: PathBuf,
    /// Every pod ID [`Podman::pods`] has listed: their cgroups are removed at the end, when
    /// the pods themselves are long gone.
    seen_pods: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Held for the lifetime: released (closed) on drop.
    _lock: fs::File,
}

impl Podman {
    /// The directory's name in the temp dir (short: conmon's socket paths live under it).
    pub const DIR: &'static str = "scalelab-podman-kube";

    /// Locks, clears what an earlier run left, writes the configuration and imports the image
    /// assembled by `scripts/docker-image.sh` from `binary`.
    pub fn start(binary: &str) -> Podman {
        let dir = std::env::temp_dir().join(Self::DIR);
        let lock = lock(&dir.with_extension("lock"));
        let podman = Podman { dir, seen_pods: Default::default(), _lock: lock };
        if podman.dir.exists() {
            eprintln!("podman: clearing what an earlier run left in {}", podman.dir.display());
            podman.teardown();
        }
        podman.write_config();
        let t0 = Instant::now();
        let out = podman
            .command(super::repo_path("scripts/docker-image.sh").to_str().unwrap())
            .arg(binary)
            .env("SCALELAB_ENGINE", "podman")
            .output()
            .expect("run scripts/docker-image.sh");
        assert!(out.status.success(), "docker-image.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        eprintln!("podman: image imported in {:.1} s", t0.elapsed().as_secs_f64());
        podman
    }

    /// `program` with this podman's configuration in its environment.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .stdin(Stdio::null());
        cmd
    }

    /// `podman ARGS...`: its stdout, or `Err` with its stderr. podman 4.3 logs an error line
    /// about healthcheck timers whenever there is no systemd; those lines are dropped.
    pub fn try_run(&self, args: &[&str]) -> Result<String, String> {
        let mut child = self
            .command("podman")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run podman: {e}"))?;
        let end = Instant::now() + CALL_DEADLINE;
        while child.try_wait().map_err(|e| e.to_string())?.is_none() {
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("podman {args:?} still running after {CALL_DEADLINE:?}"));
            }
            sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let stderr: String = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.contains("unable to get systemd connection"))
            .map(|l| format!("{l}\n"))
            .collect();
        if out.status.success() {
            if !stderr.trim().is_empty() {
                eprintln!("podman {}: {}", args.join(" "), stderr.trim());
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("podman {} failed ({}): {stderr}", args.join(" "), out.status))
        }
    }

    /// `podman ARGS...`, which must succeed.
    pub fn run(&self, args: &[&str]) -> String {
        self.try_run(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `podman ARGS...` printing JSON, parsed.
    pub fn json<T: DeserializeOwned>(&self, args: &[&str]) -> T {
        let out = self.run(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("podman {args:?}: not the JSON expected ({e}): {out}"))
    }

    /// Every pod of the private store.
    pub fn pods(&self) -> Vec<PodSummary> {
        let pods: Vec<PodSummary> = self.json(&["pod", "ps", "--format", "json"]);
        self.seen_pods.lock().unwrap().extend(pods.iter().map(|p| p.id.clone()));
        pods
    }

    /// `podman inspect` of one container.
    pub fn inspect(&self, container: &str) -> ContainerInfo {
        let mut v: Vec<ContainerInfo> =
            self.json(&["inspect", "--type", "container", "--format", "json", container]);
        v.pop().unwrap_or_else(|| panic!("podman inspect {container}: nothing"))
    }

    /// Names of the volumes of the private store.
    pub fn volumes(&self) -> Vec<String> {
        self.run(&["volume", "ls", "--format", "{{.Name}}"]).lines().map(str::to_string).collect()
    }

    /// Where a volume's files are on the host.
    pub fn volume_dir(&self, name: &str) -> PathBuf {
        PathBuf::from(self.run(&["volume", "inspect", "--format", "{{.Mountpoint}}", name]).trim())
    }

    /// Addresses the network has leased (files named after them in the lease directory).
    pub fn leases(&self) -> Vec<String> {
        fs::read_dir(self.dir.join("ipam").join(NETWORK))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn write_config(&self) {
        let d = &self.dir;
        fs::create_dir_all(d.join("cni")).unwrap();
        let write = |name: &str, text: String| fs::write(d.join(name), text).unwrap();
        write(
            "containers.conf",
            format!(
                "[containers]\n\
                 default_ulimits = [\"nofile=4096:4096\", \"nproc=4096:4096\"]\n\
                 dns_servers = [\"127.0.0.1\"]\n\
                 [network]\n\
                 network_backend = \"cni\"\n\
                 network_config_dir = \"{cni}\"\n\
                 default_subnet = \"{UNUSED_DEFAULT_SUBNET}\"\n\
                 [engine]\n\
                 runtime = \"runc\"\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 tmp_dir = \"{tmp}\"\n",
                cni = d.join("cni").display(),
                tmp = d.join("tmp").display()
            ),
        );
        write(
            "storage.conf",
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                d.join("storage").display(),
                d.join("run").display()
            ),
        );
        let conflist = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": NETWORK,
            "plugins": [{
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "ranges": [[{ "subnet": SUBNET, "gateway": GATEWAY }]],
                    "dataDir": d.join("ipam").display().to_string(),
                },
            }],
        });
        write(&format!("cni/{NETWORK}.conflist"), serde_json::to_string_pretty(&conflist).unwrap());
    }

    /// Removes every pod, container and volume of the private store, the network's bridge,
    /// the pods' cgroups and the directory. Best effort: each step that fails is said.
    fn teardown(&self) {
        if self.dir.join("containers.conf").exists() {
            let mut pods = self.seen_pods.lock().unwrap().clone();
            pods.extend(
                self.try_run(&["pod", "ps", "-q", "--no-trunc"])
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_string),
            );
            for step in [
                vec!["pod", "rm", "--all", "--force", "--time", "5"],
                vec!["rm", "--all", "--force", "--time", "5"],
                vec!["volume", "rm", "--all", "--force"],
                vec!["network", "rm", "--force", NETWORK],
            ] {
                if let Err(e) = self.try_run(&step) {
                    eprintln!("podman teardown: {e}");
                }
            }
            remove_pod_cgroups(&pods.into_iter().collect::<Vec<_>>());
        }
        if Path::new("/sys/class/net").join(BRIDGE).exists() {
            let _ = Command::new("ip").args(["link", "delete", BRIDGE]).status();
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("podman teardown: cannot remove {}: {e}", self.dir.display());
            }
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// An exclusive lock on `path`, waited for up to [`LOCK_WAIT`].
fn lock(path: &Path) -> fs::File {
    let mut f = fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).unwrap();
    let end = Instant::now() + LOCK_WAIT;
    // SAFETY: flock on a descriptor this function owns.
    while unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        assert!(Instant::now() < end, "another podman test holds {} after {LOCK_WAIT:?}", path.display());
        sleep(Duration::from_millis(200));
    }
    let _ = writeln!(f, "{}", std::process::id());
    f
}

/// podman 4.3 with the cgroupfs manager leaves `libpod_parent/<pod id>` behind in some
/// hierarchies (here: the named `systemd` one), and `libpod_parent` itself. Removes those of
/// `pods`, deepest first, then `libpod_parent` where it is empty (another podman's pods keep it).
fn remove_pod_cgroups(pods: &[String]) {
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else { return };
    let roots = hierarchies.filter_map(|h| h.ok().map(|h| h.path())).chain([PathBuf::from("/sys/fs/cgroup")]);
    for parent in roots.map(|h| h.join("libpod_parent")).filter(|p| p.is_dir()) {
        for pod in pods {
            remove_cgroup_tree(&parent.join(pod));
        }
        let _ = fs::remove_dir(&parent);
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
        if let Err(e) = fs::remove_dir(dir) {
            eprintln!("podman teardown: cannot remove cgroup {}: {e}", dir.display());
        }
    }
}

/// One line of `podman pod ps --format json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PodSummary {
    pub id: String,
    pub name: String,
    pub status: String,
    pub containers: Vec<PodContainer>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PodContainer {
    pub id: String,
    pub names: String,
    pub status: String,
}

/// The parts of `podman inspect` the tests read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub state: ContainerState,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub network_settings: NetworkSettings,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    pub status: String,
    /// The container's first process, as the host sees it.
    pub pid: i32,
    /// Relative to each cgroup hierarchy's root.
    #[serde(default)]
    pub cgroup_path: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    pub hostname: String,
    pub user: String,
    #[serde(default)]
    pub healthcheck: Option<Healthcheck>,
}

/// Podman's translation of a pod's livenessProbe.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    pub test: Vec<String>,
    /// Nanoseconds.
    pub interval: u64,
    /// Nanoseconds.
    pub timeout: u64,
    pub retries: u32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    pub cpu_quota: i64,
    pub cpu_period: u64,
    pub readonly_rootfs: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    pub networks: BTreeMap<String, Endpoint>,
}

#[derive(Debug, Deserialize)]
pub struct Endpoint {
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
}

impl ContainerInfo {
    /// The container's address on [`NETWORK`].
    pub fn ip(&self) -> &str {
        &self
            .network_settings
            .networks
            .get(NETWORK)
            .unwrap_or_else(|| panic!("{} is not on {NETWORK}", self.name))
            .ip_address
    }

    /// The CPU cap the host's kernel enforces on it, in cores: its cgroup's quota / period
    /// (v1 `cpu.cfs_quota_us`, v2 `cpu.max`); `None` when uncapped or not found.
    pub fn kernel_cpu_cap(&self) -> Option<f64> {
        let rel = self.state.cgroup_path.trim_start_matches('/');
        let v1 = Path::new("/sys/fs/cgroup/cpu").join(rel);
        if let (Ok(q), Ok(p)) = (
            fs::read_to_string(v1.join("cpu.cfs_quota_us")),
            fs::read_to_string(v1.join("cpu.cfs_period_us")),
        ) {
            let (q, p): (i64, f64) = (q.trim().parse().ok()?, p.trim().parse().ok()?);
            return (q > 0).then(|| q as f64 / p);
        }
        let max = fs::read_to_string(Path::new("/sys/fs/cgroup").join(rel).join("cpu.max")).ok()?;
        let mut parts = max.split_whitespace();
        let (q, p) = (parts.next()?.parse::<f64>().ok()?, parts.next()?.parse::<f64>().ok()?);
        Some(q / p)
    }

    /// A field of `/proc/<pid>/status` of its first process (`Uid`, `CapEff`, ...).
    pub fn proc_status(&self, field: &str) -> String {
        let status = fs::read_to_string(format!("/proc/{}/status", self.state.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.state.pid))
            .trim()
            .to_string()
    }

    /// The mount options of its root filesystem, as the kernel has them.
    pub fn root_mount_options(&self) -> String {
        let info = fs::read_to_string(format!("/proc/{}/mountinfo", self.state.pid)).unwrap();
        info.lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .find(|f| f.len() > 5 && f[4] == "/")
            .map(|f| f[5].to_string())
            .expect("a root mount")
    }
}
