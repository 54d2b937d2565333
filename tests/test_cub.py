"""The CUB-200-2011 loader on a tiny tree in the official layout (tests/cub_tree.py); broken trees raise naming the file."""

import math
import shutil

import pytest
import torch
from cub_tree import IMAGES, write_tree

from stnlib.data.cub import BODY_PARTS, HEAD_PARTS, PART_NAMES, CUBBatches, CUBDataError, CUBImages, load_cub


@pytest.fixture()
def tree(tmp_path):
    return write_tree(tmp_path)


def test_loader_reads_the_official_layout(tree):
    meta = load_cub(tree.parent)  # the folder that contains CUB_200_2011 works too
    assert meta.root == tree and len(meta) == 5
    assert meta.image_ids.tolist() == [1, 2, 3, 4, 5]
    assert meta.paths[2] == IMAGES[3][2]
    assert meta.labels.tolist() == [0, 0, 1, 1, 1] and meta.num_classes == 2
    assert meta.split("train").tolist() == [0, 2, 3] and meta.split("test").tolist() == [1, 4]
    torch.testing.assert_close(meta.boxes[4], torch.tensor([1.5, 2.5, 10.0, 10.0]))
    assert meta.part_xy.shape == (5, 15, 2) and meta.part_names == list(PART_NAMES)
    assert not meta.part_visible[:, 13].any() and meta.part_visible[0].sum() == 14
    torch.testing.assert_close(meta.part_xy[1, 1], torch.tensor([2.0 + 2, 4.0]))  # image 2, part 2 (beak)


def test_head_and_body_centres_average_the_visible_parts(tree):
    meta = load_cub(tree)
    centres = meta.head_body_centres()
    head_ids = [PART_NAMES.index(p) + 1 for p in HEAD_PARTS]
    body_ids = [PART_NAMES.index(p) + 1 for p in BODY_PARTS]
    mean = lambda ids, i: torch.tensor([sum(p + i for p in ids) / len(ids), sum(2.0 * p for p in ids) / len(ids)])
    torch.testing.assert_close(centres[0, 0], mean(head_ids, 1))
    torch.testing.assert_close(centres[2, 1], mean(body_ids, 3))
    assert torch.isnan(centres[4, 0]).all() and not torch.isnan(centres[4, 1]).any()  # image 5: no head visible


def test_images_are_resized_and_parts_normalised(tree):
    meta = load_cub(tree)
    test = CUBImages(meta, "test", size=16)
    image, label, parts = test[0]  # image 2: 32 x 32
    assert image.shape == (3, 16, 16) and image.dtype == torch.uint8 and label == 0
    assert image[0].eq(20).all() and image[1].eq(100).all()
    expected_px = meta.head_body_centres()[1]
    torch.testing.assert_close(parts, (expected_px * 2 + 1) / 32 - 1)
    _, _, parts5 = test[1]  # image 5 (36 x 20): x normalised by the width, y by the height
    assert math.isnan(parts5[0, 0]) and abs(parts5[1, 0] - ((meta.head_body_centres()[4, 1, 0] * 2 + 1) / 36 - 1)) < 1e-6


def test_batches_are_step_indexed_and_cover_an_epoch(tree):
    data = CUBBatches(CUBImages(load_cub(tree), "train", size=8), batch_size=2, seed=1)
    x, y, parts = data.batch(0)
    assert x.shape == (2, 3, 8, 8) and y.shape == (2,) and parts.shape == (2, 2, 2)
    assert torch.equal(data.batch(3)[0], data.batch(3)[0])
    epoch = torch.cat([data.indices(0), data.indices(1)])
    assert sorted(epoch.tolist()) == [0, 1, 2]


def test_cached_images_are_decoded_once(tree):
    images = CUBImages(load_cub(tree), "train", size=8, cache=True)
    first = images[1]
    (tree / "images" / IMAGES[3][2]).unlink()  # row 1 of the train split is image 3
    again = images[1]
    assert torch.equal(first[0], again[0]) and torch.equal(first[2], again[2])
    with pytest.raises(CUBDataError, match="missing image file"):
        CUBImages(load_cub(tree, check_images=False), "train", size=8)[1]


