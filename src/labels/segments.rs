//! Segments of a clip: spans of time `[start_s, end_s)` with a label, for long, untrimmed
//! videos. A clip's segments are sorted, never overlap, lie inside the clip and are at least one
//! frame long; times are snapped to frame boundaries (`k / fps`). Proposals come from the model
//! (`predicted`); a person accepts, corrects, moves, splits, merges, removes or adds them.
//!
//! The editing functions work on a clip's list and keep those rules: what would break one is
//! refused with a sentence saying why (the window shows it), the list left as it was.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::project::{ClipPrediction, ClipStatus, now_rfc3339};
use crate::report::Ranked;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipSegment {
    pub start_s: f64,
    pub end_s: f64,
    #[serde(default)]
    pub status: ClipStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_id: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// The model's proposal: the top-k averaged over the windows merged into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<ClipPrediction>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A segment the model proposes (`infer::segments` makes them from a timeline).
#[derive(Clone, Debug, PartialEq)]
pub struct ProposedSegment {
    pub start_s: f64,
    pub end_s: f64,
    /// Best first; the first is the segment's label.
    pub top_k: Vec<Ranked>,
}

impl ClipSegment {
    /// A segment marked by hand, not yet labelled.
    pub fn unlabelled(start_s: f64, end_s: f64) -> Self {
        Self {
            start_s,
            end_s,
            status: ClipStatus::Unlabelled,
            label_id: None,
            label: None,
            updated_at: Some(now_rfc3339()),
            prediction: None,
            extra: Map::new(),
        }
    }

    fn proposed(p: ProposedSegment) -> Option<Self> {
        let top1 = p.top_k.first()?.clone();
        Some(Self {
            start_s: p.start_s,
            end_s: p.end_s,
            status: ClipStatus::Predicted,
            label_id: Some(top1.label_id),
            label: Some(top1.label),
            updated_at: Some(now_rfc3339()),
            prediction: Some(ClipPrediction {
                top_k: p.top_k,
                extra: Map::new(),
            }),
            extra: Map::new(),
        })
    }

    pub fn duration_s(&self) -> f64 {
        self.end_s - self.start_s
    }

    /// The predicted top-k (empty for a segment marked by hand).
    pub fn top_k(&self) -> &[Ranked] {
        self.prediction.as_ref().map_or(&[], |p| p.top_k.as_slice())
    }

    /// Labels the segment: the predicted top-1 is an acceptance, anything else a correction.
    pub fn set_label(&mut self, label_id: usize, label: String) {
        let top1 = self.top_k().first().map(|r| r.label_id);
        self.status = if top1 == Some(label_id) {
            ClipStatus::Accepted
        } else {
            ClipStatus::Corrected
        };
        self.label_id = Some(label_id);
        self.label = Some(label);
        self.updated_at = Some(now_rfc3339());
    }

    /// Accepts the predicted label; `false` when there is none.
    pub fn accept(&mut self) -> bool {
        let Some(top1) = self.top_k().first().cloned() else {
            return false;
        };
        self.status = ClipStatus::Accepted;
        self.label_id = Some(top1.label_id);
        self.label = Some(top1.label);
        self.updated_at = Some(now_rfc3339());
        true
    }

    fn touch(&mut self) {
        self.updated_at = Some(now_rfc3339());
    }
}

/// Time `t` on the nearest frame boundary (`fps` <= 0: left as it is).
pub fn snap(t: f64, fps: f64) -> f64 {
    if fps > 0.0 && fps.is_finite() {
        (t * fps).round() / fps
    } else {
        t
    }
}

/// The shortest segment: one frame (1 ms when the frame rate is unknown).
fn min_len(fps: f64) -> f64 {
    if fps > 0.0 && fps.is_finite() {
        1.0 / fps
    } else {
        1e-3
    }
}

/// Why a list of segments breaks the rules (`None`: it keeps them); `duration_s` <= 0 skips the
/// end check.
pub fn check(segments: &[ClipSegment], duration_s: f64) -> Option<String> {
    let mut prev_end = 0.0;
    for (i, s) in segments.iter().enumerate() {
        if !(s.start_s.is_finite() && s.end_s.is_finite()) {
            return Some(format!("segment {i}: its times are not finite numbers"));
        }
        if s.start_s < -1e-9 || s.end_s <= s.start_s {
            return Some(format!(
                "segment {i}: [{}, {}) is not a span of time",
                s.start_s, s.end_s
            ));
        }
        if s.start_s < prev_end - 1e-9 {
            return Some(format!(
                "segment {i}: starts at {} s, before the previous one ends ({prev_end} s)",
                s.start_s
            ));
        }
        if duration_s > 0.0 && s.end_s > duration_s + 1e-6 {
            return Some(format!(
                "segment {i}: ends at {} s, after the clip ({duration_s} s)",
                s.end_s
            ));
        }
        prev_end = s.end_s;
    }
    None
}

/// Replaces the predicted segments with `proposals`; segments a person labelled, or marked by
/// hand, stay, and a proposal overlapping one of them is cut to the free time around it
/// (what is left shorter than a frame goes).
pub fn apply_proposals(segments: &mut Vec<ClipSegment>, proposals: Vec<ProposedSegment>, fps: f64) {
    let kept: Vec<ClipSegment> = segments
        .drain(..)
        .filter(|s| s.status != ClipStatus::Predicted)
        .collect();
    let mut out = kept.clone();
    for p in proposals {
        // The free pieces of [p.start, p.end) between the kept segments.
        let mut pieces = vec![(p.start_s, p.end_s)];
        for k in &kept {
            pieces = pieces
                .into_iter()
                .flat_map(|(a, b)| {
                    if k.end_s <= a || k.start_s >= b {
                        vec![(a, b)]
                    } else {
                        vec![(a, k.start_s), (k.end_s, b)]
                    }
                })
                .filter(|(a, b)| b - a >= min_len(fps) - 1e-9)
                .collect();
        }
        for (a, b) in pieces {
            if let Some(s) = ClipSegment::proposed(ProposedSegment {
                start_s: a,
                end_s: b,
                top_k: p.top_k.clone(),
            }) {
                out.push(s);
            }
        }
    }
    out.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    *segments = out;
}

/// Adds a segment `[start_s, end_s)` marked by hand (snapped to frames); its index.
pub fn add(
    segments: &mut Vec<ClipSegment>,
    start_s: f64,
    end_s: f64,
    fps: f64,
    duration_s: f64,
) -> Result<usize, String> {
    let (mut start, mut end) = (snap(start_s.min(end_s), fps), snap(start_s.max(end_s), fps));
    start = start.max(0.0);
    if duration_s > 0.0 {
        end = end.min(duration_s);
    }
    if end - start < min_len(fps) - 1e-9 {
        return Err(
            "mark an out point after the in point (a segment is at least one frame)".into(),
        );
    }
    if let Some(other) = segments
        .iter()
        .position(|s| s.start_s < end - 1e-9 && s.end_s > start + 1e-9)
    {
        return Err(format!(
            "it would overlap segment {} ({:.2}-{:.2} s); segments never overlap",
            other + 1,
            segments[other].start_s,
            segments[other].end_s
        ));
    }
    let at = segments.partition_point(|s| s.start_s < start);
    segments.insert(at, ClipSegment::unlabelled(start, end));
    Ok(at)
}

/// Which boundary of a segment a drag moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    Start,
    End,
}

