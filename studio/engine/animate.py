"""Animation export: render a sequence of requests and encode them into one video, as one export job.

    job = export_animation(engine, frames, "walk.mp4", fps=24, on_event=print)
    job.wait()  # Output("video", …, {"path": "walk.mp4", "frames": len(frames), "fps": 24})

The engine's worker renders the frames in batches and hands each finished batch to an encoder thread through a
bounded queue (two batches); the encoder thread owns the VideoWriter, so rendering and encoding overlap. Every
rendered frame is a cancel point. On cancel or any error the encoder thread is stopped and joined and the writer
aborted: nothing partial is left (the writer is atomic).
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from studio.engine.api import EngineAPI
from studio.engine.scheduler import EXPORT, EventCallback, Job
from studio.errors import ExportError, RequestError
from studio.export.scale import OutputSize
from studio.export.video import VideoWriter
from studio.families.base import LoadedModel
from studio.steps import Output, Progress, RenderSteps, run_steps
from studio.request import RenderRequest

QUEUE_BATCHES = 2  # batches waiting for the encoder; the worker blocks when it is this far ahead
_END = object()  # the worker's last word to the encoder thread


def export_animation(engine: EngineAPI, frames: Sequence[RenderRequest], path: str | Path, fps: float,
                     audio: tuple[np.ndarray, int] | None = None, metadata: str = "",
                     size: tuple[int, int] | None = None, batch: int = 8,
                     on_event: EventCallback | None = None, output_size: OutputSize | None = None) -> Job:
    """Submit one job on the export lane that renders `frames` (all of one model) into the video `path`.

    `size` (width, height) rescales the frames (Lanczos), `output_size` by a whole factor or to a size with its
    filter (nearest keeps pixels crisp; give one of the two); `audio`, `metadata` and the format (by suffix) are as for
    VideoWriter. Raises ValueError for frames of several models or an empty sequence, and ExportError (naming the
    file) for a bad target, frame rate, size or sound, before anything is rendered.
    """
    frames = tuple(frames)
    if not frames:
        raise ValueError("an animation needs at least one frame")
    models = sorted({request.model_id for request in frames})
    if len(models) > 1:
        raise ValueError(f"all frames of an animation must use one model, got {', '.join(models)}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a whole number of frames, at least 1, got {batch!r}")
    path = Path(path)
    if output_size is not None and size is not None:
        raise ValueError("give a size or an output size, not both")
    # Check the target and the arguments exactly as the worker's writer will (this leaves nothing behind).
    VideoWriter(path, fps, size=size, audio=audio, metadata=metadata).abort()

    def work(model: LoadedModel, _: RenderRequest) -> RenderSteps:
        return _export_steps(model, frames, path, fps, audio, metadata, size, batch, output_size)

    return engine.submit(frames[0], EXPORT, on_event, work=work, kind="animation")


def render_frame(model: LoadedModel, request: RenderRequest) -> np.ndarray:
    """One frame (H, W, C) uint8: the family's render driven to its end on the calling thread."""
    output: Output = run_steps(model.family.render(model, request))
    if output.kind != "image":
        raise RequestError(f"{model.id} made {output.kind} output; only images can be animated", field="model_id")
    return output.data


def render_frames(model: LoadedModel, requests: Sequence[RenderRequest]) -> np.ndarray:
    """A batch of frames (N, H, W, C) uint8 rendered on the calling thread (the bare decode)."""
    _require_images(model)
    with torch.inference_mode():
        return np.stack([render_frame(model, request) for request in requests])


