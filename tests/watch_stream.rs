//! `kineto watch` on real servers started here on 127.0.0.1: Python's `http.server` serving an
//! mp4 and an HLS playlist, and GStreamer's RTSP server library (`tests/python/rtsp_server.py`,
//! run with the system python3 that has `gi` and `GstRtspServer`, which `.ci/run` installs).
//! The clip's H.264 reaches the decoder unchanged over every transport, so each prediction
//! must equal `kineto timeline`'s window with the same end (stride = `--every-s`): the same
//! frame indices, the same top-1 and score. Credentials in the URL never appear in the output.
//! `--record` writes the stream remuxed: `timeline` reads the recording as it reads the clip,
//! and Ctrl-C finishes the file (its index written) before exiting 130.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const SECRET: &str = "s3cretpw";

fn weights() -> PathBuf {
    fixture("pptsmv2/w8.pdparams")
}

/// A 5-second 320x240 25 fps H.264 clip with a key frame every second, `moov` first.
fn make_clip(dir: &Path) -> PathBuf {
    let clip = dir.join("clip.mp4");
    let status = Command::new("gst-launch-1.0")
        .args(["-q", "videotestsrc", "num-buffers=125", "pattern=ball", "!"])
        .args([
            "video/x-raw,width=320,height=240,framerate=25/1",
            "!",
            "videoconvert",
            "!",
        ])
        .args([
            "x264enc",
            "key-int-max=25",
            "!",
            "mp4mux",
            "faststart=true",
            "!",
        ])
        .arg("filesink")
        .arg(format!("location={}", clip.display()))
        .status()
        .expect("gst-launch-1.0 (gstreamer1.0-tools)");
    assert!(status.success());
    clip
}

