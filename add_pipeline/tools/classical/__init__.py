"""Classical (non-learned) tools. Importing this package registers them with the tool registry."""

from add_pipeline.tools.classical import (  # noqa: F401
    inpaint,
    matting,
    order,
    proposals,  # noqa: F401
    segment,
    shadow,
)
