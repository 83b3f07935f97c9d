//! Proposed segments from a sliding-window timeline: consecutive windows with the same top-1
//! merged into one labelled span of time.
//!
//! **Windows to time.** Windows overlap (2 s windows every 1 s), so each window stands for the
//! stretch of time around its centre: the boundary between two consecutive windows' cells is
//! the midpoint of their centres, the first cell starts at 0 and the last ends at the clip's
//! end. A window whose larger part shows class B has its centre inside B, so a change of class
//! at time `T` lands between the centres of the last window that is mostly A and the first that
//! is mostly B: within half a stride of `T` when the model follows the majority of a window,
//! within one stride when it lags a window behind.
//!
//! **Noise.** A new label must win `hysteresis` consecutive windows before a segment starts;
//! shorter runs belong to the segment they interrupt (the change, once accepted, starts where
//! its run started). Spans shorter than `min_s` are then absorbed into a neighbour (the one
//! whose label scores higher over the short span's windows). With `min_score`, windows whose
//! top-1 scores below it are background: no segment covers them. Without it the segments cover
//! the whole clip.
//!
//! **Each segment**: start and end on frame boundaries (`k / fps`, inside `[0, duration]`), its
//! label, the mean over its windows of that label's score, and the top-k of the class scores
//! averaged over its windows (a class missing from a window's top-k counts 0 there).

use std::collections::BTreeMap;

use super::timeline::{TimelineRecord, TimelineWindow};
use crate::report::{Ranked, Segment};

/// How windows become segments.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SegmentOptions {
    /// Consecutive windows a new label must win before a segment starts (1: every change).
    pub hysteresis: usize,
    /// Segments shorter than this (seconds) are absorbed into a neighbour.
    pub min_s: f64,
    /// Windows whose top-1 scores below this are background (no segment).
    pub min_score: Option<f32>,
    /// Classes kept in each segment's `top_k`.
    pub top_k: usize,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        Self {
            hysteresis: 2,
            min_s: 2.0,
            min_score: None,
            top_k: 5,
        }
    }
}

/// The segments of a finished timeline.
pub fn propose_segments(record: &TimelineRecord, opts: &SegmentOptions) -> Vec<Segment> {
    segments_from_windows(&record.windows, record.duration_s, record.fps, opts)
}

/// A span of frames `[start, end)` with its label (`None`: background) and its windows.
#[derive(Clone, Debug)]
struct Span {
    start: u64,
    end: u64,
    label: Option<usize>,
    /// Indices into the sorted windows: `first..last`.
    first: usize,
    last: usize,
}

