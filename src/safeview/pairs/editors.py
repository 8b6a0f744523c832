"""Image editors for SafetyPairs: each turns an unsafe image into a safe counterpart and says
where it edited (the mask), so that verification can check that nothing else changed.

* ``obfuscate`` (offline default): the counterfactual search; the regions it obfuscates until the
  guard's decision flips, rendered with a blur/fill/inpaint style. Its default regions are
  attribution-guided BASS superpixels: on the synthetic benchmark they keep more pairs than SLIC
  and edit a sixth of the area (bench/README.md, SafetyPairs).
* ``inpaint``: OpenCV inpainting (Telea) of a mask: the image's own mask file when there is one,
  else the top-attributed pixels (FullGrad), dilated.
* ``diffusers``: a diffusion pipeline from a local folder or hub id, either instruction editing
  (InstructPix2Pix) driven by the policy's instruction, or inpainting of the same mask as above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

from safeview.guards import Guard, default_target, heatmap_to_image, scores
from safeview.io import load_image, resize
from safeview.registry import Registry

if TYPE_CHECKING:
    from safeview.policy import GuardPanel


@dataclass
class Edit:
    """An editor's output: the edited image (same size as the input) and the edited area."""

    image: np.ndarray
    mask: np.ndarray  # bool, H x W: where the editor meant to change the image
    instruction: str
    details: dict[str, Any] = field(default_factory=dict)


class Editor(Protocol):
    name: str

    def edit(
        self,
        pixels: np.ndarray,
        guard: Guard | GuardPanel,
        instruction: str,
        mask: np.ndarray | None,
    ) -> Edit:
        """Edit ``pixels`` (RGB uint8) so that ``guard`` no longer flags it (a
        :class:`~safeview.policy.GuardPanel`: none of the judges of the pair's policy category);
        ``mask`` is the image's own edit mask when the data set has one."""
        ...