/// The same H.264 as an HLS playlist of 1-second segments under `dir/hls`. gst-launch sometimes
/// hangs after hlssink2 has written the whole playlist (its EOS never reaches the bus), so it
/// is done once the playlist ends, and then killed.
fn make_hls(clip: &Path, dir: &Path) -> PathBuf {
    let hls = dir.join("hls");
    std::fs::create_dir_all(&hls).unwrap();
    let playlist = hls.join("playlist.m3u8");
    let mut child = Command::new("gst-launch-1.0")
        .args(["-q", "-e", "filesrc"])
        .arg(format!("location={}", clip.display()))
        .args(["!", "qtdemux", "!", "h264parse", "!", "hlssink2"])
        .arg(format!("location={}/seg%05d.ts", hls.display()))
        .arg(format!("playlist-location={}", playlist.display()))
        .args(["target-duration=1", "playlist-length=0", "max-files=0"])
        .spawn()
        .expect("gst-launch-1.0 hlssink2 (gstreamer1.0-plugins-bad)");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ended =
            std::fs::read_to_string(&playlist).is_ok_and(|text| text.contains("#EXT-X-ENDLIST"));
        if ended {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "hlssink2 failed");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "hlssink2 wrote no complete playlist"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    playlist
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "no server on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn system_python() -> String {
    std::env::var("KINETO_SYSTEM_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

fn http_server(dir: &Path) -> (Server, u16) {
    let port = free_port();
    let child = Command::new(system_python())
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
    wait_listening(port);
    (server, port)
}

fn rtsp_server(clip: &Path) -> (Server, u16) {
    let port = free_port();
    (rtsp_server_on(clip, port), port)
}

fn rtsp_server_on(clip: &Path, port: u16) -> Server {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/rtsp_server.py");
    let mut child = Command::new(system_python())
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
    Server(child)
}

/// The windows of `kineto timeline` on the clip (stride 0.5 s, watch's default).
fn timeline_windows(clip: &Path) -> Vec<Value> {
    timeline_json(clip)["windows"].as_array().unwrap().clone()
}

fn parse_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// Each prediction equals timeline's window with the same end.
fn assert_matches_timeline(predictions: &[Value], windows: &[Value], what: &str) {
    assert!(!predictions.is_empty(), "{what}: no predictions");
    for p in predictions {
        let t = p["t_s"].as_f64().unwrap();
        let w = windows
            .iter()
            .find(|w| (w["end_s"].as_f64().unwrap() - t).abs() < 1e-6)
            .unwrap_or_else(|| panic!("{what}: timeline has no window ending at {t}"));
        assert_eq!(
            p["indices"], w["indices"],
            "{what} at {t} s: sampled frames"
        );
        let (ours, theirs) = (&p["top_k"][0], &w["top_k"][0]);
        assert_eq!(
            ours["label_id"], theirs["label_id"],
            "{what} at {t} s: top-1"
        );
        let diff = (ours["score"].as_f64().unwrap() - theirs["score"].as_f64().unwrap()).abs();
        assert!(diff < 1e-5, "{what} at {t} s: score differs by {diff}");
        assert!(p["latency_ms"].as_f64().unwrap() >= 0.0 && p["wall_time"].as_f64().unwrap() > 0.0);
    }
}

fn watch(url: &str, extra: &[&str]) -> std::process::Output {
    let w = weights();
    let mut args = vec![
        "watch",
        url,
        "--weights",
        s(&w),
        "--device",
        "cpu",
        "--top-k",
        "1",
    ];
    args.extend_from_slice(extra);
    kineto(&args)
}

/// `kineto watch URL --weights W --device cpu EXTRA...` running, its stdout and stderr piped.
fn spawn_watch(url: &str, extra: &[&str]) -> Child {
    let w = weights();
    Command::new(env!("CARGO_BIN_EXE_kineto"))
        .args(["watch", url, "--weights", s(&w), "--device", "cpu"])
        .args(extra)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn assert_no_secret(out: &std::process::Output, what: &str) {
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(out));
    assert!(
        !all.contains(SECRET),
        "{what}: the password was printed: {all}"
    );
}

#[test]
fn http_file_and_hls_playlist_give_timeline_windows() {
    let dir = ScratchDir::new("watch-http");
    let clip = make_clip(&dir);
    make_hls(&clip, &dir);
    let windows = timeline_windows(&clip);
    let (_server, port) = http_server(&dir);

    for (what, path) in [("mp4", "clip.mp4"), ("HLS", "hls/playlist.m3u8")] {
        let url = format!("http://viewer:{SECRET}@127.0.0.1:{port}/{path}");
        let out = watch(&url, &[]);
        assert!(out.status.success(), "{what}: {}", stderr(&out));
        assert_no_secret(&out, what);
        let predictions = parse_lines(&out.stdout);
        // A download is not live: the model is waited for, no window is dropped.
        assert_eq!(predictions.len(), windows.len(), "{what}: every window");
        assert_matches_timeline(&predictions, &windows, what);
    }

    let missing = watch(&format!("http://127.0.0.1:{port}/missing.mp4"), &[]);
    assert_eq!(missing.status.code(), Some(1), "{}", stderr(&missing));
    let refused = watch(
        &format!("smb://viewer:{SECRET}@127.0.0.1/share/clip.mp4"),
        &[],
    );
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("scheme is not allowed"));
    assert_no_secret(&refused, "smb");
}

#[test]
fn rtsp_stream_matches_timeline_and_a_dropped_server_ends_cleanly() {
    let dir = ScratchDir::new("watch-rtsp");
    let clip = make_clip(&dir);
    let windows = timeline_windows(&clip);
    let (server, port) = rtsp_server(&clip);
    // rtspt: RTP over the RTSP connection (TCP), so no packet is lost on the way.
    let url = format!("rtspt://viewer:{SECRET}@127.0.0.1:{port}/clip");
    let out = watch(&url, &["--duration", "3.5"]);
    assert!(out.status.success(), "rtsp: {}", stderr(&out));
    assert_no_secret(&out, "rtsp");
    let predictions = parse_lines(&out.stdout);
    assert!(predictions.len() >= 2, "{predictions:?}");
    assert_matches_timeline(&predictions, &windows, "RTSP");

    // The server goes away mid-stream: a reconnect attempt, then a clean exit 1.
    let mut child = spawn_watch(&url, &["--reconnects", "1"]);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(
        first.contains("\"t_s\""),
        "a prediction before the drop: {first}"
    );
    drop(server);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("reconnecting in"), "{err}");
    assert!(err.contains("reconnection attempts failed"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
}

/// Whether a Matroska file was finished: its `Cues` element (the index the muxer writes at
/// the end of the stream) is there, beside the `SeekHead`'s reference to it at the start. A
/// recording cut short by a kill has only the reference (seen with `kill -KILL`).
fn has_index(mkv: &Path) -> bool {
    let data = std::fs::read(mkv).unwrap();
    let cues = [0x1C, 0x53, 0xBB, 0x6B];
    data.windows(4).filter(|w| *w == cues).count() >= 2
}

/// `kineto timeline` of `video` with stride 0.5 s and the top label, as JSON.
fn timeline_json(video: &Path) -> Value {
    let out = kineto(&[
        "timeline",
        s(video),
        "--weights",
        s(&weights()),
        "--device",
        "cpu",
        "--stride-s",
        "0.5",
        "--top-k",
        "1",
        "-q",
    ]);
    assert!(out.status.success(), "timeline: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn http_recording_holds_every_frame_and_timeline_reads_it() {
    let dir = ScratchDir::new("watch-record-http");
    let clip = make_clip(&dir);
    let (_server, port) = http_server(&dir);
    let url = format!("http://viewer:{SECRET}@127.0.0.1:{port}/clip.mp4");
    let recording = dir.join("seen.mkv");
    let out = watch(&url, &["--record", s(&recording)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_secret(&out, "record");
    assert!(
        stderr(&out).contains("recorded 125 frames") && stderr(&out).contains("(remuxed)"),
        "{}",
        stderr(&out)
    );
    assert!(has_index(&recording), "the recording was finished");
    // The H.264 was remuxed, not re-encoded: timeline reads the same frames, window by window.
    let (original, recorded) = (timeline_json(&clip), timeline_json(&recording));
    assert_eq!(recorded["frame_count"], 125);
    assert_eq!(recorded["fps"], original["fps"]);
    let windows = recorded["windows"].as_array().unwrap();
    assert_eq!(windows.len(), original["windows"].as_array().unwrap().len());
    for (r, o) in windows.iter().zip(original["windows"].as_array().unwrap()) {
        assert_eq!(r["indices"], o["indices"]);
        let (r, o) = (&r["top_k"][0], &o["top_k"][0]);
        assert_eq!(r["label_id"], o["label_id"]);
        assert!((r["score"].as_f64().unwrap() - o["score"].as_f64().unwrap()).abs() < 1e-6);
    }

    // A recording never replaces a file; the refusal is one line, the file untouched.
    let before = std::fs::read(&recording).unwrap();
    let again = watch(&url, &["--record", s(&recording)]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("the file exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(stderr(&again).lines().count(), 1, "{}", stderr(&again));
    assert_eq!(std::fs::read(&recording).unwrap(), before);
}

#[test]
fn ctrl_c_finishes_the_rtsp_recording_and_exits_130() {
    let dir = ScratchDir::new("watch-record-rtsp");
    let clip = make_clip(&dir);
    let (_server, port) = rtsp_server(&clip);
    let recording = dir.join("seen.mkv");
    let mut child = spawn_watch(
        &format!("rtspt://127.0.0.1:{port}/clip"),
        &["--record", s(&recording)],
    );
    // The first prediction is 2 s of stream in: Ctrl-C then, with the 5 s clip still playing.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("\"t_s\""), "a prediction first: {first}");
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("recorded"), "{err}");
    assert!(has_index(&recording), "Ctrl-C finished the file: {err}");
    let recorded = timeline_json(&recording);
    let frames = recorded["frame_count"].as_u64().unwrap();
    // At least the 2 s the first prediction saw, and not more than the clip.
    assert!((50..125).contains(&frames), "{frames} frames recorded");
    assert!(!recorded["windows"].as_array().unwrap().is_empty());
}

#[test]
fn a_codec_that_matroska_is_not_given_as_is_is_recorded_with_x264() {
    // MPEG-4 Part 2 in AVI: not among the remuxed codecs, so the recorder encodes the decoded
    // frames (the path a camera giving raw frames takes).
    let dir = ScratchDir::new("watch-record-x264");
    let clip = dir.join("clip.avi");
    let status = Command::new("gst-launch-1.0")
        .args(["-q", "videotestsrc", "num-buffers=50", "pattern=ball", "!"])
        .args(["video/x-raw,width=320,height=240,framerate=25/1", "!"])
        .args(["avenc_mpeg4", "!", "avimux", "!", "filesink"])
        .arg(format!("location={}", clip.display()))
        .status()
        .expect("gst-launch-1.0 (gstreamer1.0-libav)");
    assert!(status.success());
    let recording = dir.join("seen.mkv");
    let out = watch(s(&clip), &["--record", s(&recording)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("recorded 50 frames") && stderr(&out).contains("encoded with x264"),
        "{}",
        stderr(&out)
    );
    assert!(has_index(&recording));
    let recorded = timeline_json(&recording);
    assert_eq!(recorded["frame_count"], 50);
    assert_eq!(recorded["windows"].as_array().unwrap().len(), 1);
}

#[test]
fn a_recording_goes_on_across_a_reconnection() {
    let dir = ScratchDir::new("watch-record-reconnect");
    let clip = make_clip(&dir);
    let (server, port) = rtsp_server(&clip);
    let recording = dir.join("seen.mkv");
    let mut child = spawn_watch(
        &format!("rtspt://127.0.0.1:{port}/clip"),
        &["--every-s", "0.25", "--record", s(&recording)],
    );
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("\"t_s\""), "a prediction first: {line}");
    // The server goes away about 2 s into the clip and comes back on the same port: the
    // watch reconnects (the clip starts again) and the recording goes on in the same file.
    drop(server);
    let _again = rtsp_server_on(&clip, port);
    // Stream time counts on across connections: 4.5 s is well into the second one.
    loop {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the watch ended early"
        );
        let p: Value = serde_json::from_str(&line).unwrap();
        if p["t_s"].as_f64().unwrap() >= 4.5 {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("reconnecting in"), "{err}");
    assert!(has_index(&recording), "{err}");
    let recorded = timeline_json(&recording);
    let frames = recorded["frame_count"].as_f64().unwrap();
    // Both connections' frames (more than one connection gives before 4.5 s of stream), and
    // the second follows the first in time: the last frame is near (frames - 1) / 25 s (a
    // second connection written with its own timestamps would overlap the first).
    assert!(frames > 112.0, "{frames} frames recorded: {err}");
    // RTSP timestamps come from the network's timing (seen 0.4 s short over 170 frames, the
    // first frames of a connection closer than 40 ms); a second connection not moved after
    // the first ends about as far before as the first connection lasted (seen: 2.2 s short).
    let last = last_pts_s(&recording);
    let expected = (frames - 1.0) / 25.0;
    assert!(
        last > expected - 1.0 && last < expected + 0.5,
        "{frames} frames, the last at {last} s"
    );
}

/// The largest presentation time in a Matroska file, as its demuxer gives them (seen at
/// 4.3 s for 164 frames, 6.5 s expected, when a second connection's timestamps were not
/// moved after the first's).
fn last_pts_s(mkv: &Path) -> f64 {
    let out = Command::new("gst-launch-1.0")
        .args(["-v", "filesrc"])
        .arg(format!("location={}", mkv.display()))
        .args(["!", "matroskademux", "!", "fakesink", "silent=false"])
        .output()
        .expect("gst-launch-1.0");
    let text = String::from_utf8_lossy(&out.stdout);
    let seconds = |t: &str| {
        let mut parts = t.split(':');
        let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
        Some(
            h.parse::<f64>().ok()? * 3600.0
                + m.parse::<f64>().ok()? * 60.0
                + s.parse::<f64>().ok()?,
        )
    };
    let pts: Vec<f64> = text
        .split("pts: ")
        .skip(1)
        .filter_map(|rest| seconds(rest.split([',', ' ']).next()?))
        .collect();
    assert!(!pts.is_empty(), "no buffers: {text}");
    pts.into_iter().fold(0.0, f64::max)
}
