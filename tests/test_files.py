"""One folder walker: batch (safeguard over a folder) and training see the same files."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from safeview.batch import collect
from safeview.files import walk_images
from safeview.train.data import image_files


def _tree(root: Path, outside: Path) -> None:
    for relative in (
        "b.png",
        "a/x.JPG",  # upper-case extension
        "a/y.Jpeg",
        "a/deeper/z.webp",
        ".hidden.png",  # hidden file
        ".cache/w.png",  # hidden folder
        "c.PNG",
    ):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(path, format="PNG")
    (root / "notes.txt").write_text("not an image")
    (root / "a" / "readme.md").write_text("no")
    outside.mkdir()
    Image.new("RGB", (4, 4)).save(outside / "o.png")
    (root / "linked.png").symlink_to(outside / "o.png")  # symlinked file
    (root / "linked-dir").symlink_to(outside, target_is_directory=True)  # symlinked folder
    os.mkfifo(root / "pipe.png")  # not a regular file


def test_batch_and_train_see_the_same_files(tmp_path: Path) -> None:
    root = tmp_path / "in"
    _tree(root, tmp_path / "outside")
    walked = [entry.path.relative_to(root).as_posix() for entry in walk_images(root)]
    # Files of a folder by name, then its subfolders by name; symlinked folders not followed.
    assert walked == [
        ".hidden.png",
        "b.png",
        "c.PNG",
        "linked.png",
        "pipe.png",
        ".cache/w.png",
        "a/x.JPG",
        "a/y.Jpeg",
        "a/deeper/z.webp",
    ]
    assert [e.is_symlink for e in walk_images(root)] == [e == "linked.png" for e in walked]

    jobs, errors = collect([str(root)])
    assert not errors
    assert [job.key for job in jobs] == walked  # batch reports every entry, in the walk's order
    refused = {job.key for job in jobs if job.error}
    assert refused == {"linked.png", "pipe.png"}
    accepted = {job.source for job in jobs if not job.error}

    trained = image_files(root)
    assert set(trained) == accepted  # training uses what batch would process, nothing else
    assert trained == sorted(trained)


def test_walk_skips_the_output_folder(tmp_path: Path) -> None:
    root = tmp_path / "in"
    for relative in ("p.png", "out/q.png"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(root / relative)
    skip = frozenset({(root / "out").resolve()})
    assert [e.path.name for e in walk_images(root, skip=skip)] == ["p.png"]