/// The segments of windows of a clip of `duration_s` seconds at `fps` (the windows need not be
/// sorted; windows without a prediction count as background). A clip without windows, or
/// without a positive duration, has no segments. An `fps` that is not a positive number puts
/// boundaries on milliseconds.
pub fn segments_from_windows(
    windows: &[TimelineWindow],
    duration_s: f64,
    fps: f64,
    opts: &SegmentOptions,
) -> Vec<Segment> {
    if windows.is_empty() || !(duration_s.is_finite() && duration_s > 0.0) {
        return Vec::new();
    }
    let fps = if fps.is_finite() && fps > 0.0 {
        fps
    } else {
        1000.0
    };
    // The last frame boundary: the clip's end (a duration a hair past a frame stays on it).
    let total = ((duration_s * fps) - 1e-6).ceil().max(1.0) as u64;
    let to_frame = |t: f64| -> u64 {
        if t.is_nan() {
            return 0;
        }
        ((t * fps).round().max(0.0) as u64).min(total)
    };
    let mut windows: Vec<&TimelineWindow> = windows.iter().collect();
    windows.sort_by(|a, b| {
        a.start_s
            .total_cmp(&b.start_s)
            .then(a.end_s.total_cmp(&b.end_s))
    });
    let centre = |w: &TimelineWindow| (w.start_s + w.end_s) / 2.0;
    let vote = |w: &TimelineWindow| -> Option<usize> {
        let top = w.top_k.first()?;
        match opts.min_score {
            // A NaN score is below any threshold.
            Some(min) if top.score.is_nan() || top.score < min => None,
            _ => Some(top.label_id),
        }
    };

    // One cell per window, tiling [0, total).
    let mut cells: Vec<Span> = Vec::with_capacity(windows.len());
    let mut start = 0u64;
    for (i, w) in windows.iter().enumerate() {
        let end = match windows.get(i + 1) {
            Some(next) => to_frame((centre(w) + centre(next)) / 2.0).max(start),
            None => total,
        };
        cells.push(Span {
            start,
            end,
            label: vote(w),
            first: i,
            last: i + 1,
        });
        start = end;
    }
    let runs = merge_equal(cells);
    let h = opts.hysteresis.max(1);
    let long_run = runs.iter().any(|r| r.last - r.first >= h);
    let mut spans = with_hysteresis(runs, h);
    if !long_run {
        // One span: the label that scores highest over the whole clip (background when the
        // windows' top-1s are all background).
        let votes: Vec<usize> = windows.iter().filter_map(|w| vote(w)).collect();
        let best = votes.iter().copied().max_by(|&a, &b| {
            mean_score(&windows, a)
                .total_cmp(&mean_score(&windows, b))
                .then(b.cmp(&a))
        });
        for s in &mut spans {
            s.label = best;
        }
    }
    let min_frames = if opts.min_s.is_finite() && opts.min_s > 0.0 {
        (opts.min_s * fps - 1e-6).ceil().max(0.0) as u64
    } else {
        0
    };
    let spans = absorb_short(spans, min_frames, &windows);
    spans
        .into_iter()
        .filter(|s| s.end > s.start)
        .filter_map(|s| {
            let label_id = s.label?;
            let top_k = averaged_top_k(&windows[s.first..s.last]);
            let score = top_k
                .iter()
                .find(|r| r.label_id == label_id)
                .map_or(0.0, |r| r.score);
            let label = windows[s.first..s.last]
                .iter()
                .flat_map(|w| w.top_k.iter())
                .find(|r| r.label_id == label_id)
                .map_or_else(|| format!("class_{label_id}"), |r| r.label.clone());
            let mut top_k = top_k;
            top_k.truncate(opts.top_k.max(1));
            Some(Segment {
                start_s: s.start as f64 / fps,
                end_s: (s.end as f64 / fps).min(duration_s),
                label_id,
                label,
                score,
                top_k,
            })
        })
        .collect()
}

/// Consecutive spans with the same label as one.
fn merge_equal(spans: Vec<Span>) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for s in spans {
        match out.last_mut() {
            Some(prev) if prev.label == s.label => {
                prev.end = s.end;
                prev.last = s.last;
            }
            _ => out.push(s),
        }
    }
    out
}

/// Runs of fewer than `h` windows join the run before them (the first run, the one after).
fn with_hysteresis(runs: Vec<Span>, h: usize) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::with_capacity(runs.len());
    let mut pending: Option<Span> = None;
    for run in runs {
        let long = run.last - run.first >= h;
        match out.last_mut() {
            Some(prev) if !long || prev.label == run.label => {
                prev.end = run.end;
                prev.last = run.last;
            }
            Some(_) => out.push(run),
            None => {
                // Nothing accepted yet: short runs wait for the first long one.
                if long {
                    let mut run = run;
                    if let Some(p) = pending.take() {
                        run.start = p.start;
                        run.first = p.first;
                    }
                    out.push(run);
                } else {
                    match &mut pending {
                        Some(p) => {
                            p.end = run.end;
                            p.last = run.last;
                        }
                        None => pending = Some(run),
                    }
                }
            }
        }
    }
    if out.is_empty()
        && let Some(p) = pending
    {
        // No run was long enough: the clip is one span (its label is chosen by the caller).
        return vec![Span { label: None, ..p }];
    }
    out
}

/// The mean score of `label` over `windows` (0 where a window's top-k lacks it).
fn mean_score(windows: &[&TimelineWindow], label: usize) -> f64 {
    if windows.is_empty() {
        return 0.0;
    }
    let sum: f64 = windows
        .iter()
        .filter_map(|w| w.top_k.iter().find(|r| r.label_id == label))
        .map(|r| f64::from(r.score))
        .filter(|s| s.is_finite())
        .sum();
    sum / windows.len() as f64
}

