//! The segment track under the timeline strip: the clip's segments (`labels::segments`) as
//! labelled, coloured spans. Click selects, double-click seeks; a boundary drags (snapped to
//! frames, its time shown). Keys while a segment is selected: Enter accepts, 1-9 pick among its
//! top-k, L opens the label picker, S splits at the playhead, M merges with the next, Delete
//! removes, Escape deselects (the keys label the clip again); I / O mark in and out to add one
//! by hand; Ctrl+Z undoes any segment edit. Every
//! edit goes to the project saver at once. A list of the segments, filtered by status, sits
//! in the side panel.

use eframe::egui;

use super::Shared;
use super::batch_panel::status_name;
use super::labelling::DIGIT_KEYS;
use super::player_view::format_time;
use super::timeline_strip::{TimeView, label_color};
use crate::infer::segments::{SegmentOptions, propose_segments};
use crate::infer::timeline::TimelineRecord;
use crate::labels::project::ClipStatus;
use crate::labels::segments::{self, ClipSegment, Edge, ProposedSegment};
use crate::video::player::PlayerCmd;

/// Segment edits kept for Ctrl+Z.
const UNDO_DEPTH: usize = 200;
/// How close (in points) the pointer must be to a boundary to drag it.
const GRAB: f32 = 5.0;
pub const TRACK_HEIGHT: f32 = 24.0;

/// One edit to undo: the clip's segments before it.
struct Undo {
    clip: String,
    segments: Vec<ClipSegment>,
}

#[derive(Default)]
pub struct SegmentTrack {
    /// The selected segment of the clip in the player.
    pub selected: Option<usize>,
    drag: Option<(usize, Edge)>,
    mark_in: Option<f64>,
    undo: Vec<Undo>,
    filter: Option<ClipStatus>,
    /// The zoomed span (`None`: the whole clip). The wheel over the track zooms around the
    /// pointer, a horizontal scroll (or Shift + wheel) pans.
    zoom: Option<TimeView>,
}

/// What a key asked of the label picker: open it for segment `n`.
pub struct PickFor(pub usize);

/// The project index of the clip in the player.
fn current_index(shared: &Shared) -> Option<usize> {
    let path = shared.current_clip.as_ref()?;
    shared.project.as_ref()?.clip_index(path)
}

impl SegmentTrack {
    /// A new clip in the player: nothing selected, no marks. Undo entries stay (they name
    /// their clip).
    pub fn reset(&mut self) {
        self.selected = None;
        self.drag = None;
        self.mark_in = None;
        self.zoom = None;
    }

    /// The span shown of a clip of `duration` seconds.
    pub fn view(&self, duration: f64) -> TimeView {
        match self.zoom {
            Some(v) if v.end_s <= duration + 1e-9 => v,
            _ => TimeView::all(duration),
        }
    }

    /// Shows `[start_s, end_s)` of the clip (the whole clip for an empty or inverted span).
    pub fn zoom_to(&mut self, start_s: f64, end_s: f64) {
        self.zoom = (end_s > start_s).then_some(TimeView { start_s, end_s });
    }

    /// The wheel over the track: zoom around the pointer at `x` (vertical) and pan
    /// (horizontal); at least a second, at most the clip.
    fn zoom_ui(&mut self, ui: &egui::Ui, rect: egui::Rect, x: f32, duration: f64) {
        let delta = ui.input(|i| i.smooth_scroll_delta);
        if delta == egui::Vec2::ZERO {
            return;
        }
        let view = self.view(duration);
        let span = view.end_s - view.start_s;
        let at = view.t_of(x, rect);
        let factor = f64::from((-delta.y * 0.003).exp());
        let new_span = (span * factor).clamp(1.0_f64.min(duration), duration);
        let pan = -f64::from(delta.x / rect.width()) * new_span;
        let mut start = at - (at - view.start_s) * new_span / span + pan;
        start = start.clamp(0.0, (duration - new_span).max(0.0));
        self.zoom = (new_span < duration - 1e-9).then_some(TimeView {
            start_s: start,
            end_s: start + new_span,
        });
    }

    /// The model's segments from the finished timeline of the clip in the player
    /// (`infer::segments` with its defaults: `kineto segments`' answer), stored as
    /// [`SegmentTrack::offer_proposals`] says.
    pub fn propose_from(&mut self, shared: &mut Shared, record: &TimelineRecord, replace: bool) {
        let proposals = propose_segments(record, &SegmentOptions::default())
            .into_iter()
            .map(|s| ProposedSegment {
                start_s: s.start_s,
                end_s: s.end_s,
                top_k: s.top_k,
            })
            .collect();
        self.offer_proposals(shared, proposals, record.duration_s, record.fps, replace);
    }

