//! A real headless Chromium for the tests, driven over WebDriver: chromedriver as a
//! child process on a free port, fantoccini as the client.
//!
//! [`Browser::start`] gives a session; it derefs to fantoccini's [`Client`], so a
//! test calls `browser.goto(..)`, `browser.find(..)` and `browser.execute(..)` on it.
//! [`Browser::close`] ends the session; dropping a `Browser` (a test that panics
//! included) kills chromedriver and every Chromium process it started.
//! [`screenshot`] and [`full_page_screenshot`] keep what the page looked like, and [`wait_until`],
//! [`wait_for_js`] and [`wait_for_element`] wait, with a deadline, for a page that
//! changes by itself (Server-Sent Events) to reach a state.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`bash .ci/prereqs` installs
//! them); a test fails, and says so, where they are missing.

use std::fs::File;
use std::future::Future;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Deref;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use rustix::process::{kill_process_group, Pid, Signal};
use serde_json::{json, Value};
use tempfile::TempDir;

/// The browser chromedriver starts: Debian's `chromium` package.
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long chromedriver may take to listen on its port.
const DRIVER_START: Duration = Duration::from_secs(20);
/// How long chromedriver may take to start Chromium and open a session.
const SESSION_START: Duration = Duration::from_secs(60);
/// How long [`wait_until`] and the helpers on it wait.
pub(crate) const WAIT: Duration = Duration::from_secs(30);
/// How often [`wait_until`] looks again.
const POLL: Duration = Duration::from_millis(100);
/// The window's size, fixed so that screenshots compare across runs (the viewport
/// is the window less the browser's own frame: 1280x757 with Chromium 156).
const WINDOW: (u32, u32) = (1280, 900);

/// What a test is told where the browser is missing.
const PREREQS: &str =
    "run `bash .ci/prereqs` (as root) to install Debian's chromium and chromium-driver";

/// A headless Chromium session; see the module docs.
#[derive(Debug)]
pub(crate) struct Browser {
    client: Client,
    driver: Driver,
}

/// The chromedriver process, leader of a process group that holds every Chromium
/// process it starts, and the profile directory; dropping it kills the group.
#[derive(Debug)]
struct Driver {
    child: Child,
    /// The Chromium profile (`--user-data-dir`) and chromedriver's output; removed
    /// after the processes are gone.
    dir: TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The crashpad handlers Chromium starts leave the group (they daemonise), and
        // exit by themselves once the browser is gone.
        let _ = kill_process_group(Pid::from_child(&self.child), Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// Panics with `what` and chromedriver's output.
    fn fail(&self, what: &str) -> ! {
        panic!("{what}; chromedriver said:\n{}", self.log())
    }
}

impl Browser {
    /// Starts chromedriver on a free port and opens a session of headless Chromium
    /// with a fresh profile and a 1280x900 window.
    ///
    /// # Panics
    /// Where chromium or chromedriver is not installed (the message says to run
    /// `bash .ci/prereqs`), when chromedriver does not listen within 20 s, or the
    /// session does not open within 60 s.
    pub(crate) async fn start() -> Self {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: {PREREQS}"
        );
        let dir = tempfile::tempdir().unwrap();
        let log = File::create(dir.path().join("chromedriver.log")).unwrap();
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group, which the Chromium processes it starts join:
            // one signal ends them all.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| match e.kind() {
                ErrorKind::NotFound => panic!("chromedriver is not on PATH: {PREREQS}"),
                _ => panic!("starting chromedriver: {e}"),
            });
        let mut driver = Driver { child, dir };

        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + DRIVER_START;
        while TcpStream::connect_timeout(&address, POLL).is_err() {
            if let Ok(Some(status)) = driver.child.try_wait() {
                driver.fail(&format!("chromedriver exited ({status})"));
            }
            if Instant::now() > deadline {
                driver.fail(&format!(
                    "chromedriver did not listen on {address} within {DRIVER_START:?}"
                ));
            }
            tokio::time::sleep(POLL).await;
        }

        let profile = driver.dir.path().join("profile");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    // We run as root, where Chromium's sandbox does not start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        let url = format!("http://{address}");
        let session = builder.connect(&url);
        let client = match tokio::time::timeout(SESSION_START, session).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => driver.fail(&format!("opening a Chromium session: {e}")),
            Err(_) => driver.fail(&format!("no Chromium session within {SESSION_START:?}")),
        };
        Self { client, driver }
    }

    /// Ends the session (Chromium quits), then stops chromedriver.
    ///
    /// # Panics
    /// When chromedriver fails to end the session.
    pub(crate) async fn close(self) {
        let Self { client, driver } = self;
        if let Err(e) = client.close().await {
            driver.fail(&format!("closing the session: {e}"));
        }
    }
}

