"""SafetyPairs: counterfactual image pairs that differ only in safety-relevant features.

``make_pairs`` edits unsafe images with an editor (``obfuscate``, ``inpaint``, ``diffusers``) and
keeps a pair only when the label flips (one guard's, or the judges of the category in a policy)
and the image outside the edit is unchanged; ``evaluate_pairs`` benchmarks a guard, a policy or a
VLM on them; ``augment.run_experiment`` measures what the pairs add to a lightweight guard's
training data.
"""

from safeview.pairs.editors import EDITORS, Edit, Editor, make_editor
from safeview.pairs.evaluate import GuardJudge, PolicyJudge, VLMJudge, evaluate_pairs
from safeview.pairs.make import (
    category_judges,
    category_policy,
    check_guard_category,
    make_pairs,
    read_manifest,
    safeguarding_policy,
)
from safeview.pairs.verify import Verification, ssim_outside, verify, verify_judged

__all__ = [
    "EDITORS",
    "Edit",
    "Editor",
    "GuardJudge",
    "PolicyJudge",
    "VLMJudge",
    "Verification",
    "category_judges",
    "category_policy",
    "check_guard_category",
    "evaluate_pairs",
    "make_editor",
    "make_pairs",
    "read_manifest",
    "safeguarding_policy",
    "ssim_outside",
    "verify",
    "verify_judged",
]
