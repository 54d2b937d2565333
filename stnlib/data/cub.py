"""CUB-200-2011 (Wah et al., 2011) in its official layout: metadata, images and step-indexed batches.

The data set of the paper's Table 3 (11,788 images of 200 bird species, 5,994 for training and 5,794 for
testing). stnlib does not download it (it is distributed by Caltech under its own terms); point
:func:`load_cub` at an unpacked copy. The layout read here is the official one::

    CUB_200_2011/
        images/<class folder>/<file>.jpg
        images.txt                 <image_id> <image_name>            (path relative to images/)
        image_class_labels.txt     <image_id> <class_id>              (1..200)
        train_test_split.txt       <image_id> <is_training_image>     (1 train, 0 test)
        bounding_boxes.txt         <image_id> <x> <y> <width> <height>
        parts/part_locs.txt        <image_id> <part_id> <x> <y> <visible>
        classes.txt, parts/parts.txt   (names; optional here)

Every problem (a missing file, a line that does not parse, an id present in one file and not in another,
a missing image) raises :class:`CUBDataError` naming the file and, for a bad line, its number.

Conventions: box and part coordinates are kept in the files' pixel units (x from the left, y from the
top); :meth:`CUBImages.__getitem__` converts part centres to the normalised coordinates of
:mod:`stnlib.coords` of the resized image, treating the files' coordinates as pixel-centre positions
with the first pixel at 0 (the data set's documentation does not say; a half-pixel does not matter at
the scale of a bird's head). Class ids become 0-based labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..coords import pixel_to_normalized
from .streams import StepSource

REQUIRED_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt",
                  "parts/part_locs.txt")
NUM_PARTS = 15
# The official part names (parts/parts.txt), in id order; used when that file is absent.
PART_NAMES = ("back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg", "left wing", "nape",
              "right eye", "right leg", "right wing", "tail", "throat")
HEAD_PARTS = ("beak", "crown", "forehead", "left eye", "right eye", "nape", "throat")
BODY_PARTS = ("back", "belly", "breast", "left wing", "right wing")


class CUBDataError(ValueError):
    """The CUB-200-2011 folder is incomplete or a file in it is malformed (the message names the file)."""


@dataclass
class CUBMetadata:
    """Everything in the text files, one row per image, sorted by image id.

    Attributes:
        root: the ``CUB_200_2011`` folder.
        image_ids: (N,) official image ids.
        paths: N image paths relative to ``root / "images"``.
        labels: (N,) 0-based class labels (class id - 1).
        is_train: (N,) bool, the official split.
        boxes: (N, 4) float bounding boxes (x, y, width, height) in pixels.
        part_xy: (N, 15, 2) float part locations (x, y) in pixels (0 where not visible).
        part_visible: (N, 15) bool.
        class_names: names from classes.txt (None without it).
        part_names: names from parts/parts.txt (the official names without it).
    """

    root: Path
    image_ids: torch.Tensor
    paths: list[str]
    labels: torch.Tensor
    is_train: torch.Tensor
    boxes: torch.Tensor
    part_xy: torch.Tensor
    part_visible: torch.Tensor
    class_names: list[str] | None
    part_names: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names is not None else int(self.labels.max()) + 1

    def split(self, which: str) -> torch.Tensor:
        """Row indices of the "train" or "test" images (the official split)."""
        if which not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {which!r}")
        mask = self.is_train if which == "train" else ~self.is_train
        return mask.nonzero().flatten()

    def head_body_centres(self) -> torch.Tensor:
        """(N, 2, 2) pixel (x, y) of the head (mean of the visible :data:`HEAD_PARTS`) and of the body
        (mean of the visible :data:`BODY_PARTS`); NaN where none of a group is visible."""
        out = []
        for group in (HEAD_PARTS, BODY_PARTS):
            idx = [self.part_names.index(p) for p in group if p in self.part_names]
            vis = self.part_visible[:, idx].float()
            total = (self.part_xy[:, idx] * vis[..., None]).sum(1)
            count = vis.sum(1, keepdim=True)
            out.append(torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, math.nan)))
        return torch.stack(out, 1)


def find_root(root: str | Path) -> Path:
    """The folder holding ``images.txt``: ``root`` itself or ``root / "CUB_200_2011"``.

    Raises:
        CUBDataError: neither holds ``images.txt``.
    """
    root = Path(root)
    for cand in (root, root / "CUB_200_2011"):
        if (cand / "images.txt").is_file():
            return cand
    raise CUBDataError(f"CUB-200-2011: missing file '{root / 'images.txt'}' "
                       f"(nor '{root / 'CUB_200_2011' / 'images.txt'}'); "
                       "point at the unpacked CUB_200_2011 folder, which holds images/, images.txt, "
                       "image_class_labels.txt, train_test_split.txt, bounding_boxes.txt and parts/part_locs.txt")


def _read_rows(path: Path, fields: Sequence[type], text_last: bool = False, required: bool = True) -> list[list] | None:
    """Parse a whitespace-separated table; each row must have exactly ``len(fields)`` values of those types.

    With ``text_last`` the last field is the rest of the line (names with spaces).
    """
    if not path.is_file():
        if not required:
            return None
        raise CUBDataError(f"CUB-200-2011: missing file '{path}'")
    rows = []
    spec = " ".join(f"<{t.__name__}>" for t in fields)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split(maxsplit=len(fields) - 1) if text_last else line.split()
            if len(parts) != len(fields):
                raise CUBDataError(f"{path}, line {lineno}: expected {len(fields)} values ({spec}), got {line.strip()!r}")
            try:
                rows.append([t(p.strip()) for t, p in zip(fields, parts)])
            except ValueError:
                raise CUBDataError(f"{path}, line {lineno}: expected {spec}, got {line.strip()!r}") from None
    if not rows:
        raise CUBDataError(f"{path}: the file is empty")
    return rows


def _by_id(rows: list[list], path: Path, ids: list[int]) -> dict[int, list]:
    """Rows keyed by their first value, checked against the image ids of images.txt."""
    table: dict[int, list] = {}
    for r in rows:
        if r[0] in table:
            raise CUBDataError(f"{path}: image id {r[0]} appears twice")
        table[r[0]] = r[1:]
    missing = [i for i in ids if i not in table]
    extra = sorted(set(table) - set(ids))
    if missing:
        raise CUBDataError(f"{path}: no entry for image ids {missing[:5]}{' ...' if len(missing) > 5 else ''} "
                           "listed in images.txt")
    if extra:
        raise CUBDataError(f"{path}: image ids {extra[:5]} are not in images.txt")
    return table


def _flag(value: int, path: Path, what: str) -> bool:
    if value not in (0, 1):
        raise CUBDataError(f"{path}: {what} must be 0 or 1, got {value}")
    return bool(value)


def load_cub(root: str | Path, check_images: bool = True) -> CUBMetadata:
    """Read the metadata of CUB-200-2011 from its official layout (see the module docstring).

    Args:
        root: the ``CUB_200_2011`` folder, or the folder that contains it.
        check_images: also check that every image file listed in images.txt exists.

    Raises:
        CUBDataError: a required file is missing or malformed, or the files disagree; the message names
            the file (and the line, for a line that does not parse).
    """
    root = find_root(root)
    images = _read_rows(root / "images.txt", (int, str), text_last=True)
    ids = [r[0] for r in images]
    if len(set(ids)) != len(ids):
        raise CUBDataError(f"{root / 'images.txt'}: an image id appears twice")
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    ids = [ids[i] for i in order]
    paths = [images[i][1] for i in order]

    p = root / "image_class_labels.txt"
    labels = _by_id(_read_rows(p, (int, int)), p, ids)
    class_rows = _read_rows(root / "classes.txt", (int, str), text_last=True, required=False)
    class_names = None if class_rows is None else [r[1] for r in sorted(class_rows)]
    n_classes = len(class_names) if class_names is not None else None
    for i in ids:
        c = labels[i][0]
        if c < 1 or (n_classes is not None and c > n_classes):
            raise CUBDataError(f"{p}: class id {c} of image {i} is outside 1..{n_classes or 'max'}")

    p = root / "train_test_split.txt"
    split = _by_id(_read_rows(p, (int, int)), p, ids)
    is_train = [_flag(split[i][0], p, f"is_training_image of image {i}") for i in ids]

    p = root / "bounding_boxes.txt"
    boxes = _by_id(_read_rows(p, (int, float, float, float, float)), p, ids)
    for i in ids:
        if boxes[i][2] <= 0 or boxes[i][3] <= 0:
            raise CUBDataError(f"{p}: the box of image {i} has a non-positive width or height: {boxes[i]}")

    part_rows = _read_rows(root / "parts" / "parts.txt", (int, str), text_last=True, required=False)
    part_names = list(PART_NAMES) if part_rows is None else [r[1] for r in sorted(part_rows)]
    p = root / "parts" / "part_locs.txt"
    locs = _read_rows(p, (int, int, float, float, int))
    row_of = {i: k for k, i in enumerate(ids)}
    part_xy = torch.zeros(len(ids), len(part_names), 2)
    visible = torch.zeros(len(ids), len(part_names), dtype=torch.bool)
    for img, part, x, y, vis in locs:
        if img not in row_of:
            raise CUBDataError(f"{p}: image id {img} is not in images.txt")
        if not 1 <= part <= len(part_names):
            raise CUBDataError(f"{p}: part id {part} of image {img} is outside 1..{len(part_names)}")
        if _flag(vis, p, f"visible of image {img}, part {part}"):
            part_xy[row_of[img], part - 1] = torch.tensor([x, y])
            visible[row_of[img], part - 1] = True

    if check_images:
        for k, rel in enumerate(paths):
            if not (root / "images" / rel).is_file():
                raise CUBDataError(f"missing image file '{root / 'images' / rel}' (listed in {root / 'images.txt'} "
                                   f"for image id {ids[k]})")
    return CUBMetadata(
        root=root, image_ids=torch.tensor(ids), paths=paths,
        labels=torch.tensor([labels[i][0] - 1 for i in ids]), is_train=torch.tensor(is_train),
        boxes=torch.tensor([boxes[i] for i in ids], dtype=torch.float32).view(-1, 4),
        part_xy=part_xy, part_visible=visible, class_names=class_names, part_names=part_names)


def read_image(path: str | Path, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """An RGB image resized (bilinear, aspect not kept) to ``size x size``: ((3, size, size) uint8, original (W, H)).

    Raises:
        CUBDataError: the file is missing or cannot be decoded (the message names it).
    """
    from PIL import Image  # torchvision's dependency; imported here so stnlib.data stays light

    path = Path(path)
    if not path.is_file():
        raise CUBDataError(f"missing image file '{path}'")
    try:
        with Image.open(path) as im:
            original = im.size
            im = im.convert("RGB").resize((size, size), Image.BILINEAR)
            data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    except OSError as e:
        raise CUBDataError(f"cannot read image file '{path}': {e}") from e
    return data.view(size, size, 3).permute(2, 0, 1).contiguous(), original


class CUBImages:
    """One split of CUB-200-2011 as resized images: ``data[i] -> (image (3, S, S) uint8, label, parts (2, 2))``.

    ``parts`` holds the normalised (x, y) centres of head and body in the resized image (NaN where no part
    of the group is visible), the ground truth the birds chapter measures crops against.

    Args:
        meta: from :func:`load_cub`.
        split: "train" or "test".
        size: side S of the square images (448 for the paper's ST-CNNs, 224 for its CNN).
        cache: keep every image in memory once decoded (3 S^2 bytes each: about 1 GB for the 5,994
            training images at S = 240), so that only the first epoch reads and decodes JPEG files.
    """

    def __init__(self, meta: CUBMetadata, split: str, size: int = 448, cache: bool = False):
        self.meta = meta
        self.rows = meta.split(split)
        self.size = int(size)
        self._centres = meta.head_body_centres()
        self._cache: dict[int, tuple[torch.Tensor, tuple[int, int]]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.rows)

    def _image(self, r: int) -> tuple[torch.Tensor, tuple[int, int]]:
        if self._cache is not None and r in self._cache:
            return self._cache[r]
        got = read_image(self.meta.root / "images" / self.meta.paths[r], self.size)
        if self._cache is not None:
            self._cache[r] = got
        return got

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        r = int(self.rows[i])
        image, (w, h) = self._image(r)
        # Normalised coordinates do not change when the image is resized: convert in the original's frame.
        return image, int(self.meta.labels[r]), pixel_to_normalized(self._centres[r], (h, w))


class CUBBatches(StepSource):
    """Step-indexed training batches of a :class:`CUBImages` split: ``batch(step) -> (x, y, parts)``.

    Epoch ``e``'s order is a permutation from the stream ``"cub.permutation"`` keyed by ``e``; step ``t`` takes the next
    ``batch_size`` images of its epoch (an epoch's last batch holds the remainder), so a resumed run sees
    the same batches. Images are read from disk each step (unless ``images`` caches them).

    With ``flip``, each image of a batch is mirrored left-right with probability 1/2, drawn from the stream
    ``"cub.flip"`` keyed by the step (so a batch still depends only on seed and step); the x of its part
    centres is negated with it, which is exact in the normalised coordinates (``align_corners=False``).
    """

    def __init__(self, images: CUBImages, batch_size: int, seed: int = 0, flip: bool = False):
        if len(images) == 0:
            raise ValueError("the split holds no images")
        super().__init__(len(images), batch_size, seed)
        self.images = images
        self.flip = bool(flip)

    def indices(self, step: int) -> torch.Tensor:
        return self.epoch_indices(step, "cub.permutation")

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if int(step) < 0:
            raise ValueError(f"step must be non-negative, got {step}")
        items = [self.images[int(i)] for i in self.indices(step)]
        x, y = torch.stack([it[0] for it in items]), torch.tensor([it[1] for it in items])
        parts = torch.stack([it[2] for it in items])
        if self.flip:
            mirror = torch.rand(len(items), generator=self.step_generator(step, "cub.flip")) < 0.5
            x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
            parts = torch.where(mirror[:, None, None] & (torch.arange(2) == 0), -parts, parts)
        return x, y, parts


__all__ = ["CUBDataError", "CUBMetadata", "CUBImages", "CUBBatches", "load_cub", "find_root", "read_image",
           "REQUIRED_FILES", "PART_NAMES", "HEAD_PARTS", "BODY_PARTS", "NUM_PARTS"]
