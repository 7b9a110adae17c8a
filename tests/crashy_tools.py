"""A tool that kills its worker process on first use: to test Ray system-error retries.

Imported by Ray workers by import path (``tests.crashy_tools:CrashOnceInpainter``); the Ray tests
put the repository root on the workers' PYTHONPATH.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from add_pipeline.tools.base import Inpainter


class CrashOnceInpainter(Inpainter):
    """Telea inpainting, except that the first call (per ``flag`` file) hard-exits the worker."""

    name: ClassVar[str] = "crash-once"

    def __init__(self, flag: str) -> None:
        self.flag = flag

    def infer(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        flag = Path(self.flag)
        if not flag.exists():
            flag.write_text(str(os.getpid()))
            os._exit(1)  # a system failure, not a tool error
        return cv2.inpaint(image, mask.astype(np.uint8), 3, cv2.INPAINT_TELEA)


class HangOnceInpainter(Inpainter):
    """Telea inpainting, except that the first call (per ``flag`` file, claimed atomically) sleeps
    ``sleep_s``: a stuck sample, to test ``execution.sample_timeout_s``."""

    name: ClassVar[str] = "hang-once"

    def __init__(self, flag: str, sleep_s: float = 3600.0) -> None:
        self.flag = flag
        self.sleep_s = float(sleep_s)

    def infer(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import time

        try:
            os.close(os.open(self.flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return cv2.inpaint(image, mask.astype(np.uint8), 3, cv2.INPAINT_TELEA)
        time.sleep(self.sleep_s)
        return cv2.inpaint(image, mask.astype(np.uint8), 3, cv2.INPAINT_TELEA)