/// Moves one boundary of segment `i` to `t` (snapped to a frame, kept between its neighbours
/// and at least one frame from its other boundary); the time it landed on.
pub fn move_edge(
    segments: &mut [ClipSegment],
    i: usize,
    edge: Edge,
    t: f64,
    fps: f64,
    duration_s: f64,
) -> Result<f64, String> {
    let count = segments.len();
    let Some(seg) = segments.get(i) else {
        return Err(format!("no segment {} (the clip has {count})", i + 1));
    };
    let one = min_len(fps);
    let t = snap(t, fps);
    let landed = match edge {
        Edge::Start => {
            let low = if i == 0 { 0.0 } else { segments[i - 1].end_s };
            t.clamp(low, seg.end_s - one)
        }
        Edge::End => {
            let high = match segments.get(i + 1) {
                Some(next) => next.start_s,
                None if duration_s > 0.0 => duration_s,
                None => f64::MAX,
            };
            t.clamp(seg.start_s + one, high)
        }
    };
    let seg = &mut segments[i];
    match edge {
        Edge::Start => seg.start_s = landed,
        Edge::End => seg.end_s = landed,
    }
    seg.touch();
    Ok(landed)
}

/// Splits segment `i` at `t` (snapped; at least a frame from either end): two segments with
/// its label, status and prediction.
pub fn split(segments: &mut Vec<ClipSegment>, i: usize, t: f64, fps: f64) -> Result<(), String> {
    let count = segments.len();
    let Some(seg) = segments.get(i) else {
        return Err(format!("no segment {} (the clip has {count})", i + 1));
    };
    let t = snap(t, fps);
    let one = min_len(fps);
    if t < seg.start_s + one - 1e-9 || t > seg.end_s - one + 1e-9 {
        return Err(format!(
            "the playhead ({t:.2} s) is not inside the segment ({:.2}-{:.2} s)",
            seg.start_s, seg.end_s
        ));
    }
    let mut second = seg.clone();
    second.start_s = t;
    second.touch();
    segments[i].end_s = t;
    segments[i].touch();
    segments.insert(i + 1, second);
    Ok(())
}

