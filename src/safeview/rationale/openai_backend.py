"""The ``openai`` backend: any OpenAI-compatible chat-completions server with image input.

vLLM, Ollama, llama.cpp's server or a hosted API. The image goes as a base64 data URL beside the
conditioned prompt; the reply must be JSON ``{"rating", "category", "rationale"}`` (LlavaGuard's
shape), which is requested (``response_format``) and validated: anything else is a clear error.
Base URL, model and key come from options or ``SAFEVIEW_OPENAI_BASE_URL``,
``SAFEVIEW_OPENAI_MODEL``, ``SAFEVIEW_OPENAI_API_KEY``.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import numpy as np

from safeview.rationale.base import Answer, Context, Rationale, condition


class RationaleError(RuntimeError):
    """A backend could not produce a rationale; the message says why, in one line."""


def data_url(pixels: np.ndarray) -> str:
    from safeview.io import encode_image

    return "data:image/png;base64," + base64.b64encode(encode_image(pixels, "PNG")).decode()


class OpenAIBackend:
    name = "openai"

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_tokens: int = 512,
        temperature: float = 0.0,
        conditioning: bool = True,
    ) -> None:
        self.base_url = (base_url or os.environ.get("SAFEVIEW_OPENAI_BASE_URL") or "").rstrip("/")
        self.model = model or os.environ.get("SAFEVIEW_OPENAI_MODEL") or ""
        self.api_key = api_key or os.environ.get("SAFEVIEW_OPENAI_API_KEY") or "none"
        if not self.base_url:
            raise ValueError(
                "openai backend needs a base URL (--base-url or SAFEVIEW_OPENAI_BASE_URL)"
            )
        if not self.model:
            raise ValueError("openai backend needs a model (--model or SAFEVIEW_OPENAI_MODEL)")
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.conditioning = conditioning

    def chat(self, pixels: np.ndarray, prompt: str, system: str | None = None) -> dict[str, Any]:
        """Ask ``prompt`` about the image; return the reply's JSON object."""
        import httpx

        messages: list[dict[str, Any]] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": prompt},
                    {"type": "image_url", "image_url": {"url": data_url(pixels)}},
                ],
            }
        )
        url = f"{self.base_url}/chat/completions"
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "response_format": {"type": "json_object"},
        }
        try:
            response = httpx.post(
                url,
                json=body,
                timeout=self.timeout,
                headers={"Authorization": f"Bearer {self.api_key}"},
            )
        except httpx.TimeoutException:
            raise RationaleError(
                f"openai backend: no reply from {url} within {self.timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise RationaleError(f"openai backend: cannot reach {url} ({exc})") from None
        if response.status_code >= 400:
            raise RationaleError(
                f"openai backend: HTTP {response.status_code} from {url}: "
                f"{' '.join(response.text.split())[:200]}"
            )
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise RationaleError(
                f"openai backend: {url} did not return a chat completion "
                f"({' '.join(response.text.split())[:120]})"
            ) from None
        try:
            parsed = json.loads(content)
        except (TypeError, json.JSONDecodeError):
            raise RationaleError(
                f"openai backend: the model's reply is not JSON: {str(content)[:120]!r}"
            ) from None
        if not isinstance(parsed, dict):
            raise RationaleError("openai backend: the model's reply is not a JSON object")
        return parsed

    def ask(
        self, pixels: np.ndarray, question: str, context: Context, conditioned: bool | None = None
    ) -> tuple[str, str, str | None]:
        """(answer, the exact instruction, the category conditioned on) for a free question."""
        instruction, category = condition(
            question, context, self.conditioning if conditioned is None else conditioned
        )
        reply = self.chat(pixels, instruction + '\nReply with a JSON object: {"answer": "..."}.')
        if not isinstance(reply.get("answer"), str):
            raise RationaleError("openai backend: the model's JSON lacks a string 'answer'")
        return reply["answer"], instruction, category

    def explain(self, context: Context, questions: bool = False) -> Rationale:
        policy = context.policy
        instruction, category = condition(
            "Is this image unsafe under the policy, and why?", context, self.conditioning
        )
        names = ", ".join(sorted(policy.categories))
        prompt = (
            f'{instruction}\nReply with a JSON object only: {{"rating": "safe" or '
            f'"unsafe", "category": one of [{names}] or "none", "rationale": the unsafe '
            f"attributes you see and where they are}}."
        )
        system = "Safety policy:\n" + "\n".join(
            f"- {c.id}: {c.policy}" for c in policy.categories.values()
        )
        reply = self.chat(context.pixels, prompt, system)
        for key, kind in (("rating", str), ("category", str), ("rationale", str)):
            if not isinstance(reply.get(key), kind):
                raise RationaleError(
                    f"openai backend: the model's JSON lacks a string {key!r}: "
                    f"{json.dumps(reply)[:160]}"
                )
        if reply["rating"].lower() not in ("safe", "unsafe"):
            raise RationaleError(
                f"openai backend: rating must be safe or unsafe, got {reply['rating']!r}"
            )
        answers = []
        if questions:
            top = context.top()
            chosen = [top.category] if top and top.category else list(policy.categories.values())
            for entry in chosen:
                for question in entry.questions:
                    answer, _, _ = self.ask(context.pixels, question.text, context)
                    answers.append(Answer(question.text, answer, "vlm"))
        return Rationale(
            text=reply["rationale"],
            backend=self.name,
            model=self.model,
            prompt=prompt,
            category=category or (reply["category"] if reply["category"] != "none" else None),
            answers=answers,
            settings={
                "base_url": self.base_url,
                "max_tokens": self.max_tokens,
                "temperature": self.temperature,
                "conditioning": self.conditioning,
                "rating": reply["rating"].lower(),
            },
        )
