"""The dependency locks: hash-pinned, split into runtime and dev, in step with pyproject.toml.

requirements/runtime.txt is what production installs; requirements/dev.txt is that plus the
development tools and is what `make venv` installs with `pip install --require-hashes`. Both come
from scripts/lock.sh (`make lock`). No database is needed.
"""

import importlib.metadata
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
DEV_LOCK = ROOT / "requirements" / "dev.txt"
LOCKS = [RUNTIME_LOCK, DEV_LOCK]

# Development tools, named here as well as in pyproject.toml's dev extra, so that moving one of
# them into [project].dependencies does not quietly make it a runtime dependency.
DEV_TOOLS = {
    "pytest",
    "pytest-django",
    "pytest-playwright",
    "playwright",
    "pytest-timeout",
    "time-machine",
    "hypothesis",
    "factory-boy",
    "faker",
    "ruff",
    "honcho",
    "uv",
}


@dataclass(frozen=True)
class Pin:
    name: str  # canonical
    version: str
    marker: str
    hashes: frozenset[str]


def _logical_lines(path: Path) -> list[tuple[int, str]]:
    """The file's lines with backslash continuations joined, numbered by the line they start on."""
    joined: list[tuple[int, str]] = []
    start, parts = 0, []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        if not parts:
            start = number
        stripped = raw.strip()
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        joined.append((start, " ".join(p for p in parts if p)))
        parts = []
    if parts:
        joined.append((start, " ".join(p for p in parts if p)))
    return joined


def _requirement_lines(path: Path) -> list[tuple[int, str]]:
    return [
        (number, line) for number, line in _logical_lines(path) if line and not line.startswith("#")
    ]


def _parse(path: Path) -> dict[str, Pin]:
    """Every pin in a lock; fails on anything that is not `name==version [; marker] --hash=...`."""
    pins: dict[str, Pin] = {}
    problems = []
    for number, line in _requirement_lines(path):
        where = f"{path.name}:{number}"
        requirement_text, *hash_options = line.split(" --hash=")
        hashes = frozenset(h.strip() for h in hash_options)
        if not hashes or any(not h.startswith("sha256:") or " " in h for h in hashes):
            problems.append(f"{where}: no (or a malformed) --hash=sha256:... on {line!r}")
            continue
        try:
            requirement = Requirement(requirement_text)
        except InvalidRequirement:
            problems.append(f"{where}: not a requirement: {requirement_text!r}")
            continue
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==" or "*" in specifiers[0].version:
            problems.append(f"{where}: not pinned with ==: {requirement_text!r}")
            continue
        name = canonicalize_name(requirement.name)
        if name in pins:
            problems.append(f"{where}: {name} is pinned twice")
        pins[name] = Pin(
            name=name,
            version=specifiers[0].version,
            marker=str(requirement.marker or ""),
            hashes=hashes,
        )
    assert not problems, "\n".join(problems)
    return pins


@pytest.fixture(scope="module")
def pyproject() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


@pytest.fixture(scope="module")
def runtime() -> dict[str, Pin]:
    return _parse(RUNTIME_LOCK)


@pytest.fixture(scope="module")
def dev() -> dict[str, Pin]:
    return _parse(DEV_LOCK)


def _direct(pyproject: dict, group: str) -> list[Requirement]:
    if group == "runtime":
        lines = pyproject["project"]["dependencies"]
    else:
        lines = pyproject["project"]["optional-dependencies"][group]
    return [Requirement(line) for line in lines]


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_every_requirement_in_a_lock_is_pinned_with_its_hashes(lock):
    lines = _requirement_lines(lock)
    assert len(lines) > 10, f"{lock} holds almost no requirements: is it a lock?"
    missing = [f"line {n}: {line}" for n, line in lines if "--hash=sha256:" not in line]
    assert not missing, f"{lock.name} has requirements without a hash:\n" + "\n".join(missing)
    # The strict parse: one `name==version` and only sha256 hashes on every line.
    assert len(_parse(lock)) == len(lines)


