"""The lexicon alone, on strings: spacing, case and OCR variants match; innocent words do not."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import pytest

from safeview.detectors.lexicon import Lexicon, load_lexicon, words


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return load_lexicon()


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("YOU ARE A LOSER", "loser"),
        ("YOU AREALOSER", "loser"),  # how RapidOCR read it on a photograph
        ("you are a l o s e r", "loser"),
        ("Y0U ARE A L0SER!!", "loser"),
        ("loser.", "loser"),
        ("LOSERS", "loser"),
        ("shut up, idiot", "idiot"),
        ("SHUTUP", "shut up"),
        ("Nobody   likes you", "nobody likes you"),
        ("KILL YOURSELF", "kill yourself"),
        ("killyourself", "kill yourself"),
        ("I'll kill you", "kill you"),
        ("you're dead", "youre dead"),
        ("You are UGLY", "ugly"),
        ("YOUAREUGLY", "ugly"),  # RapidOCR's reading of "YOU ARE UGLY" drawn on a photograph
        ("youre such a dumbass", "dumbass"),
        ("you ASS", "ass"),
        ("what an ass", "ass"),
        ("Sympathy? You are pathetic", "pathetic"),
        ("Résumé of a moron", "moron"),
        ("f*ck off... no: FUCK OFF", "fuck off"),
        ("go die", "go die"),
    ],
)
def test_abusive_variants_match(lexicon: Lexicon, text: str, term: str) -> None:
    assert term in lexicon.matched_terms(text)


@pytest.mark.parametrize(
    "text",
    [
        "HAVE A NICE DAY",
        "first class seats",  # "ass" inside a word
        "bass guitar and brass band",
        "assessment of the grass",
        "Closer to nature",  # "loser" inside "closer"
        "a sympathetic ear",  # "pathetic" inside "sympathetic"
        "an oxymoron",
        "the skill you need",  # "kill you" across "skill you"
        "go diet",
        "fire retardant",
        "dumbbell workout",  # "dumb" is short: "bell" is not a common word
        "smugly amassed",
        "MOBYDICK",
        "Scunthorpe United",
        "the shoe shop",
        "WELCOME HOME",
        "SALE 50% OFF",
        "",
        "12345",
    ],
)
def test_innocent_text_does_not_match(lexicon: Lexicon, text: str) -> None:
    assert lexicon.matched_terms(text) == []


def test_categories_and_encoded_entries(lexicon: Lexicon) -> None:
    assert set(lexicon.categories()) == {"insult", "threat", "self_harm_incitement", "slur"}
    assert {e.category for e in lexicon.match("I will kill you, loser")} == {"insult", "threat"}
    # Every encoded slur decodes and matches itself, spaced out and in upper case.
    slurs = [e for e in lexicon.entries if e.category == "slur"]
    assert len(slurs) >= 10
    for entry in slurs:
        assert entry.term.isalpha() and not entry.term.startswith("rot13")
        assert entry in lexicon.match(f"you {entry.term.upper()}")
        assert entry in lexicon.match(" ".join(entry.term))


def test_short_entries_need_common_words_around_them() -> None:
    lexicon = Lexicon(
        {"insult": ["ass", "ugly", "loser", "rot13:wrex"], "threat": ["hurt you"]},
        allowed=["closer", "amass"],
        anywhere=["jerk"],
        common_words=["you", "are", "so", "a"],
    )
    assert lexicon.matched_terms("asses") == ["ass"]
    assert lexicon.matched_terms("YOUASS") == ["ass"]  # you|ass
    assert lexicon.matched_terms("YOUARESOUGLY") == ["ugly"]  # you|are|so|ugly
    assert lexicon.matched_terms("you are a U G L Y") == ["ugly"]  # "augly": a|ugly
    assert lexicon.matched_terms("uglyloser") == ["ugly", "loser"]  # entries are words too
    for innocent in ("class", "bass", "passes", "smugly", "amass"):
        assert lexicon.matched_terms(innocent) == [], innocent
    assert lexicon.matched_terms("UGLYDUCKLING") == []  # the documented trade-off
    assert lexicon.matched_terms("beefjerky") == ["jerk"]  # "anywhere" overrides the length
    assert lexicon.matched_terms("closer") == []
    assert lexicon.matched_terms("closer loser") == ["loser"]  # only the match inside is spared
    assert lexicon.matched_terms("ihurtyoualot") == ["hurt you"]
    assert len(lexicon) == 5


def test_words_normalisation() -> None:
    assert words("YOU AREALOSER") == ["you", "arealoser"]
    assert words("l o s e r, you're") == ["loser", "youre"]
    assert words("Çà  va-bien") == ["ca", "va", "bien"]
    assert words("a b") == ["a", "b"]  # two letters are two words, three are spaced-out one
    assert words("$tup1d @ss") == ["stupid", "ass"]


def test_user_lexicon_file(tmp_path: Path) -> None:
    path = tmp_path / "lexicon.json"
    data = {
        "categories": {"insult": ["banana brain", "rot13:" + codecs.encode("turnip", "rot13")]},
        "allowed": ["bananabrainstorm"],
        "min_substring_length": 4,
    }
    path.write_text(json.dumps(data))
    lexicon = load_lexicon(path)
    assert lexicon.source == str(path)
    assert lexicon.matched_terms("BANANABRAIN!") == ["banana brain"]
    assert lexicon.matched_terms("a bananabrainstorm") == []
    assert lexicon.matched_terms("TURNIP") == ["turnip"]  # stored encoded, matched decoded


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "invalid lexicon file"),
        ('{"entries": []}', "invalid lexicon file"),
        ('{"categories": {"insult": "loser"}}', "expected a list"),
        ('{"categories": {"insult": ["!!"]}}', "has no letters"),
    ],
)
def test_bad_lexicon_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_lexicon(path)
    with pytest.raises(ValueError, match="cannot read"):
        load_lexicon(tmp_path / "missing.json")
