"""The test suites of pure-Python libraries from PyPI, run by pytest untraced and
under the tracer with the installed library as the scope.

The library is the one installed (``pip install -e '.[real]'``); its tests come
with it (toolz ships them inside the package) or from its source distribution
of the same version, fetched with ``pip download`` (PyPI must be reachable).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Library:
    """A library and how its test suite runs here."""

    distribution: str  # the name on PyPI
    package: str  # the import name: the scope is its installed directory
    # Test tree members: from the sdist (paths inside it), or "<package>/tests" inside
    # the installed package when ``tests_in_package``.
    members: tuple[str, ...]
    tests_in_package: bool = False
    # pytest arguments after the common ones ({package_dir} is the installed directory)
    pytest_args: tuple[str, ...] = ("tests",)
    # The suite's pytest configuration, in the test tree; an empty pytest.ini is
    # written when it has none (given with -c: pytest must not pick up another,
    # such as this repository's, found above the library when it is installed in
    # a virtual environment inside the repository, as in CI)
    config: str = "pytest.ini"
    expected_calls: dict[str, int] = field(default_factory=dict)  # in scope, by plain name
    min_calls: int = 1000
    min_passed: int = 100

    def package_dir(self) -> Path:
        module = importlib.import_module(self.package)
        return Path(module.__file__).resolve().parent

    def version(self) -> str:
        return importlib.metadata.version(self.distribution)

    def arguments(self) -> list[str]:
        return [arg.format(package_dir=self.package_dir()) for arg in self.pytest_args]


# Left out of more-itertools' suite, each for a reason:
MORE_ITERTOOLS_LEFT_OUT = (
    # 10^6 to 10^7 recorded calls each (10^8 for the two files in full: the trace
    # would not fit in memory): discrete Fourier transforms, concurrent tee / seekable
    # consumers, the LCG check, the prime-number recipes, large polynomials and
    # medians checked against the statistics module.
    "DiscreteFourierTransformTests",
    "test_concurrent_consumers",
    "test_concurrent_calls",
    "test_lcg_mitigation",
    "PrimeFunctionTests",
    "FactorTests",
    "(PolynomialFromRootsTests and test_large)",
    "(RunningMedianTests and test_vs_statistics_median)",
    # Measures with tracemalloc that 10^4 peek() calls retain under 256 KiB: the
    # tracer's own record of those calls (its event buffer) is allocated meanwhile
    # and counted, so it fails traced. (A behaviour difference the tracer cannot
    # avoid while it records into memory that tracemalloc sees.)
    "test_repeated_zero_cache_peek_has_bounded_memory",
)

LIBRARIES = {
    "toolz": Library(
        distribution="toolz",
        package="toolz",
        members=("toolz/tests",),
        tests_in_package=True,
        expected_calls={
            "compose": 20,
            "merge": 20,
            "groupby": 5,
            "memoize": 5,
            "merge_sorted": 5,
            "partition_all": 5,
            "_check_sigspec": 500,
            "is_partial_args": 500,
        },
        min_calls=20_000,
        min_passed=150,
    ),
    "boltons": Library(
        distribution="boltons",
        package="boltons",
        members=("tests", "pyproject.toml"),
        config="pyproject.toml",  # its doctest option flags
        # as its tox.ini runs it: the doctests of every module, then tests/
        pytest_args=("--doctest-modules", "{package_dir}", "tests"),
        expected_calls={
            "iter_find_files": 1000,
            "removeprefix": 1000,
            "from_iterable": 1000,
            "_balance_list": 1000,
            "remap": 10,
            "slugify": 1,
            "recv_until": 100,
        },
        min_calls=500_000,
        min_passed=600,
    ),
    "more-itertools": Library(
        distribution="more-itertools",
        package="more_itertools",
        members=("tests",),
        pytest_args=(
            "tests/test_more.py",
            "tests/test_recipes.py",
            "-k",
            f"not ({' or '.join(MORE_ITERTOOLS_LEFT_OUT)})",
        ),
        expected_calls={
            "peek": 10,
            "chunked_even": 1000,
            "unique_everseen": 1000,
            "gray_product": 1000,
            "interleave_evenly": 1000,
            "windowed": 10,
            "sliding_window": 1,
        },
        min_calls=300_000,
        min_passed=700,
    ),
}


def pytest_command(library: Library) -> list[str]:
    """``-m pytest`` as both runs use it, in the test tree: quiet, every outcome
    listed (-rA), no cache written, the suite's configuration, paths and options."""
    common = ["-q", "-rA", "-p", "no:cacheprovider", "-p", "no:randomly"]
    config = ["-c", library.config, "--rootdir", "."]
    return ["-m", "pytest", *common, *config, *library.arguments()]


def fetch_sdist(library: Library, directory: Path) -> Path:
    """The library's source distribution, of the installed version, downloaded
    from PyPI by pip into ``directory``."""
    version = library.version()
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        + ["--no-binary", ":all:", "--dest", str(directory)]
        + [f"{library.distribution}=={version}"],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    found = sorted(directory.glob("*.tar.gz"))
    if len(found) != 1:
        raise FileNotFoundError(f"pip download left {found} in {directory}")
    return found[0]


def extract_members(archive: Path, members: tuple[str, ...], destination: Path) -> None:
    """Extract ``members`` (files or directories, relative to the archive's top
    directory) of a .tar.gz into ``destination``."""
    with tarfile.open(archive) as tar:
        for info in tar.getmembers():
            _, _, relative = info.name.partition("/")
            if not info.isfile() or not any(
                relative == m or relative.startswith(m + "/") for m in members
            ):
                continue
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(info)
            assert source is not None
            target.write_bytes(source.read())


def suite_tree(library: Library, directory: Path) -> Path:
    """A directory holding the library's tests (and what they need) as its suite
    expects them; each run starts from a copy of it."""
    tree = directory / "tree"
    if library.tests_in_package:
        for member in library.members:
            package_tests = library.package_dir().parent / member
            shutil.copytree(
                package_tests, tree / Path(member).name, ignore=shutil.ignore_patterns("*.pyc")
            )
    else:
        extract_members(fetch_sdist(library, directory / "sdist"), library.members, tree)
    config = tree / library.config
    if not config.exists():
        config.write_text("[pytest]\n")
    return tree
