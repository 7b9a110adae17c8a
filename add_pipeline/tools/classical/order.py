"""Back-to-front ordering of object masks from occlusion and ground-contact cues.

Rule, for every pair of objects (A, B):

1. **Occlusion** (when the masks overlap or touch within ``touch`` px). An occluded object's
   visible mask is cut by its occluder, so the occluder's pixels fill the dent left in the occluded
   object's convex hull, while the occluder's own outline is complete. We measure
   ``dent(A) = |hull(A) ∩ B| / |hull(A)|`` and ``dent(B)`` likewise. Pixels claimed by both
   masks are given to the smaller one first (a segmenter's mask of the back object may still
   include the front one's pixels, rarely the reverse). If ``|dent(A) - dent(B)| >= min_dent``,
   the object with the larger dent is behind.
2. **Ground contact** otherwise: the object whose lowest mask row is lower in the image stands
   nearer the camera (objects on a common ground plane), if the rows differ by more than
   ``contact_margin`` of the image height.
3. **Area** as the last tie-break: the larger object is in front.

The pairwise "in front" relation is turned into an order by counting wins (Copeland), ties
broken by the contact row; this stays well defined if the cues are not transitive.
"""

from __future__ import annotations

import cv2
import numpy as np

from add_pipeline.tools.base import Orderer, register


@register
class DepthCueOrderer(Orderer):
    """Occlusion first, then ground contact, then area (see the module docstring).

    Args:
        touch: masks closer than this many px are treated as adjacent (occlusion cue applies).
        min_dent: minimum difference of the two dent fractions (of the hull area) for the
            occlusion cue to decide.
        contact_margin: minimum difference of the lowest rows, as a fraction of the image height.
    """

    name = "depth-cues"

    def __init__(self, touch: int = 3, min_dent: float = 0.003, contact_margin: float = 0.02) -> None:
        self.touch = int(touch)
        self.min_dent = float(min_dent)
        self.contact_margin = float(contact_margin)

    def infer(self, image: np.ndarray, masks: list[np.ndarray]) -> list[int]:
        n = len(masks)
        if n <= 1:
            return list(range(n))
        h = image.shape[0]
        bottoms = [_bottom(m) for m in masks]
        areas = [int(m.sum()) for m in masks]
        hulls = [_hull(m) for m in masks]
        k = np.ones((2 * self.touch + 1, 2 * self.touch + 1), np.uint8)
        grown = [cv2.dilate(m.astype(np.uint8), k) > 0 for m in masks]
        wins = np.zeros(n)
        for i in range(n):
            for j in range(i + 1, n):
                front = self._front(i, j, masks, hulls, grown, bottoms, areas, h)
                wins[front] += 1
        # Fewest wins = farthest back; ties: higher contact (smaller bottom row) farther back.
        return sorted(range(n), key=lambda i: (wins[i], bottoms[i], areas[i]))

    def _front(self, i: int, j: int, masks: list[np.ndarray], hulls: list[np.ndarray],
               grown: list[np.ndarray], bottoms: list[int], areas: list[int], h: int) -> int:
        """Index (``i`` or ``j``) of the object judged in front of the other."""
        a, b = masks[i], masks[j]
        if (grown[i] & b).any():
            shared = a & b
            if shared.any():  # the larger mask gives the shared pixels up to the smaller one
                if areas[i] > areas[j]:
                    a = a & ~shared
                else:
                    b = b & ~shared
            # Dent of i filled by j: j's pixels inside i's convex hull; and the converse.
            dent_i = float((hulls[i] & b).sum()) / max(float(hulls[i].sum()), 1.0)
            dent_j = float((hulls[j] & a).sum()) / max(float(hulls[j].sum()), 1.0)
            if abs(dent_i - dent_j) >= self.min_dent:
                return j if dent_i > dent_j else i
        if abs(bottoms[i] - bottoms[j]) > self.contact_margin * h:
            return i if bottoms[i] > bottoms[j] else j
        return i if areas[i] >= areas[j] else j


def _bottom(mask: np.ndarray) -> int:
    """Lowest row of a mask (-1 if empty)."""
    rows = np.nonzero(mask.any(axis=1))[0]
    return int(rows.max()) if rows.size else -1


def _hull(mask: np.ndarray) -> np.ndarray:
    """Filled convex hull of the mask's largest-contour set, ``HxW bool``."""
    u8 = mask.astype(np.uint8)
    contours, _ = cv2.findContours(u8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = np.zeros_like(u8)
    if contours:
        hull = cv2.convexHull(np.concatenate(contours))
        cv2.fillConvexPoly(out, hull, 1)
    return out > 0