/// Merges segment `i` with the next one: one segment over both (and the gap between them)
/// with segment `i`'s label.
pub fn merge_with_next(segments: &mut Vec<ClipSegment>, i: usize) -> Result<(), String> {
    if i + 1 >= segments.len() {
        return Err("no next segment to merge with".into());
    }
    let next = segments.remove(i + 1);
    let seg = &mut segments[i];
    seg.end_s = next.end_s;
    seg.touch();
    Ok(())
}

/// Removes segment `i`.
pub fn remove(segments: &mut Vec<ClipSegment>, i: usize) -> Result<ClipSegment, String> {
    if i >= segments.len() {
        return Err(format!(
            "no segment {} (the clip has {})",
            i + 1,
            segments.len()
        ));
    }
    Ok(segments.remove(i))
}

/// The index of the segment under time `t`.
pub fn at_time(segments: &[ClipSegment], t: f64) -> Option<usize> {
    let i = segments.partition_point(|s| s.start_s <= t);
    (i > 0 && t < segments[i - 1].end_s).then(|| i - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked(id: usize, score: f32) -> Ranked {
        Ranked {
            rank: 1,
            label_id: id,
            label: format!("c{id}"),
            score,
        }
    }

    fn proposal(a: f64, b: f64, id: usize) -> ProposedSegment {
        ProposedSegment {
            start_s: a,
            end_s: b,
            top_k: vec![ranked(id, 0.8), ranked(id + 1, 0.1)],
        }
    }

    fn three() -> Vec<ClipSegment> {
        let mut s = Vec::new();
        apply_proposals(
            &mut s,
            vec![
                proposal(0.0, 4.0, 0),
                proposal(4.0, 9.0, 1),
                proposal(9.0, 12.0, 2),
            ],
            25.0,
        );
        s
    }

    fn spans(s: &[ClipSegment]) -> Vec<(f64, f64)> {
        s.iter().map(|s| (s.start_s, s.end_s)).collect()
    }

    #[test]
    fn proposals_replace_predictions_and_keep_what_a_person_labelled() {
        let mut s = three();
        assert_eq!(s[1].status, ClipStatus::Predicted);
        assert_eq!(s[1].label.as_deref(), Some("c1"));
        s[1].set_label(5, "c5".into());
        assert_eq!(s[1].status, ClipStatus::Corrected);
        apply_proposals(&mut s, vec![proposal(0.0, 12.0, 3)], 25.0);
        // The corrected [4, 9) stays; the new proposal fills the time around it.
        assert_eq!(spans(&s), [(0.0, 4.0), (4.0, 9.0), (9.0, 12.0)]);
        assert_eq!(s[1].label.as_deref(), Some("c5"));
        assert_eq!(s[0].label.as_deref(), Some("c3"));
        assert!(check(&s, 12.0).is_none());
    }

    #[test]
    fn edits_keep_segments_sorted_apart_and_on_frames() {
        let mut s = three();
        // A boundary dragged past its neighbour stops at it; times land on frames.
        let t = move_edge(&mut s, 1, Edge::Start, 1.013, 25.0, 12.0).unwrap();
        assert_eq!(t, 4.0, "clamped to the previous segment's end");
        let t = move_edge(&mut s, 0, Edge::End, 3.013, 25.0, 12.0).unwrap();
        assert!((t - 3.0).abs() < 1e-9, "snapped to a 25 fps frame: {t}");
        assert!(move_edge(&mut s, 9, Edge::End, 1.0, 25.0, 12.0).is_err());

        split(&mut s, 1, 6.61, 25.0).unwrap();
        assert_eq!(spans(&s), [(0.0, 3.0), (4.0, 6.6), (6.6, 9.0), (9.0, 12.0)]);
        assert_eq!(s[2].label, s[1].label);
        assert!(split(&mut s, 1, 9.5, 25.0).is_err(), "outside the segment");

        merge_with_next(&mut s, 1).unwrap();
        assert_eq!(spans(&s), [(0.0, 3.0), (4.0, 9.0), (9.0, 12.0)]);
        assert!(merge_with_next(&mut s, 2).is_err(), "the last has no next");

        // By hand: into the gap [3, 4) only.
        assert!(add(&mut s, 2.0, 3.5, 25.0, 12.0).is_err(), "overlaps");
        let i = add(&mut s, 3.5, 3.0, 25.0, 12.0).unwrap();
        assert_eq!(i, 1);
        assert_eq!(s[1].status, ClipStatus::Unlabelled);
        assert!(add(&mut s, 3.5, 3.51, 25.0, 12.0).is_err(), "under a frame");

        remove(&mut s, 1).unwrap();
        assert_eq!(at_time(&s, 3.5), None);
        assert_eq!(at_time(&s, 4.0), Some(1));
        assert_eq!(at_time(&s, 11.99), Some(2));
        assert!(check(&s, 12.0).is_none());
    }

    #[test]
    fn check_names_what_breaks_the_rules() {
        let mut s = three();
        s[1].start_s = 3.0;
        assert!(
            check(&s, 12.0)
                .unwrap()
                .contains("before the previous one ends")
        );
        let mut s = three();
        s[2].end_s = f64::NAN;
        assert!(check(&s, 12.0).unwrap().contains("not finite"));
        let s = three();
        assert!(check(&s, 10.0).unwrap().contains("after the clip"));
    }

    #[test]
    fn accept_and_label() {
        let mut s = three();
        assert!(s[0].accept());
        assert_eq!(s[0].status, ClipStatus::Accepted);
        s[2].set_label(2, "c2".into());
        assert_eq!(
            s[2].status,
            ClipStatus::Accepted,
            "the top-1 picked is an acceptance"
        );
        let mut by_hand = ClipSegment::unlabelled(0.0, 1.0);
        assert!(!by_hand.accept());
        by_hand.set_label(1, "c1".into());
        assert_eq!(by_hand.status, ClipStatus::Corrected);
    }
}
