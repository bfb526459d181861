"""The user documentation holds together: every relative link and #anchor in README.md, docs/**/*.md
and configs/README.md resolves, and the product carries no process words or references to files
outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", ROOT / "configs" / "README.md", *(ROOT / "docs").rglob("*.md")])
PRODUCT = ("README.md", "docs", "training", "service", "configs")
TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".ini", ".sh", ".json", ""}

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def _prose(text: str) -> str:
    """The markdown without fenced code blocks and inline code, where links are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces → '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"(\*\*|__|\*)", "", text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a markdown file defines: heading slugs (duplicates numbered -1, -2 …) and <a id>."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set(HTML_ANCHOR.findall(text))
    for heading in HEADING.findall(text):
        slug = github_slug(heading)
        n = seen.get(slug, 0)
        out.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    return out


def links(path: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(path.read_text(encoding="utf-8"))) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_the_slug_rule_matches_githubs():
    assert github_slug("2. The bundle layout (the contract)") == "2-the-bundle-layout-the-contract"
    assert github_slug("DE: Distillation Experts") == "de-distillation-experts"
    assert github_slug("IR: Item-side ranking Regularization (IR-RRD)") == "ir-item-side-ranking-regularization-ir-rrd"
    assert github_slug("Catalogue scaling: exact vs IVF vs HNSW") == "catalogue-scaling-exact-vs-ivf-vs-hnsw"
    assert github_slug("`distillrec bench` and [links](x.md)") == "distillrec-bench-and-links"


def test_links_are_found_outside_code_only(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("[a](a.md) ![img](i.png) [web](https://x.org) `[no](code.md)`\n```\n[no](fence.md)\n```\n[b](b.md#x)\n")
    assert links(page) == ["a.md", "i.png", "b.md#x"]
    page.write_text('# Title\n## Title\n<a id="custom"></a>\n```\n# not a heading\n```\n')
    assert anchors(page) == {"title", "title-1", "custom"}


@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for target in links(page):
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target}: {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading in {dest.relative_to(ROOT)} has the anchor #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)}: broken links:\n" + "\n".join(broken)


def _product_files():
    for name in PRODUCT:
        path = ROOT / name
        for f in [path] if path.is_file() else sorted(path.rglob("*")):
            if f.is_file() and f.suffix in TEXT_SUFFIXES and "__pycache__" not in f.parts:
                yield f


def test_the_product_has_no_process_words_and_no_outside_references():
    process = re.compile(r"issue [0-9]|must[- _]show", re.I)
    outside = re.compile("(METHODS|DESIGN)" + r"\.md")  # specs that are not part of the repository
    found = []
    for f in _product_files():
        for n, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if process.search(line) or outside.search(line):
                found.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not found, "process words or references to files outside the repository:\n" + "\n".join(found)


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 300


def test_every_acronym_in_the_help_texts_is_spelled_out():
    """Every acronym a `--help` text uses (DE, RRD, NDCG, ONNX …) is in the glossary of `distillrec --help`."""
    import argparse

    from distillrec.cli import GLOSSARY, build_parser

    def walk(parser):
        yield parser, parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield from walk(child)

    metavars, texts = set(), []
    for parser, text in walk(build_parser()):
        texts.append(text)
        for action in parser._actions:
            metavars |= {action.dest.upper(), *re.findall(r"[A-Za-z]+", str(action.metavar or ""))}
    known = {
        "HTTP",
        "REST",
        "JSON",
        "YAML",
        "GET",
        "POST",
        "FastAPI",
        "LATEST",
        "CI",
        "MovieLens",
        "MovieLens-",
        "CPU",
        "CPUs",
        "PNG",
        "COMMAND",
        "SUBCOMMAND",
        "BENCHMARK",
        "METRICs",
    }
    words = set(re.findall(r"\b[A-Z][A-Za-z]*[A-Z][A-Za-z-]*\b", "\n".join(texts))) | set(re.findall(r"\b(?:ndcg|hr|mrr)@", "\n".join(texts)))
    unexplained = sorted(
        w for w in words - metavars - known if all(part not in GLOSSARY for part in (w, w.upper().rstrip("@"))) and not all(p in GLOSSARY for p in w.split("-"))
    )
    assert not unexplained, f"acronyms in --help texts missing from distillrec/cli.py GLOSSARY: {unexplained}"