def resize_frames(frames: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """`frames` (N, H, W, C) uint8 resized to `size` (width, height) with Lanczos; unchanged without a size."""
    if size is None or (frames.shape[2], frames.shape[1]) == tuple(size):
        return frames
    grey = frames.shape[3] == 1
    resized = [np.asarray(Image.fromarray(frame[..., 0] if grey else frame).resize(size, Image.Resampling.LANCZOS))
               for frame in frames]
    out = np.stack(resized)
    return out[..., None] if grey else out


def encode_frames(path: str | Path, frames: np.ndarray, fps: float, audio: tuple[np.ndarray, int] | None = None,
                  metadata: str = "", size: tuple[int, int] | None = None, batch: int = 8) -> Path:
    """Encode `frames` (N, H, W, C) uint8 into the video `path` on the calling thread (the bare encode)."""
    writer = VideoWriter(path, fps, size=size, audio=audio, metadata=metadata)
    try:
        _write_batches(writer, (frames[i:i + batch] for i in range(0, len(frames), batch)), size)
        return writer.close()
    finally:
        writer.abort()  # does nothing to a closed writer


def _write_batches(writer: VideoWriter, batches: Iterable[np.ndarray], size: tuple[int, int] | None) -> None:
    for frames in batches:
        writer.write(resize_frames(frames, size))


def _require_images(model: LoadedModel) -> None:
    kind = model.manifest.output.kind
    if kind != "image":
        raise RequestError(f"{model.id} makes {kind} output; only image models can be animated", field="model_id")


class _Encoder:
    """A thread that owns a VideoWriter and writes the batches the worker puts on its bounded queue.

    It takes batches until the worker's end mark, whatever happens: after a failure (kept in `error`) or a stop it
    drops them, so the worker never blocks on a full queue for long.
    """

    def __init__(self, writer: VideoWriter, size: tuple[int, int] | None):
        self.writer, self.size = writer, size
        self.error: ExportError | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES)
        self._stopping = threading.Event()
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="latent-studio-encoder", daemon=True)
        self._thread.start()

    def put(self, frames: np.ndarray) -> None:
        """Queue a batch (blocks while the encoder is QUEUE_BATCHES behind); raises the encoder's error, if any."""
        self._raise()
        self._queue.put(frames)

    def finish(self) -> None:
        """Wait until every queued batch is written; raises the encoder's error, if any."""
        self._end()
        self._raise()

    def stop(self) -> None:
        """Drop what is still queued and join the thread (after the batch being written, if any)."""
        self._stopping.set()
        self._end()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put(_END)
            self._thread.join()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _incoming(self) -> Iterator[np.ndarray]:
        while (frames := self._queue.get()) is not _END:
            if not self._stopping.is_set():
                yield frames

    def _run(self) -> None:
        try:
            _write_batches(self.writer, self._incoming(), self.size)
        except BaseException as exc:
            if isinstance(exc, ExportError):
                self.error = exc
            else:
                self.error = ExportError(f"cannot encode: {exc}", self.writer.path)
                self.error.__cause__ = exc
            for _ in self._incoming():  # drop the rest until the worker's end mark
                pass


def _export_steps(model: LoadedModel, frames: Sequence[RenderRequest], path: Path, fps: float,
                  audio: tuple[np.ndarray, int] | None, metadata: str, size: tuple[int, int] | None,
                  batch: int, output_size: OutputSize | None = None) -> RenderSteps:
    """The job's work on the engine's worker: render in batches, feed the encoder, close (or abort) the file."""
    _require_images(model)
    total = len(frames)
    writer = VideoWriter(path, fps, size=size, audio=audio, metadata=metadata)
    encoder = _Encoder(writer, size)
    try:
        shape = None
        for start in range(0, total, batch):
            images: list[np.ndarray] = []
            for request in frames[start:start + batch]:
                image = render_frame(model, request)
                shape = shape or image.shape
                if image.shape != shape:
                    if size is None:  # with a size every frame is scaled to it anyway
                        raise ExportError(f"frame {start + len(images) + 1} is {image.shape[1]}x{image.shape[0]} but "
                                          f"the first frame is {shape[1]}x{shape[0]}; all frames need one size (or "
                                          "give the video a size)", path)
                    image = resize_frames(image[None], (shape[1], shape[0]))[0]
                images.append(image)
                yield Progress(start + len(images), total, f"frame {start + len(images)}/{total}")
            encoder.put(output_size.frames(np.stack(images)) if output_size is not None else np.stack(images))
        encoder.finish()
        writer.close()
    finally:  # cancelled (GeneratorExit), failed or done: the encoder thread is joined, a partial file removed
        encoder.stop()
        writer.abort()
    return Output("video", np.zeros(0), {"path": str(path), "frames": total, "fps": fps})
