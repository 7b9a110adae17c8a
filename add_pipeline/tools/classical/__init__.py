"""Classical (non-learned) tools. Importing this package registers them with the tool registry."""

from add_pipeline.tools.classical import proposals  # noqa: F401
from add_pipeline.tools.classical import inpaint, matting, order, segment, shadow  # noqa: F401
