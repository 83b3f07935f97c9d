//! A stream in the window, driven headless with egui_kittest over the real app state: a real
//! HTTP server on 127.0.0.1 (Python's `http.server`) serving an H.264 mp4, the real inference
//! service with fixture weights on the CPU. Live labels appear, the status bar shows their
//! latency, Record writes a Matroska file into the project's folder that the project takes,
//! and the settings written never hold the URL's password. An RTSP stream (GStreamer's RTSP
//! server, `tests/python/rtsp_server.py`) whose server goes away is reconnected, and the status
//! bar says so.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::app::run_until;
use common::fixture;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use kineto::app::settings::{DeviceSetting, Settings};
use kineto::app::{AppOptions, DialogBackend, KinetoApp, StreamState};
use kineto::video::synth::{ClipSpec, Codec, Container, synth_clip};

const SECRET: &str = "s3cretpw";

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_server(dir: &Path) -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let python =
        std::env::var("KINETO_SYSTEM_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    let child = Command::new(python)
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "no server on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, port)
}

fn rtsp_server(clip: &Path) -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let python =
        std::env::var("KINETO_SYSTEM_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/rtsp_server.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg(port.to_string())
        .arg(clip)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("system python3 for the RTSP server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        "ready",
        "the RTSP server needs python3-gi and gir1.2-gst-rtsp-server-1.0"
    );
    (Server(child), port)
}

fn harness() -> Harness<'static, KinetoApp> {
    let settings = Settings {
        model: fixture("pptsmv2/w8.pdparams").display().to_string(),
        frames: 8,
        device: DeviceSetting::Cpu,
        threads: 1,
        top_k: 5,
        offline: true,
        ..Settings::default()
    };
    let options = AppOptions {
        video: None,
        settings: Some(settings),
        overrides: Default::default(),
        audio: false,
        dialogs: DialogBackend::scripted(vec![]),
    };
    let mut h = Harness::builder()
        .with_size([1100.0, 700.0])
        .build_eframe(move |cc| KinetoApp::new(cc, options));
    run_until(&mut h, Duration::from_secs(120), "the model", |h| {
        h.state().shared.model().is_some()
    });
    h
}

/// eframe's storage as a file: what `save` writes is what the settings file would hold.
#[derive(Default)]
struct FileStorage(BTreeMap<String, String>);

impl eframe::Storage for FileStorage {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }
    fn flush(&mut self) {}
}