    /// The model's proposals for the clip in the player, once its timeline is done: stored
    /// when the clip has no segments yet (a clip a person already segmented keeps its
    /// segments; "Propose again" replaces the predicted ones, and can be undone).
    pub fn offer_proposals(
        &mut self,
        shared: &mut Shared,
        proposals: Vec<ProposedSegment>,
        duration_s: f64,
        fps: f64,
        replace: bool,
    ) {
        let Some(idx) = current_index(shared) else {
            return;
        };
        let Some(project) = shared.project.as_mut() else {
            return;
        };
        if let Err(e) = project.set_clip_timing(idx, duration_s, fps) {
            return shared.error(e.to_string());
        }
        if !replace && !project.segments(idx).is_empty() {
            return;
        }
        let before = project.segments(idx).to_vec();
        let clip = project.clips[idx].path.clone();
        match project.set_segment_proposals(idx, proposals) {
            Ok(()) => {
                if replace {
                    self.push_undo(clip, before);
                }
                self.selected = None;
                shared.save_project_soon();
            }
            Err(e) => shared.error(e.to_string()),
        }
    }

    fn push_undo(&mut self, clip: String, segments: Vec<ClipSegment>) {
        if self.undo.len() == UNDO_DEPTH {
            self.undo.remove(0);
        }
        self.undo.push(Undo { clip, segments });
    }

    /// Runs one edit on the current clip's segments, with an undo entry and a save; an edit
    /// that is refused says why and changes nothing.
    fn edit<T>(
        &mut self,
        shared: &mut Shared,
        edit: impl FnOnce(&mut Vec<ClipSegment>, f64, f64) -> Result<T, String>,
    ) -> Option<T> {
        let idx = current_index(shared)?;
        let project = shared.project.as_mut()?;
        let before = project.segments(idx).to_vec();
        let clip = project.clips.get(idx)?.path.clone();
        match project.edit_segments(idx, edit) {
            Ok(out) => {
                self.push_undo(clip, before);
                shared.save_project();
                Some(out)
            }
            Err(e) => {
                shared.error(e.to_string());
                None
            }
        }
    }

    /// Undoes the last segment edit (of whichever clip it was; that clip must be open).
    pub fn undo(&mut self, shared: &mut Shared) {
        let Some(idx) = current_index(shared) else {
            return;
        };
        let Some(project) = shared.project.as_mut() else {
            return;
        };
        let Some(clip) = project.clips.get(idx).map(|c| c.path.clone()) else {
            return;
        };
        let Some(pos) = self.undo.iter().rposition(|u| u.clip == clip) else {
            return;
        };
        let entry = self.undo.remove(pos);
        match project.edit_segments(idx, |list, _, _| {
            *list = entry.segments;
            Ok(())
        }) {
            Ok(()) => {
                let count = project.segments(idx).len();
                self.selected = self.selected.filter(|&s| s < count);
                shared.save_project();
            }
            Err(e) => shared.error(e.to_string()),
        }
    }

