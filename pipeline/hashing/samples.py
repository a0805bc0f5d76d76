"""Sample photos for the demo, drawn from seeds, so that users need no media files.

Originals are random compositions of shapes over a gradient; edits are the kinds of change an
uploader makes (resize, blur, brightness, greyscale, each recompressed), which PDQ sees as near
duplicates; unrelated photos come from other seeds.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

SIZE = (480, 360)
EDITS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "smaller": lambda im: im.resize((SIZE[0] * 3 // 5, SIZE[1] * 3 // 5)),
    "blurred": lambda im: im.filter(ImageFilter.GaussianBlur(1.5)),
    "brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.2),
    "greyscale": lambda im: im.convert("L").convert("RGB"),
}


def draw_photo(seed: int) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", SIZE)
    draw = ImageDraw.Draw(image)
    top, bottom = [rng.randrange(256) for _ in range(3)], [rng.randrange(256) for _ in range(3)]
    for y in range(SIZE[1]):
        t = y / SIZE[1]
        draw.line([(0, y), (SIZE[0], y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    for _ in range(14):
        x0, y0 = rng.randrange(SIZE[0]), rng.randrange(SIZE[1])
        x1, y1 = x0 + rng.randrange(30, 200), y0 + rng.randrange(30, 160)
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        else:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
    return image


def generate_demo_images(out_dir: Path, originals: int = 3, unrelated: int = 3) -> dict[str, list[Path]]:
    """Write the demo's photos as JPEGs; returns their paths by role."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, list[Path]] = {"originals": [], "edits": [], "unrelated": []}

    def save(image: Image.Image, name: str, role: str, quality: int = 90) -> None:
        path = out_dir / f"{name}.jpg"
        image.save(path, "JPEG", quality=quality)
        paths[role].append(path)

    for n in range(originals):
        image = draw_photo(1000 + n)
        save(image, f"sample-{n + 1}", "originals")
        for edit_name, edit in EDITS.items():
            save(edit(image), f"sample-{n + 1}-{edit_name}", "edits", quality=70)
    for n in range(unrelated):
        save(draw_photo(5000 + n), f"unrelated-{n + 1}", "unrelated")
    return paths
