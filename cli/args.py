"""Command-line parsing for ``python -m cli.main <script.py | -m module> [options] [args...]``.

Pure parsing: no file-system checks, no printing, no exiting. ``parse_args`` returns an
``Options`` or raises one of:

* ``UsageError``: bad command line; print its one-line message (and ``USAGE``), exit 2.
* ``HelpRequested``: ``-h``/``--help`` before the script; print ``.text`` (= ``HELP``), exit 0.
* ``VersionRequested``: ``--version`` before the script; print ``VERSION_TEXT_PREFIX`` followed
  by the installed version, exit 0.

Tracer options live in the ``OPTIONS`` table; adding one is one ``OptionSpec`` line plus a field
in ``Options``.
"""

import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field

VERSION_TEXT_PREFIX = "otel-tracer"
USAGE = "usage: python -m cli.main <script.py | -m module> [options] [script args...]"
CORES = ("auto", "c", "python", "monitoring", "pymonitoring")
OTLP_PROTOCOLS = ("grpc", "http/protobuf", "http/json")
MATCHES = ("structure", "function")


@dataclass
class Options:
    """A parsed tracer command line."""

    script: str | None = None
    module: str | None = None
    script_args: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    external_calls: bool = True
    include_builtins: bool = False
    capture_args: bool = True
    max_depth: int | None = None
    max_calls: int | None = None
    ring_buffer: int | None = None
    format: str | None = None
    quiet: bool = False
    core: str = "auto"
    patterns: bool = True
    match: str = "structure"
    near: bool = True
    fold_budget: float | None = None  # seconds; None: the default, 0: no limit
    redact: list[str] = field(default_factory=list)
    show: list[str] = field(default_factory=list)
    redaction: bool = True
    otlp_endpoint: str | None = None
    otlp_protocol: str | None = None
    fold_patterns: bool = False
    follow: bool = True


class UsageError(Exception):
    """One-line message for bad command lines."""


