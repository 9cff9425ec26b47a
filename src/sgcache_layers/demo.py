"""The ``sgcache-layers demo``: one pipeline tool's reads, without and with the cache layers.

A loopback ShotGrid site (:class:`~sgcache_layers.testing.server.ShotgridServer`) serves a
demo production with realistic latency.  The same reads - the project, its sequences, shots,
steps and tasks, the latest version of every shot, the current user and script - run three
ways:

1. plain ``shotgun_api3.Shotgun``;
2. a :class:`~sgcache_layers.session.Session` over a persistent
   :class:`~sgcache_layers.file.FileCache`, starting from an empty cache (cold);
3. the same in a fresh Python process (``python -m sgcache_layers.demo warm ...``), which
   finds everything in the cache directory (warm).

Requests are counted from the server's own request log, answers are compared by digest, and
the warm run's time is measured inside the child process (from before the client and Session
are made to after the last read) so interpreter start-up is not counted.

The verdict (and the exit status) rests only on what does not depend on the machine: the
warm runs make no request, and all runs give the same answers.  Times and speed-ups are
reported as measured (the warm run's median over several new processes, with the fastest
and slowest) and never pass or fail.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import quote

__all__ = [
    "DEFAULT_LATENCY",
    "DEFAULT_SCALE",
    "DEFAULT_SEED",
    "DemoError",
    "DemoReport",
    "DemoSetupError",
    "RunResult",
    "Target",
    "collect",
    "pipeline_reads",
    "run_demo",
]

#: Median seconds the demo server adds to every answer (lognormal around it).
DEFAULT_LATENCY = 0.15
#: Production size of the demo site (1.0 is ~500 shots and ~5,000 tasks).
DEFAULT_SCALE = 1.0
#: Seed of the production generator and of the latency draws.
DEFAULT_SEED = 0
#: The child reads the script's API key from here, so it never shows in a process list.
API_KEY_ENV = "SGCACHE_LAYERS_DEMO_API_KEY"
#: How many new processes make the warm run (the median time is reported, with the spread).
WARM_RUNS = 3
#: Seconds the fresh-process run may take before it is given up.
CHILD_TIMEOUT = 600.0

#: The reads of :func:`pipeline_reads`, in order (one progress step each).
STEPS = (
    "project",
    "sequences",
    "shots",
    "steps",
    "tasks",
    "versions",
    "user",
    "script",
)

Answers = Dict[str, List[List[Any]]]
Raw = Dict[str, Tuple[List[Dict[str, Any]], List[str]]]
Tick = Callable[[str], None]

_PROJECT_FIELDS = ["name", "sg_status"]
_SEQUENCE_FIELDS = ["code", "sg_status_list"]
_SHOT_FIELDS = ["code", "sg_sequence", "sg_status_list"]
_STEP_FIELDS = ["code", "short_name", "entity_type"]
_USER_FIELDS = ["login", "name"]
_SCRIPT_FIELDS = ["firstname"]
_TASK_FIELDS = ["content", "step", "entity", "sg_status_list", "task_assignees", "step.Step.code"]
_VERSION_FIELDS = ["code", "entity", "sg_status_list", "sg_path_to_movie", "created_at"]


class DemoError(RuntimeError):
    """The demo could not run (server, child process); reported in one line, exit 1."""


class DemoSetupError(DemoError):
    """A bad demo setting (an unusable cache directory); reported in one line, exit 2."""


@dataclass(frozen=True)
class Target:
    """What the tool reads and how it connects: the site, credentials and names to look up."""

    url: str
    script_name: str
    api_key: str
    project: str
    login: str


@dataclass(frozen=True)
class RunResult:
    """One way of running the reads: requests seen by the server, seconds, answers."""

    label: str
    requests: int
    session_requests: Optional[int]
    seconds: float
    digest: str
    summary: Dict[str, int]


# ------------------------------------------------------------------------------- the reads


def _norm(value: Any) -> Any:
    """A JSON-able, client-independent form of a field value (links become [type, id])."""
    if isinstance(value, Mapping):
        if "type" in value and "id" in value:
            return [value["type"], value["id"]]
        return {str(k): _norm(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(_dt.timezone.utc)
        return value.isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    return value


def _rows(rows: Sequence[Dict[str, Any]], fields: Sequence[str]) -> List[List[Any]]:
    """``[type, id, field values...]`` per row, sorted by ``(type, id)``."""
    out = [[row["type"], row["id"]] + [_norm(dict.get(row, f)) for f in fields] for row in rows]
    return sorted(out, key=lambda r: (str(r[0]), int(r[1])))


def pipeline_reads(sg: Any, target: Target, tick: Tick) -> Raw:
    """Run a typical pipeline tool's reads through *sg* (a Shotgun or a Session).

    Returns each read's rows with the fields to compare (see :func:`normalise`).  *tick* is
    called with each step's name once it is done.  Only plain link dicts go into filters, so
    the calls are the same whatever *sg* is.
    """
    project = sg.find_one("Project", [["name", "is", target.project]], _PROJECT_FIELDS)
    if project is None:
        raise DemoError(f"the demo site has no project named {target.project!r}")
    in_project = [["project", "is", {"type": "Project", "id": project["id"]}]]
    tick("project")

    sequences = sg.find("Sequence", in_project, _SEQUENCE_FIELDS)
    tick("sequences")

    shots = sg.find("Shot", in_project, _SHOT_FIELDS)
    tick("shots")

    steps = sg.find("Step", [], _STEP_FIELDS)
    tick("steps")

    tasks = sg.find("Task", in_project, _TASK_FIELDS)
    tick("tasks")

    versions = sg.find(
        "Version",
        in_project,
        _VERSION_FIELDS,
        order=[{"field_name": "created_at", "direction": "desc"}],
    )
    latest: Dict[int, Dict[str, Any]] = {}
    for version in versions:  # newest first: the first one seen per shot is its latest
        owner = dict.get(version, "entity")
        if isinstance(owner, Mapping) and owner.get("type") == "Shot":
            latest.setdefault(int(owner["id"]), version)
    tick("versions")

    user = sg.find_one("HumanUser", [["login", "is", target.login]], _USER_FIELDS)
    tick("user")

    script = sg.find_one("ApiUser", [["firstname", "is", target.script_name]], _SCRIPT_FIELDS)
    tick("script")

    return {
        "project": ([project], _PROJECT_FIELDS),
        "sequences": (sequences, _SEQUENCE_FIELDS),
        "shots": (shots, _SHOT_FIELDS),
        "steps": (steps, _STEP_FIELDS),
        "tasks": (tasks, _TASK_FIELDS),
        "latest_versions": (list(latest.values()), _VERSION_FIELDS),
        "user": ([user] if user is not None else [], _USER_FIELDS),
        "script": ([script] if script is not None else [], _SCRIPT_FIELDS),
    }


def normalise(raw: Raw) -> Answers:
    """Each read's rows as sorted ``[type, id, field values...]`` lists, whatever the client."""
    return {name: _rows(rows, fields) for name, (rows, fields) in raw.items()}


