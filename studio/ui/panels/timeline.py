"""The timeline: keyframes (requests with explicit latent values) and how each segment moves, frame rate and loop,
a scrubber that previews any frame, the sound and its audio-reactive mappings, and the video export.

Every edit goes through the session as an undoable step (a spin folds into one step); the panel rebuilds from
`session.timeline` on `timeline_changed`, with signals blocked so that filling never echoes back as an edit.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from pathlib import Path
from typing import Callable, cast

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox,
                               QHBoxLayout, QHeaderView, QLabel, QListWidget, QPushButton, QSlider, QTableWidget,
                               QTableWidgetItem,
                               QToolButton, QVBoxLayout, QWidget)

from studio.app.playback import Playback, PlaybackMeter

from studio.latent.interp import MODES
from studio.latent.paths import EASINGS
from studio.latent.reactive import ENVELOPES
from studio.params import RAW, Kind, ParamTable
from studio.project.timeline import MAX_FPS, TARGETS, sound_path
from studio.request import RenderRequest
from studio.ui import dialogs, export_dialogs
from studio.ui.panels.timeline_track import KeyframeThumbnails, SoundSketcher, TimelineTrack, curve_colour

MIN_DURATION, MAX_DURATION = 0.1, 600.0
MAX_OFFERED_INDEXED = 32  # an indexed number param (d0 …) is offered as mapping targets up to this many values
DRIVEN_KINDS = (Kind.FLOAT,)  # an envelope adds fractions: whole-number params (steps, layers) cannot take them
MAPPING_COLUMNS = ("Envelope", "Target", "Gain", "Attack", "Release")
SENT_KEPT = 64  # frames sent while playing that are remembered (a render finishing later than that is not counted)
IN_FLIGHT_WAIT_S = 2.0  # a frame sent this long ago with no render since (failed, cancelled) no longer holds play


def seconds_text(value: float) -> str:
    """Seconds for a label: one decimal, two where they matter (0.25), never a float's tail (4.99964 → 5.00)."""
    return f"{value:.1f}" if round(value, 1) == round(value, 2) else f"{value:.2f}"


def _span_frames(timeline) -> int:
    """The frames a video of `timeline` has: those between its in and out points."""
    first, stop = timeline.frame_span()
    return stop - first


def keyframe_text(index: int, key) -> str:
    return (f"{index + 1}  {key.name or 'keyframe'}  {seconds_text(key.duration)} s  {key.interpolation}  "
            f"{key.easing}")


