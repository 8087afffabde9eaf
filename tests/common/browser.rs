//! Pages as a person sees them: Debian's headless Chromium, run with a fresh profile and a
//! deadline, to dump the DOM it built or to take a screenshot, kept under
//! `target/test-artifacts`. A page that keeps changing (the live dashboard) is driven instead
//! through the DevTools protocol ([`LivePage`]): it stays open while the test changes the
//! lab, and the test asks its DOM what it shows now.

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

/// A page kept open in headless Chromium, driven over the DevTools protocol.
pub struct LivePage {
    chromium: std::process::Child,
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl LivePage {
    /// Opens `url` in a fresh headless Chromium `width` x `height`.
    pub fn open(url: &str, width: u32, height: u32) -> LivePage {
        require_chromium();
        let profile = tempfile::tempdir().unwrap();
        let mut chromium = Command::new(CHROMIUM)
            .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
            .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={width},{height}"))
            .args(["--remote-debugging-port=0", "--remote-allow-origins=*", "about:blank"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CHROMIUM}: {e}"));
        // Chromium writes the port it chose to DevToolsActivePort in its profile.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port: u16 = loop {
            if let Some(p) = fs::read_to_string(&port_file).ok().and_then(|t| t.lines().next()?.parse().ok())
            {
                break p;
            }
            if Instant::now() > deadline || chromium.try_wait().unwrap().is_some() {
                unsafe { libc::kill(-(chromium.id() as i32), libc::SIGKILL) };
                panic!("chromium gave no DevTools port within 30 s");
            }
            sleep(Duration::from_millis(100));
        };
        let targets = super::get(format!("127.0.0.1:{port}"), "/json/list").expect("DevTools /json/list");
        let targets: serde_json::Value = serde_json::from_str(&targets.body).unwrap();
        let ws = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let (socket, _) = tungstenite::connect(ws.as_str()).expect("DevTools websocket");
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = socket.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        }
        let mut page = LivePage { chromium, socket, next_id: 0, _profile: profile };
        page.call("Page.enable", serde_json::json!({}));
        page.call("Page.navigate", serde_json::json!({ "url": url }));
        page
    }

    /// Sends one DevTools command and returns its result (events in between are skipped).
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = serde_json::json!({ "id": id, "method": method, "params": params });
        self.socket.send(tungstenite::Message::text(msg.to_string())).expect("send to DevTools");
        loop {
            let reply = self.socket.read().expect("read from DevTools");
            let Ok(text) = reply.to_text() else { continue };
            let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page and returns its value (JSON).
    pub fn eval(&mut self, expression: &str) -> serde_json::Value {
        let r = self
            .call("Runtime.evaluate", serde_json::json!({ "expression": expression, "returnByValue": true }));
        r["result"]["value"].clone()
    }

    /// Polls `expression` until it is true, or panics with `what` and the value of `show`
    /// after `deadline`.
    pub fn wait_until(&mut self, what: &str, expression: &str, show: &str, deadline: Duration) {
        let end = Instant::now() + deadline;
        loop {
            if self.eval(expression) == serde_json::Value::Bool(true) {
                return;
            }
            if Instant::now() > end {
                let shown = self.eval(show);
                panic!("the page did not show {what} within {deadline:?}; it shows: {shown}");
            }
            sleep(Duration::from_millis(250));
        }
    }

    /// Saves a screenshot of the whole page to the test artifacts as `file`; returns its path.
    pub fn screenshot(&mut self, file: &str) -> PathBuf {
        use base64::Engine;
        let r = self.call(
            "Page.captureScreenshot",
            serde_json::json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let data = r["data"].as_str().expect("screenshot data");
        let png = base64::engine::general_purpose::STANDARD.decode(data).expect("base64 screenshot");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        let dir = artifacts_dir();
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(file);
        fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }
}

impl Drop for LivePage {
    fn drop(&mut self) {
        unsafe { libc::kill(-(self.chromium.id() as i32), libc::SIGKILL) };
        let _ = self.chromium.wait();
    }
}