def digest(answers: Answers) -> str:
    """A short SHA-256 of the normalised answers: equal answers, equal digests."""
    text = json.dumps(answers, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


def summarise(answers: Answers) -> Dict[str, int]:
    """How many rows each read gave."""
    return {name: len(rows) for name, rows in answers.items()}


# ------------------------------------------------------------------------------- the runs


def _file_session(shotgun: Any, cache_dir: str) -> Any:
    """The standard persistent recipe: a Session over a SerialisedCache(FileCache)."""
    from .cache import SerialisedCache
    from .file import FileCache
    from .session import Session

    def cache_maker(session: Session) -> SerialisedCache:
        return SerialisedCache(FileCache(cache_dir), encode=session.encode, decode=session.decode)

    return Session(shotgun, cache=cache_maker)


def _connect(target: Target) -> Any:
    """A ``shotgun_api3.Shotgun`` for *target*; no request until the first read."""
    from shotgun_api3.shotgun import Shotgun

    sg = Shotgun(target.url, target.script_name, target.api_key, connect=False)
    sg.config.timeout_secs = 60.0
    return sg


def _timed_reads(
    target: Target, cache_dir: Optional[str], tick: Tick
) -> tuple[Answers, float, Optional[int]]:
    """Connect (with a Session over *cache_dir* if given) and run the reads.

    The time runs from before the client (and the Session, which opens the cache) is made
    to after the last read; comparing the answers afterwards is not counted.
    """
    started = time.perf_counter()
    sg = _connect(target)
    session = _file_session(sg, cache_dir) if cache_dir is not None else None
    try:
        raw = pipeline_reads(session if session is not None else sg, target, tick)
        seconds = time.perf_counter() - started
        session_requests = session.stats.request_count if session is not None else None
        answers = normalise(raw)
    finally:
        if session is not None:
            session.close()
        else:
            sg.close()
    return answers, seconds, session_requests


def _run_fresh_process(target: Target, cache_dir: str) -> Dict[str, Any]:
    """Run the warm reads with ``python -m sgcache_layers.demo warm``; return its JSON report."""
    command = [
        sys.executable,
        "-m",
        "sgcache_layers.demo",
        "warm",
        "--url",
        target.url,
        "--script-name",
        target.script_name,
        "--cache-dir",
        cache_dir,
        "--project",
        target.project,
        "--login",
        target.login,
    ]
    env = {**os.environ, API_KEY_ENV: target.api_key}
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=CHILD_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise DemoError(f"the fresh-process run took more than {CHILD_TIMEOUT:.0f} s") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {proc.returncode}"
        raise DemoError(f"the fresh-process run failed: {reason}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                report = json.loads(line)
            except ValueError:
                break
            if isinstance(report, dict):
                return report
    raise DemoError("the fresh-process run printed no report")


# ------------------------------------------------------------------------------- output


def _seconds(value: float) -> str:
    return f"{value:.3f} s" if value < 100 else f"{value:.0f} s"


def _ratio(base: float, value: float) -> float:
    return base / value if value > 0 else float("inf")


def format_table(results: Sequence[RunResult]) -> str:
    """The results as an aligned text table; speed-ups are against the first row."""
    base = results[0].seconds if results else 0.0
    header = ("Run", "Requests", "Session", "Wall time", "Speed-up")
    rows = [header]
    for result in results:
        rows.append(
            (
                result.label,
                str(result.requests),
                "-" if result.session_requests is None else str(result.session_requests),
                _seconds(result.seconds),
                f"{_ratio(base, result.seconds):.1f}x",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass(frozen=True)
class DemoReport:
    """Everything the demo found: the setting, the three runs and the warm run's times.

    ``results`` holds plain, cold and warm in that order; the warm row's time is the
    median of ``warm_seconds`` (one per new process) and its requests their sum.
    """

    scale: float
    seed: int
    latency: float
    production: Dict[str, int]
    target: Target
    cache_dir: str
    temporary: bool
    results: Tuple[RunResult, ...]
    warm_seconds: Tuple[float, ...]

    @property
    def checks(self) -> Dict[str, bool]:
        """The verdict's parts: only what does not depend on the machine's speed."""
        warm = self.results[-1]
        return {
            "warm_requests_zero": warm.requests == 0,
            "answers_match": len({r.digest for r in self.results}) == 1,
        }

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return all(self.checks.values())

    @property
    def exit_status(self) -> int:
        """0 when every check passed, 1 when one failed."""
        return 0 if self.ok else 1

    @property
    def speedups(self) -> Dict[str, float]:
        """How many times faster than plain shotgun_api3, as measured (not checked)."""
        plain, cold = self.results[0].seconds, self.results[1].seconds
        warm = sorted(self.warm_seconds)
        return {
            "cold": _ratio(plain, cold),
            "warm_median": _ratio(plain, statistics.median(warm)),
            "warm_min": _ratio(plain, warm[-1]),
            "warm_max": _ratio(plain, warm[0]),
        }

    def as_json(self) -> Dict[str, Any]:
        """The report as JSON-able data (``sgcache-layers demo --json``)."""

        def finite(value: float) -> Optional[float]:
            return value if value != float("inf") else None

        runs = []
        for result in self.results:
            runs.append(
                {
                    "label": result.label,
                    "requests": result.requests,
                    "session_requests": result.session_requests,
                    "seconds": result.seconds,
                    "digest": result.digest,
                    "rows": dict(result.summary),
                }
            )
        return {
            "site": {
                "scale": self.scale,
                "seed": self.seed,
                "latency": self.latency,
                "production": dict(self.production),
                "project": self.target.project,
                "login": self.target.login,
                "script": self.target.script_name,
            },
            "cache_dir": self.cache_dir,
            "cache_dir_kept": not self.temporary,
            "runs": runs,
            "warm_seconds": list(self.warm_seconds),
            "speedup": {k: finite(v) for k, v in self.speedups.items()},
            "checks": self.checks,
            "ok": self.ok,
            "exit_status": self.exit_status,
        }

    def format_text(self) -> str:
        """The report as text: the setting, the table, the measured speed, the verdict."""
        plain, cold, warm = self.results[0], self.results[1], self.results[-1]
        rows = plain.summary
        counts = ", ".join(f"{n} {t}" for t, n in self.production.items() if n) or "empty"
        lines = [f"Demo site: scale {self.scale:g}, seed {self.seed} ({counts})"]
        if self.latency > 0:
            lines.append(f"Latency: ~{self.latency * 1000:.0f} ms a request (lognormal median)")
        else:
            lines.append("Latency: none")
        lines.append(
            f"Reads: project {self.target.project!r}: {rows.get('sequences', 0)} sequences, "
            f"{rows.get('shots', 0)} shots, {rows.get('steps', 0)} steps, "
            f"{rows.get('tasks', 0)} tasks, latest versions of "
            f"{rows.get('latest_versions', 0)} shots, user {self.target.login!r}, "
            f"script {self.target.script_name!r}"
        )
        where = "temporary, removed" if self.temporary else "kept"
        lines += [f"Cache directory: {self.cache_dir} ({where})", "", format_table(self.results)]
        lines += [
            "",
            "Requests: HTTP requests in the server's log (every 500-row page, and the client's "
            "one info() call); Session: API calls the Session made (session.stats.request_count).",
            "Wall time: client and Session creation (and cache opening) to the last read; "
            "a new process's start-up is not counted.",
        ]
        speed = self.speedups
        warm_times = sorted(self.warm_seconds)
        runs = f"{len(warm_times)} new process{'es' if len(warm_times) != 1 else ''}"
        lines += [
            f"Warm row: the median time of {runs}, run one after the other; their requests summed.",
            "",
            "Speed-up over plain shotgun_api3, as measured (it varies with the machine and "
            "from run to run, so it is reported, not checked):",
            f"  cold run: {speed['cold']:.1f}x ({_seconds(cold.seconds)})",
            f"  warm run: {speed['warm_median']:.1f}x, median of {runs} "
            f"(range {speed['warm_min']:.1f}x-{speed['warm_max']:.1f}x: "
            f"{_seconds(warm_times[-1])} to {_seconds(warm_times[0])})",
            "",
        ]
        checks = self.checks
        lines.append(
            f"{'PASS' if checks['warm_requests_zero'] else 'FAIL'}: the warm run in new "
            f"processes made {warm.requests} requests (expected 0)"
        )
        digests = sorted({r.digest for r in self.results})
        if checks["answers_match"]:
            lines.append(f"PASS: answers match across the three runs (digest {digests[0]})")
        else:
            lines.append(f"FAIL: answers differ between the runs (digests {', '.join(digests)})")
            for result in self.results:
                lines.append(f"  {result.label}: {result.digest} {result.summary}")
        lines.append(f"Result: {'PASS' if self.ok else 'FAIL'}")
        if not self.temporary:
            lines.append(f"See what is stored: sgcache-layers stats --cache-dir {self.cache_dir}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------- the demo


def _prepare_cache_dir(cache_dir: Optional[str]) -> tuple[str, bool]:
    """The cache directory to use and whether it is a temporary one to remove at the end."""
    if cache_dir is None:
        return tempfile.mkdtemp(prefix="sgcache-layers-demo-"), True
    path = os.path.abspath(cache_dir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise DemoSetupError(f"--cache-dir {cache_dir}: not a directory")
    return path, False


def _empty_namespace(cache_dir: str, site: str) -> None:
    """Remove what an earlier demo left for this site, so the cold run is really cold."""
    from .cache import CacheBackendError
    from .file import FileCache

    try:
        cache = FileCache(cache_dir)
    except (CacheBackendError, OSError) as exc:
        raise DemoSetupError(f"--cache-dir {cache_dir}: {exc}") from None
    try:
        url = site.lower().rstrip("/")
        spelt = "|".join(re.escape(s) for s in (url, quote(url, safe="")))
        cache.clear(r"^sgcl\d+\|(" + spelt + r")\|")
    except CacheBackendError as exc:
        raise DemoSetupError(f"--cache-dir {cache_dir}: {exc}") from None
    finally:
        cache.close()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def collect(
    *,
    latency: float = DEFAULT_LATENCY,
    scale: float = DEFAULT_SCALE,
    seed: int = DEFAULT_SEED,
    cache_dir: Optional[str] = None,
    warm_runs: int = WARM_RUNS,
    progress: Optional[bool] = None,
) -> DemoReport:
    """Serve the demo site, make the three runs and return what they found.

    The warm run is made in *warm_runs* new processes, one after the other.  *progress*
    draws bars on stderr: ``None`` does when stderr is a terminal.  Raises
    :class:`DemoError` when the demo cannot run.
    """
    if warm_runs < 1:
        raise DemoSetupError("the warm run must be made at least once")
    from tqdm import tqdm

    from .testing.server import ShotgridServer, lognormal_latency

    show = _is_terminal(sys.stderr) if progress is None else progress
    path, temporary = _prepare_cache_dir(cache_dir)
    bar = tqdm(
        total=1 + (2 + warm_runs) * len(STEPS),
        desc="starting the demo site",
        unit="read",
        file=sys.stderr,
        disable=not show,
        leave=False,
        dynamic_ncols=True,
    )
    server: Optional[ShotgridServer] = None
    try:
        spec = (
            lognormal_latency(latency, sigma=0.25, seed=seed, maximum=latency * 4)
            if latency > 0
            else None
        )
        server = ShotgridServer(scale=scale, seed=seed, latency=spec)
        # Names to look up, read straight from the store (no request).
        project_id = server.production["Project"][0]["id"]
        user_id = server.production["HumanUser"][0]["id"]
        project = server.store.find_one("Project", [["id", "is", project_id]], ["name"])
        user = server.store.find_one("HumanUser", [["id", "is", user_id]], ["login"])
        if project is None or user is None:
            raise DemoError("the demo production has no project or no user")
        try:
            server.start()
        except OSError as exc:
            raise DemoError(f"cannot start the demo ShotGrid server: {exc}") from None
        target = Target(
            url=server.url,
            script_name=server.script_name,
            api_key=server.api_key,
            project=str(project["name"]),
            login=str(user["login"]),
        )
        _empty_namespace(path, server.url)
        bar.update(1)

        def tick(step: str) -> None:
            bar.update(1)

        results: List[RunResult] = []
        for label, cache in (
            ("plain shotgun_api3", None),
            ("Session + FileCache, cold", path),
        ):
            bar.set_description(label)
            server.reset_requests()
            answers, seconds, session_requests = _timed_reads(target, cache, tick)
            results.append(
                RunResult(
                    label,
                    server.request_count,
                    session_requests,
                    seconds,
                    digest(answers),
                    summarise(answers),
                )
            )

        label = "Session + FileCache, warm, new process"
        bar.set_description(label)
        server.reset_requests()
        reports = []
        for _ in range(warm_runs):
            reports.append(_run_fresh_process(target, path))
            bar.update(len(STEPS))
        warm_seconds = tuple(float(r["seconds"]) for r in reports)
        results.append(
            RunResult(
                label,
                server.request_count,
                sum(int(r["session_requests"]) for r in reports),
                statistics.median(warm_seconds),
                "/".join(sorted({str(r["digest"]) for r in reports})),
                {str(k): int(v) for k, v in dict(reports[0]["summary"]).items()},
            )
        )
        production = {name: len(rows) for name, rows in server.production.items()}
    finally:
        bar.close()
        if show and not _is_terminal(sys.stderr):
            # Bars drawn into a file end without a newline: end the line, so whatever is
            # written next (the report, with 2>&1) starts on a line of its own.
            sys.stderr.write("\n")
            sys.stderr.flush()
        if server is not None:
            server.stop()
        if temporary:
            shutil.rmtree(path, ignore_errors=True)
    order = ("Project", "Sequence", "Shot", "Asset", "Task", "Version", "PublishedFile")
    production = {t: production[t] for t in order if production.get(t)}
    return DemoReport(
        scale=scale,
        seed=seed,
        latency=latency,
        production=production,
        target=target,
        cache_dir=path,
        temporary=temporary,
        results=tuple(results),
        warm_seconds=warm_seconds,
    )


def run_demo(
    *,
    latency: float = DEFAULT_LATENCY,
    scale: float = DEFAULT_SCALE,
    seed: int = DEFAULT_SEED,
    cache_dir: Optional[str] = None,
    warm_runs: int = WARM_RUNS,
    progress: Optional[bool] = None,
    json_report: bool = False,
    out: Optional[IO[str]] = None,
) -> int:
    """Run the demo, print the report to *out* (stdout) and return the exit status.

    The report is text, or one JSON object with *json_report*.  Returns 0 when the warm
    runs made no request and every run gave the same answers, 1 otherwise; the speed is
    reported, never judged.  Raises :class:`DemoError` when the demo cannot run.
    """
    report = collect(
        latency=latency,
        scale=scale,
        seed=seed,
        cache_dir=cache_dir,
        warm_runs=warm_runs,
        progress=progress,
    )
    stream = out if out is not None else sys.stdout
    if json_report:
        stream.write(json.dumps(report.as_json(), indent=2) + "\n")
    else:
        stream.write(report.format_text() + "\n")
    stream.flush()
    return report.exit_status


# ------------------------------------------------------------------------------- the child


def _child_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sgcache_layers.demo",
        description="The demo's warm run, in its own process (the API key comes from "
        f"${API_KEY_ENV}).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    warm = sub.add_parser("warm", help="run the reads through a Session over --cache-dir")
    warm.add_argument("--url", required=True)
    warm.add_argument("--script-name", required=True)
    warm.add_argument("--cache-dir", required=True)
    warm.add_argument("--project", required=True)
    warm.add_argument("--login", required=True)
    return parser


def child_main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m sgcache_layers.demo warm``: print one JSON report line."""
    args = _child_parser().parse_args(argv)
    api_key = os.environ.get(API_KEY_ENV)
    if not api_key:
        print(f"demo warm run: error: ${API_KEY_ENV} is not set", file=sys.stderr)
        return 2
    target = Target(args.url, args.script_name, api_key, args.project, args.login)
    # Import everything the timed reads use first: start-up is not what is measured.
    import shotgun_api3  # noqa: F401

    from . import cache, file, session  # noqa: F401

    try:
        answers, seconds, session_requests = _timed_reads(target, args.cache_dir, lambda s: None)
    except Exception as exc:  # reported to the parent in one line
        print(f"demo warm run: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    report = {
        "seconds": seconds,
        "session_requests": session_requests,
        "digest": digest(answers),
        "summary": summarise(answers),
    }
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover - run by the demo in a subprocess
    sys.exit(child_main())
