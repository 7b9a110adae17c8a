"""Tool contract: plain classes with typed inputs and outputs, validated on both sides.

A tool knows nothing about Ray or LangGraph.  Each family base class implements
``__call__`` as a template method: validate the inputs, call ``infer`` (the only
method an implementation writes), validate the outputs.  Implementations
register under a name with :func:`register`, and are built by
:func:`build_tool` so that workflows and agents pick them by name.
"""

from __future__ import annotations

import importlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

from add_pipeline.core.types import Box


class ToolError(RuntimeError):
    """A tool got input it cannot work on, or produced output that breaks its contract."""


# ---------------------------------------------------------------- validation helpers


def check_image(name: str, img: object) -> np.ndarray:
    """Raise :class:`ToolError` unless ``img`` is an ``HxWx3 uint8`` array."""
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        got = f"{img.shape} {img.dtype}" if isinstance(img, np.ndarray) else type(img).__name__
        raise ToolError(f"{name}: expected HxWx3 uint8 image, got {got}")
    return img


def check_mask(name: str, mask: object, hw: tuple[int, int]) -> np.ndarray:
    """Raise :class:`ToolError` unless ``mask`` is an ``HxW bool`` array of shape ``hw``."""
    if not isinstance(mask, np.ndarray) or mask.shape != hw or mask.dtype != np.bool_:
        got = f"{mask.shape} {mask.dtype}" if isinstance(mask, np.ndarray) else type(mask).__name__
        raise ToolError(f"{name}: expected {hw[0]}x{hw[1]} bool mask, got {got}")
    return mask


def check_matte(name: str, matte: object, hw: tuple[int, int]) -> np.ndarray:
    """Raise :class:`ToolError` unless ``matte`` is ``HxW float32`` in [0, 1] with no NaN."""
    if not isinstance(matte, np.ndarray) or matte.shape != hw or matte.dtype != np.float32:
        got = f"{matte.shape} {matte.dtype}" if isinstance(matte, np.ndarray) else type(matte).__name__
        raise ToolError(f"{name}: expected {hw[0]}x{hw[1]} float32 matte, got {got}")
    if not np.isfinite(matte).all() or matte.min(initial=0.0) < 0.0 or matte.max(initial=0.0) > 1.0:
        raise ToolError(f"{name}: matte values must be finite and in [0, 1]")
    return matte


def check_box(name: str, box: object, hw: tuple[int, int]) -> Box:
    """Raise :class:`ToolError` unless ``box`` is a non-empty ``(x0, y0, x1, y1)`` inside an ``hw`` canvas."""
    h, w = hw
    try:
        x0, y0, x1, y1 = (int(v) for v in box)  # type: ignore[union-attr]
    except (TypeError, ValueError) as exc:
        raise ToolError(f"{name}: expected (x0, y0, x1, y1), got {box!r}") from exc
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ToolError(f"{name}: box {box!r} is empty or outside the {w}x{h} canvas")
    return (x0, y0, x1, y1)


# ---------------------------------------------------------------- typed outputs


@dataclass(frozen=True)
class Proposal:
    """A class-agnostic object proposal: box, objectness score in [0, 1], optional coarse mask and label."""

    box: Box
    score: float
    mask: np.ndarray | None = None
    label: str = "object"


@dataclass(frozen=True)
class Segmentation:
    """A binary object mask (``HxW bool``) and a quality score in [0, 1]."""

    mask: np.ndarray
    score: float


@dataclass(frozen=True)
class Matte:
    """Soft alpha (``HxW float32`` [0, 1]) and decontaminated foreground colour (``HxWx3 float32`` [0, 1])."""

    alpha: np.ndarray
    foreground: np.ndarray


@dataclass(frozen=True)
class ShadowMatte:
    """Shadow strength (``HxW float32`` [0, 1], the alpha of a black shadow layer) and its score in [0, 1]."""

    matte: np.ndarray
    score: float
    stats: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------- families


class Tool(ABC):
    """Base of every tool. ``family`` names the role; ``name`` is the registry key."""

    family: ClassVar[str] = ""
    name: ClassVar[str] = ""

    def describe(self) -> dict[str, Any]:
        """Small JSON-able description (name and parameters) recorded in traces."""
        params = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return {"tool": self.name, "family": self.family, "params": params}