    /// The segment keys (Player tab). Returns a request to open the label picker for a
    /// segment. Keys that concern a selected segment are consumed here, so that the clip's
    /// own labelling keys do not also act on them.
    pub fn keys(&mut self, ctx: &egui::Context, shared: &mut Shared) -> Option<PickFor> {
        let idx = current_index(shared)?;
        let position = shared.player.status().position_s;
        let none = egui::Modifiers::NONE;
        let (undo, mark_in, mark_out, escape) = ctx.input_mut(|i| {
            (
                i.consume_key(egui::Modifiers::COMMAND, egui::Key::Z),
                i.consume_key(none, egui::Key::I),
                i.consume_key(none, egui::Key::O),
                i.key_pressed(egui::Key::Escape),
            )
        });
        if escape {
            // Back to labelling the clip as a whole.
            self.selected = None;
            self.mark_in = None;
        }
        if undo {
            self.undo(shared);
        }
        if mark_in {
            self.mark_in = Some(position);
        }
        if mark_out {
            match self.mark_in.take() {
                Some(start) => {
                    if let Some(i) = self.edit(shared, |list, fps, duration| {
                        segments::add(list, start, position, fps, duration)
                    }) {
                        self.selected = Some(i);
                    }
                }
                None => shared.error("press I at the segment's start first, then O at its end"),
            }
        }
        let count = shared.project.as_ref()?.segments(idx).len();
        let seg = self.selected.filter(|&s| s < count)?;
        let (digit, enter, picker, split, merge, delete) = ctx.input_mut(|i| {
            let digit = (DIGIT_KEYS.iter().position(|k| i.consume_key(none, *k))).map(|n| n + 1);
            (
                digit,
                i.consume_key(none, egui::Key::Enter),
                i.consume_key(none, egui::Key::L),
                i.consume_key(none, egui::Key::S),
                i.consume_key(none, egui::Key::M),
                i.consume_key(none, egui::Key::Delete) || i.consume_key(none, egui::Key::Backspace),
            )
        });
        if let Some(n) = digit {
            let top = shared.project.as_ref()?.segments(idx)[seg]
                .top_k()
                .get(n - 1);
            if let Some(label_id) = top.map(|r| r.label_id) {
                self.label(shared, seg, label_id);
            }
        }
        if enter {
            self.edit(shared, |list, _, _| {
                if list[seg].accept() {
                    Ok(())
                } else {
                    Err("this segment has no prediction to accept; pick a label (L)".into())
                }
            });
        }
        if split {
            self.edit(shared, |list, fps, _| {
                segments::split(list, seg, position, fps)
            });
        }
        if merge {
            self.edit(shared, |list, _, _| segments::merge_with_next(list, seg));
        }
        if delete
            && self
                .edit(shared, |list, _, _| segments::remove(list, seg))
                .is_some()
        {
            self.selected = None;
        }
        picker.then_some(PickFor(seg))
    }

    /// Labels segment `seg` of the clip in the player with class `label_id`.
    pub fn label(&mut self, shared: &mut Shared, seg: usize, label_id: usize) {
        let Some(names) = shared.project.as_ref().map(|p| p.label_set.labels.clone()) else {
            return;
        };
        let Some(name) = names.get(label_id).cloned() else {
            return;
        };
        self.edit(shared, |list, _, _| {
            let count = list.len();
            let s = list
                .get_mut(seg)
                .ok_or(format!("no segment {} (the clip has {count})", seg + 1))?;
            s.set_label(label_id, name);
            Ok(())
        });
    }

