"""Model-backed tools (detection, segmentation, matting, depth ordering, inpainting).

Importing this package registers them; it imports neither torch nor transformers (each tool loads
its libraries and weights on its first call), so registering them costs nothing and works on a
machine without the ``models`` extra. ``tool.check()`` says what a tool still needs to run.
"""

from add_pipeline.tools.models import depth, detect, inpaint, isnet, matte, segment  # noqa: F401


def register_all() -> None:
    """No-op hook (e.g. Ray's ``worker_process_setup_hook``): importing this package registered the tools."""
