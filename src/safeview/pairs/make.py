"""``safeview pairs make``: edit each unsafe image into a safe counterpart, verify, and write the
kept pairs with a JSONL manifest (one line per source image, kept or rejected with the reasons).

Layout of PAIRS/:

* ``pairs.jsonl``: one record per source image (see :func:`make_pairs`);
* ``images/ID.unsafe.png`` and ``images/ID.safe.png``: the kept pairs (lossless);
* ``masks/ID.png``: where the editor edited (white);
* ``summary.json``: counts, and ``sheet.png``: the kept pairs at a glance, the unsafe side shown
  with its edit area pixelated so that the sheet itself is safe to look at.

Rejected candidates leave only their manifest line. A rerun skips the sources already in the
manifest, so an interrupted run resumes.

The label flip is verified by one guard, or (no guard given) by the judges of the pairs' category
in a safeguarding policy (:func:`category_judges`): kept when any judge flags the original and
none flags the edit.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from safeview.guards import Guard, default_target, is_flagged, scores
from safeview.io import IMAGE_EXTENSIONS, ImageInputError, atomic_write, encode_image, load_image
from safeview.pairs.editors import Editor, read_mask
from safeview.pairs.verify import DEFAULT_SSIM_THRESHOLD, Verification, verify, verify_judged
from safeview.train.data import image_files

if TYPE_CHECKING:
    from safeview.policy import BoundJudge, GuardPanel
    from safeview.rationale.policy import Policy

MANIFEST = "pairs.jsonl"
MANIFEST_VERSION = "1.0"


def _read_policy(policy: str | Path) -> tuple[Path, str, Any]:
    """(path, stripped text, parsed JSON or None) of a ``--policy`` file."""
    path = Path(policy)
    if not path.is_file():
        raise ValueError(f"policy file {path} does not exist")
    text = path.read_text(encoding="utf-8").strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    return path, text, data


def _is_default(policy: str | Path | None) -> bool:
    from safeview.policy import DEFAULT_POLICY

    return policy is None or str(policy) == DEFAULT_POLICY


def category_policy(category: str, policy: str | Path | None = None) -> tuple[str, str]:
    """(policy text, editing instruction) for ``category``.

    ``policy`` may be a safeview policy JSON (``--policy`` of ``explain``; ``"default"``: the
    built-in one), a JSON object with ``policy`` and optional ``instruction``, or a plain-text
    file with the policy text."""
    from safeview.rationale.policy import load_policy

    if not _is_default(policy):
        assert policy is not None
        path, text, data = _read_policy(policy)
        if isinstance(data, dict) and "categories" in data:
            found = load_policy(path).category_for("", category)
            if found is None:
                raise ValueError(f"policy file {path} has no category {category!r}")
            return found.policy, _instruction(found.attributes)
        if isinstance(data, dict) and "policy" in data:
            return str(data["policy"]), str(data.get("instruction") or _instruction(category))
        if data is not None:
            raise ValueError(f"policy file {path}: expected {{'policy': ...}} or plain text")
        if not text:
            raise ValueError(f"policy file {path} is empty")
        return text, _instruction(category)
    found = load_policy().category_for("", category)
    if found is not None:
        return found.policy, _instruction(found.attributes)
    return (
        f"Images that show {category.replace('_', ' ')} are unsafe.",
        _instruction(category.replace("_", " ")),
    )


def safeguarding_policy(policy: str | Path | None = None) -> Policy:
    """The safeview policy whose judges verify pairs: ``policy`` when it is a safeview policy
    file, else the built-in one (``None``, ``"default"``, or an editing-policy text or
    ``{'policy', 'instruction'}`` file, which names no guards)."""
    from safeview.policy import resolve_policy

    if _is_default(policy):
        return resolve_policy(None)
    assert policy is not None
    path, _, data = _read_policy(policy)
    if isinstance(data, dict) and "categories" in data:
        return resolve_policy(path)
    return resolve_policy(None)


def category_judges(category: str, policy: str | Path | Policy | None = None) -> Policy:
    """The policy cut down to ``category`` (an id or a name :meth:`Policy.category_for`
    accepts): the judges that verify its pairs when no guard is given. ``policy``: as
    :func:`safeguarding_policy`, or a :class:`Policy`. ``ValueError`` (one line, suggesting a
    guard) when the policy lacks the category or names no guard for it."""
    from safeview.rationale.policy import Policy

    chosen = policy if isinstance(policy, Policy) else safeguarding_policy(policy)
    found = chosen.category_for("", category)
    if found is None:
        raise ValueError(
            f"category {category!r} is not in policy {chosen.name} (its categories: "
            f"{', '.join(chosen.categories)}): give a guard (--guard) to verify its pairs"
        )
    if not found.judges:
        raise ValueError(
            f"category {found.id} has no guard in policy {chosen.name}, so nothing can verify "
            f"its pairs: give a guard (--guard NAME_OR_CHECKPOINT, e.g. from `safeview train "
            f"--category {found.id}`)"
        )
    return chosen.only(found.id)


def _instruction(attributes: str) -> str:
    return f"Remove the {attributes} from the image and keep everything else exactly the same."


def pair_id(key: str, category: str) -> str:
    """A file-name-safe id from the source's relative path."""
    stem = str(Path(key).with_suffix(""))
    return f"{category}-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", stem.replace("/", "__"))


