"""The Queue dock: *Generate* (Ctrl+Enter) queues the current request as batch count × batch size renders over the
seed mode's seeds; the list shows every job of the session (running, waiting in order, finished) with its progress;
Cancel stops the picked jobs (Delete does too), Cancel All every one, Clear drops the finished ones from the list
(their files stay). The live preview keeps rendering while the queue runs: the queue works on the export lane one
batch at a time."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QPushButton, QSpinBox, QVBoxLayout, QWidget)

# the queue's modes are `session.render_queue.MODES` (studio.app.queue, which panels do not import)
MODE_TEXT = {"back": "Back", "front": "Front", "replace": "Replace"}
MODE_TIPS = {"back": "after the jobs already queued", "front": "next, once the batch in flight ends",
             "replace": "instead of every queued and running job"}


class JobList(QListWidget):
    """The queue's jobs; Delete (or Backspace) asks to cancel the picked ones."""

    delete_pressed = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and self.selectedItems():
            self.delete_pressed.emit()
            event.accept()
            return
        super().keyPressEvent(event)


class QueuePanel(QWidget):
    open_folder = Signal(str)  # the folder of the picked (or newest) job

    def __init__(self, session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.count = QSpinBox()
        self.count.setObjectName("queueCount")
        self.count.setRange(1, 999)
        self.count.setToolTip("Batch count: how many batches to render")
        self.batch_size = QSpinBox()
        self.batch_size.setObjectName("queueBatchSize")
        self.batch_size.setRange(1, 64)
        self.batch_size.setToolTip("Batch size: renders per batch (a batch is one job on the render worker; a job "
                                   "put at the front starts between batches)")
        self.mode = QComboBox()
        self.mode.setObjectName("queueMode")
        modes = session.render_queue.MODES
        for mode in modes:
            self.mode.addItem(MODE_TEXT[mode], mode)
            self.mode.setItemData(self.mode.count() - 1, f"Queue the new job {MODE_TIPS[mode]}",
                                  Qt.ItemDataRole.ToolTipRole)
        self.mode.setToolTip("Where a new job goes: " + "; ".join(f"{MODE_TEXT[m]}: {MODE_TIPS[m]}"
                                                                 for m in modes))
        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("queueGenerate")
        self.generate_button.setToolTip("Queue batch count × batch size renders of the current request over seeds "
                                        "by the seed mode (Ctrl+Enter)")
        self.generate_button.clicked.connect(self.generate)
        self.summary = QLabel()
        self.summary.setObjectName("queueSummary")
        self.jobs = JobList()
        self.jobs.setObjectName("queueJobs")
        self.jobs.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.jobs.setToolTip("Every job of this session; Delete cancels the picked ones")
        self.jobs.itemSelectionChanged.connect(self._update_buttons)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("queueCancel")
        self.cancel_button.setToolTip("Cancel the picked jobs (Delete): files already written stay")
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.cancel_all_button = QPushButton("Cancel All")
        self.cancel_all_button.setObjectName("queueCancelAll")
        self.cancel_all_button.setToolTip("Cancel every queued and running job (files already written stay)")
        self.cancel_all_button.clicked.connect(session.render_queue.cancel_all)
        self.clear_button = QPushButton("Clear Finished")
        self.clear_button.setObjectName("queueClear")
        self.clear_button.setToolTip("Drop the finished jobs from the list (their files stay)")
        self.clear_button.clicked.connect(session.render_queue.clear_finished)
        self.folder_button = QPushButton("Show Folder")
        self.folder_button.setObjectName("queueFolder")
        self.folder_button.setToolTip("Open the folder the picked (or newest) job writes to")
        self.folder_button.clicked.connect(self._show_folder)
        self.jobs.delete_pressed.connect(self.cancel_selected)

        controls = QHBoxLayout()
        for label, widget in (("Count", self.count), ("Size", self.batch_size), ("Queue", self.mode)):
            controls.addWidget(QLabel(label))
            controls.addWidget(widget)
        controls.addWidget(self.generate_button)
        controls.addStretch(1)
        buttons = QHBoxLayout()
        for button in (self.cancel_button, self.cancel_all_button, self.clear_button, self.folder_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addWidget(self.summary)
        layout.addWidget(self.jobs, 1)
        layout.addLayout(buttons)
        session.queue.changed.connect(self.refresh)
        session.model_changed.connect(lambda _entry: self._update_buttons())
        self.refresh()

    def generate(self) -> None:
        self.session.generate(self.count.value(), self.batch_size.value(), self.mode.currentData())

    def cancel_selected(self) -> None:
        for item in self.jobs.selectedItems():
            self.session.render_queue.cancel(item.data(Qt.ItemDataRole.UserRole))

    def _show_folder(self) -> None:
        queue = self.session.render_queue
        picked = [queue.job(item.data(Qt.ItemDataRole.UserRole)) for item in self.jobs.selectedItems()]
        job = next((j for j in picked if j is not None), queue.jobs[-1] if queue.jobs else None)
        self.open_folder.emit(str(job.folder if job is not None else queue.folder))

    def refresh(self) -> None:
        """The list again from the queue: running first, then waiting in order, then the finished ones (newest
        first); the picked jobs stay picked."""
        queue = self.session.render_queue
        picked = {item.data(Qt.ItemDataRole.UserRole) for item in self.jobs.selectedItems()}
        finished = [job for job in reversed(queue.jobs) if job.finished]
        self.jobs.clear()
        for job in queue.active + finished:
            item = QListWidgetItem(job.status())
            item.setData(Qt.ItemDataRole.UserRole, job.id)
            item.setToolTip(f"{job.total} renders, seeds {job.seeds[0]}…{job.seeds[-1]}, batches of "
                            f"{job.batch_size}, into {job.folder}")
            if job.finished:
                item.setForeground(self.palette().placeholderText())
            self.jobs.addItem(item)
            item.setSelected(job.id in picked)
        waiting = sum(job.total - job.done for job in queue.active)
        running = queue.running
        state = f"rendering {running.label} ({running.done}/{running.total})" if running is not None and \
            running.rendering else "idle"
        self.summary.setText(f"Queue: {state}; {waiting} render{'s' if waiting != 1 else ''} to go"
                             if queue.active else "Queue: idle")
        self._update_buttons()

    def _update_buttons(self) -> None:
        queue = self.session.render_queue
        self.generate_button.setEnabled(self.session.request is not None)
        picked = [queue.job(item.data(Qt.ItemDataRole.UserRole)) for item in self.jobs.selectedItems()]
        self.cancel_button.setEnabled(any(j is not None and not j.finished for j in picked))
        self.cancel_all_button.setEnabled(bool(queue.active))
        self.clear_button.setEnabled(any(job.finished for job in queue.jobs))