class HelpRequested(Exception):
    """``-h``/``--help`` was given: the caller prints ``text`` and exits 0."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class VersionRequested(Exception):
    """``--version`` was given: the caller prints the version and exits 0."""


@dataclass(frozen=True)
class OptionSpec:
    """One tracer option.

    ``metavar`` None makes a flag that stores ``const`` in ``dest``; otherwise the option takes a
    value, passed through ``convert(label, value)`` when set, and appended to the list in ``dest``
    when ``repeat`` (else stored, the last one winning).
    """

    names: tuple[str, ...]
    dest: str
    help: str
    metavar: str | None = None
    repeat: bool = False
    const: object = True
    convert: Callable[[str, str], object] | None = None

    @property
    def label(self) -> str:
        """Names as used in error messages, e.g. ``-o/--output``."""
        return "/".join(self.names)

    @property
    def usage(self) -> str:
        """Names and value as shown in the help, e.g. ``-o, --output FILE``."""
        names = ", ".join(self.names)
        return f"{names} {self.metavar}" if self.metavar else names


_INT64_MAX = 2**63 - 1  # the recorder counts in 64-bit integers


def _positive_int(label: str, value: str) -> int:
    """``value`` as an integer from 1 to 2**63 - 1."""
    message = f"option {label} needs an integer >= 1, got {value!r}"
    try:
        number = int(value)
    except ValueError:
        raise UsageError(message) from None
    if number < 1:
        raise UsageError(message)
    if number > _INT64_MAX:
        raise UsageError(f"option {label} needs an integer <= {_INT64_MAX}, got {value!r}")
    return number


def _seconds(label: str, value: str) -> float:
    """``value`` as a number of seconds, 0 or more (and finite)."""
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number < float("inf"):
        raise UsageError(f"option {label} needs a number of seconds >= 0, got {value!r}")
    return number


def _one_of(choices: tuple[str, ...]) -> Callable[[str, str], str]:
    """A converter accepting only ``choices``."""

    def convert(label: str, value: str) -> str:
        if value not in choices:
            raise UsageError(f"option {label} must be one of {', '.join(choices)}, got {value!r}")
        return value

    return convert


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        ("-o", "--output"),
        "outputs",
        "write the trace to FILE; repeatable. '.json': JSON trace (annotated with its "
        "pattern groups), '.json.gz': gzipped JSON, '.txt': the grouped view as text, '.html': "
        "the viewer as one standalone page (opens from disk, no server), '.otlp.json': "
        "OpenTelemetry spans as OTLP/JSON (Jaeger UI opens it), '.pftrace' or "
        "'.perfetto-trace': Perfetto trace (ui.perfetto.dev), '-': JSON to stdout. "
        "Without -o the grouped view is printed to stdout after the script ends",
        metavar="FILE",
        repeat=True,
    ),
    OptionSpec(
        ("--scope",),
        "scopes",
        "directory whose code is traced in full; repeatable (default: the script's directory, "
        "or the outermost 'mttl' directory in the script's path)",
        metavar="DIR",
        repeat=True,
    ),
    OptionSpec(
        ("--no-external-calls",),
        "external_calls",
        "do not record calls from traced code to functions outside the scope (in-scope "
        "callbacks then attach to the nearest traced caller)",
        const=False,
    ),
    OptionSpec(
        ("--include-builtins",),
        "include_builtins",
        "also record calls to trivial builtins such as len, isinstance, list.append",
    ),
    OptionSpec(
        ("--no-args",), "capture_args", "skip argument and return value capture", const=False
    ),
    OptionSpec(
        ("--max-depth",),
        "max_depth",
        "record calls up to nesting depth N",
        metavar="N",
        convert=_positive_int,
    ),
    OptionSpec(
        ("--max-calls",),
        "max_calls",
        "stop recording after N calls; the trace says how many were dropped",
        metavar="N",
        convert=_positive_int,
    ),
    OptionSpec(
        ("--ring-buffer",),
        "ring_buffer",
        "keep only the last N calls (and the calls they run in) in memory, for runs too "
        "long to keep whole; nothing is streamed to disk",
        metavar="N",
        convert=_positive_int,
    ),
    OptionSpec(
        ("--format",),
        "format",
        "force the format of every -o: json, json.gz, text, html, otlp-json or perfetto "
        "(default: from each file name)",
        metavar="FMT",
    ),
    OptionSpec(
        ("--no-patterns",),
        "patterns",
        "do not fold repeated call sequences: print the plain call tree and write the trace "
        "without pattern annotations",
        const=False,
    ),
    OptionSpec(
        ("--match",),
        "match",
        "when two sibling calls are the same step of a pattern: structure (default: same "
        "function and the same calls below it) or function (same function)",
        metavar="{" + ",".join(MATCHES) + "}",
        convert=_one_of(MATCHES),
    ),
    OptionSpec(
        ("--exact",),
        "near",
        "only fold repetitions that have the same steps (no near-repeat groups with variants)",
        const=False,
    ),
    OptionSpec(
        ("--fold-budget",),
        "fold_budget",
        "give up folding patterns after SECONDS, and write the trace without pattern groups "
        "(python -m patterns folds it later); default: the program's own run time, at least "
        "10 s; 0: no limit",
        metavar="SECONDS",
        convert=_seconds,
    ),
    OptionSpec(
        ("--redact",),
        "redact",
        "also redact argument values whose names match REGEX (case-insensitive search); "
        "repeatable. By default values of arguments (and command-line options) named like "
        "password, pwd, secret, token, api_key, auth, cookie, credential, ... (by word: "
        "authKey and auth_token are, max_new_tokens and tokenizer are not) are replaced by "
        "[redacted] in every output and in the spool",
        metavar="REGEX",
        repeat=True,
    ),
    OptionSpec(
        ("--show",),
        "show",
        "never redact the values of arguments named exactly NAME (repeatable)",
        metavar="NAME",
        repeat=True,
    ),
    OptionSpec(
        ("--no-redact",), "redaction", "keep every argument value, secrets included", const=False
    ),
    OptionSpec(
        ("--otlp-endpoint",),
        "otlp_endpoint",
        "also send the spans to this OTLP collector (Jaeger, Tempo, an OpenTelemetry "
        "Collector), e.g. http://localhost:4317 (gRPC) or http://localhost:4318/v1/traces "
        "(HTTP). Without it, OTEL_TRACES_EXPORTER=otlp and the OTEL_EXPORTER_OTLP_* "
        "variables turn the export on. A collector that is down costs a message, never "
        "the trace files or the program's exit code",
        metavar="URL",
    ),
    OptionSpec(
        ("--otlp-protocol",),
        "otlp_protocol",
        "grpc, http/protobuf or http/json (default: OTEL_EXPORTER_OTLP_PROTOCOL, else "
        "http/protobuf for a URL ending in /v1/traces or on port 4318, else grpc)",
        metavar="{" + ",".join(OTLP_PROTOCOLS) + "}",
        convert=_one_of(OTLP_PROTOCOLS),
    ),
    OptionSpec(
        ("--fold-patterns",),
        "fold_patterns",
        "in the span outputs (OTLP, .otlp.json), keep only the first repetition of each "
        "pattern group, under a group span carrying the counts: a million-call training "
        "loop stays small enough for Jaeger",
    ),
    OptionSpec(
        ("--no-follow",),
        "follow",
        "trace only this process. By default the processes the program starts "
        "(multiprocessing, ProcessPoolExecutor, os.fork, Python subprocesses) are traced "
        "too, each into TRACE.<pid>.json beside the first -o, merged into the trace at "
        "the end of the run",
        const=False,
    ),
    OptionSpec(("-q", "--quiet"), "quiet", "no status lines on stderr"),
    OptionSpec(
        ("--core",),
        "core",
        "the recording core: auto (the default) is monitoring (sys.monitoring) on Python "
        "3.12+, else the C accelerator when it is built, else python; monitoring is in C "
        "when built, pymonitoring always in Python",
        metavar="{" + ",".join(CORES) + "}",
        convert=_one_of(CORES),
    ),
)

_MODULE = OptionSpec(
    ("-m",),
    "module",
    "run library module MODULE as the script, as python -m does (instead of a script path); "
    "every word after MODULE is the module's",
    metavar="MODULE",
)
_AFTER_SCRIPT = {name: spec for spec in OPTIONS for name in spec.names}
_BEFORE_SCRIPT = {**_AFTER_SCRIPT, "-m": _MODULE}

_WIDTH = 79
_COLUMN = 26

_RULES = """\
Argument rules:
  1. Tracer options may stand before or after the script path:
       my_script.py -o results.json --scope /project/src arg1 arg2
     writes results.json, traces /project/src, and runs my_script.py arg1 arg2.
  2. Before the script, every word starting with '-' must be a tracer option;
     the first word not starting with '-' is the script path.
  3. After the script, tracer options (with their values) are taken by the
     tracer; every other word goes to the script untouched and in order:
       my_script.py arg1 arg2 --script-flag
         -> script args: arg1 arg2 --script-flag
       train.py --config c.yaml -o t.json
         -> script args: --config c.yaml; trace written to t.json
     There -h, --help, --version and -m belong to the script, and a short
     option takes its value only as the next word (-o FILE, not -oFILE).
  4. A literal -- ends the tracer options: everything after it goes to the
     script verbatim.
       s.py a -- -o x   -> script args: a -o x (and no -o for the tracer)
       -- s.py -o x     -> script s.py, script args: -o x
  5. -m MODULE (or -mMODULE) takes the place of the script path, as with
     python -m; tracer options stand before -m, and every word after MODULE
     goes to the module verbatim (-o, -q and -- included):
       -o t.json -m pytest -q   -> runs pytest -q; trace written to t.json
