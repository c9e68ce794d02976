"""Every Markdown link of the README and docs/ that points into the repository resolves: the file exists,
and a `#fragment` names a heading of that file, slugged as GitHub slugs it. A heading renamed without its
links (the Contents list, "see [Session 9](docs/performance-log.md#…)") fails here."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
FENCED = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^#{1,6} (.+?)\s*#*$", re.MULTILINE)
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, link text kept, punctuation but `-` and `_` dropped,
    each space a `-` (so `—` between spaces leaves `--`)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for m in HEADING.finditer(FENCED.sub("", doc.read_text())):
        base = slug(m.group(1))
        n = seen[base] = seen.get(base, -1) + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def test_slug_is_githubs() -> None:
    assert slug("Python SDK (`wxpartner.client`)") == "python-sdk-wxpartnerclient"
    assert (
        slug("Callback notifications (WeChat Pay → merchant)")
        == "callback-notifications-wechat-pay--merchant"
    )
    assert slug("Scan-to-recharge employees (平台收付通 · 可扫码充值员工)") == (
        "scan-to-recharge-employees-平台收付通--可扫码充值员工"
    )


def test_every_link_into_the_repository_resolves() -> None:
    links = []
    for doc in DOCS:
        links += [(doc, m.group(1)) for m in LINK.finditer(FENCED.sub("", doc.read_text()))]
    assert len(links) > 30  # the pattern still finds them
    problems = []
    for doc, target in links:
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: — outside the repository
            continue
        path, _, fragment = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            problems.append(f"{doc.name}: ({target}): no file {path}")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            problems.append(f"{doc.name}: ({target}): no heading #{fragment} in {file.name}")
    assert problems == []


def test_contents_lists_every_section() -> None:
    """The README's Contents names every `## ` section, in order (a section added without it is missed)."""
    text = FENCED.sub("", README.read_text())
    sections = [slug(m.group(1)) for m in re.finditer(r"^## (.+)$", text, re.MULTILINE)]
    contents = text.split("## Contents", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^- \[[^\]]*\]\(#([^)]+)\)", contents, re.MULTILINE)
    assert listed == [s for s in sections if s != "contents"]