def test_flipped_batches_mirror_images_and_part_x(tree):
    from PIL import Image

    for i in (1, 3, 4):  # left-right asymmetric images: a horizontal ramp
        w, h = IMAGES[i][3]
        Image.frombytes("L", (w, h), bytes(255 * x // w for _ in range(h) for x in range(w))).convert("RGB").save(
            tree / "images" / IMAGES[i][2])
    images = CUBImages(load_cub(tree), "train", size=8)
    plain = CUBBatches(images, batch_size=3, seed=2)
    flipped = CUBBatches(images, batch_size=3, seed=2, flip=True)
    mirrored = set()
    for step in range(6):
        (x0, y0, p0), (x1, y1, p1) = plain.batch(step), flipped.batch(step)
        assert torch.equal(y0, y1) and torch.equal(x1, flipped.batch(step)[0])  # same images, same draw each time
        for k in range(3):
            if torch.equal(x1[k], x0[k]):
                torch.testing.assert_close(p1[k], p0[k], equal_nan=True)
            else:
                assert torch.equal(x1[k], x0[k].flip(-1))
                torch.testing.assert_close(p1[k], p0[k] * torch.tensor([-1.0, 1.0]), equal_nan=True)
                mirrored.add((step, k))
    assert 0 < len(mirrored) < 18


@pytest.mark.parametrize("name", ["images.txt", "image_class_labels.txt", "train_test_split.txt",
                                  "bounding_boxes.txt", "parts/part_locs.txt"])
def test_a_missing_file_raises_naming_it(tree, name):
    (tree / name).unlink()
    with pytest.raises(CUBDataError, match=name.split("/")[-1].replace(".", r"\.")):
        load_cub(tree)


@pytest.mark.parametrize("name,line,match", [
    ("image_class_labels.txt", "3 two\n", r"image_class_labels\.txt, line 1: expected <int> <int>"),
    ("train_test_split.txt", "3\n", r"train_test_split\.txt, line 1: expected 2 values"),
    ("bounding_boxes.txt", "3 1 2 3\n", r"bounding_boxes\.txt, line 1: expected 5 values"),
    ("parts/part_locs.txt", "3 1 x 2 1\n", r"part_locs\.txt, line 1: expected <int> <int> <float>"),
])
def test_a_malformed_line_raises_naming_file_and_line(tree, name, line, match):
    path = tree / name
    path.write_text(line + path.read_text())
    with pytest.raises(CUBDataError, match=match):
        load_cub(tree)


def test_inconsistent_files_raise_naming_the_file(tree):
    labels = tree / "image_class_labels.txt"
    labels.write_text("".join(l for l in labels.read_text().splitlines(keepends=True) if not l.startswith("4 ")))
    with pytest.raises(CUBDataError, match=r"image_class_labels\.txt: no entry for image ids \[4\]"):
        load_cub(tree)


def test_bad_values_raise(tree, tmp_path):
    split = tree / "train_test_split.txt"
    split.write_text(split.read_text().replace("3 1\n", "3 2\n"))
    with pytest.raises(CUBDataError, match=r"train_test_split\.txt: is_training_image of image 3 must be 0 or 1"):
        load_cub(tree)
    other = write_tree(tmp_path / "other")
    boxes = other / "bounding_boxes.txt"
    boxes.write_text(boxes.read_text().replace("4 1.0 2.0 3.0 4.0", "4 1.0 2.0 0.0 4.0"))
    with pytest.raises(CUBDataError, match=r"bounding_boxes\.txt: the box of image 4"):
        load_cub(other)


def test_missing_image_and_missing_root_raise(tree, tmp_path):
    shutil.rmtree(tree / "images" / "002.Laysan_Albatross")
    with pytest.raises(CUBDataError, match="missing image file .*Laysan_Albatross_0003.jpg"):
        load_cub(tree)
    meta = load_cub(tree, check_images=False)  # metadata alone still loads
    with pytest.raises(CUBDataError, match="missing image file"):
        CUBImages(meta, "train", size=8)[1]
    with pytest.raises(CUBDataError, match=r"missing file .*images\.txt"):
        load_cub(tmp_path / "nowhere")
