"""Write engine/models/magenta/reference_mean.npy: the mean Magenta style vector of the reference paintings.

    .venv/bin/python scripts/magenta_reference_mean.py [../shared/data/styles]

The default folder holds nine public-domain paintings (Van Gogh x3, Hokusai, Gauguin, Picabia x2, Matisse,
Turner). Each is centre-cropped and resized to 256 px (`MagentaNets.style_vector`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from engine.imaging import load_image
from engine.metrics_style import REFERENCE_FILE
from engine.models.magenta import load_magenta


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[2] / "shared/data/styles")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    nets = load_magenta("cpu")
    vecs = []
    with torch.no_grad():
        for f in files:
            img = torch.from_numpy(np.asarray(load_image(f), np.float32) / 255.0).permute(2, 0, 1)[None]
            vecs.append(nets.style_vector(img)[0].numpy())
            print(f.name)
    mean = np.mean(vecs, axis=0).astype(np.float32)
    np.save(REFERENCE_FILE, mean, allow_pickle=False)
    print(f"wrote {REFERENCE_FILE} from {len(vecs)} paintings, |mean| = {np.linalg.norm(mean):.3f}")


if __name__ == "__main__":
    main()