    /// The track: segments drawn over the clip's length, the playhead, the in mark.
    pub fn track_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared, duration: f64) {
        let (rect, response) = ui.allocate_exact_size(
            egui::vec2(ui.available_width(), TRACK_HEIGHT),
            egui::Sense::click_and_drag(),
        );
        response
            .widget_info(|| egui::WidgetInfo::labeled(egui::Role::Group, true, "segment track"));
        let painter = ui.painter_at(rect);
        painter.rect_filled(rect, 2.0, ui.visuals().extreme_bg_color);
        let Some(idx) = current_index(shared) else {
            return;
        };
        if duration <= 0.0 {
            return;
        }
        if let Some(p) = response.hover_pos() {
            self.zoom_ui(ui, rect, p.x, duration);
        }
        let view = self.view(duration);
        let x_of = |t: f64| view.x_of(t, rect);
        let t_of = |x: f32| view.t_of(x, rect);
        let position = shared.player.status().position_s;
        let selected = self.selected;
        let pointer = response.interact_pointer_pos();
        let hover = response.hover_pos();
        // Read and paint with the project borrowed; act once it is released.
        let (hover_edge, grab, under_click, hover_text) = {
            let Some(project) = shared.project.as_ref() else {
                return;
            };
            let list = project.segments(idx);
            paint_segments(ui, &painter, rect, list, selected, view);
            painter.line_segment(
                [
                    egui::pos2(x_of(position), rect.top()),
                    egui::pos2(x_of(position), rect.bottom()),
                ],
                egui::Stroke::new(2.0, ui.visuals().strong_text_color()),
            );
            if let Some(t) = self.mark_in {
                // The in mark: a dashed line where the segment being marked starts.
                painter.add(egui::Shape::dashed_line(
                    &[
                        egui::pos2(x_of(t), rect.top()),
                        egui::pos2(x_of(t), rect.bottom()),
                    ],
                    egui::Stroke::new(2.0, ui.visuals().warn_fg_color),
                    3.0,
                    2.0,
                ));
            }
            // The boundary under the pointer; the selected segment's wins a tie.
            let near_edge = |x: f32| -> Option<(usize, Edge)> {
                let mut best: Option<(f32, usize, Edge)> = None;
                for (i, s) in list.iter().enumerate() {
                    if s.end_s < view.start_s || s.start_s > view.end_s {
                        continue;
                    }
                    for (edge, t) in [(Edge::Start, s.start_s), (Edge::End, s.end_s)] {
                        let bonus = if selected == Some(i) { 1.0 } else { 0.0 };
                        let d = (x_of(t) - x).abs() - bonus;
                        if d <= GRAB && best.is_none_or(|(b, _, _)| d < b) {
                            best = Some((d, i, edge));
                        }
                    }
                }
                best.map(|(_, i, e)| (i, e))
            };
            let hover_edge = hover.and_then(|p| near_edge(p.x));
            // A drag starts once the pointer has moved a little: grab what was under the
            // press, not under the pointer now.
            let grab = if response.drag_started() {
                let origin = ui.input(|i| i.pointer.press_origin()).or(pointer);
                origin.and_then(|p| near_edge(p.x))
            } else {
                None
            };
            let under_click = pointer
                .and_then(|p| segments::at_time(list, t_of(p.x)))
                .map(|i| (i, list[i].start_s));
            let hover_text = hover
                .and_then(|p| segments::at_time(list, t_of(p.x)))
                .map(|i| segment_hover_lines(i, &list[i]));
            (hover_edge, grab, under_click, hover_text)
        };
        if hover_edge.is_some() || self.drag.is_some() {
            ui.ctx().set_cursor_icon(egui::CursorIcon::ResizeHorizontal);
        }
        if let Some((i, start)) =
            under_click.filter(|_| response.clicked() || response.double_clicked())
        {
            self.selected = Some(i);
            if response.double_clicked() {
                shared.player.send(PlayerCmd::Seek {
                    position_s: start,
                    accurate: true,
                });
            }
        }
        if let Some((i, edge)) = grab
            && let Some(project) = shared.project.as_ref()
        {
            self.selected = Some(i);
            self.drag = Some((i, edge));
            let clip = project.clips[idx].path.clone();
            let before = project.segments(idx).to_vec();
            self.push_undo(clip, before);
        }
        if response.dragged()
            && let (Some((i, edge)), Some(p)) = (self.drag, pointer)
            && let Some(project) = shared.project.as_mut()
        {
            let t = t_of(p.x);
            let moved = project.edit_segments(idx, |list, fps, duration| {
                segments::move_edge(list, i, edge, t, fps, duration)
            });
            if let Ok(landed) = moved {
                response.clone().on_hover_ui_at_pointer(|ui| {
                    ui.label(format!("{} ({landed:.3} s)", format_time(landed)));
                });
            }
        }
        if response.drag_stopped() && self.drag.take().is_some() {
            shared.save_project();
        }
        if self.drag.is_none()
            && let Some(lines) = hover_text
        {
            response.on_hover_ui_at_pointer(|ui| {
                for line in lines {
                    ui.label(line);
                }
                ui.weak("click: select · double-click: seek · drag a boundary");
            });
        }
    }

    /// The list of the clip's segments (filtered by status) for the side panel; `record`, the
    /// clip's finished timeline, offers "Propose again".
    pub fn list_ui(
        &mut self,
        ui: &mut egui::Ui,
        shared: &mut Shared,
        record: Option<&TimelineRecord>,
    ) {
        let Some(idx) = current_index(shared) else {
            return;
        };
        let count = shared.project.as_ref().map_or(0, |p| p.segments(idx).len());
        ui.horizontal(|ui| {
            ui.strong(format!("Segments ({count})"));
            egui::ComboBox::from_id_salt("kineto.segment_filter")
                .selected_text(self.filter.map_or("all", ClipStatus::as_str))
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.filter, None, "all");
                    for s in [
                        ClipStatus::Predicted,
                        ClipStatus::Accepted,
                        ClipStatus::Corrected,
                        ClipStatus::Unlabelled,
                    ] {
                        ui.selectable_value(&mut self.filter, Some(s), s.as_str());
                    }
                });
            if let Some(record) = record
                && ui
                    .button("Propose again")
                    .on_hover_text(
                        "the model's segments replace the predicted ones; what you labelled or \
                         marked stays (Ctrl+Z undoes)",
                    )
                    .clicked()
            {
                self.propose_from(shared, record, true);
            }
        });
        let Some(project) = shared.project.as_ref() else {
            return;
        };
        let list = project.segments(idx);
        if list.is_empty() {
            ui.weak("none yet: they are proposed when the timeline is done; I / O mark one");
            return;
        }
        let mut seek = None;
        let rows: Vec<usize> = (0..list.len())
            .filter(|&i| self.filter.is_none_or(|f| list[i].status == f))
            .collect();
        let row_height = ui.text_style_height(&egui::TextStyle::Body) + 4.0;
        egui::ScrollArea::vertical()
            .id_salt("kineto.segment_list")
            .max_height(220.0)
            .show_rows(ui, row_height, rows.len(), |ui, range| {
                for &i in &rows[range] {
                    let s = &list[i];
                    let text = format!(
                        "{}  {}–{}  {}  · {}",
                        i + 1,
                        format_time(s.start_s),
                        format_time(s.end_s),
                        s.label.as_deref().unwrap_or("(unlabelled)"),
                        status_name(Some(s.status)),
                    );
                    let row = ui.selectable_label(self.selected == Some(i), text);
                    if row.clicked() {
                        self.selected = Some(i);
                    }
                    if row.double_clicked() {
                        seek = Some(s.start_s);
                    }
                }
            });
        ui.weak("Enter accept · 1-9 pick · L other label · S split · M merge · Del remove · Esc deselect · I/O mark · Ctrl+Z undo");
        if let Some(position_s) = seek {
            shared.player.send(PlayerCmd::Seek {
                position_s,
                accurate: true,
            });
        }
    }
}

