"""Joining the OCR's pieces into the lines a reader sees (no model needed)."""

from __future__ import annotations

from safeview.detectors.text import Piece, visual_lines


def piece(text: str, x0: float, y0: float, x1: float, y1: float) -> Piece:
    return ([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], text, 0.9)


def test_pieces_of_one_line_join_left_to_right() -> None:
    lines = visual_lines(
        [
            piece("DIE", 150, 102, 200, 130),  # far from "GO", but within 1.5 heights
            piece("GO", 100, 100, 130, 128),
            piece("below", 100, 200, 200, 228),
            piece("far away", 400, 100, 500, 128),
            piece("BIG", 205, 80, 300, 150),  # much taller: a different line
        ]
    )
    assert [[p[1] for p in line] for line in lines] == [
        ["BIG"],
        ["GO", "DIE"],
        ["far away"],
        ["below"],
    ]
    assert visual_lines([]) == []
