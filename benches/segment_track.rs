//! Segment editing in the window with 1,000 segments on a 2-hour file: the UI thread's time
//! per frame (egui_kittest's `step`: layout, painting into shapes and the app's own work)
//! while segments are selected, relabelled, dragged, split and undone. The goal is 60 fps,
//! 16.7 ms per frame.
//!
//! `cargo bench --bench segment_track` (needs GStreamer's x264enc to make the file).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use kineto::app::settings::{DeviceSetting, Settings};
use kineto::app::{AppOptions, DialogBackend, KinetoApp};
use kineto::labels::segments::ProposedSegment;
use kineto::report::Ranked;

const SEGMENTS: usize = 1_000;
const DURATION_S: u32 = 7_200;

fn main() {
    let dir = std::env::temp_dir().join(format!("kineto-bench-segments-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let video = dir.join("two-hours.mp4");
    // Two hours at 1 fps, 64x64: a real file of that length, made in seconds.
    let status = std::process::Command::new("gst-launch-1.0")
        .args([
            "-q",
            "videotestsrc",
            &format!("num-buffers={DURATION_S}"),
            "!",
        ])
        .args([
            "video/x-raw,width=64,height=64,framerate=1/1",
            "!",
            "x264enc",
        ])
        .args([
            "speed-preset=ultrafast",
            "key-int-max=60",
            "!",
            "mp4mux",
            "!",
        ])
        .arg("filesink")
        .arg(format!("location={}", video.display()))
        .status()
        .expect("gst-launch-1.0");
    assert!(status.success(), "could not make the 2-hour clip");

    let settings = Settings {
        model: "/nonexistent/kineto-bench.pdparams".to_string(),
        device: DeviceSetting::Cpu,
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
    let mut h: Harness<'static, KinetoApp> = Harness::builder()
        .with_size([1400.0, 800.0])
        .build_eframe(move |cc| KinetoApp::new(cc, options));
    h.step();
    h.state_mut().open_clip(&video);
    let deadline = Instant::now() + Duration::from_secs(60);
    while h.state().shared.project.is_none()
        || h.state().shared.player.status().duration_s.is_none()
    {
        assert!(Instant::now() < deadline, "the clip did not open");
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    let duration = h.state().shared.player.status().duration_s.unwrap();
    let labels = h
        .state()
        .shared
        .project
        .as_ref()
        .unwrap()
        .label_set
        .labels
        .clone();
    let step = duration / SEGMENTS as f64;
    let proposals = (0..SEGMENTS)
        .map(|i| ProposedSegment {
            start_s: i as f64 * step,
            end_s: (i + 1) as f64 * step,
            top_k: (0..5)
                .map(|r| {
                    let id = (i * 7 + r * 13) % labels.len();
                    Ranked {
                        rank: r + 1,
                        label_id: id,
                        label: labels[id].clone(),
                        score: 0.5 / (r + 1) as f32,
                    }
                })
                .collect(),
        })
        .collect();
    h.state_mut()
        .offer_segment_proposals(proposals, duration, 1.0);
    h.step();
    let count = h.state().shared.project.as_ref().unwrap().segments(0).len();
    assert_eq!(count, SEGMENTS, "segments stored");

    let track = h.get_by_label("segment track").rect();
    let y = track.center().y;
    let mut frames: Vec<Duration> = Vec::new();
    let mut timed = |h: &mut Harness<'static, KinetoApp>| {
        let start = Instant::now();
        h.step();
        frames.push(start.elapsed());
    };
    let mut splits = 0;
    for round in 0..40 {
        let seg = 100 + round * 20;
        let mid = (seg as f64 + 0.5) * step;
        let view = (mid - 60.0, mid + 60.0);
        let x_at =
            |t: f64| track.left() + track.width() * ((t - view.0) / (view.1 - view.0)) as f32;
        // The playhead into the segment (for the split; not timed).
        h.state()
            .shared
            .player
            .send(kineto::video::player::PlayerCmd::Seek {
                position_s: mid,
                accurate: true,
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while (h.state().shared.player.status().position_s - mid).abs() > 1.0 {
            assert!(Instant::now() < deadline, "the seek to {mid} s");
            h.step();
            std::thread::sleep(Duration::from_millis(10));
        }
        // Two minutes around the segment in view, as one edits a long file.
        h.state_mut()
            .segment_track()
            .zoom_to(mid - 60.0, mid + 60.0);
        timed(&mut h);
        // Select (click), relabel (a digit key), drag the start, split, undo.
        h.hover_at(egui::pos2(x_at(mid), y));
        timed(&mut h);
        h.drag_at(egui::pos2(x_at(mid), y));
        timed(&mut h);
        h.drop_at(egui::pos2(x_at(mid), y));
        timed(&mut h);
        h.key_press(egui::Key::Num2);
        timed(&mut h);
        let edge = seg as f64 * step;
        h.hover_at(egui::pos2(x_at(edge), y));
        timed(&mut h);
        h.drag_at(egui::pos2(x_at(edge), y));
        timed(&mut h);
        for k in 1..=6 {
            h.hover_at(egui::pos2(x_at(edge) + k as f32, y));
            timed(&mut h);
        }
        h.drop_at(egui::pos2(x_at(edge) + 6.0, y));
        timed(&mut h);
        let before = h.state().shared.project.as_ref().unwrap().segments(0).len();
        h.key_press(egui::Key::S);
        timed(&mut h);
        let after = h.state().shared.project.as_ref().unwrap().segments(0).len();
        splits += usize::from(after == before + 1);
        h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
        timed(&mut h);
    }
    let segs = h.state().shared.project.as_ref().unwrap().segments(0);
    let confirmed = segs.iter().filter(|s| s.status.is_confirmed()).count();
    frames.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let pick = |q: f64| frames[((frames.len() - 1) as f64 * q) as usize];
    println!(
        "segment editing, {SEGMENTS} segments over {:.0} s ({} frames; {confirmed} relabelled, {splits} splits undone): \
         median {:.2} ms, p95 {:.2} ms, max {:.2} ms per frame (60 fps = 16.7 ms)",
        duration,
        frames.len(),
        ms(pick(0.5)),
        ms(pick(0.95)),
        ms(*frames.last().unwrap()),
    );
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}
