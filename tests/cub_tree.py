"""A tiny CUB-200-2011 tree in the official layout, written into a test's folder (used by test_cub and test_birds_cub)."""

from stnlib.data.cub import HEAD_PARTS, PART_NAMES

# image id -> (class id, is_training, path, size (W, H), box)
IMAGES = {
    1: (1, 1, "001.Black_footed_Albatross/Black_Footed_Albatross_0001.jpg", (40, 30), (2.0, 3.0, 30.0, 20.0)),
    2: (1, 0, "001.Black_footed_Albatross/Black_Footed_Albatross_0002.jpg", (32, 32), (0.0, 0.0, 32.0, 32.0)),
    3: (2, 1, "002.Laysan_Albatross/Laysan_Albatross_0003.jpg", (30, 40), (5.0, 5.0, 10.0, 12.0)),
    4: (2, 1, "002.Laysan_Albatross/Laysan_Albatross_0004.jpg", (24, 24), (1.0, 2.0, 3.0, 4.0)),
    5: (2, 0, "002.Laysan_Albatross/Laysan_Albatross_0005.jpg", (36, 20), (1.5, 2.5, 10.0, 10.0)),
}


def write_tree(root, images=IMAGES):
    """A CUB_200_2011 folder with ``images`` (ids listed out of order, as a safeguard against order assumptions)."""
    from PIL import Image

    cub = root / "CUB_200_2011"
    (cub / "parts").mkdir(parents=True)
    ids = sorted(images, reverse=True)
    (cub / "images.txt").write_text("".join(f"{i} {images[i][2]}\n" for i in ids))
    (cub / "image_class_labels.txt").write_text("".join(f"{i} {images[i][0]}\n" for i in ids))
    (cub / "train_test_split.txt").write_text("".join(f"{i} {images[i][1]}\n" for i in ids))
    (cub / "bounding_boxes.txt").write_text("".join(f"{i} {' '.join(map(str, images[i][4]))}\n" for i in ids))
    (cub / "classes.txt").write_text("1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n")
    (cub / "parts" / "parts.txt").write_text("".join(f"{k + 1} {n}\n" for k, n in enumerate(PART_NAMES)))
    lines = []
    for i in ids:
        for p in range(1, 16):
            # image i: part p at (p + i, 2p), visible except the tail (14) and, for image 5, every head part
            hidden = p == 14 or (i == 5 and PART_NAMES[p - 1] in HEAD_PARTS)
            lines.append(f"{i} {p} {0.0 if hidden else p + i} {0.0 if hidden else 2.0 * p} {0 if hidden else 1}\n")
    (cub / "parts" / "part_locs.txt").write_text("".join(lines))
    for i in ids:
        path = cub / "images" / images[i][2]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", images[i][3], color=(10 * i, 100, 200)).save(path)
    return cub