#[test]
fn a_stream_url_shows_live_labels_with_latency_records_and_keeps_no_password() {
    let dir = common::ScratchDir::new("app-stream");
    let clip = dir.join("clip.mp4");
    synth_clip(&clip, &ClipSpec::new(Container::Mp4, Codec::H264, 100)).expect("synth clip");
    let (_server, port) = http_server(&dir);
    let mut h = harness();
    // File > Open camera…: the device list comes from a background task (this machine may
    // have no camera: then the window says so).
    h.get_by_label("File").click();
    h.run_steps(2);
    h.get_by_label("Open camera…").click();
    run_until(&mut h, Duration::from_secs(20), "the camera list", |h| {
        h.query_by_label("no camera found").is_some()
            || h.query_by_label_contains("/dev/video").is_some()
    });
    h.get_by_label("Cancel").click();
    h.run_steps(2);
    assert!(h.query_by_label("Open camera").is_none(), "the list closed");

    // A clip of the folder first: its project is the one a recording goes to.
    h.state_mut().open_paths(vec![clip.clone()]);
    run_until(&mut h, Duration::from_secs(60), "the project", |h| {
        h.state().shared.project.is_some()
    });

    let url = format!("http://viewer:{SECRET}@127.0.0.1:{port}/clip.mp4");
    h.state_mut().open_stream(&url);
    run_until(&mut h, Duration::from_secs(60), "a live label", |h| {
        h.state().stream_top1().is_some()
    });
    h.run_steps(2);
    let label = h.state().stream_top1().unwrap();
    assert!(
        h.query_all_by_label_contains(&label).count() >= 1,
        "{label}"
    );
    let latency = h.state().stream_latency_ms().unwrap();
    assert!((0.0..60_000.0).contains(&latency), "{latency}");
    assert!(
        h.query_by_label_contains(&format!("label latency {latency:.0} ms"))
            .is_some(),
        "the status bar shows the labels' latency"
    );
    // No seek bar for a stream: its controls are Freeze, Record and Close.
    assert!(h.query_by_label("Freeze").is_some());
    assert!(h.query_by_label("Record").is_some());

    // Freeze keeps the labels shown while the stream goes on to its end; Resume lets new ones in.
    h.get_by_label("Freeze").click();
    h.run_steps(2);
    let frozen_at = h.state().stream_label_t_s().unwrap();
    run_until(&mut h, Duration::from_secs(60), "the stream's end", |h| {
        h.state().stream_state() == Some(StreamState::Ended)
    });
    assert_eq!(h.state().stream_label_t_s(), Some(frozen_at));
    assert!(
        frozen_at < 4.0,
        "frozen before the last window: {frozen_at}"
    );
    h.get_by_label("Resume").click();
    h.run_steps(2);
    assert!(h.query_by_label("Freeze").is_some());

    // Record: the stream restarts with a recorder; the file (remuxed H.264) lands in the
    // project's folder once the download ends, and the project takes it.
    h.state_mut().toggle_stream_recording();
    let recording = h.state().stream_recording().expect("recording");
    assert_eq!(recording.parent(), Some(dir.as_ref()));
    run_until(
        &mut h,
        Duration::from_secs(60),
        "the recorded stream's end",
        |h| h.state().stream_state() == Some(StreamState::Ended),
    );
    run_until(
        &mut h,
        Duration::from_secs(20),
        "the project's new clip",
        |h| {
            let name = recording.file_name().unwrap().to_str().unwrap();
            (h.state().shared.project.as_ref())
                .is_some_and(|p| p.clips.iter().any(|c| c.path == name))
        },
    );
    let info = kineto::video::probe::probe(&recording).expect("the recording reads");
    assert_eq!(info.frame_count, 100);

    // The settings written keep the stream in the recent list, without the password.
    let mut storage = FileStorage::default();
    eframe::App::save(h.state_mut(), &mut storage);
    let written = storage.0.values().cloned().collect::<Vec<_>>().join("\n");
    assert!(!written.contains(SECRET), "{written}");
    assert!(!written.contains("viewer:"), "{written}");
    assert!(
        written.contains(&format!("http://***@127.0.0.1:{port}/clip.mp4")),
        "{written}"
    );
}

#[test]
fn a_dropped_rtsp_stream_is_reconnected_and_the_status_bar_says_so() {
    let dir = common::ScratchDir::new("app-stream-rtsp");
    let clip = dir.join("clip.mp4");
    // 10 s: the server goes away while it still streams.
    synth_clip(&clip, &ClipSpec::new(Container::Mp4, Codec::H264, 250)).expect("synth clip");
    let (server, port) = rtsp_server(&clip);
    let mut h = harness();
    h.state_mut()
        .open_stream(&format!("rtspt://127.0.0.1:{port}/clip"));
    run_until(&mut h, Duration::from_secs(60), "a live label", |h| {
        h.state().stream_top1().is_some()
    });
    assert_eq!(h.state().stream_state(), Some(StreamState::Live));
    drop(server);
    run_until(&mut h, Duration::from_secs(30), "a reconnection", |h| {
        matches!(
            h.state().stream_state(),
            Some(StreamState::Reconnecting { .. })
        )
    });
    h.run_steps(2);
    assert!(
        h.query_by_label_contains("stream dropped: reconnecting in")
            .is_some(),
        "the status bar says the stream is reconnecting"
    );
}
