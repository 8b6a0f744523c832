"""The paper's Table 1 protocol on a labelled folder: does each answer name an unsafe attribute?

``FOLDER/<category>/*.jpg`` (category ids from the policy; other folder names are ignored). Each
backend answers the generic questions ("What is happening in the image?", "What are the people
doing?") with and without conditioning on the guards' predictions; an answer is a hit when it names
an unsafe attribute of the image's true category, judged by the policy's keyword rubric (offline)
or by an LLM judge through the ``openai`` backend.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeview.rationale.base import Context
from safeview.rationale.policy import Category, Policy


@dataclass
class Row:
    category: str
    backend: str
    conditioned: bool
    answers: int
    hits: int

    @property
    def hit_rate(self) -> float:
        return self.hits / self.answers if self.answers else float("nan")


def rubric_hit(answer: str, category: Category) -> bool:
    text = answer.lower()
    return any(keyword in text for keyword in category.keywords)


def judge_hit(judge: Any, answer: str, category: Category, pixels: Any) -> bool:
    """An LLM judge (an OpenAIBackend) decides whether ``answer`` names an unsafe attribute."""
    reply = judge.chat(
        pixels,
        (
            f"Category: {category.name} ({category.attributes}).\nAnswer to judge: {answer!r}\n"
            "Does the answer name an unsafe attribute of this category that is visible in the "
            "image? "
            'Reply with a JSON object: {"hit": true or false}.'
        ),
    )
    return bool(reply.get("hit"))


def evaluate(
    folder: str | Path,
    backends: dict[str, Any],
    policy: Policy,
    make_context: Callable[[Any], Context],
    *,
    judge: Any = None,
    limit: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Row]:
    """Hit rates per (category, backend, conditioning) over the images of ``folder``."""
    from safeview.batch import collect

    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    counts: dict[tuple[str, str, bool], list[int]] = defaultdict(lambda: [0, 0])
    found_any = False
    for category_id, category in policy.categories.items():
        subfolder = root / category_id
        if not subfolder.is_dir():
            continue
        jobs, _ = collect([str(subfolder)])
        for job in jobs[:limit]:
            if job.error or job.source is None:
                continue
            found_any = True
            from safeview.io import load_image

            context = make_context(load_image(job.source).pixels)
            for name, backend in backends.items():
                for conditioned in (False, True):
                    for question in policy.generic_questions:
                        answer, _, _ = backend.ask(context.pixels, question, context, conditioned)
                        hit = (
                            judge_hit(judge, answer, category, context.pixels)
                            if judge
                            else rubric_hit(answer, category)
                        )
                        cell = counts[(category_id, name, conditioned)]
                        cell[0] += 1
                        cell[1] += int(hit)
            if progress is not None:
                progress(job.name)
    if not found_any:
        names = ", ".join(policy.categories)
        raise ValueError(f"{root}: no images in any category folder ({names})")
    return [Row(c, b, k, n, h) for (c, b, k), (n, h) in sorted(counts.items())]


def table(rows: list[Row]) -> str:
    lines = ["| category | backend | conditioned | answers | hit rate |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row.category} | {row.backend} | {'yes' if row.conditioned else 'no'} | "
            f"{row.answers} | {100 * row.hit_rate:.1f}% |"
        )
    return "\n".join(lines)
