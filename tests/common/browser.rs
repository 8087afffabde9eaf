//! Pages as a person sees them: Debian's headless Chromium, run with a fresh profile and a
//! deadline, to dump the DOM it built or to take a screenshot, kept under
//! `target/test-artifacts`.

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Debian's Chromium, which `scripts/test.sh` installs.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// How long one Chromium run may take before it is killed.
const CHROMIUM_DEADLINE: Duration = Duration::from_secs(90);

/// Fails (never skips) when Chromium is missing, saying what installs it.
pub fn require_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: this test needs Debian's chromium, which scripts/test.sh installs \
         (apt-get install chromium)"
    );
}

/// The markup inside the element with `id`, up to the end of its `<figure>` (or of the page).
pub fn container<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no element #{id} in the DOM"));
    let end = dom[start..].find("</figure>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

/// Runs headless Chromium with `args` and a fresh profile under `dir`, within
/// `CHROMIUM_DEADLINE`, and returns its standard output. Chromium and its helpers run in a
/// process group of their own, killed by its id if the deadline passes.
pub fn chromium(dir: &Path, name: &str, args: &[&str]) -> String {
    let profile = dir.join(format!("profile-{name}"));
    let (out_path, err_path) = (dir.join(format!("{name}.out")), dir.join(format!("{name}.err")));
    let mut child = Command::new(CHROMIUM)
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {CHROMIUM}: {e}"));
    let deadline = Instant::now() + CHROMIUM_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!(
                "chromium ({name}) ran past {CHROMIUM_DEADLINE:?}; killed its process group\n{}",
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        sleep(Duration::from_millis(100));
    };
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    assert!(status.success(), "chromium ({name}) failed with {status}:\n{stderr}");
    fs::read_to_string(&out_path).unwrap()
}

/// Takes a `width` x `height` screenshot of `url` into the test artifacts as `file`, checks
/// it is a PNG of that size, and returns its path.
pub fn screenshot(dir: &Path, url: &str, file: &str, width: u32, height: u32) -> PathBuf {
    let artifacts = artifacts_dir();
    fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join(file);
    let _ = fs::remove_file(&png);
    let shot = format!("--screenshot={}", png.display());
    let size = format!("--window-size={width},{height}");
    chromium(dir, file, &[&shot, &size, "--hide-scrollbars", url]);
    let bytes = fs::read(&png).unwrap_or_else(|e| panic!("Chromium wrote no {}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", png.display());
    let dim = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!((dim(16), dim(20)), (width, height), "screenshot size (width, height)");
    eprintln!("screenshot: {}", png.display());
    png
}

/// `target/test-artifacts`, under `CARGO_TARGET_DIR` when set.
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("test-artifacts")
}