def attribution_mask(
    pixels: np.ndarray, guard: Guard | GuardPanel, fraction: float = 0.08, dilate: float = 0.02
) -> np.ndarray:
    """The ``fraction`` of pixels with the highest FullGrad attribution for the guard's unsafe
    target, grown by ``dilate`` x the shorter side: where an edit should happen. For a panel
    (a policy category's judges), each flagging judge's map counts (their maximum, each scaled to
    its own peak); none flagging: every judge's."""
    from safeview.attribution import make_attribution
    from safeview.policy import GuardPanel

    height, width = pixels.shape[:2]
    if isinstance(guard, GuardPanel):
        row = guard.score([pixels])
        judges = guard.bind(row)
        pairs = [(j.guard, j.target) for j in judges if bool(j.flags(row)[0])] or [
            (j.guard, j.target) for j in judges
        ]
    else:
        pairs = [(guard, default_target(guard, scores(guard, [pixels])[0]))]
    pairs = list(dict.fromkeys(pairs))
    maps = []
    for model, target in pairs:
        heatmap = make_attribution("fullgrad", model).attribute(model.preprocess([pixels]), target)
        heatmap = heatmap_to_image(model, heatmap[0].astype(np.float32), height, width)
        peak = float(heatmap.max())
        maps.append(heatmap / peak if len(pairs) > 1 and peak > 0 else heatmap)
    heatmap = np.max(maps, axis=0)
    cut = float(np.quantile(heatmap, 1.0 - fraction))
    # Sparse maps (mostly zero) have their quantile at the minimum: take only what is above it.
    mask = heatmap >= cut if cut > float(heatmap.min()) else heatmap > cut
    radius = max(1, int(dilate * min(height, width)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


class ObfuscateEditor:
    """The counterfactual search itself as the editor (safeview.safeguard)."""

    name = "obfuscate"

    def __init__(
        self,
        style: str = "inpaint",
        segmenter: str = "bass-guided",
        max_regions: int = 10,
        threshold: float = 0.5,
        device: str | None = None,
        **segmenter_options: Any,
    ) -> None:
        from safeview.options import SafeguardOptions

        self.style, self.segmenter, self.max_regions = style, segmenter, max_regions
        self.threshold = threshold
        self.segmenter_options = segmenter_options
        # Bad values fail here, not per image.
        self.options = SafeguardOptions(
            segmenter=segmenter,
            segmenter_options=segmenter_options,
            style=style,
            threshold=threshold,
            max_regions=max_regions,
            on_failure="keep",
            device=device,
        )
        # One Pipeline per guard object or policy, reused per image.
        self._pipelines: dict[int, tuple[Any, Any]] = {}

    def edit(
        self,
        pixels: np.ndarray,
        guard: Guard | GuardPanel,
        instruction: str,
        mask: np.ndarray | None,
    ) -> Edit:
        from safeview.pipeline import Pipeline
        from safeview.policy import GuardPanel

        # A panel: the joint search against every judge of the pair's category.
        key = guard.policy if isinstance(guard, GuardPanel) else guard
        cached = self._pipelines.get(id(key))
        if cached is None or cached[0] is not key:
            if isinstance(guard, GuardPanel) and guard.policy is not None:
                options = self.options.replace(guard=None, policy=guard.policy)
            else:
                options = self.options.replace(guard=guard)
            cached = self._pipelines[id(key)] = (key, Pipeline(options))
        pipeline = cached[1]
        report = pipeline.safeguard(pixels)
        edited = report.image if report.image is not None else pixels.copy()
        region_mask = (
            report.mask if report.mask is not None else np.zeros(pixels.shape[:2], dtype=bool)
        )
        return Edit(
            edited,
            region_mask.astype(bool),
            f"obfuscate ({self.style}) the fewest regions that flip the "
            + ("category's judges" if isinstance(guard, GuardPanel) else "guard"),
            {
                "style": self.style,
                "segmenter": self.segmenter,
                "regions": len(report.regions),
                "search_flipped": report.search_flipped,
            },
        )


class InpaintEditor:
    """Classical inpainting (OpenCV Telea) of the mask."""

    name = "inpaint"

    def __init__(self, mask_fraction: float = 0.08, radius: int = 0) -> None:
        if not 0.0 < mask_fraction < 1.0:
            raise ValueError(f"mask_fraction must be in (0, 1), got {mask_fraction}")
        self.mask_fraction, self.radius = mask_fraction, radius

    def edit(
        self,
        pixels: np.ndarray,
        guard: Guard | GuardPanel,
        instruction: str,
        mask: np.ndarray | None,
    ) -> Edit:
        source = "mask file"
        if mask is None:
            mask, source = attribution_mask(pixels, guard, self.mask_fraction), "attribution"
        radius = self.radius or max(3, min(pixels.shape[:2]) // 60)
        bgr = np.ascontiguousarray(pixels[..., ::-1])
        out = cv2.inpaint(bgr, mask.astype(np.uint8) * 255, radius, cv2.INPAINT_TELEA)
        return Edit(
            np.ascontiguousarray(out[..., ::-1]),
            mask,
            "inpaint the masked area from its surroundings",
            {"mask_source": source, "radius": radius},
        )


class DiffusersEditor:
    """A diffusers pipeline: instruction editing (InstructPix2Pix-like) or mask inpainting.

    ``model`` is a local folder (``save_pretrained`` layout) or a hub id already in the local
    cache; nothing is downloaded unless ``allow_download`` is set.
    """

    name = "diffusers"

    def __init__(
        self,
        model: str,
        steps: int = 20,
        guidance_scale: float = 7.5,
        image_guidance_scale: float = 1.5,
        size: int = 512,
        seed: int = 0,
        mask_fraction: float = 0.08,
        composite: bool | None = None,
        device: str | None = None,
        allow_download: bool = False,
    ) -> None:
        import torch
        import transformers
        from diffusers import DiffusionPipeline
        from diffusers.utils import logging as diffusers_logging

        from safeview.guards.base import select_device

        # Loading chatter (progress bars, "install accelerate") is not news to our users.
        diffusers_logging.set_verbosity_error()
        diffusers_logging.disable_progress_bar()
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()

        self.device = select_device(device)
        try:
            self.pipeline = DiffusionPipeline.from_pretrained(
                model,
                local_files_only=not allow_download,
                dtype=torch.float16 if self.device.type == "cuda" else torch.float32,
            ).to(self.device)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"cannot load diffusers pipeline {model!r}: {first}") from None
        self.pipeline.set_progress_bar_config(disable=True)
        kind = type(self.pipeline).__name__
        self.inpainting = "Inpaint" in kind
        self.kind, self.model = kind, model
        self.steps, self.guidance_scale = steps, guidance_scale
        self.image_guidance_scale, self.size, self.seed = image_guidance_scale, size, seed
        self.mask_fraction = mask_fraction
        # Inpainting keeps the unmasked pixels by construction; paste the masked area back so
        # the autoencoder's round trip does not touch the rest. Instruction editing has no mask.
        self.composite = self.inpainting if composite is None else composite

    def edit(
        self,
        pixels: np.ndarray,
        guard: Guard | GuardPanel,
        instruction: str,
        mask: np.ndarray | None,
    ) -> Edit:
        import torch
        from PIL import Image

        height, width = pixels.shape[:2]
        source = "mask file"
        if mask is None:
            mask, source = attribution_mask(pixels, guard, self.mask_fraction), "attribution"
        scale = self.size / max(height, width)
        work = (
            max(8, round(width * scale / 8) * 8),
            max(8, round(height * scale / 8) * 8),
        )
        image = Image.fromarray(resize(pixels, work))
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        arguments: dict[str, Any] = {
            "prompt": instruction,
            "image": image,
            "num_inference_steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "generator": generator,
            "output_type": "np",
        }
        if self.inpainting:
            small = resize(mask.astype(np.uint8) * 255, work, nearest=True)
            arguments.update(mask_image=Image.fromarray(small), height=work[1], width=work[0])
        else:
            arguments["image_guidance_scale"] = self.image_guidance_scale
        result = self.pipeline(**arguments).images[0]
        edited = resize((np.clip(result, 0.0, 1.0) * 255).round().astype(np.uint8), (width, height))
        if self.composite:
            edited = np.where(mask[..., None], edited, pixels)
        return Edit(
            edited,
            mask,
            instruction,
            {
                "pipeline": self.kind,
                "model": self.model,
                "steps": self.steps,
                "mask_source": source,
                "composite": self.composite,
                "seed": self.seed,
            },
        )


def _diffusers(**options: Any) -> Editor:
    if "model" not in options:
        raise ValueError("the diffusers editor needs a model (--model PATH_OR_HUB_ID)")
    return DiffusersEditor(**options)


#: Every pair editor by name: ``factory(**options) -> Editor``.
EDITORS: Registry[Editor] = Registry("editor", sort=False)
EDITORS.register("obfuscate", ObfuscateEditor)
EDITORS.register("inpaint", InpaintEditor)
EDITORS.register("diffusers", _diffusers)


def make_editor(name: str, **options: Any) -> Editor:
    """The editor ``name`` built with ``options``."""
    return EDITORS.factory(name)(**options)


def read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A mask image (white = edit) resized to ``size`` (width, height)."""
    pixels = load_image(path).pixels
    return resize(pixels.max(axis=2), size, nearest=True) > 127
