"""A lexicon of insults, slurs and threats, matched in text read from an image.

The entries are policy data (``lexicon.json`` beside this file; :func:`load_lexicon` reads a
user's edited copy instead). Matching has to survive OCR, which runs words together ("YOU ARE
UGLY" is read "YOUAREUGLY"), and writers who space letters out ("L O S E R"), shout, punctuate
or substitute ("L0SER", "@ss"). A line is normalised to lower-case words of letters (accents
dropped, apostrophes removed, digits and symbols that stand for letters replaced, anything else a
word break; three or more single letters in a row joined) and matched two ways:

- **long entries** (``min_substring_length`` letters or more, 5 by default, and those listed in
  ``anywhere``) match anywhere in the line with its word breaks removed. Long entries rarely hide
  inside innocent words, and this is what catches words OCR ran together ("AREALOSER").
- **short entries** ("ass", "ugly") hide inside many innocent words ("class", "smugly"). They
  match where the letters around them, out to the line's word breaks, split into common words
  (``common_words``, and the lexicon's own words), their last word optionally plural:
  "YOUAREUGLY" is you|are|ugly and "asses" is ass|es, while "class" (cl|ass), "bass" and
  "smugly" (sm|ugly) do not match. The trade-off: a short insult run into an uncommon word is
  missed ("UGLYDUCKLING"), and an innocent word that splits into common words and an entry
  ("amass" is am|ass) needs an ``allowed`` entry.

A match that starts or ends strictly inside an occurrence of an ``allowed`` word is ignored
("loser" in "closer", "pathetic" in "sympathetic", "kill you" in "skill you"). The allowed list is
data too; extend it when a false positive turns up.

Entries written ``"rot13:..."`` are stored ROT13-encoded, so that the file does not spell out
slurs; they are decoded on loading and match like any other entry.
"""

from __future__ import annotations

import codecs
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

#: Digits and symbols that stand in for letters ("l0ser", "@ss", "$tupid").
SUBSTITUTIONS = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t",
                               "@": "a", "$": "s"})  # fmt: skip
_APOSTROPHES = re.compile(r"['\u2019\u2018`\u00b4]")
_NOT_LETTERS = re.compile(r"[^a-z]+")