class Proposer(Tool):
    """Finds candidate objects in an image (class-agnostic, or prompted with object names)."""

    family = "propose"

    def __call__(self, image: np.ndarray, max_objects: int, labels: Sequence[str] | None = None) -> list[Proposal]:
        """``image``: HxWx3 uint8; ``labels``: object names from the planner, which text-prompted tools
        look for and class-agnostic ones ignore. Returns at most ``max_objects`` proposals, best first."""
        check_image(self.name, image)
        if max_objects < 1:
            raise ToolError(f"{self.name}: max_objects must be >= 1, got {max_objects}")
        names = tuple(dict.fromkeys(s.strip().lower() for s in labels or () if s and s.strip()))
        out = self.infer(image, max_objects, names)
        hw = image.shape[:2]
        for p in out:
            check_box(self.name, p.box, hw)
            if p.mask is not None:
                check_mask(self.name, p.mask, hw)
        return list(out)[:max_objects]

    @abstractmethod
    def infer(self, image: np.ndarray, max_objects: int, labels: tuple[str, ...]) -> list[Proposal]: ...


class Segmenter(Tool):
    """Turns a proposal (box, optional coarse mask) into a binary object mask."""

    family = "segment"

    def __call__(self, image: np.ndarray, box: Box, prior: np.ndarray | None = None) -> Segmentation:
        """``image``: HxWx3 uint8; ``box`` in the canvas; ``prior``: optional HxW bool coarse mask."""
        hw = check_image(self.name, image).shape[:2]
        box = check_box(self.name, box, hw)
        if prior is not None:
            check_mask(self.name, prior, hw)
        out = self.infer(image, box, prior)
        check_mask(self.name, out.mask, hw)
        return out

    @abstractmethod
    def infer(self, image: np.ndarray, box: Box, prior: np.ndarray | None) -> Segmentation: ...


class Matter(Tool):
    """Soft alpha and foreground colour from an image and a binary mask (trimap grown inside)."""

    family = "matte"

    def __call__(self, image: np.ndarray, mask: np.ndarray, band: int | None = None) -> Matte:
        """``image``: HxWx3 uint8; ``mask``: HxW bool; ``band``: unknown-region half width in px
        (None: the tool's default)."""
        hw = check_image(self.name, image).shape[:2]
        check_mask(self.name, mask, hw)
        out = self.infer(image, mask, band)
        check_matte(self.name, out.alpha, hw)
        fg = out.foreground
        if fg.shape != hw + (3,) or fg.dtype != np.float32 or not np.isfinite(fg).all():
            raise ToolError(f"{self.name}: foreground must be finite {hw[0]}x{hw[1]}x3 float32")
        return Matte(alpha=out.alpha, foreground=np.clip(fg, 0.0, 1.0))

    @abstractmethod
    def infer(self, image: np.ndarray, mask: np.ndarray, band: int | None) -> Matte: ...


class ShadowExtractor(Tool):
    """Estimates the shadow an object casts, as a matte of darkening strength."""

    family = "shadow"

    def __call__(
        self, image: np.ndarray, object_mask: np.ndarray, others: np.ndarray, strictness: float = 1.0
    ) -> ShadowMatte:
        """``image``: HxWx3 uint8; ``object_mask``: HxW bool of the caster; ``others``: HxW bool of
        every other object (never shadow); ``strictness`` >= 1 makes detection more conservative."""
        hw = check_image(self.name, image).shape[:2]
        check_mask(self.name, object_mask, hw)
        check_mask(self.name, others, hw)
        out = self.infer(image, object_mask, others, strictness)
        check_matte(self.name, out.matte, hw)
        if (out.matte[object_mask] > 0).any():
            raise ToolError(f"{self.name}: shadow matte overlaps its own object")
        return out

    @abstractmethod
    def infer(
        self, image: np.ndarray, object_mask: np.ndarray, others: np.ndarray, strictness: float
    ) -> ShadowMatte: ...


