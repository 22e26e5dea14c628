"""Video in, video out, through OpenCV: frames are translated in batches and
written at the source's frame rate. The audio track is not carried over (OpenCV
reads and writes pictures only); the commands say so."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from tqdm import tqdm

from .data.images import ImageLoadError
from .tempfiles import temporary_path
from .errors import SetupError, UsageError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov")
# Codecs every OpenCV build can write into these containers.
FOURCC = {".mp4": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}
AUDIO_NOTE = "the audio track is not kept (OpenCV copies the pictures only)"


def is_video_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _cv2():
    import cv2
    return cv2


def _open(path: str | Path):
    """An OpenCV capture of `path`; an error naming the file when it cannot be decoded."""
    capture = _cv2().VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise ImageLoadError(path, "cannot be opened as a video (OpenCV could not decode it)")
    return capture


def video_info(path: str | Path) -> tuple[float, int, int, int]:
    """(fps, frame count as the container states it, width, height)."""
    cv2 = _cv2()
    capture = _open(path)
    try:
        return (capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
                int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        capture.release()


def read_frames(path: str | Path):
    """The frames of a video as RGB PIL images, in order."""
    cv2 = _cv2()
    capture = _open(path)
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()


def translate_video(translate_images: Callable[[list[Image.Image]], list[Image.Image]], source: str | Path,
                    target: str | Path, batch_size: int = 4,
                    prepare: Callable[[Image.Image], Image.Image] = lambda image: image,
                    progress: bool = True) -> int:
    """Translate every frame of `source` (frames go through `prepare`, then
    `translate_images` in batches) into the video `target`, at the source's fps,
    with the codec of `target`'s extension. Written under a temporary name and
    renamed when complete: an interrupted run leaves no partial video. Returns the
    number of frames."""
    cv2 = _cv2()
    source, target = Path(source), Path(target)
    suffix = target.suffix.lower()
    if suffix not in FOURCC:
        raise UsageError(f"{target}: unknown video extension (use one of {' '.join(VIDEO_EXTENSIONS)})")
    fps, stated_frames, _, _ = video_info(source)
    if not fps or fps <= 0 or not np.isfinite(fps):
        raise ImageLoadError(source, "the video states no frame rate; re-encode it (e.g. with ffmpeg) and retry")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Same folder (a rename, not a copy) and same extension (OpenCV picks the container by it).
    tmp = temporary_path(target, keep_suffix=True)
    writer, frames = None, 0
    bar = tqdm(total=stated_frames or None, desc=source.name, unit="frame", disable=not progress)

    def write(batch):
        nonlocal writer
        for image in translate_images(batch):
            picture = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)
            if writer is None:
                height, width = picture.shape[:2]
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*FOURCC[suffix]), fps, (width, height))
                if not writer.isOpened():
                    raise SetupError(f"{target}: OpenCV cannot write {suffix} video with codec "
                                       f"{FOURCC[suffix]} here; try another extension (.avi uses MJPG)")
            writer.write(picture)
        bar.update(len(batch))

    try:
        batch: list[Image.Image] = []
        for frame in read_frames(source):
            batch.append(prepare(frame))
            frames += 1
            if len(batch) == batch_size:
                write(batch)
                batch = []
        if batch:
            write(batch)
        if frames == 0:
            raise ImageLoadError(source, "no frame could be read from this video")
        writer.release()
        os.replace(tmp, target)
    except BaseException:
        if writer is not None:
            writer.release()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    return frames