def read_manifest(folder: str | Path) -> list[dict[str, Any]]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ValueError(f"{folder} has no {MANIFEST} (made by `safeview pairs make`)")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{number} is not JSON") from None
    return records


def _sources(inputs: Path) -> tuple[Path, list[Path]]:
    if inputs.is_file():
        if inputs.suffix.lower() not in IMAGE_EXTENSIONS:
            raise ValueError(f"{inputs} is not an image file")
        return inputs.parent, [inputs]
    if not inputs.is_dir():
        raise ValueError(f"{inputs} does not exist")
    files = image_files(inputs)
    if not files:
        raise ValueError(f"{inputs} has no images")
    return inputs, files


def check_guard_category(guard: Guard, category: str) -> None:
    """A guard trained for one category (``safeview train``) verifies pairs of that category
    only: ``ValueError`` for another one."""
    trained_for = getattr(guard, "category", None)
    if trained_for is not None and trained_for != category:
        where = getattr(guard, "path", guard.name)
        raise ValueError(f"guard {where} was trained for {trained_for!r}, not {category!r}")


def make_pairs(
    inputs: str | Path,
    output: str | Path,
    category: str,
    editor: Editor,
    guard: Guard | None = None,
    *,
    policy: str | Path | None = None,
    instruction: str | None = None,
    masks: str | Path | None = None,
    threshold: float = 0.5,
    ssim_threshold: float = DEFAULT_SSIM_THRESHOLD,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Make, verify and write pairs for every image under ``inputs``; returns the summary.

    The label flip is verified by ``guard`` (p(target) >= ``threshold``), or without a guard by
    the judges of ``category`` in the safeguarding policy (``policy`` when it is a safeview
    policy file, else the built-in one; see :func:`category_judges`), each with its own guard
    category and threshold, loaded on ``device``: kept when any judge flags the original and
    none flags the edit. The obfuscate editor then runs the joint search against those judges.

    Each manifest record: ``pair_id``, ``source`` (relative to ``inputs``), ``category``,
    ``policy`` (the text), ``editor`` (name, instruction, details), ``verification`` (figures
    and the measure's name), ``status`` (``kept``, ``rejected`` or ``failed``), ``reasons``,
    ``files`` when kept; with a guard: ``guard`` (name, version, target, threshold) and
    ``scores`` (before/after); with a policy: ``judges`` (``policy``, ``category`` and
    ``guards``: each judge's guard, version, category, threshold, ``score_before``,
    ``flagged_before``, ``score_after`` and ``flagged_after``).
    """
    from safeview.policy import GuardPanel

    verifier: Guard | GuardPanel
    if guard is not None:
        check_guard_category(guard, category)
        verifier = guard
    else:
        verifier = GuardPanel(policy=category_judges(category, policy), device=device)
    root, files = _sources(Path(inputs))
    out = Path(output)
    if out.resolve() == root.resolve() or root.resolve() in out.resolve().parents:
        raise ValueError(f"output {out} must not be inside the input folder {root}")
    policy_text, default_instruction = category_policy(category, policy)
    instruction = instruction or default_instruction
    mask_root = Path(masks) if masks is not None else None
    if mask_root is not None and not mask_root.is_dir():
        raise ValueError(f"mask folder {mask_root} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    _recover(out, manifest_path)
    done = {r["source"] for r in read_manifest(out)} if manifest_path.is_file() else set()
    todo = [p for p in files if p.relative_to(root).as_posix() not in done]
    with open(manifest_path, "a", encoding="utf-8") as manifest:
        for number, path in enumerate(todo, 1):
            key = path.relative_to(root).as_posix()
            record = _make_one(
                path,
                key,
                out,
                category,
                editor,
                verifier,
                policy_text,
                instruction,
                mask_root,
                threshold,
                ssim_threshold,
            )
            manifest.write(json.dumps(record) + "\n")
            manifest.flush()
            os.fsync(manifest.fileno())
            if progress is not None:
                progress(number, len(todo))
    records = read_manifest(out)
    summary = summarize(records, editor.name, category)
    summary["skipped_already_done"] = len(files) - len(todo)
    if isinstance(verifier, GuardPanel):
        summary["verified_by"] = {
            "policy": verifier.name,
            "category": verifier.categories[0].id,
            "guards": [g.name for g in verifier.guards],
        }
    else:
        summary["verified_by"] = {"guard": verifier.name}
    atomic_write(out / "summary.json", json.dumps(summary, indent=2).encode())
    kept = [r for r in records if r["status"] == "kept"]
    if kept:
        atomic_write(out / "sheet.png", encode_image(contact_sheet(out, kept), "PNG"))
    return summary


def _recover(out: Path, manifest_path: Path) -> None:
    """After a killed run: drop temporary files and a half-written last manifest line."""
    from safeview.batch import remove_partial_files

    remove_partial_files(out)
    if manifest_path.is_file():
        data = manifest_path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data[: data.rfind(b"\n") + 1]
            atomic_write(manifest_path, keep)


def _make_one(
    path: Path,
    key: str,
    out: Path,
    category: str,
    editor: Editor,
    verifier: Guard | GuardPanel,
    policy_text: str,
    instruction: str,
    mask_root: Path | None,
    threshold: float,
    ssim_threshold: float,
) -> dict[str, Any]:
    from safeview.policy import GuardPanel

    identifier = pair_id(key, category)
    record: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "pair_id": identifier,
        "source": key,
        "source_path": str(path.resolve()),
        "category": category,
        "policy": policy_text,
        "editor": {"name": editor.name, "instruction": instruction},
    }
    if isinstance(verifier, GuardPanel):
        label: _Label = _JudgesLabel(verifier, record)
    else:
        label = _GuardLabel(verifier, threshold, record)
    try:
        pixels = load_image(path).pixels
    except ImageInputError as exc:
        return {**record, "status": "failed", "reasons": [str(exc)]}
    label.score(pixels)
    mask = None
    if mask_root is not None:
        candidates = [mask_root / Path(key).with_suffix(".png")]
        candidates += [mask_root / Path(key).with_suffix(ext) for ext in (".jpg", ".bmp")]
        found = next((c for c in candidates if c.is_file()), None)
        if found is not None:
            mask = read_mask(found, (pixels.shape[1], pixels.shape[0]))
    if not label.flagged:
        check = label.check(pixels, pixels, np.zeros(pixels.shape[:2], bool), ssim_threshold)
        label.unedited()
        return {
            **record,
            "status": "rejected",
            "reasons": check.reasons[:1],
            **label.scores(check, edited=False),
            "verification": check.to_dict(),
        }
    try:
        edit = editor.edit(pixels, verifier, instruction, mask)
    except (ValueError, RuntimeError) as exc:
        return {**record, "status": "failed", "reasons": [f"editor failed: {exc}"]}
    check = label.check(pixels, edit.image, edit.mask, ssim_threshold)
    record["editor"].update(instruction=edit.instruction, details=edit.details)
    record.update(
        status="kept" if check.kept else "rejected",
        reasons=check.reasons,
        **label.scores(check, edited=True),
        verification=check.to_dict(),
    )
    if check.kept:
        files = {
            "unsafe": f"images/{identifier}.unsafe.png",
            "safe": f"images/{identifier}.safe.png",
            "mask": f"masks/{identifier}.png",
        }
        atomic_write(out / files["unsafe"], encode_image(pixels, "PNG"))
        atomic_write(out / files["safe"], encode_image(edit.image, "PNG"))
        mask_pixels = np.repeat(edit.mask[..., None], 3, axis=2).astype(np.uint8) * 255
        atomic_write(out / files["mask"], encode_image(mask_pixels, "PNG"))
        record["files"] = files
    return record


class _Label:
    """How a pair's label is read: score the original, then verify an edit against it."""

    flagged: bool = False

    def score(self, pixels: np.ndarray) -> None:
        raise NotImplementedError

    def check(
        self, before: np.ndarray, after: np.ndarray, mask: np.ndarray, ssim_threshold: float
    ) -> Verification:
        raise NotImplementedError

    def unedited(self) -> None:
        """The original was not edited: drop the figures about an edit."""

    def scores(self, check: Verification, edited: bool) -> dict[str, Any]:
        """Fields of the record besides the verification."""
        return {}


class _GuardLabel(_Label):
    """One guard: its target's probability against ``threshold``."""

    def __init__(self, guard: Guard, threshold: float, record: dict[str, Any]) -> None:
        self.guard, self.threshold = guard, threshold
        self.record = record["guard"] = {
            "name": guard.name,
            "version": guard.version,
            "threshold": threshold,
        }

    def score(self, pixels: np.ndarray) -> None:
        self.probs = scores(self.guard, [pixels])[0]
        self.target = default_target(self.guard, self.probs)
        self.record["target"] = self.guard.categories[self.target]
        self.flagged = bool(is_flagged(self.guard, self.probs, self.target, self.threshold)[0])

    def check(
        self, before: np.ndarray, after: np.ndarray, mask: np.ndarray, ssim_threshold: float
    ) -> Verification:
        p_after = self.probs if after is before else scores(self.guard, [after])[0]
        return verify(
            before,
            after,
            mask,
            self.probs[self.target],
            p_after[self.target],
            self.threshold,
            ssim_threshold,
        )

    def scores(self, check: Verification, edited: bool) -> dict[str, Any]:
        return {"scores": {"before": check.p_before, "after": check.p_after if edited else None}}


class _JudgesLabel(_Label):
    """The judges of a policy category (a panel): any flags the original, none the edit."""

    def __init__(self, panel: GuardPanel, record: dict[str, Any]) -> None:
        self.panel = panel
        self.entries: list[dict[str, Any]] = []
        record["judges"] = {
            "policy": panel.name,
            "category": panel.categories[0].id,
            "guards": self.entries,
        }

    def score(self, pixels: np.ndarray) -> None:
        self.row = self.panel.score([pixels])
        self.judges: list[BoundJudge] = self.panel.bind(self.row)
        self.entries[:] = [
            {
                "guard": judge.guard.name,
                "version": judge.guard.version,
                "category": judge.guard_category,
                "threshold": judge.threshold,
                "score_before": round(float(judge.score(self.row)[0]), 6),
                "flagged_before": bool(judge.flags(self.row)[0]),
            }
            for judge in self.judges
        ]
        self.flagged = any(entry["flagged_before"] for entry in self.entries)

    def check(
        self, before: np.ndarray, after: np.ndarray, mask: np.ndarray, ssim_threshold: float
    ) -> Verification:
        row = self.row if after is before else self.panel.score([after])
        for judge, entry in zip(self.judges, self.entries, strict=True):
            entry["score_after"] = round(float(judge.score(row)[0]), 6)
            entry["flagged_after"] = bool(judge.flags(row)[0])
        return verify_judged(before, after, mask, self.entries, ssim_threshold)

    def unedited(self) -> None:
        for entry in self.entries:
            entry.pop("score_after", None)
            entry.pop("flagged_after", None)


def summarize(records: list[dict[str, Any]], editor: str, category: str) -> dict[str, Any]:
    status = Counter(r["status"] for r in records)
    reasons = Counter(
        re.sub(r"\s*\(.*\)$", "", reason)
        for r in records
        if r["status"] != "kept"
        for reason in r.get("reasons", [])[:1]
    )
    kept = [r for r in records if r["status"] == "kept"]
    ssim = [r["verification"]["ssim_outside_mask"] for r in kept]
    area = [r["verification"]["mask_fraction"] for r in kept]
    return {
        "schema_version": MANIFEST_VERSION,
        "category": category,
        "editor": editor,
        "sources": len(records),
        "kept": status.get("kept", 0),
        "rejected": status.get("rejected", 0),
        "failed": status.get("failed", 0),
        "rejection_reasons": dict(reasons.most_common()),
        "median_ssim_outside_mask": float(np.median(ssim)) if ssim else None,
        "median_mask_fraction": float(np.median(area)) if area else None,
    }


def contact_sheet(
    folder: Path, kept: list[dict[str, Any]], limit: int = 16, cell: int = 200
) -> np.ndarray:
    """Kept pairs side by side (edit area of the unsafe side pixelated, outlined in red)."""
    import cv2

    from safeview.render import make_renderer

    rows = []
    pixelate = make_renderer("pixelate")
    for record in kept[:limit]:
        files = record["files"]
        unsafe = load_image(folder / files["unsafe"]).pixels
        safe = load_image(folder / files["safe"]).pixels
        mask = load_image(folder / files["mask"]).pixels[..., 0] > 127
        covered = pixelate.render(unsafe, mask)
        contours, _ = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        covered = np.ascontiguousarray(covered)
        cv2.drawContours(covered, contours, -1, (255, 0, 0), max(1, min(mask.shape) // 150))
        scale = cell / max(unsafe.shape[:2])
        size = (max(1, int(unsafe.shape[1] * scale)), max(1, int(unsafe.shape[0] * scale)))
        left, right = cv2.resize(covered, size), cv2.resize(safe, size)
        row = np.full((cell, 2 * cell + 8, 3), 255, dtype=np.uint8)
        row[: size[1], : size[0]] = left
        row[: size[1], cell + 8 : cell + 8 + size[0]] = right
        rows.append(row)
        rows.append(np.full((8, 2 * cell + 8, 3), 255, dtype=np.uint8))
    return np.concatenate(rows[:-1], axis=0)
