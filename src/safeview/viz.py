"""A picture of what the search did, drawn on the *obfuscated* output only.

Panels, left to right: the output with the obfuscated area outlined (the union of the chosen
regions, as the blur itself shows it); the attribution heatmap and the region boundaries over the
output, **outside** the obfuscated area only. Region boundaries and attribution come from the
original image: inside the obfuscated area they would trace the hidden object's silhouette, so
nothing derived from the original is drawn there (it is hatched instead). The unobfuscated
original is never drawn, so the picture is as safe to look at as the output itself.
"""

from __future__ import annotations

import cv2
import numpy as np

from safeview.io import resize
from safeview.report import Report


def visualize(report: Report) -> np.ndarray:
    """RGB uint8 picture for ``report`` (needs the arrays :func:`safeguard` leaves on it)."""
    if report.image is None:
        raise ValueError("report has no output image to draw on (search failed with 'error')")
    if report.labels is None or report.attribution_map is None:
        # Not flagged: nothing was searched; show the output alone with its verdict.
        return _with_caption(np.asarray(report.image), _caption(report))
    labels = report.labels
    height, width = labels.shape
    base = resize(np.asarray(report.image), (width, height))
    if report.mask is not None:
        hidden = resize(report.mask.astype(np.uint8), (width, height), nearest=True).astype(bool)
    else:  # no mask on the report: treat everything as hidden rather than trace anything
        hidden = np.ones((height, width), dtype=bool)

    chosen = base.copy()
    contours, _ = cv2.findContours(
        hidden.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    if not hidden.all():
        cv2.drawContours(chosen, contours, -1, (255, 40, 40), 2)

    heat = cv2.applyColorMap((report.attribution_map * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    overlay = (0.55 * heat + 0.45 * base).astype(np.uint8)
    overlay[_boundaries(labels)] = (255, 255, 255)
    # Inside the obfuscated area: the output itself, hatched; nothing from the original.
    hatch = base.copy()
    stripes = ((np.add.outer(np.arange(height), np.arange(width)) // 4) % 4) == 0
    hatch[stripes] = (0.5 * hatch[stripes] + 0.5 * 200).astype(np.uint8)
    overlay[hidden] = hatch[hidden]

    gap = np.full((height, 6, 3), 255, dtype=np.uint8)
    panels = np.concatenate([chosen, gap, overlay], axis=1)
    return _with_caption(panels, _caption(report))


def _boundaries(labels: np.ndarray) -> np.ndarray:
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    return edge


def _caption(report: Report) -> list[str]:
    if report.categories:  # a policy: the flagged categories, else the highest score
        covered = [c for c in report.categories if c.covered]
        shown = [c for c in covered if c.flagged] or sorted(
            covered, key=lambda c: -(c.score_before or 0.0)
        )[:1]
        parts = []
        for category in shown:
            after = category.score_after if category.score_after is not None else float("nan")
            parts.append(f"{category.id} p={category.score_before or 0.0:.3f} -> {after:.3f}")
        lines = [f"policy {report.policy}: " + "; ".join(parts)]
    else:
        target = report.guard.target
        before = report.scores_before.get(target, 0.0)
        after = (report.scores_after or {}).get(target, float("nan"))
        lines = [f"{report.guard.name}: {target}  p={before:.3f} -> {after:.3f}"]
    if report.flagged:
        lines.append(
            f"{'flipped' if report.success else 'NOT flipped'}: {len(report.regions)} regions, "
            f"{100 * report.obfuscated_fraction:.1f}% obfuscated, "
            f"{report.forward_passes.get('total', 0)} forward passes "
            f"({report.search}, {report.attribution}, {report.segmenter}, {report.style})"
        )
        if report.fallback:
            lines.append(f"fallback: {report.fallback}")
    else:
        lines.append("not flagged: nothing obfuscated")
    return lines


def _with_caption(image: np.ndarray, lines: list[str]) -> np.ndarray:
    width = max(image.shape[1], 420)
    band = np.full((18 * len(lines) + 8, width, 3), 255, dtype=np.uint8)
    for row, text in enumerate(lines):
        cv2.putText(
            band,
            text,
            (4, 16 + 18 * row),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.42,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    if image.shape[1] < width:
        pad = np.full((image.shape[0], width - image.shape[1], 3), 255, dtype=np.uint8)
        image = np.concatenate([image, pad], axis=1)
    return np.concatenate([band, image], axis=0)