class Inpainter(Tool):
    """Fills a masked region of an image from its surroundings."""

    family = "inpaint"

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``image``: HxWx3 uint8; ``mask``: HxW bool, True = fill. Returns HxWx3 uint8 equal to
        ``image`` outside the mask."""
        hw = check_image(self.name, image).shape[:2]
        check_mask(self.name, mask, hw)
        out = check_image(self.name, self.infer(image, mask))
        if out.shape != image.shape:
            raise ToolError(f"{self.name}: output shape {out.shape} != input {image.shape}")
        out = out.copy()
        out[~mask] = image[~mask]
        return out

    @abstractmethod
    def infer(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray: ...


class Orderer(Tool):
    """Orders objects back to front from occlusion and depth cues."""

    family = "order"

    def __call__(self, image: np.ndarray, masks: list[np.ndarray]) -> list[int]:
        """``masks``: one HxW bool per object. Returns a permutation of ``range(len(masks))``, back to front."""
        hw = check_image(self.name, image).shape[:2]
        for m in masks:
            check_mask(self.name, m, hw)
        order = [int(i) for i in self.infer(image, masks)]
        if sorted(order) != list(range(len(masks))):
            raise ToolError(f"{self.name}: {order} is not a permutation of {len(masks)} objects")
        return order

    @abstractmethod
    def infer(self, image: np.ndarray, masks: list[np.ndarray]) -> list[int]: ...


# ---------------------------------------------------------------- registry

T = TypeVar("T", bound=type[Tool])
_REGISTRY: dict[str, dict[str, type[Tool]]] = {}


def register(cls: T) -> T:
    """Class decorator: make ``cls`` buildable by ``build_tool(cls.family, cls.name)``."""
    if not cls.family or not cls.name:
        raise TypeError(f"{cls.__name__} must set class attributes 'family' and 'name'")
    _REGISTRY.setdefault(cls.family, {})[cls.name] = cls
    return cls


def available(family: str) -> list[str]:
    """Registered tool names of a family, sorted."""
    _load_builtin()
    return sorted(_REGISTRY.get(family, {}))


def tool_class(family: str, name: str) -> type[Tool]:
    """The registered class of tool ``name`` in ``family``; unknown names list the valid ones.

    ``name`` may also be an import path ``"package.module:ClassName"`` (a user's own tool outside
    this package); the class must be a :class:`Tool` of the same family.
    """
    if ":" in name:
        return _import_tool(family, name)
    _load_builtin()
    if family not in _REGISTRY:
        raise ToolError(f"unknown tool family {family!r}; known: {sorted(_REGISTRY)}")
    try:
        return _REGISTRY[family][name]
    except KeyError:
        raise ToolError(f"unknown {family} tool {name!r}; known: {available(family)}") from None


def _import_tool(family: str, path: str) -> type[Tool]:
    module_name, _, attr = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ToolError(f"cannot import tool {path!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Tool)) or cls.family != family:
        raise ToolError(f"{path!r} is not a {family} tool (a Tool subclass with family={family!r})")
    return cls


def build_tool(family: str, name: str, **params: Any) -> Tool:
    """Instantiate the tool ``name`` of ``family`` with ``params``; unknown names list the valid ones."""
    cls = tool_class(family, name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ToolError(f"bad parameters for {family} tool {name!r}: {exc}") from exc


_BUILTIN_LOADED = False
_BUILTIN_LOCK = threading.Lock()


def _load_builtin() -> None:
    """Import the modules that register the built-in tools (lazily, to keep import light; thread-safe)."""
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    with _BUILTIN_LOCK:
        if _BUILTIN_LOADED:
            return
        import add_pipeline.compose.audit  # noqa: F401  (each module registers on import)
        import add_pipeline.compose.render  # noqa: F401
        import add_pipeline.tools.assembler  # noqa: F401
        import add_pipeline.tools.classical  # noqa: F401
        import add_pipeline.tools.encoder  # noqa: F401
        import add_pipeline.tools.loader  # noqa: F401
        import add_pipeline.tools.models  # noqa: F401  (registers; torch/transformers load on first use)
        import add_pipeline.tools.verifier  # noqa: F401

        _BUILTIN_LOADED = True


ToolFactory = Callable[[], Tool]