def words(text: str) -> list[str]:
    """``text`` as lower-case words of ASCII letters (see the module's docstring); a run of
    three or more single letters ("l o s e r") becomes one word."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    plain = _APOSTROPHES.sub("", plain).translate(SUBSTITUTIONS)
    tokens = [t for t in _NOT_LETTERS.split(plain) if t]
    joined: list[str] = []
    run: list[str] = []
    for token in [*tokens, ""]:  # "" flushes the last run
        if len(token) == 1:
            run.append(token)
            continue
        if len(run) >= 3:
            joined.append("".join(run))
        else:
            joined.extend(run)
        run = []
        if token:
            joined.append(token)
    return joined


def _decode(entry: str) -> str:
    return codecs.decode(entry[6:], "rot13") if entry.startswith("rot13:") else entry


def _spans(needle: str, haystack: str) -> list[tuple[int, int]]:
    found, start = [], haystack.find(needle)
    while start >= 0:
        found.append((start, start + len(needle)))
        start = haystack.find(needle, start + 1)
    return found


@dataclass(frozen=True)
class Entry:
    """One lexicon entry: the phrase as written (decoded), its category, its words."""

    term: str
    category: str
    words: tuple[str, ...]
    anywhere: bool

    @property
    def compact(self) -> str:
        return "".join(self.words)


class Lexicon:
    """Abusive phrases by category, matched as the module's docstring describes.

    Parameters
    ----------
    categories:
        ``{category: [phrase, ...]}``; a phrase may be ``"rot13:..."``-encoded.
    allowed:
        Innocent words a long entry may hide in ("closer" for "loser").
    anywhere:
        Short entries that match inside words all the same (no innocent word contains them).
    common_words:
        Words a short entry may be run together with ("you", "are", "so"...).
    min_substring_length:
        Letters from which an entry matches anywhere in the line.
    """

    def __init__(
        self,
        categories: Mapping[str, Iterable[str]],
        *,
        allowed: Iterable[str] = (),
        anywhere: Iterable[str] = (),
        common_words: Iterable[str] = (),
        min_substring_length: int = 5,
        source: str = "custom",
    ) -> None:
        self.source = source
        self.min_substring_length = int(min_substring_length)
        everywhere = {"".join(words(_decode(e))) for e in anywhere}
        entries = []
        for category, phrases in categories.items():
            if isinstance(phrases, str):
                raise ValueError(f"category {category}: expected a list of phrases")
            for phrase in phrases:
                term = _decode(str(phrase))
                tokens = tuple(words(term))
                if not tokens:
                    raise ValueError(f"category {category}: entry {phrase!r} has no letters")
                compact = "".join(tokens)
                entries.append(
                    Entry(
                        term=term,
                        category=str(category),
                        words=tokens,
                        anywhere=len(compact) >= self.min_substring_length or compact in everywhere,
                    )
                )
        self.entries = tuple(entries)
        self.allowed = tuple(sorted({"".join(words(_decode(w))) for w in allowed} - {""}))
        vocabulary = {w for phrase in common_words for w in words(_decode(phrase))}
        self.common_words = frozenset(vocabulary | {w for e in entries for w in e.words})
        self._longest = max((len(w) for w in self.common_words), default=0)

    def __len__(self) -> int:
        return len(self.entries)

    def categories(self) -> list[str]:
        return sorted({e.category for e in self.entries})

    def match(self, text: str) -> list[Entry]:
        """The entries ``text`` contains, in the lexicon's order (each entry once)."""
        tokens = words(text)
        compact = "".join(tokens)
        if not compact:
            return []
        breaks = [0]
        for token in tokens:
            breaks.append(breaks[-1] + len(token))
        shelter = [span for word in self.allowed for span in _spans(word, compact)]
        found = []
        for entry in self.entries:
            for start, end in _spans(entry.compact, compact):
                if any(a < start < b or a < end < b for a, b in shelter):
                    continue
                if entry.anywhere or self._stands_alone(compact, start, end, breaks):
                    found.append(entry)
                    break
        return found

    def _stands_alone(self, compact: str, start: int, end: int, breaks: list[int]) -> bool:
        """Whether the letters from the word break before ``start`` and after ``end`` split
        into common words (a plural ending allowed right after ``end``)."""
        before = compact[max(b for b in breaks if b <= start) : start]
        after = compact[end : min(b for b in breaks if b >= end)]
        if not self._splits(before):
            return False
        return any(
            after.startswith(ending) and self._splits(after[len(ending) :])
            for ending in ("", "s", "es")
        )

    def _splits(self, letters: str) -> bool:
        """Whether ``letters`` is a run of common words (the empty run is)."""
        reachable = [True] + [False] * len(letters)
        for i in range(len(letters)):
            if not reachable[i]:
                continue
            for j in range(i + 1, min(len(letters), i + self._longest) + 1):
                if letters[i:j] in self.common_words:
                    reachable[j] = True
        return reachable[-1]

    def matched_terms(self, text: str) -> list[str]:
        """The phrases ``text`` contains, as the lexicon writes them."""
        return [entry.term for entry in self.match(text)]


def load_lexicon(path: str | Path | None = None) -> Lexicon:
    """The built-in lexicon, or the JSON file at ``path`` (same shape as the built-in one:
    ``categories``, and optionally ``allowed``, ``anywhere``, ``common_words``,
    ``min_substring_length``)."""
    if path is None:
        text = resources.files("safeview.detectors").joinpath("lexicon.json").read_text("utf-8")
        source = "built-in lexicon"
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{source}: cannot read lexicon file ({exc.strerror})") from None
    try:
        data: Any = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("categories"), dict):
            raise ValueError("expected an object with 'categories'")
        return Lexicon(
            data["categories"],
            allowed=data.get("allowed", ()),
            anywhere=data.get("anywhere", ()),
            common_words=data.get("common_words", ()),
            min_substring_length=int(data.get("min_substring_length", 5)),
            source="default" if path is None else str(path),
        )
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"{source}: invalid lexicon file ({type(exc).__name__}: {exc})") from None
