"""Every source file the README and docs/ name in backticks exists, and so does every function, class
or constant named after it (`store/sandbox.py: write_clock`): a rename that leaves the docs behind
fails here rather than misleading a reader."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `path/file.py` or `path/file.py: name, other.attr`
REFERENCE = re.compile(r"`([A-Za-z0-9_./*-]+\.(?:py|c|lua|sh))(?::\s*([A-Za-z_][A-Za-z0-9_.,\s]*))?`")
BASES = [ROOT, ROOT / "src" / "wxpartner", ROOT / "src"]
# The project's own files: not a virtualenv's (.venv, or .venv-3.13 from scripts/other-pythons.sh).
SOURCES = [
    p
    for p in ROOT.glob("**/*")
    if p.suffix in {".py", ".c", ".lua", ".sh"} and not any(part.startswith(".venv") for part in p.parts)
]


def _resolve(path: str) -> list[Path]:
    if "*" in path:
        return [p for base in BASES for p in base.glob(path)]
    direct = [base / path for base in BASES if (base / path).is_file()]
    if direct:
        return direct
    # a bare file name, as prose names one after its directory was given
    return [p for p in SOURCES if p.name == path] if "/" not in path else []


def _defines(text: str, name: str) -> bool:
    first = re.escape(name.split(".")[0])
    return re.search(rf"(?:def|class)\s+{first}\b|^\s*{first}\s*[:=]", text, re.MULTILINE) is not None


def test_every_named_source_and_name_exists() -> None:
    references = {
        (doc.name, m.group(1), m.group(2) or "") for doc in DOCS for m in REFERENCE.finditer(doc.read_text())
    }
    assert len(references) > 100  # the pattern still finds them
    problems = []
    for doc, path, names in sorted(references):
        found = _resolve(path)
        if not found:
            problems.append(f"{doc} names {path}, which is not in the repository")
            continue
        for name in (n.strip() for n in names.split(",") if n.strip()):
            if not any(_defines(p.read_text(), name) for p in found):
                problems.append(f"{doc}: {path} has no {name}")
    assert problems == []


def test_make_pythons_runs_every_sdk_test_module_the_readme_names() -> None:
    """The README: `make pythons` runs the SDK's tests (`tests/test_client*.py`, …) on the other CPythons;
    scripts/other-pythons.sh lists them by name, so a module matching the pattern must be on its list
    (test_client_live.py, the SDK against a real `wxpartner serve`, was left out)."""
    readme = (ROOT / "README.md").read_text()
    assert "`tests/test_client*.py`" in readme
    script = (ROOT / "scripts" / "other-pythons.sh").read_text()
    default = script.split("set -- ", 1)[1].split("\nfi", 1)[0]
    listed = set(re.findall(r"tests/test_[a-z0-9_]+\.py", default))
    sdk = {f"tests/{p.name}" for p in (ROOT / "tests").glob("test_client*.py")}
    assert sdk - listed == set()
