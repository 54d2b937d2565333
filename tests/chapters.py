"""Helpers shared by the chapter tests: which notebooks the book has, and how to run one."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def toc_files() -> list[Path]:
    """Every file named in _toc.yml, in order (paths relative to the root, suffix resolved)."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    names = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                names.append(e["file"])
            walk(e.get("sections"))
            for part in e.get("parts", []) if isinstance(e, dict) else []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    out = []
    for name in names:
        matches = [ROOT / f"{name}{ext}" for ext in (".ipynb", ".md") if (ROOT / f"{name}{ext}").exists()]
        if len(matches) != 1:
            raise FileNotFoundError(f"_toc.yml names {name!r}, found {len(matches)} files for it")
        out.append(matches[0])
    return out


def chapter_notebooks() -> list[Path]:
    return [p for p in toc_files() if p.suffix == ".ipynb"]