"""


def _help_row(usage: str, text: str) -> str:
    """One option of the help: its usage, then its wrapped description in a column."""
    head = f"  {usage}"
    lines = [" " * _COLUMN + line for line in textwrap.wrap(text, _WIDTH - _COLUMN)]
    if len(head) + 2 <= _COLUMN:
        lines[0] = head.ljust(_COLUMN) + lines[0][_COLUMN:]
    else:
        lines.insert(0, head)
    return "\n".join(lines)


def _render_help() -> str:
    """The full ``--help`` text."""
    rows = [
        _help_row(_MODULE.usage, _MODULE.help),
        *(_help_row(spec.usage, spec.help) for spec in OPTIONS),
        _help_row("-h, --help", "show this help and exit"),
        _help_row("--version", "show the version and exit"),
    ]
    return "\n".join(
        [
            USAGE,
            "",
            "Run a Python script (or module) and trace every call in its scope, with",
            "arguments, timing and hierarchy.",
            "",
            "Options:",
            *rows,
            "",
            "Options with a value accept --opt VALUE and --opt=VALUE; -o also -oFILE.",
            "",
            _RULES,
        ]
    )


HELP = _render_help()


def _match(
    token: str, table: dict[str, OptionSpec], attached: bool
) -> tuple[OptionSpec, str | None] | None:
    """The option in ``table`` that ``token`` names and its inline value, or None.

    ``attached`` allows a short option's value in the same word (``-oFILE``, ``-o=FILE``).
    """
    if token.startswith("--"):
        name, equals, value = token.partition("=")
        spec = table.get(name)
        return None if spec is None else (spec, value if equals else None)
    spec = table.get(token[:2])
    if spec is None:
        return None
    if len(token) == 2:
        return spec, None
    if attached and spec.metavar is not None:
        return spec, token[2:].removeprefix("=")
    return None


def _take(spec: OptionSpec, inline: str | None, argv: list[str], i: int, opts: Options) -> int:
    """Store option ``spec`` found at ``argv[i]`` in ``opts``; return the index after it."""
    if spec.metavar is None:
        if inline is not None:
            raise UsageError(f"option {spec.label} takes no value")
        setattr(opts, spec.dest, spec.const)
        return i + 1
    if inline is None:
        i += 1
        inline = argv[i] if i < len(argv) else ""
    if inline in ("", "--"):
        raise UsageError(f"option {spec.label} needs a value")
    value = spec.convert(spec.label, inline) if spec.convert else inline
    if spec.repeat:
        getattr(opts, spec.dest).append(value)
    else:
        setattr(opts, spec.dest, value)
    return i + 1


def parse_args(argv: list[str]) -> Options:
    """Parse the tracer's command line (without the program name).

    Raises ``UsageError``, ``HelpRequested`` or ``VersionRequested`` (see the module docstring).
    """
    opts = Options()
    i = 0
    while opts.script is None and opts.module is None:
        if i >= len(argv) or (argv[i] == "--" and i + 1 >= len(argv)):
            raise UsageError(f"missing script: {USAGE}")
        token = argv[i]
        if token == "--":
            opts.script = argv[i + 1]
            opts.script_args = argv[i + 2 :]
            return opts
        if not token.startswith("-"):
            opts.script = token
            i += 1
            continue
        if token in ("-h", "--help"):
            raise HelpRequested(HELP)
        if token == "--version":
            raise VersionRequested
        found = _match(token, _BEFORE_SCRIPT, attached=True)
        if found is None:
            raise UsageError(
                f"unknown option: {token} (options for the script go after the script path; "
                "see --help)"
            )
        i = _take(*found, argv, i, opts)
    if opts.module is not None:  # as python -m: the rest is the module's, verbatim
        opts.script_args = argv[i:]
        return opts
    while i < len(argv):
        token = argv[i]
        if token == "--":
            opts.script_args.extend(argv[i + 1 :])
            break
        found = _match(token, _AFTER_SCRIPT, attached=False) if token.startswith("-") else None
        if found is None:
            opts.script_args.append(token)
            i += 1
        else:
            i = _take(*found, argv, i, opts)
    return opts
