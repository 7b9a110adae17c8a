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