/// Spans shorter than `min_frames` join a neighbour, shortest first, until none is left (or
/// one span is all there is). The neighbour is the one whose label scores higher over the
/// short span's windows; background scores lowest.
fn absorb_short(mut spans: Vec<Span>, min_frames: u64, windows: &[&TimelineWindow]) -> Vec<Span> {
    loop {
        if spans.len() < 2 {
            return spans;
        }
        let Some((i, _)) = spans
            .iter()
            .enumerate()
            .filter(|(_, s)| s.end - s.start < min_frames)
            .min_by_key(|(_, s)| s.end - s.start)
        else {
            return spans;
        };
        let inside = &windows[spans[i].first..spans[i].last];
        let worth = |s: &Span| s.label.map_or(-1.0, |l| mean_score(inside, l));
        let into_prev = match (i.checked_sub(1).map(|p| &spans[p]), spans.get(i + 1)) {
            (Some(p), Some(n)) => {
                let (wp, wn) = (worth(p), worth(n));
                wp > wn || (wp == wn && p.end - p.start >= n.end - n.start)
            }
            (Some(_), None) => true,
            _ => false,
        };
        let short = spans.remove(i);
        if into_prev {
            let prev = &mut spans[i - 1];
            prev.end = short.end;
            prev.last = short.last;
        } else {
            let next = &mut spans[i];
            next.start = short.start;
            next.first = short.first;
        }
        spans = merge_equal(spans);
    }
}