def test_the_parser_rejects_a_dropped_hash_and_a_loose_pin(tmp_path):
    # Guards the guard: the checks above must be able to fail.
    unhashed = tmp_path / "unhashed.txt"
    unhashed.write_text(
        "django==5.2.19 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via x\npytest==9.2.0\n"
    )
    with pytest.raises(AssertionError, match=r"pytest==9\.2\.0"):
        _parse(unhashed)
    loose = tmp_path / "loose.txt"
    loose.write_text("django>=5 \\\n    --hash=sha256:" + "a" * 64 + "\n")
    with pytest.raises(AssertionError, match="not pinned with =="):
        _parse(loose)


def test_the_runtime_lock_holds_no_development_tool(runtime, pyproject):
    dev_extra = {canonicalize_name(r.name) for r in _direct(pyproject, "dev")}
    runtime_direct = {canonicalize_name(r.name) for r in _direct(pyproject, "runtime")}
    leaked = (DEV_TOOLS | (dev_extra - runtime_direct)) & runtime.keys()
    assert not leaked, f"development tools in requirements/runtime.txt: {sorted(leaked)}"
    assert not DEV_TOOLS & runtime_direct, "a development tool is listed as a runtime dependency"


def test_dev_lock_agrees_with_the_runtime_lock_on_every_shared_pin(runtime, dev):
    missing = sorted(runtime.keys() - dev.keys())
    assert not missing, f"pinned in runtime.txt but not in dev.txt: {missing}"
    differ = []
    for name, pin in runtime.items():
        other = dev[name]
        if (pin.version, pin.marker) != (other.version, other.marker):
            differ.append(f"{name}: runtime {pin.version} {pin.marker!r}, dev {other.version}")
    assert not differ, "runtime.txt and dev.txt disagree:\n" + "\n".join(differ)
    hashes_differ = sorted(name for name, pin in runtime.items() if pin.hashes != dev[name].hashes)
    assert not hashes_differ, f"same version, other hashes (run `make lock`): {hashes_differ}"


def test_dev_lock_holds_every_development_tool(dev):
    missing = sorted(DEV_TOOLS - dev.keys())
    assert not missing, f"development tools missing from requirements/dev.txt: {missing}"


@pytest.mark.parametrize(
    ("group", "lock"), [("runtime", RUNTIME_LOCK), ("dev", DEV_LOCK)], ids=["runtime", "dev"]
)
def test_every_direct_dependency_is_locked_at_a_version_pyproject_allows(pyproject, group, lock):
    pins = _parse(lock)
    problems = []
    for requirement in _direct(pyproject, group):
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement} is not in {lock.name}")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{requirement} but {lock.name} pins {pin.version}")
    assert not problems, "\n".join(problems) + "\n(run `make lock`)"


@pytest.mark.parametrize(
    ("group", "lock"), [("runtime", RUNTIME_LOCK), ("dev", DEV_LOCK)], ids=["runtime", "dev"]
)
def test_the_extras_of_direct_dependencies_are_locked(pyproject, group, lock):
    # psycopg[binary] needs psycopg-binary, celery[redis] needs redis: what each extra adds
    # comes from the installed package's metadata, the version the lock pins.
    pins = _parse(lock)
    problems = []
    for requirement in _direct(pyproject, group):
        if not requirement.extras:
            continue
        installed = importlib.metadata.version(requirement.name)
        pinned = pins[canonicalize_name(requirement.name)].version
        assert installed == pinned, f"{requirement.name} {installed} installed, {pinned} locked"
        for extra in sorted(requirement.extras):
            environment = {**default_environment(), "extra": extra}
            for line in importlib.metadata.requires(requirement.name) or []:
                needed = Requirement(line)
                if needed.marker is None or "extra" not in str(needed.marker):
                    continue
                if not needed.marker.evaluate(environment):
                    continue
                if canonicalize_name(needed.name) not in pins:
                    problems.append(f"{requirement.name}[{extra}] needs {needed}: not locked")
    assert not problems, "\n".join(problems)


def test_make_installs_the_dev_lock_with_hash_checking():
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements/dev.txt" in makefile
    assert not (ROOT / "requirements.lock").exists(), "the old unhashed lock is back"