def _spin(low: float, high: float, step: float, decimals: int, name: str, tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setObjectName(name)
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setDecimals(decimals)
    spin.setKeyboardTracking(False)  # typing "12" is one edit, not "1" then "12"
    spin.setToolTip(tip)
    return spin


def _button(text: str, name: str, tip: str) -> QPushButton:
    button = QPushButton(text)
    button.setObjectName(name)
    button.setToolTip(tip)
    return button


class TimelinePanel(QWidget):
    exported = Signal(object)  # Path: a video export finished

    def __init__(self, session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.setObjectName("timelinePanel")
        self._gesture = 0  # bumped when a gesture ends: spins of one gesture fold into one undo step
        self._select_after: int | None = None  # the keyframe row to select after the next rebuild (a move, an add)
        self._filling = False

        # keyframes
        self.keyframes = QListWidget()
        self.keyframes.setObjectName("keyframeList")
        self.keyframes.setToolTip("The keyframes, in order: the animation passes through each")
        self.add_current = _button("Add Keyframe", "addKeyframe", "Add the current request as a keyframe at the "
                                   "playhead (the segment there is split: the other keyframes keep their times; at "
                                   "or after the end it is appended). Its latent values are computed first")
        self.library = QComboBox()
        self.library.setObjectName("keyframeLibrary")
        self.library.setToolTip("A saved latent of the library to add as a keyframe")
        self.add_library = _button("Add from Library", "addKeyframeFromLibrary",
                                   "Add the chosen saved latent as a keyframe (with the current request's settings)")
        self.remove = _button("Remove", "removeKeyframe", "Remove the selected keyframe (undoable)")
        self.up = _button("Up", "keyframeUp", "Move the selected keyframe earlier")
        self.down = _button("Down", "keyframeDown", "Move the selected keyframe later")
        add_row = QHBoxLayout()
        add_row.addWidget(self.library, 1)
        add_row.addWidget(self.add_library)
        list_buttons = QHBoxLayout()
        for button in (self.remove, self.up, self.down):
            list_buttons.addWidget(button)
        list_buttons.addStretch(1)

        # the selected keyframe
        self.duration = _spin(MIN_DURATION, MAX_DURATION, 0.1, 2, "keyframeDuration",
                              "Seconds from this keyframe to the next (the last one's counts only when looping)")
        self.interpolation = QComboBox()
        self.interpolation.setObjectName("keyframeInterpolation")
        self.interpolation.addItems(list(MODES))
        self.interpolation.setToolTip("slerp follows the sphere where Gaussian latents live; lerp is a straight line")
        self.easing = QComboBox()
        self.easing.setObjectName("keyframeEasing")
        self.easing.addItems(list(EASINGS))
        self.easing.setToolTip("How the segment leaving this keyframe speeds up and slows down")
        key_form = QFormLayout()
        key_form.addRow("Duration (s)", self.duration)
        key_form.addRow("Interpolation", self.interpolation)
        key_form.addRow("Easing", self.easing)

        # timeline settings and the scrubber
        self.fps = _spin(1.0, MAX_FPS, 1.0, 3, "timelineFps", "Frames per second of the animation")
        self.loop = QCheckBox("Loop")
        self.loop.setObjectName("timelineLoop")
        self.loop.setToolTip("Go back from the last keyframe to the first (the last keyframe's duration)")
        self.total = QLabel()
        self.total.setObjectName("timelineTotal")
        self.hint = QLabel("Add two keyframes to animate")
        self.hint.setObjectName("timelineHint")
        self.hint.setWordWrap(True)
        self.scrubber = QSlider(Qt.Orientation.Horizontal)
        self.scrubber.setObjectName("scrubber")
        self.scrubber.setToolTip("Drag to preview any frame (the current request stays as it is)")
        self.time = QLabel()
        self.time.setObjectName("scrubTime")
        scrub_row = QHBoxLayout()
        scrub_row.addWidget(QLabel("Frame"))
        scrub_row.addWidget(self.scrubber, 1)

        # audio
        self.sound_button = _button("Sound…", "timelineSound", "Choose the sound of the animation (its track in the "
                                    "video and the source of the audio mappings)")
        self.sound_name = QLabel()
        self.sound_name.setObjectName("timelineSoundName")
        self.clear_sound = _button("No Sound", "clearTimelineSound", "Remove the sound and its mappings (undoable)")
        self.last_sound = _button("Use Last Sound", "useLastSound", "Use the newest sound a sound model made here "
                                  "(kept as a WAV in the user data folder)")
        sound_row = QHBoxLayout()
        sound_row.addWidget(self.sound_button)
        sound_row.addWidget(self.last_sound)
        sound_row.addWidget(self.sound_name, 1)
        sound_row.addWidget(self.clear_sound)
        self.mappings = QTableWidget(0, len(MAPPING_COLUMNS))
        self.mappings.setObjectName("mappingTable")
        self.mappings.setHorizontalHeaderLabels(list(MAPPING_COLUMNS))
        self.mappings.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.mappings.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.mappings.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.mappings.setToolTip("Each row drives a target (the speed along the path, or a latent edit) with an "
                                 "envelope of the sound")
        self.add_mapping = _button("Add Mapping", "addMapping", "Drive a target with an envelope of the sound")
        self.remove_mapping = _button("Remove Mapping", "removeMapping", "Remove the selected mapping (undoable)")
        mapping_buttons = QHBoxLayout()
        mapping_buttons.addWidget(self.add_mapping)
        mapping_buttons.addWidget(self.remove_mapping)
        mapping_buttons.addStretch(1)
        audio_box = QGroupBox("Audio")
        audio_layout = QVBoxLayout(audio_box)
        audio_layout.addLayout(sound_row)
        audio_layout.addWidget(self.mappings, 1)
        audio_layout.addLayout(mapping_buttons)

        self.export = _button("Export Video…", "exportVideo", "Render every frame and write a video (MP4, WebM, "
                              "GIF) or a folder of PNG frames")

        # the track and what plays it, on top
        self.track = TimelineTrack()
        self.play = _button("Play", "timelinePlay", "Play the timeline at its frame rate from the playhead (Space "
                            "on the track), through the live preview: frames that render slower are dropped")
        self.play.setCheckable(True)
        self.loop_play = _button("Loop Play", "timelineLoopPlay", "Play again from the in point on reaching the out "
                                 "point")
        self.loop_play.setCheckable(True)
        self.play_status = QLabel()
        self.play_status.setObjectName("timelinePlayStatus")
        self.play_status.setToolTip("The frames shown per second while playing (a render slower than real time "
                                    "drops frames)")
        bar = QHBoxLayout()
        bar_widgets: tuple[QWidget, ...] = (self.play, self.loop_play, self.add_current, self.time)
        for widget in bar_widgets:
            bar.addWidget(widget)
        bar.addWidget(self.play_status, 1)
        bar.addWidget(QLabel("fps"))
        for widget in (self.fps, self.loop, self.total, self.export):
            bar.addWidget(widget)
        self.details_toggle = QToolButton()
        self.details_toggle.setObjectName("timelineDetailsToggle")
        self.details_toggle.setText("Keyframes and sound")
        self.details_toggle.setCheckable(True)
        self.details_toggle.setChecked(True)
        self.details_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.details_toggle.setArrowType(Qt.ArrowType.DownArrow)
        self.details_toggle.setAutoRaise(True)
        self.details_toggle.setToolTip("Show or hide the keyframe list, the selected keyframe's timing and the "
                                       "sound's mappings")
        self.details = QWidget()
        self.details.setObjectName("timelineDetails")
        keys_column = QVBoxLayout()
        keys_column.setContentsMargins(0, 0, 0, 0)
        keys_column.addWidget(self.keyframes, 1)
        keys_column.addLayout(add_row)
        keys_column.addLayout(list_buttons)
        keys_column.addLayout(key_form)
        keys_column.addLayout(scrub_row)
        details = QHBoxLayout(self.details)
        details.setContentsMargins(0, 0, 0, 0)
        details.addLayout(keys_column, 1)
        details.addWidget(audio_box, 1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addWidget(self.track)
        layout.addWidget(self.hint)
        layout.addWidget(self.details_toggle)
        layout.addWidget(self.details, 1)

        # playing: a timer at the timeline's fps sends the frame due to the preview lane (newest wins)
        self.player = QTimer(self)
        self.player.setTimerType(Qt.TimerType.PreciseTimer)
        self.player.timeout.connect(self._on_tick)
        self.playback: Playback | None = None
        self.meter = PlaybackMeter(24.0)
        self._sent: deque[RenderRequest] = deque(maxlen=SENT_KEPT)  # frames sent while playing, to count shown ones
        self._last_sent = -1  # the frame index sent last
        self._in_flight: float | None = None  # when the frame rendering now was sent (None: none is)
        self._follow_end = False  # an Add at the end moves the playhead to the new keyframe
        self.thumbnails = KeyframeThumbnails(session, self)
        self.sketcher = SoundSketcher(self)

        session.timeline_changed.connect(self._on_timeline_changed)
        session.latents_changed.connect(self._on_latents_changed)
        session.request_changed.connect(self._on_request_changed)
        session.model_changed.connect(self._on_model_changed)
        session.directions.changed.connect(lambda: self._fill_audio(self.timeline))  # targets show direction names
        session.sound_changed.connect(lambda _output: self._update_buttons())
        self.keyframes.currentRowChanged.connect(self._on_selection_changed)
        self.add_current.clicked.connect(self.add_at_playhead)
        self.add_library.clicked.connect(self._add_from_library)
        self.remove.clicked.connect(self._remove_selected)
        self.up.clicked.connect(lambda: self._move_selected(-1))
        self.down.clicked.connect(lambda: self._move_selected(+1))
        self.duration.valueChanged.connect(lambda value: self._edit_key("duration", float(value), "Keyframe duration"))
        self.duration.editingFinished.connect(self._new_gesture)
        self.interpolation.currentTextChanged.connect(
            lambda text: self._edit_key("interpolation", text, "Keyframe interpolation"))
        self.easing.currentTextChanged.connect(lambda text: self._edit_key("easing", text, "Keyframe easing"))
        self.fps.valueChanged.connect(self._on_fps_edited)
        self.fps.editingFinished.connect(self._new_gesture)
        self.loop.toggled.connect(self._on_loop_edited)
        self.scrubber.valueChanged.connect(self._on_scrubbed)
        self.sound_button.clicked.connect(self._choose_sound)
        self.last_sound.clicked.connect(lambda: self.session.use_last_sound())
        self.clear_sound.clicked.connect(self._remove_sound)
        self.add_mapping.clicked.connect(self._add_mapping)
        self.remove_mapping.clicked.connect(self._remove_selected_mapping)
        self.mappings.itemSelectionChanged.connect(self._update_buttons)
        self.export.clicked.connect(self.export_video)
        self.play.clicked.connect(self.toggle_play)
        self.details_toggle.toggled.connect(self._on_details_toggled)
        self.track.scrubbed.connect(self._on_track_scrubbed)
        self.track.keyframe_selected.connect(self.keyframes.setCurrentRow)
        self.track.retimed.connect(self._on_retimed)
        self.track.in_point_wanted.connect(lambda t: self.session.set_in_point(t))
        self.track.out_point_wanted.connect(lambda t: self.session.set_out_point(t))
        self.track.play_toggled.connect(self.toggle_play)
        self.track.stop_wanted.connect(self.stop)
        self.track.add_wanted.connect(self.add_at_playhead)
        self.thumbnails.changed.connect(self._show_thumbnails)
        self.sketcher.ready.connect(self.track.set_sketch)
        session.rendered.connect(self._on_rendered)
        session.bridge.failed.connect(self._on_preview_ended)
        session.bridge.cancelled.connect(self._on_preview_ended)
        self._on_latents_changed()
        self._on_timeline_changed()

    # --- reading the session --------------------------------------------------------------------------------------
    @property
    def timeline(self):
        return self.session.timeline

    def _playable(self) -> bool:
        return len(self.timeline.keyframes) >= 2

    def _foreign_model(self) -> str | None:
        """The timeline's model when it is not the current request's (keyframes cannot then be added)."""
        keys, request = self.timeline.keyframes, self.session.request
        if keys and request is not None and keys[0].request.model_id != request.model_id:
            return keys[0].request.model_id
        return None

    def _new_gesture(self) -> None:
        self._gesture += 1

    def _model_table(self) -> ParamTable | None:
        """The specs of the timeline's model (its keyframes' model, else the current one); None when unknown."""
        keys = self.timeline.keyframes
        model_id = keys[0].request.model_id if keys else (self.session.request.model_id
                                                          if self.session.request is not None else None)
        entry = self.session.entry_for(model_id) if model_id is not None else None
        return entry.parameters if entry is not None and entry.ok else None

    def targets(self) -> list[str]:
        """What a mapping can drive: the speed along the path, and the model's float params (the directions d0 …
        first, then truncation, noise …; raw dimensions last, and long indexed ones only when typed)."""
        table = self._model_table()
        if table is None:
            return list(TARGETS)
        specs = sorted((s for s in table if s.kind in DRIVEN_KINDS and not s.is_core
                        and s.count <= MAX_OFFERED_INDEXED),
                       key=lambda s: (s.group == RAW, not s.count))  # d0 … first
        return [*TARGETS, *(name for s in specs for name in s.names())]

    def _names_apply(self) -> bool:
        """The session's direction names are the timeline model's (they name the current model's directions)."""
        keys = self.timeline.keyframes
        current = self.session.request.model_id if self.session.request is not None else None
        return not keys or keys[0].request.model_id == current

    def target_label(self, target: str) -> str:
        """A target as its box shows it: a named direction as "d3 · Bold" (as the Pad shows it), others as they are."""
        name = self.session.directions.names.label(target) if self._names_apply() else ""
        return f"{target} · {name}" if name else target

    def target_param(self, text: str) -> str:
        """The target a box's text stands for: "d3 · Bold" and a typed "Bold" are d3; anything else as typed."""
        text = text.strip()
        head = text.split(" · ", 1)[0].strip()
        if head != text and head in self.targets():
            return head
        named = self.session.directions.names.param_for(text) if self._names_apply() and text else None
        return named or text

    def _target_problem(self, target: str) -> str | None:
        """Why `target` cannot be driven by a mapping (None when it can)."""
        if target in TARGETS:
            return None
        table = self._model_table()
        if table is None:
            return None  # no model to ask: the timeline checks the name
        spec = table.find(target)
        if spec is None or spec.is_core or spec.kind not in DRIVEN_KINDS:
            numbers = [f"{s.name}0…{s.name}{s.count - 1}" if s.count else s.name for s in table
                       if s.kind in DRIVEN_KINDS and not s.is_core]
            return (f"{target!r} is not a number param of this model that an envelope can move; it takes speed"
                    f"{', ' if numbers else ''}{', '.join(numbers)}")
        return None

    def _add_mapping(self) -> None:
        offered = self.targets()
        self.session.add_mapping(target=offered[1] if len(offered) > 1 else offered[0])

    # --- session signals ------------------------------------------------------------------------------------------
    def _on_timeline_changed(self) -> None:
        timeline = self.timeline
        grew = len(timeline.keyframes) > len(self.track.timeline.keyframes)
        self._filling = True
        try:
            self._fill_keyframes(timeline)
            self._fill_settings(timeline)
            self._fill_audio(timeline)
        finally:
            self._filling = False
        self._fill_selected()
        self._update_buttons()
        self.track.set_timeline(timeline)
        self.track.set_selected(self.keyframes.currentRow())
        self._show_thumbnails()
        self.sketcher.want(sound_path(timeline, self.session.timeline_editor.folder), timeline.fps,
                           timeline.mappings)
        if grew and self._follow_end and timeline.keyframes:
            self._follow_end = False
            self._move_playhead(timeline.starts[-1], preview=False)
        elif self.track.playhead > self._end():
            self._move_playhead(self._end(), preview=False)
        if self.playback is not None and not self._playable():
            self.stop()
        elif self.playback is not None and (timeline.fps != self.meter.fps
                                            or timeline.span != (self.playback.low, self.playback.high)):
            self._restart_play()  # at the new rate, or within the new in/out points

    def _restart_play(self) -> None:
        self.stop()
        self.start_play()

    def _show_thumbnails(self) -> None:
        thumbs = self.thumbnails.for_keyframes(self.timeline)
        self.track.placeholder = self.thumbnails.placeholder
        self.track.set_thumbnails(thumbs)

    def _on_latents_changed(self) -> None:
        latents = self.session.document.latents
        keep = self.library.currentIndex()
        blocked = self.library.blockSignals(True)
        self.library.clear()
        for entry in latents:
            self.library.addItem(entry.name)
            self.library.setItemData(self.library.count() - 1, f"{entry.name}: model {entry.model_id}",
                                     Qt.ItemDataRole.ToolTipRole)
        self.library.setCurrentIndex(keep if 0 <= keep < len(latents) else len(latents) - 1)
        self.library.blockSignals(blocked)
        self._update_buttons()

    def _on_request_changed(self, _request) -> None:
        self._update_buttons()

    def _on_model_changed(self, _entry) -> None:
        self.stop()
        self._on_timeline_changed()

    # --- filling the widgets (signals blocked: nothing here is an edit) -------------------------------------------
    def _fill_keyframes(self, timeline) -> None:
        keys = timeline.keyframes
        row = self.keyframes.currentRow()
        grew = len(keys) > self.keyframes.count()
        blocked = self.keyframes.blockSignals(True)
        if self.keyframes.count() != len(keys):
            self.keyframes.clear()
            self.keyframes.addItems([keyframe_text(i, k) for i, k in enumerate(keys)])
        else:
            for i, key in enumerate(keys):
                self.keyframes.item(i).setText(keyframe_text(i, key))
        for i, key in enumerate(keys):
            tip = f"{key.request.model_id}, seed {key.request.seed}, {len(key.request.latent)} latent values"
            if i == len(keys) - 1 and not timeline.loop:
                tip += "\nthe last keyframe: its duration counts only when looping"
            self.keyframes.item(i).setToolTip(tip)
        if self._select_after is not None:
            row, self._select_after = self._select_after, None
        elif grew:
            row = len(keys) - 1  # a new keyframe (added at the end) becomes the selected one
        self.keyframes.setCurrentRow(min(row, len(keys) - 1) if keys else -1)
        self.keyframes.blockSignals(blocked)

    def _fill_settings(self, timeline) -> None:
        for widget, set_value in ((self.fps, lambda: self.fps.setValue(timeline.fps)),
                                  (self.loop, lambda: self.loop.setChecked(timeline.loop))):
            blocked = widget.blockSignals(True)
            set_value()
            widget.blockSignals(blocked)
        playable = self._playable()
        self.hint.setVisible(not playable)
        blocked = self.scrubber.blockSignals(True)
        if playable:
            frames = timeline.frames
            self.total.setText(f"{frames} frames, {seconds_text(sum(timeline.durations))} s")
            self.scrubber.setRange(0, frames - 1)
        else:
            self.total.setText("No animation")
            self.scrubber.setRange(0, 0)
        self.scrubber.blockSignals(blocked)
        self._show_time()

    def _fill_audio(self, timeline) -> None:
        self.sound_name.setText(Path(timeline.audio).name if timeline.audio else "No sound")
        self.sound_name.setToolTip(timeline.audio)
        mappings = timeline.mappings
        if self.mappings.rowCount() != len(mappings):
            row = self.mappings.currentRow()
            self.mappings.setRowCount(0)
            self.mappings.setRowCount(len(mappings))
            for i in range(len(mappings)):
                self._make_mapping_row(i)
            if mappings:
                self.mappings.selectRow(len(mappings) - 1 if row < 0 or row >= len(mappings) else row)
        offered = self.targets()
        for i in range(len(mappings)):  # each row's colour is its curve's on the track
            marker = QTableWidgetItem(f"● {i + 1}")
            marker.setForeground(curve_colour(i))
            marker.setToolTip("The colour of this mapping's curve under the track")
            self.mappings.setVerticalHeaderItem(i, marker)
        for i, mapping in enumerate(mappings):
            # the cells _make_mapping_row put there: two combo boxes, then three spin boxes
            envelope, target = (cast(QComboBox, self.mappings.cellWidget(i, c)) for c in range(2))
            gain, attack, release = (cast(QDoubleSpinBox, self.mappings.cellWidget(i, c)) for c in range(2, 5))
            for widget in (envelope, target, gain, attack, release):
                widget.blockSignals(True)
            shown = [self.target_label(t) for t in offered]
            if [target.itemText(k) for k in range(target.count())] != shown:  # another model's targets, or names
                target.clear()
                target.addItems(shown)
            envelope.setCurrentText(mapping.envelope)
            target.setCurrentText(self.target_label(mapping.target))
            gain.setValue(mapping.gain)
            attack.setValue(mapping.attack)
            release.setValue(mapping.release)
            for widget in (envelope, target, gain, attack, release):
                widget.blockSignals(False)

    def _make_mapping_row(self, row: int) -> None:
        envelope = QComboBox()
        envelope.setObjectName(f"mappingEnvelope{row}")
        envelope.addItems(list(ENVELOPES))
        envelope.setToolTip("loudness; onsets (hits); low, mid, high: the level of a frequency band")
        target = QComboBox()
        target.setObjectName(f"mappingTarget{row}")
        target.setEditable(True)
        target.addItems([self.target_label(t) for t in self.targets()])
        target.setToolTip("speed: how fast the path runs; any other: a number param of the model (d0 …, truncation, "
                          "noise …; a named direction by its name too) moved by the envelope")
        gain = _spin(-100.0, 100.0, 0.1, 2, f"mappingGain{row}", "How much the envelope moves the target")
        attack = _spin(0.0, 10.0, 0.01, 3, f"mappingAttack{row}", "Seconds the envelope takes to rise")
        release = _spin(0.0, 10.0, 0.01, 3, f"mappingRelease{row}", "Seconds the envelope takes to fall")
        for column, widget in enumerate((envelope, target, gain, attack, release)):
            self.mappings.setCellWidget(row, column, widget)
        envelope.currentTextChanged.connect(lambda text: self._edit_mapping(row, "envelope", text))
        target.activated.connect(lambda _index: self._edit_mapping(row, "target", self.target_param(target.currentText())))
        line_edit = target.lineEdit()
        assert line_edit is not None  # the target box is editable
        line_edit.editingFinished.connect(
            lambda: self._edit_mapping(row, "target", self.target_param(target.currentText())))
        for name, spin in (("gain", gain), ("attack", attack), ("release", release)):
            spin.valueChanged.connect(lambda value, name=name: self._edit_mapping(row, name, float(value)))
            spin.editingFinished.connect(self._new_gesture)

    def _fill_selected(self) -> None:
        """The editors show the selected keyframe (disabled with none)."""
        row = self.keyframes.currentRow()
        keys = self.timeline.keyframes
        key = keys[row] if 0 <= row < len(keys) else None
        for widget in (self.duration, self.interpolation, self.easing):
            widget.setEnabled(key is not None)
            widget.blockSignals(True)
        if key is not None:
            self.duration.setValue(key.duration)
            self.interpolation.setCurrentText(key.interpolation)
            self.easing.setCurrentText(key.easing)
        for widget in (self.duration, self.interpolation, self.easing):
            widget.blockSignals(False)

    def _update_buttons(self) -> None:
        keys = self.timeline.keyframes
        row = self.keyframes.currentRow()
        selected = 0 <= row < len(keys)
        foreign = self._foreign_model()
        can_add = self.session.request is not None and foreign is None
        self.add_current.setEnabled(can_add)
        self.add_library.setEnabled(can_add and self.library.count() > 0)
        self.library.setEnabled(self.library.count() > 0)
        why = f"This timeline animates {foreign}: switch back to it to add keyframes" if foreign else ""
        self.add_current.setStatusTip(why)
        self.remove.setEnabled(selected)
        self.up.setEnabled(selected and row > 0)
        self.down.setEnabled(selected and row < len(keys) - 1)
        playable = self._playable()
        self.scrubber.setEnabled(playable)
        self.export.setEnabled(playable)
        audio = bool(self.timeline.audio)
        self.add_mapping.setEnabled(audio)
        self.clear_sound.setEnabled(audio)
        self.last_sound.setEnabled(self.session.last_sound is not None)
        self.remove_mapping.setEnabled(0 <= self.mappings.currentRow() < len(self.timeline.mappings)
                                       and bool(self.mappings.selectedIndexes()))

    def _show_time(self) -> None:
        if not self._playable():
            self.time.setText("")
            return
        fps = self.timeline.fps
        t = self.track.playhead
        self.time.setText(f"{t:.2f} s / {(self.scrubber.maximum() + 1) / fps:.2f} s · frame {int(round(t * fps)) + 1}")

    def _end(self) -> float:
        """The latest time the playhead goes to: the end of the animation, or the last keyframe's time."""
        timeline = self.timeline
        return max(timeline.length, timeline.starts[-1] if timeline.keyframes else 0.0)

    def _move_playhead(self, t: float, preview: bool = True) -> None:
        """The playhead (the track's, the scrubber's frame and the time) to `t` seconds; `preview`: show that frame."""
        self.track.set_playhead(t)
        if self._playable():
            blocked = self.scrubber.blockSignals(True)
            self.scrubber.setValue(int(round(t * self.timeline.fps)))
            self.scrubber.blockSignals(blocked)
        self._show_time()
        if preview and self._playable():
            self.session.preview_frame(t)

    # --- edits ----------------------------------------------------------------------------------------------------
    def _edit(self, change: Callable[[], None]) -> None:
        """Make an edit; refused (the session said why), the widgets go back to the timeline's values."""
        before = self.timeline
        change()
        if self.timeline is before:
            self._on_timeline_changed()

    def _on_selection_changed(self, row: int) -> None:
        self.track.set_selected(row)
        self._new_gesture()
        self._fill_selected()
        self._update_buttons()

    def add_at_playhead(self) -> None:
        """Add the current request as a keyframe at the playhead (appended at or after the end, the playhead then
        moving to it, so that Add, Add, Add lines keyframes up)."""
        keys = self.timeline.keyframes
        t = self.track.playhead
        at_end = not keys or t >= self.timeline.starts[-1] - 1e-6
        self._follow_end = at_end
        self.session.add_keyframe(at=None if at_end and (not keys or t <= self.timeline.starts[-1] + 1e-6) else t)

    def _add_from_library(self) -> None:
        index = self.library.currentIndex()
        if 0 <= index < len(self.session.document.latents):
            self.session.add_keyframe_from_latent(index)

    def _remove_selected(self) -> None:
        row = self.keyframes.currentRow()
        if 0 <= row < len(self.timeline.keyframes):
            self.session.remove_keyframe(row)

    def _move_selected(self, step: int) -> None:
        row = self.keyframes.currentRow()
        to = row + step
        if 0 <= row < len(self.timeline.keyframes) and 0 <= to < len(self.timeline.keyframes):
            self._select_after = to
            self.session.move_keyframe(row, to)
            self._select_after = None

    def _edit_key(self, name: str, value, text: str) -> None:
        row = self.keyframes.currentRow()
        if self._filling or not 0 <= row < len(self.timeline.keyframes):
            return
        self._select_after = row
        self._edit(lambda: self.session.edit_keyframe(row, text, f"keyframe:{row}:{name}:{self._gesture}",
                                                      **{name: value}))
        self._select_after = None

    def _on_fps_edited(self, value: float) -> None:
        if not self._filling:
            self._edit(lambda: self.session.edit_timeline("Frame rate", f"timeline:fps:{self._gesture}",
                                                          fps=float(value)))

    def _on_loop_edited(self, checked: bool) -> None:
        if not self._filling:
            self._edit(lambda: self.session.edit_timeline("Loop" if checked else "No loop", loop=bool(checked)))

    def _on_scrubbed(self, frame: int) -> None:
        self.track.set_playhead(frame / self.timeline.fps)
        self._show_time()
        if self._playable():
            self.session.preview_frame(frame / self.timeline.fps)

    def _on_track_scrubbed(self, t: float) -> None:
        """The ruler clicked or dragged: that frame shows (playing, play goes on from there)."""
        if self.playback is not None:
            self.track.set_playhead(t)
            self._restart_play()
            return
        self._move_playhead(t)

    def _on_retimed(self, index: int, t: float, drag: int) -> None:
        self._select_after = index
        self.session.retime_keyframe(index, t, f"retime:{index}:{drag}")
        self._select_after = None

    def _on_details_toggled(self, shown: bool) -> None:
        self.details.setVisible(shown)
        self.details_toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    def state(self) -> dict:
        """What a real-window test reads of the timeline (the window's geometry report): keyframe times, in/out,
        the playhead, play and its meter, and where each keyframe's thumbnail is on the track (its pixels)."""
        timeline = self.timeline
        return {"starts": timeline.starts, "in": timeline.in_point, "out": timeline.out_point,
                "playhead": self.track.playhead, "playing": self.playing, "shown": self.meter.shown_total,
                "status": self.play_status.text(), "thumbs_ready": len(self.track.thumbs),
                "keyframes": [[round(r.x()), round(r.y()), round(r.width()), round(r.height())]
                              for r in (self.track.thumb_rect(i) for i in range(len(timeline.keyframes)))],
                "x0": self.track.x_of(0.0), "scale": self.track.scale,
                "waveform": self.track.sketch is not None,
                "curves": len(self.track.sketch.curves) if self.track.sketch is not None else 0}

    # --- playing --------------------------------------------------------------------------------------------------
    @property
    def playing(self) -> bool:
        return self.playback is not None

    def toggle_play(self) -> None:
        if self.playback is not None:
            self.stop()
        else:
            self.start_play()

    def start_play(self) -> None:
        """Play from the playhead (from the in point when it is at or past the out point) at the timeline's fps."""
        self.play.setChecked(False)
        if not self._playable():
            return
        timeline = self.timeline
        low, high = timeline.span
        now = time.monotonic()
        try:
            self.playback = Playback(self.track.playhead, low, high, self.loop_play.isChecked(), now)
        except ValueError:
            return
        self.meter = PlaybackMeter(timeline.fps)
        self.meter.start(now)
        self._sent.clear()
        self._last_sent = -1
        self._in_flight = None
        self.play.setChecked(True)
        self.play.setText("Stop")
        self.track.set_playing(True)
        self.player.start(max(1, int(1000 / timeline.fps)))
        self._on_tick()

    def stop(self) -> None:
        """Stop playing (Esc on the track, Play again, the out point, a model change)."""
        if self.playback is None:
            return
        now = time.monotonic()
        self.player.stop()
        self.playback = None
        self.play.setChecked(False)
        self.play.setText("Play")
        self.track.set_playing(False)
        self.play_status.setText(f"stopped · {self.meter.shown_total} of {self.meter.due(now)} frames shown")

    def _on_tick(self) -> None:
        playback = self.playback
        if playback is None:
            return
        now = time.monotonic()
        playback.loop = self.loop_play.isChecked()  # (toggled while playing: from the next out point on)
        t, ended = playback.at(now)
        frame = int(math.floor(t * self.timeline.fps + 1e-9))
        self.track.set_playhead(t)
        self._show_time()
        # one frame in flight at a time: a frame sent while another renders would make that one stale (newest wins),
        # so that neither would show; the frames due meanwhile are skipped (dropped), and play keeps real time
        free = self._in_flight is None or now - self._in_flight > IN_FLIGHT_WAIT_S
        if frame != self._last_sent and free:
            self._last_sent = frame
            sent = self.session.preview_frame(frame / self.timeline.fps)
            if sent is not None:
                self._sent.append(sent)
                self._in_flight = now
        self.play_status.setText(self.meter.text(now))
        if ended:
            self.stop()

    def _on_preview_ended(self, *_args) -> None:
        """A preview failed or was cancelled: it holds play no longer."""
        self._in_flight = None

    def _on_rendered(self, request, _seconds: float, _info) -> None:
        if self.playback is None:
            return
        self._in_flight = None  # the preview lane is free again (this frame, or a newer request's)
        if request in self._sent:
            self.meter.shown(time.monotonic())
        self._on_tick()  # the frame due now, at once

    def _choose_sound(self) -> None:
        path = dialogs.ask_sound_file(self)
        if path:
            self.session.set_timeline_audio(path)

    def _remove_sound(self) -> None:
        self.session.edit_timeline("Remove sound", audio="", mappings=())

    def _edit_mapping(self, row: int, name: str, value) -> None:
        if self._filling or not 0 <= row < len(self.timeline.mappings):
            return
        if getattr(self.timeline.mappings[row], name) == value:
            return
        if name == "target" and (problem := self._target_problem(value)) is not None:
            self.session.message.emit("error", f"Audio mapping target: {problem}", problem)
            self._on_timeline_changed()  # the refused text goes back
            return
        self._edit(lambda: self.session.edit_mapping(row, f"Audio mapping {name}",
                                                     f"mapping:{row}:{name}:{self._gesture}", **{name: value}))

    def _remove_selected_mapping(self) -> None:
        row = self.mappings.currentRow()
        if 0 <= row < len(self.timeline.mappings):
            self.session.remove_mapping(row)

    def export_video(self) -> None:
        """Export the timeline: where, the output size (a small model's frames start at ×N nearest), the frame rate
        and the frames (studio.ui.export_dialogs); `exported(path)` when the file is written."""
        if not self._playable():
            return
        settings = getattr(self.window(), "settings", None)
        settings = settings if isinstance(settings, QSettings) else QSettings()
        project = self.session.path
        name = project.with_suffix(".mp4").name if project is not None else "animation.mp4"
        suggestion = str(Path(export_dialogs.export_folder(settings, "video")) / name)
        last = self.session.last_output
        source = (int(last.data.shape[1]), int(last.data.shape[0])) if last is not None and last.kind == "image" \
            else None
        timeline = self.timeline
        choice = export_dialogs.ask_video_export(self, suggestion, source, timeline.fps,
                                                 lambda fps: _span_frames(dataclasses.replace(timeline, fps=fps)))
        if choice is None or not choice.path:
            return
        export_dialogs.remember_folder(settings, "video", choice.path)
        self.session.export_video(choice.path, None, self.exported.emit, choice.output_size, choice.fps,
                                  choice.frames)
