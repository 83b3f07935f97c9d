//! The weights catalog, cache and downloads against a real HTTP server on 127.0.0.1 started by
//! each test (hand-written on std::net, with Range support and slow, dropped, stalled,
//! truncated, corrupted and wrong-model variants). Never the internet: the catalog is replaced
//! with `KINETO_CATALOG`, the cache with `--cache-dir`.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use kineto::checkpoint::ParamStore;
use kineto::checkpoint::pdparams::{read_pdparams, write_pdparams};
use kineto::npy::{read_npy_f32, write_npy_f32};
use sha2::{Digest, Sha256};

// ------------------------------------------------------------------ the server

#[derive(Clone)]
enum Behaviour {
    Normal,
    /// `chunk` bytes, then a pause, until done.
    Slow {
        chunk: usize,
        delay: Duration,
    },
    /// The first `times` requests close the connection once byte `at` (of the file) is sent.
    DropAt {
        at: usize,
        times: usize,
    },
    /// The first `times` requests stop sending at byte `at` and hold the connection for `hold`.
    StallAt {
        at: usize,
        hold: Duration,
        times: usize,
    },
    /// Any request is answered with this status and no body.
    Status(u16),
    /// The first request closes the connection at byte `at`; the file then changes on the
    /// server: later requests get `then` (with its own ETag).
    ChangesAfterDropAt {
        at: usize,
        then: Arc<Vec<u8>>,
    },
}

#[derive(Clone)]
struct Route {
    body: Arc<Vec<u8>>,
    behaviour: Behaviour,
}

#[derive(Clone, Debug)]
struct Hit {
    path: String,
    range: Option<String>,
}

