"""The documents name tests, files and functions that exist (README.md, and docs/'s .md and .rst pages)."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = [
    REPO / "README.md",
    *sorted(
        path
        for suffix in ("md", "rst")
        for path in (REPO / "docs").rglob(f"*.{suffix}")
        if "_build" not in path.relative_to(REPO / "docs").parts
    ),
]
CODE = re.compile(r"`([^`\n]+)`")
PATH = re.compile(
    r"^(?:tests|_modules|_states|_runners|_beacons|_output|salt|pillar|scripts|images|bench|docs)/[\w./-]*$"
)
TEST_NAME = re.compile(r"\btest_\w+")


def _test_names():
    names = set()
    for path in (REPO / "tests").rglob("test_*.py"):
        names.update(re.findall(r"^\s*def (test_\w+)", path.read_text(), re.MULTILINE))
        names.add(path.stem)
    return names


def _spans(document):
    return CODE.findall(document.read_text())


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(REPO).as_posix())
def test_every_path_a_document_names_exists(document):
    missing = []
    for span in _spans(document):
        for word in span.replace("::", " ").split():
            word = word.rstrip(".,:;)")
            concrete = PATH.match(word) and not set("<*{") & set(word)
            if concrete and not (REPO / word).exists():
                missing.append(word)
    assert not missing, f"{document.name} names paths that do not exist: {sorted(set(missing))}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(REPO).as_posix())
def test_every_test_a_document_names_exists(document):
    names = _test_names()
    missing = []
    for span in _spans(document):
        for name in TEST_NAME.findall(span.split("[")[0]):
            if span.rstrip().endswith("*`") or name + "*" in span:
                if not any(existing.startswith(name) for existing in names):
                    missing.append(name)
            elif name not in names:
                missing.append(name)
    assert not missing, f"{document.name} names tests that do not exist: {sorted(set(missing))}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(REPO).as_posix())
def test_a_test_named_with_its_file_is_in_that_file(document):
    """``test_x.py::test_y`` (with or without its directory): ``test_y`` is defined in that file."""
    files = {path.name: path for path in (REPO / "tests").rglob("test_*.py")}
    wrong = []
    for span in _spans(document):
        for file_name, name, _ in re.findall(r"([\w/]*test_\w+\.py)::(test_\w+)(\*)?", span):
            path = files.get(Path(file_name).name)
            defined = re.findall(r"^\s*def (test_\w+)", path.read_text(), re.MULTILINE) if path else []
            if not any(found == name or (span.find(name + "*") >= 0 and found.startswith(name)) for found in defined):
                wrong.append(f"{file_name}::{name}")
    assert not wrong, f"{document.name} names tests that are not in the file it says: {sorted(set(wrong))}"