/// Paints the segments: colour by label (predicted ones paler, unlabelled grey), a frame
/// around the selected one, the label where it fits.
fn paint_segments(
    ui: &egui::Ui,
    painter: &egui::Painter,
    rect: egui::Rect,
    list: &[ClipSegment],
    selected: Option<usize>,
    view: TimeView,
) {
    let dark = ui.visuals().dark_mode;
    // Only the segments in view (the list is sorted).
    let first = list.partition_point(|s| s.end_s <= view.start_s);
    for (i, s) in list.iter().enumerate().skip(first) {
        if s.start_s >= view.end_s {
            break;
        }
        let x0 = view.x_of(s.start_s, rect);
        let x1 = view.x_of(s.end_s, rect).max(x0 + 1.0);
        let r = egui::Rect::from_min_max(egui::pos2(x0, rect.top()), egui::pos2(x1, rect.bottom()));
        let color = match (s.status, s.label_id) {
            (ClipStatus::Unlabelled, _) | (_, None) => egui::Color32::GRAY,
            (ClipStatus::Predicted, Some(id)) => label_color(id, dark).gamma_multiply(0.55),
            (_, Some(id)) => label_color(id, dark),
        };
        painter.rect_filled(r.shrink2(egui::vec2(0.5, 2.0)), 2.0, color);
        if selected == Some(i) {
            painter.rect_stroke(
                r,
                2.0,
                egui::Stroke::new(2.0, ui.visuals().strong_text_color()),
                egui::StrokeKind::Inside,
            );
        }
        if s.status.is_confirmed() {
            // Confirmed by a person: a dark bar along the bottom.
            let bar = egui::Rect::from_min_max(
                egui::pos2(r.left() + 1.0, r.bottom() - 4.0),
                egui::pos2(r.right() - 1.0, r.bottom() - 2.0),
            );
            painter.rect_filled(bar, 0.0, egui::Color32::from_black_alpha(160));
        }
        if r.width() > 50.0 {
            painter.text(
                r.left_center() + egui::vec2(4.0, 0.0),
                egui::Align2::LEFT_CENTER,
                s.label.as_deref().unwrap_or("(unlabelled)"),
                egui::FontId::proportional(11.0),
                egui::Color32::BLACK,
            );
        }
    }
}

/// The hover text of segment `i`: its span, label and status, then its top-k.
fn segment_hover_lines(i: usize, s: &ClipSegment) -> Vec<String> {
    let mut lines = vec![format!(
        "segment {}: {} – {} · {} · {}",
        i + 1,
        format_time(s.start_s),
        format_time(s.end_s),
        s.label.as_deref().unwrap_or("(unlabelled)"),
        status_name(Some(s.status))
    )];
    lines.extend(
        s.top_k()
            .iter()
            .map(|r| format!("{}. {}  {:.1}%", r.rank, r.label, r.score * 100.0)),
    );
    lines
}