struct Server {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Server {
    fn start(routes: HashMap<String, Route>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(Mutex::new(Vec::new()));
        let routes = Arc::new(routes);
        let log = hits.clone();
        thread::Builder::new()
            .name("test-http-server".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let routes = routes.clone();
                    let log = log.clone();
                    // A connection that cannot get a thread is dropped: the client sees it.
                    let _ = thread::Builder::new()
                        .name("test-http-connection".into())
                        .spawn(move || {
                            let _ = serve(stream, &routes, &log);
                        });
                }
            })
            .expect("start the test server's thread");
        Server { addr, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    fn hits(&self, path: &str) -> Vec<Hit> {
        let wanted = format!("/{path}");
        self.hits
            .lock()
            .expect("log")
            .iter()
            .filter(|h| h.path == wanted)
            .cloned()
            .collect()
    }
}

fn serve(
    stream: TcpStream,
    routes: &HashMap<String, Route>,
    log: &Mutex<Vec<Hit>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    let mut if_range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            } else if name.trim().eq_ignore_ascii_case("if-range") {
                if_range = Some(value.trim().to_string());
            }
        }
    }
    let count = {
        let mut hits = log.lock().expect("log");
        hits.push(Hit {
            path: path.clone(),
            range: range.clone(),
        });
        hits.iter().filter(|h| h.path == path).count() // this request's number, from 1
    };
    let mut out = stream;
    let Some(route) = routes.get(path.trim_start_matches('/')) else {
        return write!(
            out,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    };
    if let Behaviour::Status(code) = route.behaviour {
        return write!(
            out,
            "HTTP/1.1 {code} Test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
    let body = match &route.behaviour {
        Behaviour::ChangesAfterDropAt { then, .. } if count > 1 => then,
        _ => &route.body,
    };
    let len = body.len();
    // A strong ETag of the content; a Range whose If-Range names another is ignored (RFC 9110
    // 13.1.5: the whole new file is sent).
    let etag = format!("\"{}\"", &sha256(body)[..16]);
    if if_range.as_ref().is_some_and(|v| *v != etag) {
        range = None;
    }
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let start = match start {
        Some(s) if s >= len => {
            return write!(
                out,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        Some(s) => {
            write!(
                out,
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{len}\r\nContent-Length: {}\r\nETag: {etag}\r\nConnection: close\r\n\r\n",
                len - 1,
                len - s
            )?;
            s
        }
        None => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nETag: {etag}\r\nConnection: close\r\n\r\n"
            )?;
            0
        }
    };
    match route.behaviour {
        Behaviour::Normal | Behaviour::Status(_) => out.write_all(&body[start..])?,
        Behaviour::Slow { chunk, delay } => {
            for piece in body[start..].chunks(chunk) {
                out.write_all(piece)?;
                out.flush()?;
                thread::sleep(delay);
            }
        }
        Behaviour::DropAt { at, times } => {
            let end = if count <= times { at.max(start) } else { len };
            out.write_all(&body[start..end])?;
        }
        Behaviour::ChangesAfterDropAt { at, .. } => {
            let end = if count == 1 { at.max(start) } else { len };
            out.write_all(&body[start..end])?;
        }
        Behaviour::StallAt { at, hold, times } => {
            if count <= times {
                out.write_all(&body[start..at.max(start)])?;
                out.flush()?;
                thread::sleep(hold);
            } else {
                out.write_all(&body[start..])?;
            }
        }
    }
    out.flush()?;
    let _ = out.shutdown(std::net::Shutdown::Both);
    Ok(())
}

// ------------------------------------------------------------------ helpers

struct Env {
    dir: common::ScratchDir,
    catalog: PathBuf,
    cache: PathBuf,
    server: Server,
}

fn tmp(tag: &str) -> common::ScratchDir {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    common::ScratchDir::new(&format!("dl-{tag}-{nanos}"))
}

fn bytes(rel: &str) -> Arc<Vec<u8>> {
    Arc::new(std::fs::read(fixture(rel)).expect("fixture"))
}

const V2_SIGNATURE: &str = r#"signature = [
  { key = "backbone.stem.0.conv.weight", shape = [32, 3, 3, 3] },
  { key = "backbone.stages.2.0.dw_conv_list.0.conv.weight", shape = [256, 1, 5, 5] },
  { key = "backbone.fc.weight", shape = [1280, 400] },
]"#;

/// A server with `routes` and a catalog with one PP-TSMv2 entry per route (name = route name,
/// file `<name>.pdparams`), plus `extra` catalog text.
fn setup(tag: &str, routes: Vec<(&str, Route)>, extra: &str) -> Env {
    let dir = tmp(tag);
    let names: Vec<String> = routes.iter().map(|(n, _)| n.to_string()).collect();
    let server = Server::start(
        routes
            .into_iter()
            .map(|(n, r)| (format!("{n}.pdparams"), r))
            .collect(),
    );
    let mut toml = String::new();
    for name in &names {
        toml.push_str(&format!(
            "[[weights]]\nname = \"{name}\"\nkind = \"video\"\narch = \"pptsm_v2\"\nlayout = \"plain\"\nnum_seg = 8\ntop1 = 71.81\nurl = \"{}\"\nfile_name = \"{name}.pdparams\"\n{V2_SIGNATURE}\n\n",
            server.url(&format!("{name}.pdparams"))
        ));
    }
    toml.push_str(&extra.replace("{BASE}", &format!("http://{}", server.addr)));
    let catalog = dir.join("catalog.toml");
    std::fs::write(&catalog, toml).expect("write catalog");
    let cache = dir.join("cache");
    Env {
        dir,
        catalog,
        cache,
        server,
    }
}

impl Env {
    fn run(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kineto"));
        if !args.contains(&"--cache-dir") {
            cmd.arg("--cache-dir").arg(&self.cache);
        }
        cmd.args(args)
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .env("KINETO_CATALOG", &self.catalog)
            .env_remove("KINETO_CACHE_DIR")
            .env_remove("KINETO_HTTP_TIMEOUT");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().expect("run kineto")
    }

    fn weights_dir(&self) -> PathBuf {
        self.cache.join("weights")
    }

    fn index(&self) -> Vec<serde_json::Value> {
        match std::fs::read_to_string(self.weights_dir().join("index.json")) {
            Ok(text) => serde_json::from_str(&text).expect("index json"),
            Err(_) => Vec::new(),
        }
    }

    /// The files in the cache folder (names), sorted.
    fn cached_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.weights_dir())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The 64x64 8-frame fixture clip as a .npy.
    fn input64(&self) -> PathBuf {
        let path = self.dir.join("in64.npy");
        if !path.exists() {
            let x = npz_get(&npz("pptsmv2/act64_8f.npz"), "input").clone();
            write_npy_f32(&path, &x.shape, &x.data).expect("write input");
        }
        path
    }

    fn logits(&self, weights: &str, extra: &[&str]) -> Output {
        let out = self
            .dir
            .join(format!("logits-{}.npy", weights.replace('/', "_")));
        let input = self.input64();
        let mut args = vec![
            "logits",
            "--device",
            "cpu",
            "--weights",
            weights,
            "--input",
            s(&input),
            "--output",
            s(&out),
        ];
        args.extend_from_slice(extra);
        self.run(&args, &[])
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Exit `code`, one `kineto: error:` line containing every needle, no panic.
fn assert_fails(out: &Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("kineto: error: "), "{err}");
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("kineto: error"))
            .count(),
        1,
        "{err}"
    );
    for needle in needles {
        assert!(last.contains(needle), "expected {needle:?} in {last}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

fn normal(rel: &str) -> Route {
    Route {
        body: bytes(rel),
        behaviour: Behaviour::Normal,
    }
}

fn fixture_logits() -> Vec<f32> {
    npz_get(&npz("pptsmv2/act64_8f.npz"), "logits_fused")
        .data
        .clone()
}

// ------------------------------------------------------------------ tests

#[test]
fn fetch_downloads_verifies_records_and_then_works_offline() {
    let w8 = bytes("pptsmv2/w8.pdparams");
    let env = setup(
        "fetch",
        vec![(
            "v2_8f",
            Route {
                body: w8.clone(),
                behaviour: Behaviour::Slow {
                    chunk: 1 << 20,
                    delay: Duration::from_millis(20),
                },
            },
        )],
        "",
    );
    let out = env.run(&["weights", "fetch", "v2_8f"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = env.weights_dir().join("v2_8f.pdparams");
    assert_eq!(stdout(&out).trim(), s(&path));
    let err = stderr(&out);
    assert!(err.contains("downloading v2_8f.pdparams"), "{err}");
    assert!(err.contains("100%"), "progress lines: {err}");
    assert_eq!(std::fs::read(&path).expect("cached"), *w8);
    assert_eq!(env.cached_files(), ["index.json", "v2_8f.pdparams"]);

    let index = env.index();
    assert_eq!(index.len(), 1);
    assert_eq!(index[0]["name"], "v2_8f");
    assert_eq!(index[0]["file_name"], "v2_8f.pdparams");
    assert_eq!(index[0]["sha256"], sha256(&w8));
    assert_eq!(index[0]["size"], w8.len());
    assert_eq!(index[0]["url"], env.server.url("v2_8f.pdparams"));
    assert_eq!(index[0]["source"], "download");
    assert!(
        index[0]["fetched_at"]
            .as_str()
            .unwrap_or_default()
            .ends_with('Z')
    );

    let list = env.run(&["weights", "list", "--json"], &[]);
    assert!(list.status.success(), "{}", stderr(&list));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(rows[0]["name"], "v2_8f");
    assert_eq!(rows[0]["cached"], true);
    assert_eq!(rows[0]["sha256"], sha256(&w8));
    assert_eq!(rows[0]["num_seg"], 8);
    assert_eq!(rows[0]["top1"], 71.81);

    // By name, offline, the cached file gives the fixture's logits, bit for bit as the file.
    let hits = env.server.hits("v2_8f.pdparams").len();
    let by_name = env.logits("v2_8f", &["--offline"]);
    assert!(by_name.status.success(), "{}", stderr(&by_name));
    let by_path = env.logits(s(&fixture("pptsmv2/w8.pdparams")), &[]);
    assert!(by_path.status.success(), "{}", stderr(&by_path));
    let a = read_npy_f32(&env.dir.join("logits-v2_8f.npy"))
        .expect("a")
        .data;
    let b_name = format!(
        "logits-{}.npy",
        s(&fixture("pptsmv2/w8.pdparams")).replace('/', "_")
    );
    let b = read_npy_f32(&env.dir.join(b_name)).expect("b").data;
    assert_eq!(
        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert!(max_abs_diff(&a, &fixture_logits()) <= 1e-4);
    // A second fetch and `weights info NAME` use the cache: no new request.
    let again = env.run(&["weights", "fetch", "v2_8f"], &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    let info = env.run(&["weights", "info", "--json", "v2_8f"], &[]);
    assert!(info.status.success(), "{}", stderr(&info));
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).expect("json");
    assert_eq!(v["model"], "pptsm_v2");
    assert_eq!(env.server.hits("v2_8f.pdparams").len(), hits);
}

#[test]
fn offline_and_unreachable_name_the_url_the_file_and_import() {
    // A port with nothing listening: bind, note it, close.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let refused = format!(
        "http://{}/gone.pdparams",
        closed.local_addr().expect("addr")
    );
    drop(closed);
    let env = setup(
        "offline",
        vec![
            ("v2_8f", normal("pptsmv2/w8.pdparams")),
            (
                "broken_server",
                Route {
                    body: Arc::new(Vec::new()),
                    behaviour: Behaviour::Status(500),
                },
            ),
        ],
        &format!(
            "[[weights]]\nname = \"refused\"\nkind = \"video\"\narch = \"pptsm_v2\"\nlayout = \"plain\"\nnum_seg = 8\nurl = \"{refused}\"\nfile_name = \"refused.pdparams\"\n{V2_SIGNATURE}\n"
        ),
    );
    let url = env.server.url("v2_8f.pdparams");
    let hint = "kineto weights import FILE";
    let out = env.run(&["--offline", "weights", "fetch", "v2_8f"], &[]);
    assert_fails(&out, 2, &[&url, "v2_8f.pdparams", hint, "offline"]);
    let out = env.logits("v2_8f", &["--offline"]);
    assert_fails(&out, 2, &[&url, "v2_8f.pdparams", hint]);
    let out = env.run(&["weights", "fetch", "refused"], &[]);
    assert_fails(&out, 2, &[&refused, "refused.pdparams", hint]);
    let out = env.run(&["weights", "fetch", "broken_server"], &[]);
    assert_fails(&out, 2, &["broken_server.pdparams", "HTTP 500", hint]);
    let out = env.run(&["weights", "fetch", "no_such_name"], &[]);
    assert_fails(&out, 2, &["no_such_name", "v2_8f"]);
    assert!(env.server.hits("v2_8f.pdparams").is_empty());
    assert!(
        env.cached_files().iter().all(|n| !n.ends_with(".pdparams")),
        "{:?}",
        env.cached_files()
    );
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let w8 = bytes("pptsmv2/w8.pdparams");
    let at = 5 << 20;
    let env = setup(
        "resume",
        vec![(
            "v2_8f",
            Route {
                body: w8.clone(),
                behaviour: Behaviour::DropAt { at, times: 1 },
            },
        )],
        "",
    );
    let out = env.run(&["weights", "fetch", "v2_8f"], &[]);
    assert_fails(
        &out,
        2,
        &["stopped after 5242880 of 24319449 bytes", "resume"],
    );
    // Nothing that loads: only the partial file.
    assert_eq!(
        env.cached_files(),
        ["v2_8f.pdparams.part", "v2_8f.pdparams.part.validator"]
    );
    let out = env.logits("v2_8f", &["--offline"]);
    assert_fails(&out, 2, &["offline"]);

    let out = env.run(&["weights", "fetch", "v2_8f"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("resuming"), "{}", stderr(&out));
    let hits = env.server.hits("v2_8f.pdparams");
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(hits[0].range, None);
    assert_eq!(hits[1].range.as_deref(), Some("bytes=5242880-"));
    assert_eq!(env.cached_files(), ["index.json", "v2_8f.pdparams"]);
    assert_eq!(env.index()[0]["sha256"], sha256(&w8));
    let out = env.logits("v2_8f", &["--offline"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_stalled_download_times_out_and_resumes() {
    let w8 = bytes("pptsmv2/w8.pdparams");
    let env = setup(
        "stall",
        vec![(
            "v2_8f",
            Route {
                body: w8.clone(),
                behaviour: Behaviour::StallAt {
                    at: 3 << 20,
                    hold: Duration::from_secs(6),
                    times: 1,
                },
            },
        )],
        "",
    );
    let started = Instant::now();
    let out = env.run(
        &["weights", "fetch", "v2_8f"],
        &[("KINETO_HTTP_TIMEOUT", "1")],
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the read timeout fired"
    );
    assert_fails(&out, 2, &["stopped after 3145728", "resume"]);
    assert_eq!(
        env.cached_files(),
        ["v2_8f.pdparams.part", "v2_8f.pdparams.part.validator"]
    );
    let out = env.run(&["weights", "fetch", "v2_8f"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        env.server.hits("v2_8f.pdparams")[1].range.as_deref(),
        Some("bytes=3145728-")
    );
    assert_eq!(
        std::fs::read(env.weights_dir().join("v2_8f.pdparams")).expect("file"),
        *w8
    );
}

#[test]
fn truncated_corrupted_and_wrong_model_downloads_leave_nothing_that_loads() {
    let w8 = bytes("pptsmv2/w8.pdparams");
    let mut corrupted = (*w8).clone();
    for b in corrupted.iter_mut().take(64) {
        *b = 0xA5;
    }
    let env = setup(
        "bad",
        vec![
            (
                "truncated",
                Route {
                    body: Arc::new(w8[..w8.len() / 2].to_vec()),
                    behaviour: Behaviour::Normal,
                },
            ),
            (
                "corrupted",
                Route {
                    body: Arc::new(corrupted),
                    behaviour: Behaviour::Normal,
                },
            ),
            ("wrong_model", normal("pptsm_r50/w.pdparams")),
        ],
        "",
    );
    for (name, needle) in [
        ("truncated", "the downloaded file"),
        ("corrupted", "the downloaded file"),
        ("wrong_model", "is not wrong_model"),
    ] {
        let out = env.run(&["weights", "fetch", name], &[]);
        assert_fails(
            &out,
            1,
            &[&env.server.url(&format!("{name}.pdparams")), needle],
        );
        assert!(
            env.cached_files().iter().all(|n| n == "index.json"),
            "{name}: {:?}",
            env.cached_files()
        );
        assert!(env.index().is_empty());
        let out = env.logits(name, &["--offline"]);
        assert_fails(&out, 2, &["offline"]);
    }
    let wrong = env.run(&["weights", "fetch", "wrong_model"], &[]);
    assert!(stderr(&wrong).contains("PP-TSM R50"), "{}", stderr(&wrong));
}

#[test]
fn a_cached_file_changed_on_disk_is_detected() {
    let env = setup(
        "changed",
        vec![("v2_8f", normal("pptsmv2/w8.pdparams"))],
        "",
    );
    let out = env.run(&["weights", "fetch", "v2_8f"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = env.weights_dir().join("v2_8f.pdparams");
    // Still a valid checkpoint, one weight changed: only the sha256 can tell.
    let mut data = std::fs::read(&path).expect("read");
    let n = data.len();
    data[n - 100] ^= 0x01;
    std::fs::write(&path, &data).expect("write");
    read_pdparams(&path).expect("still parses");
    for out in [
        env.logits("v2_8f", &["--offline"]),
        env.run(&["weights", "info", "v2_8f"], &[]),
        env.run(&["weights", "fetch", "v2_8f"], &[]),
    ] {
        assert_fails(
            &out,
            1,
            &["v2_8f.pdparams", "changed on disk", "sha256", "--force"],
        );
    }
    let out = env.run(&["weights", "fetch", "v2_8f", "--force"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.logits("v2_8f", &["--offline"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A cached file deleted by hand is downloaded again on the next use.
    std::fs::remove_file(&path).expect("remove");
    let out = env.logits("v2_8f", &["--offline"]);
    assert_fails(&out, 2, &["offline"]);
    let out = env.logits("v2_8f", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.server.hits("v2_8f.pdparams").len(), 3);
}

#[test]
fn unwritable_cache_dirs_give_one_line_and_leave_nothing() {
    let env = setup(
        "unwritable",
        vec![("v2_8f", normal("pptsmv2/w8.pdparams"))],
        "",
    );
    let blocker = env.dir.join("blocker");
    std::fs::write(&blocker, b"a file, not a folder").expect("write");
    let bad = blocker.join("cache");
    let w8 = fixture("pptsmv2/w8.pdparams");
    for args in [
        vec!["--cache-dir", s(&bad), "weights", "fetch", "v2_8f"],
        vec!["--cache-dir", s(&bad), "weights", "import", s(&w8)],
    ] {
        let out = env.run(&args, &[]);
        assert_fails(&out, 2, &["blocker", "cannot create the cache folder"]);
    }
    // A cache folder whose index cannot be replaced: a directory sits where index.json goes.
    std::fs::create_dir_all(env.weights_dir().join("index.json")).expect("mkdir");
    let out = env.run(&["weights", "fetch", "v2_8f"], &[]);
    assert_fails(&out, 2, &["index.json"]);
    assert_eq!(
        std::fs::read(&blocker).expect("blocker"),
        b"a file, not a folder"
    );
    let leftovers: Vec<_> = env
        .cached_files()
        .into_iter()
        .filter(|n| n.contains(".tmp") || n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn import_verifies_copies_and_resolves() {
    let dml_extra = r#"
[[weights]]
name = "dml_8f"
kind = "video"
arch = "pptsm_v2"
layout = "dml"
num_seg = 8
url = "{BASE}/dml_8f.pdparams"
file_name = "dml_8f.pdparams"
signature = [{ key = "backbone.fc.weight", shape = [1280, 400] }]
teacher = [
  { key = "backbone.conv1_1._conv.weight", shape = [32, 3, 3, 3] },
  { key = "head.fc.weight", shape = [2048, 400] },
]

[[weights]]
name = "lcnet_imagenet"
kind = "imagenet"
arch = "pplcnetv2"
layout = "imagenet"
url = "{BASE}/lcnet_imagenet.pdparams"
file_name = "lcnet_imagenet.pdparams"
signature = [{ key = "stem.0.conv.weight", shape = [32, 3, 3, 3] }]
"#;
    let env = setup(
        "import",
        vec![("v2_8f", normal("pptsmv2/w8.pdparams"))],
        dml_extra,
    );
    let w8 = fixture("pptsmv2/w8.pdparams");
    let r50 = fixture("pptsm_r50/w.pdparams");

    // The wrong model under a catalog name: refused, nothing copied.
    let out = env.run(&["weights", "import", s(&r50), "--name", "v2_8f"], &[]);
    assert_fails(&out, 1, &["w.pdparams", "is not v2_8f"]);
    assert!(env.index().is_empty());
    // The right one: verified, copied, recorded; then usable offline with no request.
    let out = env.run(&["weights", "import", s(&w8), "--name", "v2_8f"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cached = env.weights_dir().join("v2_8f.pdparams");
    assert_eq!(stdout(&out).trim(), s(&cached));
    let index = env.index();
    assert_eq!(index[0]["url"], env.server.url("v2_8f.pdparams"));
    assert!(
        index[0]["source"]
            .as_str()
            .unwrap_or_default()
            .starts_with("import ")
    );
    let out = env.logits("v2_8f", &["--offline"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(env.server.hits("v2_8f.pdparams").is_empty());

    // A full DML checkpoint (student + teacher) under a DML catalog name.
    let mut dml = ParamStore::new();
    for (k, t) in read_pdparams(&r50).expect("r50").iter() {
        let k = k
            .replacen("backbone.", "Teacher.0.", 1)
            .replacen("head.", "Teacher.1.", 1);
        dml.insert(k, t.clone());
    }
    for (k, t) in read_pdparams(&w8).expect("w8").iter() {
        dml.insert(k.replacen("backbone.", "Student.0.", 1), t.clone());
    }
    let dml_path = env.dir.join("my_dml.pdparams");
    write_pdparams(&dml, &dml_path).expect("write");
    let out = env.run(
        &["weights", "import", s(&dml_path), "--name", "dml_8f"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["weights", "info", "--json", "--teacher", "dml_8f"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["model"], "pptsm_resnet");
    // A plain checkpoint is not the DML file the catalog describes.
    let out = env.run(&["weights", "import", s(&w8), "--name", "dml_8f"], &[]);
    assert_fails(&out, 1, &["DML"]);

    // Under its own name (the file stem), then by that name.
    let out = env.run(&["weights", "import", s(&dml_path)], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["weights", "info", "--json", "my_dml"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = env.run(&["weights", "list", "--json"], &[]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).expect("json");
    assert!(
        rows.iter()
            .any(|r| r["name"] == "my_dml" && r["cached"] == true)
    );

    // Broken and hostile files are refused with their name.
    let broken = env.dir.join("broken.pdparams");
    std::fs::write(&broken, b"cos\nsystem\n(S'echo hi'\ntR.").expect("write");
    let out = env.run(&["weights", "import", s(&broken)], &[]);
    assert_fails(&out, 1, &["broken.pdparams", "os.system"]);
    let out = env.run(
        &["weights", "import", s(&env.dir.join("nope.pdparams"))],
        &[],
    );
    assert_fails(&out, 1, &["nope.pdparams"]);
    assert!(!env.cached_files().iter().any(|n| n.starts_with("broken")));

    // An ImageNet backbone is fetched and verified by its PaddleClas names, but it is no video
    // model to run.
    let out = env.logits("lcnet_imagenet", &[]);
    assert_fails(&out, 2, &["lcnet_imagenet", "ImageNet backbone"]);
}

#[test]
fn a_file_put_in_the_cache_folder_by_hand_is_verified_and_used() {
    let env = setup("byhand", vec![("v2_8f", normal("pptsmv2/w8.pdparams"))], "");
    std::fs::create_dir_all(env.weights_dir()).expect("mkdir");
    std::fs::copy(
        fixture("pptsmv2/w8.pdparams"),
        env.weights_dir().join("v2_8f.pdparams"),
    )
    .expect("copy");
    let out = env.logits("v2_8f", &["--offline"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let index = env.index();
    assert_eq!(index[0]["name"], "v2_8f");
    assert!(env.server.hits("v2_8f.pdparams").is_empty());
}

#[test]
fn a_file_changed_on_the_server_during_a_resume_is_downloaded_whole_not_spliced() {
    // The partial file holds the old file's first 5 MiB; the server's file has changed since.
    // A Range request without If-Range spliced the new file's tail onto the old head.
    let w8 = bytes("pptsmv2/w8.pdparams");
    let mut changed = read_pdparams(&fixture("pptsmv2/w8.pdparams")).expect("w8");
    let mut fc = changed.get("backbone.fc.weight").expect("fc").clone();
    for v in fc.data.iter_mut().take(1000) {
        *v += 0.5;
    }
    changed.insert("backbone.fc.weight", fc);
    let dir = tmp("changed-src");
    let changed_path = dir.join("changed.pdparams");
    write_pdparams(&changed, &changed_path).expect("write");
    let then = Arc::new(std::fs::read(&changed_path).expect("read"));
    assert_ne!(sha256(&then), sha256(&w8));
    let env = setup(
        "changed",
        vec![(
            "v2_8f",
            Route {
                body: w8.clone(),
                behaviour: Behaviour::ChangesAfterDropAt {
                    at: 5 << 20,
                    then: then.clone(),
                },
            },
        )],
        "",
    );
    let out = env.run(&["weights", "fetch", "v2_8f"], &[]);
    assert_fails(&out, 2, &["stopped after 5242880"]);
    let out = env.run(&["weights", "fetch", "v2_8f"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let hits = env.server.hits("v2_8f.pdparams");
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(hits[1].range.as_deref(), Some("bytes=5242880-"));
    assert_eq!(
        env.index()[0]["sha256"],
        sha256(&then),
        "the new file, whole"
    );
    assert_eq!(env.cached_files(), ["index.json", "v2_8f.pdparams"]);
}

#[test]
fn concurrent_imports_and_fetches_into_one_cache_lose_nothing() {
    // Each process read the index, added its entry and wrote it back: 8 concurrent imports
    // left 5 of 8 entries; concurrent fetches of one file shared one `.part` file.
    let env = setup(
        "concurrent",
        vec![("v2_8f", normal("pptsmv2/w8.pdparams"))],
        "",
    );
    let w8 = fixture("pptsmv2/w8.pdparams");
    let spawn = |args: Vec<String>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kineto"));
        cmd.arg("--cache-dir")
            .arg(&env.cache)
            .args(args)
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .env("KINETO_CATALOG", &env.catalog)
            .env_remove("KINETO_CACHE_DIR")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().expect("run kineto")
    };
    let imports: Vec<_> = (0..8)
        .map(|i| {
            let args = ["weights", "import", s(&w8), "--name", &format!("mine{i}")];
            spawn(args.iter().map(|a| a.to_string()).collect())
        })
        .collect();
    let fetches: Vec<_> = (0..3)
        .map(|_| spawn(["weights", "fetch", "v2_8f"].map(String::from).to_vec()))
        .collect();
    for child in imports.into_iter().chain(fetches) {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let mut names: Vec<String> = env
        .index()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    let mut want: Vec<String> = (0..8).map(|i| format!("mine{i}")).collect();
    want.push("v2_8f".into());
    assert_eq!(names, want);
    assert_eq!(
        env.server.hits("v2_8f.pdparams").len(),
        1,
        "one download; the other fetches waited and found it"
    );
    let expected = sha256(&std::fs::read(&w8).expect("w8"));
    for entry in env.index() {
        assert_eq!(entry["sha256"], expected.as_str());
    }
}

#[test]
fn a_bad_http_timeout_is_one_usage_error() {
    let env = setup(
        "timeout-env",
        vec![("v2_8f", normal("pptsmv2/w8.pdparams"))],
        "",
    );
    for bad in ["1e20", "-1", "soon", "0", "NaN"] {
        let out = env.run(
            &["weights", "fetch", "v2_8f"],
            &[("KINETO_HTTP_TIMEOUT", bad)],
        );
        assert_fails(&out, 2, &[&format!("KINETO_HTTP_TIMEOUT={bad}")]);
    }
    assert!(env.server.hits("v2_8f.pdparams").is_empty());
}