impl Deref for Browser {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// Where [`screenshot`] saves: `$AGORA_SCREENSHOTS`, else `screenshots/` in the
/// target directory (`$CARGO_TARGET_DIR`, else `target/`).
pub(crate) fn screenshots_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AGORA_SCREENSHOTS") {
        return dir.into();
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
            PathBuf::from,
        )
        .join("screenshots")
}

/// Saves what the window shows as `<name>.png` in [`screenshots_dir`], prints the
/// path to stderr and returns it.
///
/// # Panics
/// When `name` is not a plain file name (letters, digits, `-`, `_`, `.`), or the
/// screenshot or the file fails.
pub(crate) async fn screenshot(client: &Client, name: &str) -> PathBuf {
    assert!(
        !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
        "screenshot name {name:?}"
    );
    let png = client.screenshot().await.unwrap();
    let dir = screenshots_dir();
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    eprintln!("screenshot: {}", path.display());
    path
}

/// Like [`screenshot`], of the whole page rather than the window: the window grows to
/// the page's height (at most 16384 pixels) for the shot, then gets its size and
/// scroll position back.
///
/// # Panics
/// As [`screenshot`] does, or when the window cannot be resized.
pub(crate) async fn full_page_screenshot(client: &Client, name: &str) -> PathBuf {
    let (width, height) = client.get_window_size().await.unwrap();
    let page = client
        .execute(
            "return [document.documentElement.scrollHeight, window.innerHeight,
                     window.scrollX, window.scrollY];",
            Vec::new(),
        )
        .await
        .unwrap();
    let number = |i: usize| page[i].as_f64().unwrap_or_else(|| panic!("{page}"));
    // The window is the viewport and the browser's own frame around it.
    let frame = height as f64 - number(1);
    let full = (number(0) + frame).clamp(height as f64, 16384.0);
    let size = |n: u64| u32::try_from(n).unwrap();
    client
        .set_window_size(size(width), full as u32)
        .await
        .unwrap();
    let path = screenshot(client, name).await;
    client
        .set_window_size(size(width), size(height))
        .await
        .unwrap();
    client
        .execute(
            "window.scrollTo(arguments[0], arguments[1]);",
            vec![page[2].clone(), page[3].clone()],
        )
        .await
        .unwrap();
    path
}

/// Polls `check` every 100 ms until it gives `Ok`, for at most [`WAIT`]; returns
/// what it gave. `Err` says what is still missing.
///
/// # Panics
/// When the time is up, naming `what` and the last `Err`.
pub(crate) async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        match check().await {
            Ok(found) => return found,
            Err(why) if Instant::now() > deadline => {
                panic!("waited {WAIT:?} for {what}: {why}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Runs `script` (a function body: `return ...;`) in the page until it returns a
/// value that JavaScript holds true (not `null`, `false`, `0` or `""`), for at most
/// [`WAIT`]; returns that value. A script that throws is run again (the page may
/// still be loading).
///
/// # Panics
/// When the time is up, with the last value or error.
pub(crate) async fn wait_for_js(client: &Client, script: &str) -> Value {
    wait_until(&format!("`{script}`"), move || async move {
        match client.execute(script, Vec::new()).await {
            Ok(v) if truthy(&v) => Ok(v),
            Ok(v) => Err(format!("it returned {v}")),
            Err(e) => Err(format!("it threw: {e}")),
        }
    })
    .await
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// The first element that matches the CSS selector `css`, once there is one, waiting
/// at most [`WAIT`].
///
/// # Panics
/// When none appears in time.
pub(crate) async fn wait_for_element(client: &Client, css: &str) -> Element {
    wait_until(
        &format!("an element matching `{css}`"),
        move || async move {
            client
                .find(Locator::Css(css))
                .await
                .map_err(|e| e.to_string())
        },
    )
    .await
}