/// Every class's score averaged over `windows`, best first (ties: the lower class id first).
fn averaged_top_k(windows: &[&TimelineWindow]) -> Vec<Ranked> {
    let mut sums: BTreeMap<usize, (f64, &str)> = BTreeMap::new();
    for w in windows {
        for r in &w.top_k {
            let entry = sums.entry(r.label_id).or_insert((0.0, r.label.as_str()));
            if r.score.is_finite() {
                entry.0 += f64::from(r.score);
            }
        }
    }
    let n = windows.len().max(1) as f64;
    let mut ranked: Vec<(usize, f64, &str)> = sums
        .into_iter()
        .map(|(id, (sum, label))| (id, sum / n, label))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked
        .into_iter()
        .enumerate()
        .map(|(i, (label_id, score, label))| Ranked {
            rank: i + 1,
            label_id,
            label: label.to_string(),
            score: score as f32,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::timeline::window_spans;

    /// Windows of `window_s` every `stride_s` over a clip whose class at time `t` is
    /// `truth(t)`: each window's top-1 is the class that fills most of it, scored by the share
    /// it fills; the runner-up (if any) gets the rest.
    fn windows_over(
        duration_s: f64,
        window_s: f64,
        stride_s: f64,
        truth: &dyn Fn(f64) -> usize,
    ) -> Vec<TimelineWindow> {
        window_spans(duration_s, window_s, stride_s)
            .into_iter()
            .map(|span| {
                let steps = 200;
                let mut share: BTreeMap<usize, f64> = BTreeMap::new();
                for k in 0..steps {
                    let t = span.start_s + (span.end_s - span.start_s) * (k as f64 + 0.5) / 200.0;
                    *share.entry(truth(t)).or_default() += 1.0 / f64::from(steps);
                }
                window(
                    span.start_s,
                    span.end_s,
                    &share.into_iter().collect::<Vec<_>>(),
                )
            })
            .collect()
    }

    fn window(start_s: f64, end_s: f64, scores: &[(usize, f64)]) -> TimelineWindow {
        let mut scores = scores.to_vec();
        scores.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        TimelineWindow {
            start_s,
            end_s,
            indices: Vec::new(),
            top_k: scores
                .iter()
                .enumerate()
                .map(|(i, &(id, s))| Ranked {
                    rank: i + 1,
                    label_id: id,
                    label: format!("c{id}"),
                    score: s as f32,
                })
                .collect(),
        }
    }

    fn check_rules(segs: &[Segment], duration_s: f64, fps: f64, covers: bool) {
        for s in segs {
            assert!(s.start_s >= 0.0 && s.end_s <= duration_s + 1e-9, "{s:?}");
            assert!(s.end_s > s.start_s, "{s:?}");
            for t in [s.start_s, s.end_s] {
                let f = t * fps;
                if t == duration_s {
                    continue;
                }
                assert!(
                    (f - f.round()).abs() < 1e-6,
                    "{t} is not on a frame boundary"
                );
            }
        }
        for pair in segs.windows(2) {
            assert!(pair[0].end_s <= pair[1].start_s + 1e-12, "{pair:?}");
            if covers {
                assert_eq!(pair[0].end_s, pair[1].start_s, "a gap: {pair:?}");
            }
        }
        if covers {
            assert_eq!(segs.first().map(|s| s.start_s), Some(0.0));
            assert!((segs.last().map_or(0.0, |s| s.end_s) - duration_s).abs() < 1e-9);
        }
    }

    fn opts(min_s: f64) -> SegmentOptions {
        SegmentOptions {
            min_s,
            ..SegmentOptions::default()
        }
    }

    #[test]
    fn boundaries_land_within_one_stride_of_the_truth() {
        // Classes 0 | 1 | 2 | 0 changing at 6.4 s, 13 s, 19.7 s of a 27.3 s clip at 25 fps.
        let cuts = [6.4, 13.0, 19.7];
        let truth = |t: f64| match t {
            t if t < 6.4 => 0,
            t if t < 13.0 => 1,
            t if t < 19.7 => 2,
            _ => 0,
        };
        let duration = 27.3;
        for (window_s, stride_s) in [(2.0, 1.0), (2.0, 0.5), (3.0, 1.0), (1.0, 1.0)] {
            let w = windows_over(duration, window_s, stride_s, &truth);
            let segs = segments_from_windows(&w, duration, 25.0, &opts(2.0));
            check_rules(&segs, duration, 25.0, true);
            let labels: Vec<usize> = segs.iter().map(|s| s.label_id).collect();
            assert_eq!(labels, [0, 1, 2, 0], "window {window_s} stride {stride_s}");
            for (seg, cut) in segs[1..].iter().zip(cuts) {
                assert!(
                    (seg.start_s - cut).abs() <= stride_s + 1e-9,
                    "window {window_s} stride {stride_s}: boundary {} for {cut}",
                    seg.start_s
                );
            }
            // Averaged top-k: re-ranked, the label first, the score the label's mean.
            for seg in &segs {
                assert_eq!(seg.top_k[0].label_id, seg.label_id);
                assert_eq!(seg.top_k[0].score, seg.score);
                assert!(seg.top_k.windows(2).all(|p| p[0].score >= p[1].score));
                assert_eq!(seg.label, format!("c{}", seg.label_id));
            }
        }
    }

    #[test]
    fn one_noisy_window_does_not_split_a_segment() {
        let duration = 20.0;
        let mut w = windows_over(duration, 2.0, 1.0, &|t| usize::from(t >= 10.0));
        // Window 4 says class 7, confidently.
        w[4] = window(w[4].start_s, w[4].end_s, &[(7, 0.9), (0, 0.1)]);
        // With no minimum length, hysteresis alone keeps it out.
        let segs = segments_from_windows(&w, duration, 30.0, &opts(0.0));
        let labels: Vec<usize> = segs.iter().map(|s| s.label_id).collect();
        assert_eq!(labels, [0, 1], "{segs:?}");
        check_rules(&segs, duration, 30.0, true);
        // The noise lowers the segment's mean score and shows in its top-k.
        assert!(segs[0].score < 1.0 && segs[0].top_k.iter().any(|r| r.label_id == 7));

        // Without hysteresis it splits; a minimum length of 2 s absorbs it again.
        let no_h = SegmentOptions {
            hysteresis: 1,
            min_s: 0.0,
            ..SegmentOptions::default()
        };
        assert_eq!(segments_from_windows(&w, duration, 30.0, &no_h).len(), 4);
        let min = SegmentOptions {
            hysteresis: 1,
            min_s: 2.0,
            ..SegmentOptions::default()
        };
        let labels: Vec<usize> = segments_from_windows(&w, duration, 30.0, &min)
            .iter()
            .map(|s| s.label_id)
            .collect();
        assert_eq!(labels, [0, 1]);
    }

    #[test]
    fn short_segments_join_the_neighbour_that_scores_higher() {
        // 0 for 8 s, 1 for 2.5 s, 2 for 8 s; 1's windows rate 2 above 0.
        let duration = 18.5;
        let mut w = windows_over(duration, 2.0, 1.0, &|t| match t {
            t if t < 8.0 => 0,
            t if t < 10.5 => 1,
            _ => 2,
        });
        for x in w.iter_mut() {
            if x.top_k[0].label_id == 1 {
                *x = window(x.start_s, x.end_s, &[(1, 0.5), (2, 0.3), (0, 0.2)]);
            }
        }
        let with_1 = segments_from_windows(&w, duration, 25.0, &opts(2.0));
        assert_eq!(with_1.len(), 3, "{with_1:?}");
        let segs = segments_from_windows(&w, duration, 25.0, &opts(4.0));
        let labels: Vec<usize> = segs.iter().map(|s| s.label_id).collect();
        assert_eq!(labels, [0, 2]);
        assert_eq!(
            segs[1].start_s, with_1[1].start_s,
            "class 2 took the short span"
        );
        check_rules(&segs, duration, 25.0, true);
    }

    #[test]
    fn low_scores_are_background() {
        // A confident 0, an unsure stretch from 6 s to 12 s, a confident 1.
        let duration = 18.0;
        let w: Vec<TimelineWindow> = window_spans(duration, 2.0, 1.0)
            .into_iter()
            .map(|s| {
                let c = (s.start_s + s.end_s) / 2.0;
                if c < 6.0 {
                    window(s.start_s, s.end_s, &[(0, 0.9), (1, 0.1)])
                } else if c < 12.0 {
                    window(s.start_s, s.end_s, &[(1, 0.35), (0, 0.33), (2, 0.32)])
                } else {
                    window(s.start_s, s.end_s, &[(1, 0.8), (0, 0.2)])
                }
            })
            .collect();
        let with_min = SegmentOptions {
            min_score: Some(0.5),
            ..opts(2.0)
        };
        let segs = segments_from_windows(&w, duration, 24.0, &with_min);
        check_rules(&segs, duration, 24.0, false);
        assert_eq!(segs.len(), 2, "{segs:?}");
        assert_eq!((segs[0].label_id, segs[1].label_id), (0, 1));
        assert!((segs[0].end_s - 6.0).abs() <= 1.0 && (segs[1].start_s - 12.0).abs() <= 1.0);
        assert!(segs[1].start_s - segs[0].end_s >= 4.0, "a background gap");
        assert!(segs.iter().all(|s| s.score >= 0.5));
        // Without a threshold the unsure stretch is class 1's and the clip is covered.
        let all = segments_from_windows(&w, duration, 24.0, &opts(2.0));
        check_rules(&all, duration, 24.0, true);
        assert_eq!(all.len(), 2);

        // Everything below the threshold: no segment at all.
        let none = SegmentOptions {
            min_score: Some(0.95),
            ..opts(2.0)
        };
        assert!(segments_from_windows(&w, duration, 24.0, &none).is_empty());
    }

    #[test]
    fn coverage_of_odd_clips_and_bad_input() {
        // Shorter than a window: one window, one segment over the whole clip.
        let w = vec![window(0.0, 1.3, &[(3, 0.6)])];
        let segs = segments_from_windows(&w, 1.3, 30.0, &opts(2.0));
        assert_eq!(segs.len(), 1);
        assert_eq!((segs[0].start_s, segs[0].end_s), (0.0, 1.3));
        // A duration off the frame grid ends at the clip's end, never past it.
        let duration = 7.0 + 1.0 / 60.0;
        let w = windows_over(duration, 2.0, 1.0, &|t| usize::from(t >= 3.0));
        let segs = segments_from_windows(&w, duration, 30.0, &opts(1.0));
        check_rules(&segs, duration, 30.0, false);
        assert!((segs.last().unwrap().end_s - duration).abs() < 1e-9);
        // Unsorted windows give the same result.
        let mut rev = w.clone();
        rev.reverse();
        assert_eq!(
            segments_from_windows(&rev, duration, 30.0, &opts(1.0)),
            segs
        );
        // Nothing to go on.
        assert!(segments_from_windows(&[], 10.0, 25.0, &opts(2.0)).is_empty());
        assert!(segments_from_windows(&w, f64::NAN, 25.0, &opts(2.0)).is_empty());
        assert!(segments_from_windows(&w, 0.0, 25.0, &opts(2.0)).is_empty());
        // A bad frame rate snaps to milliseconds; NaN scores and empty top-k do not panic.
        let mut odd = w.clone();
        odd[0].top_k[0].score = f32::NAN;
        odd[1].top_k.clear();
        let segs = segments_from_windows(&odd, duration, f64::NAN, &opts(f64::NAN));
        assert!(!segs.is_empty());
        check_rules(&segs, duration, 1000.0, false);
        // A huge hysteresis: no run wins; the clip is one segment of the best label.
        let big = SegmentOptions {
            hysteresis: 1000,
            ..opts(2.0)
        };
        let one = segments_from_windows(&w, duration, 30.0, &big);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].label_id, 1);
        check_rules(&one, duration, 30.0, true);
    }
}
