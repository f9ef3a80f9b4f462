"""Developer tasks: `nox` runs the default sessions (tests, tests_uvloop, lint, typecheck)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "tests_uvloop", "lint", "typecheck"]
# A newcomer's machine may lack some of the supported interpreters: skip those, don't fail
# (nox would otherwise fail on CI, where the CI variable is set).
nox.options.error_on_missing_interpreters = False
nox.options.reuse_existing_virtualenvs = False
# uv builds each session's environment in seconds where pip takes half a minute (`.ci/run`
# installs it); without uv, nox falls back to virtualenv and pip.
nox.options.default_venv_backend = "uv|virtualenv"

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
COVERAGE_PYTHON = "3.11"
TEST_DEPS = [
    "pytest>=8",
    "pytest-asyncio>=0.24",
    "coverage[toml]>=7.10",  # patch = ["subprocess"] (pyproject.toml)
    "pytest-xdist>=3.6",
    "hypothesis>=6.100",
    "trustme>=1.1",
    # tests/test_tracing.py: spans from OpenTelemetry's aiohttp instrumentation (the otel extra)
    "opentelemetry-sdk>=1.20",
    "opentelemetry-instrumentation-aiohttp-client>=0.41b0",
]
# One worker per core (pytest-xdist; a worker out of tests takes some of another's; `nox -- -n 0`
# runs in one process); a ResourceWarning (an unclosed session, say) fails the test.
PYTEST_ARGS = ("-n", "auto", "--dist", "worksteal", "-W", "error::ResourceWarning")
# sniffio: without it httpcore retries a failed `import sniffio` four times per request (anyio 4.12+
# no longer installs it), which would bill the httpx baseline for a path search per call.
BENCH_DEPS = ["matplotlib>=3.8", "httpx>=0.27", "sniffio>=1.3", "uvloop>=0.19"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite with branch coverage (fails under the floor)."""
    session.install(".", *TEST_DEPS)
    pytest_args = (*PYTEST_ARGS, *session.posargs)
    if session.python != COVERAGE_PYTHON:
        # The same suite; the coverage floor is gated once, on CI's default Python, which
        # keeps `.ci/run` inside its ten minutes on two cores.
        session.run("pytest", *pytest_args)
        return
    # coverage runs pytest (not pytest-cov inside it): the package's own pytest plugin is
    # imported while pytest starts, before pytest-cov could begin measuring. The xdist workers
    # and the CLI's subprocesses are measured too (pyproject.toml: patch = ["subprocess"]).
    env = {"COVERAGE_FILE": f".coverage.{session.python}"}
    session.run("coverage", "erase", env=env)
    session.run("coverage", "run", "-m", "pytest", *pytest_args, env=env)
    session.run("coverage", "combine", "--quiet", env=env)
    session.run("coverage", "report", "--fail-under=95", env=env)


@nox.session(python="3.11")
def tests_uvloop(session: nox.Session) -> None:
    """The whole suite on uvloop (PCSID_TEST_LOOP=uvloop); no coverage: `tests` gates that."""
    session.install(".", *TEST_DEPS, "pytest-asyncio>=1.5", "uvloop>=0.19")
    session.run("pytest", *PYTEST_ARGS, *session.posargs, env={"PCSID_TEST_LOOP": "uvloop"})


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "pcsid_async", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "pcsid_async", "tests", "benchmarks", "noxfile.py")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """Mypy --strict on the package."""
    session.install(".", "mypy>=1.10", "pytest>=8", "pytest-asyncio>=0.24")
    session.run("mypy", "--strict", "pcsid_async")


@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """The main job: a demo batch renewal against the embedded fake server."""
    session.install(".")
    session.run("pcsid-async", "demo", *session.posargs)


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks (not run in CI): `nox -s bench -- --quick`."""
    session.install(".", *BENCH_DEPS)
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(python="3.11")
def chaos(session: nox.Session) -> None:
    """The chaos suite with its figures printed (they are the README's Reliability figures)."""
    session.install(".", *TEST_DEPS)
    session.run("pytest", "tests/test_chaos.py", "-p", "no:cacheprovider", "-s", *session.posargs)


@nox.session(python="3.11")
def soak(session: nox.Session) -> None:
    """The long soak run under faults (not in CI): `nox -s soak`."""
    session.install(".", *TEST_DEPS)
    session.run("pytest", "-m", "soak", "-p", "no:cacheprovider", "-s", *session.posargs)
