//! The InferenceService under a stream of live requests (a clip playing): queued jobs still run
//! to the end, live requests keep being answered, and the ones it could not serve in time are
//! skipped (latest wins), not queued.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::fixture;
use kineto::infer::device::DeviceChoice;
use kineto::infer::live::LiveRequest;
use kineto::infer::service::{InferenceService, ModelSpec, ServiceEvent, TimelineEvent};
use kineto::progress::Notify;
use kineto::video::synth::{ClipSpec, Codec, Container, synth_clip};

#[test]
fn jobs_finish_while_live_requests_keep_coming() {
    let dir = common::ScratchDir::new("service");
    let clip: PathBuf = dir.join("ball.mp4");
    synth_clip(&clip, &ClipSpec::new(Container::Mp4, Codec::H264, 100)).expect("clip");

    let mut service = InferenceService::spawn(Notify::none());
    service.load(ModelSpec {
        weights: fixture("pptsmv2/w8.pdparams").display().to_string(),
        frames: Some(8),
        device: DeviceChoice::Cpu,
        threads: 1,
        labels: None,
        cache_dir: None,
        offline: true,
        precision: None,
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match service.events().recv_timeout(Duration::from_secs(1)) {
            Ok(ServiceEvent::Loaded(_)) => break,
            Ok(ServiceEvent::LoadFailed { error, .. }) => panic!("{error}"),
            _ => assert!(Instant::now() < deadline, "the model did not load"),
        }
    }

    let (job, _cancel) = service.timeline(clip.clone(), 2.0, 1.0, 5);
    let mut live_results = 0;
    let mut generation = 0;
    let mut finished = None;
    while finished.is_none() {
        assert!(
            Instant::now() < deadline,
            "the timeline job was starved by live requests"
        );
        // A playing clip asks for a new window about every 50 ms here (faster than a forward).
        generation += 1;
        service.request_live(LiveRequest {
            generation,
            path: clip.clone(),
            window_end_s: 2.0 + (generation % 40) as f64 * 0.05,
            window_s: 2.0,
            ring: None,
            requested_at: Instant::now(),
        });
        let until = Instant::now() + Duration::from_millis(50);
        while let Ok(event) = service
            .events()
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            match event {
                ServiceEvent::Live(_) => live_results += 1,
                ServiceEvent::LiveFailed { error, .. } => panic!("live: {error}"),
                ServiceEvent::Timeline(TimelineEvent::Finished { job: j, result, .. })
                    if j == job =>
                {
                    finished = Some(result);
                }
                _ => {}
            }
        }
    }
    let record = finished
        .expect("finished")
        .unwrap_or_else(|e| panic!("timeline: {e}"));
    assert_eq!(record.windows.len(), 3, "4 s clip, 2 s windows, 1 s stride");
    assert!(live_results >= 2, "live requests were answered meanwhile");
    assert!(
        service.live_skipped() > 0,
        "requests that arrived during a forward were replaced, not queued"
    );
    service.shutdown(Duration::from_secs(5));
}
