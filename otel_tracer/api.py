"""The Python API: ``with Tracer(scope=[...]) as t: ...`` and ``@traced``."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from otel_tracer.record.options import RecordOptions
from otel_tracer.record.recorder import Recorder
from otel_tracer.record.scope import Scope
from otel_tracer.trace.redact import redact as redact_secrets
from otel_tracer.trace.redact import redact_argv, secret_names

if TYPE_CHECKING:  # numpy and the model load after the run: recording needs neither
    from otel_tracer.trace.model import Trace

F = TypeVar("F", bound=Callable[..., Any])


class Tracer:
    """Record the calls made in ``scope`` inside a ``with`` block.

    ``scope`` defaults to the directory of the file that creates the Tracer.
    After the block, ``tracer.trace`` is the Trace and ``tracer.save(path)``
    writes it (``.json`` or ``.json.gz``). Argument values named like secrets
    are redacted (``redact``: False for none, or extra name patterns; ``show``:
    names never redacted), and never reach the recording."""

    def __init__(
        self,
        scope: Iterable[str | os.PathLike[str]] | None = None,
        options: RecordOptions | None = None,
        core: str = "auto",
        redact: bool | Sequence[str] = True,
        show: Sequence[str] = (),
        **option_values: Any,
    ) -> None:
        if scope is None:
            scope = [os.path.dirname(os.path.abspath(sys._getframe(1).f_code.co_filename))]
        self.options = options or RecordOptions(**option_values)
        extra = () if isinstance(redact, bool) else tuple(redact)
        self.secrets = secret_names(extra, show) if redact is not False else None
        self.recorder = Recorder(
            Scope(os.fspath(s) for s in scope), self.options, core=core, secrets=self.secrets
        )
        self.trace: Trace | None = None

    def __enter__(self) -> Tracer:
        self.recorder.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.recorder.stop()
        argv = redact_argv(sys.argv, self.secrets)
        self.trace = self.recorder.build(argv=argv, exit_code=None)
        redact_secrets(self.trace, self.secrets)

    def save(self, path: str | os.PathLike[str], patterns: bool = True) -> None:
        """Write the trace as the documented JSON (gzipped for ``.gz`` names),
        annotated with its pattern groups unless ``patterns`` is false."""
        from otel_tracer.trace.annotators import annotator
        from otel_tracer.trace.save import save

        if self.trace is None:
            raise RuntimeError("the Tracer has not finished recording yet")
        if patterns and self.trace.patterns is None:
            annotator("patterns")(self.trace)
        save(self.trace, path)


def traced(
    func: F | None = None, *, output: str | os.PathLike[str] | None = None, **tracer_args: Any
) -> Any:
    """Decorator: trace each call of ``func``; the last trace is ``func.last_trace``
    and is also saved to ``output`` when given. Scope defaults to the directory
    of the file defining ``func``."""

    def decorate(f: F) -> F:
        scope = tracer_args.pop("scope", None) or [os.path.dirname(f.__code__.co_filename)]

        @functools.wraps(f)
        def recording(*args: Any, **kwargs: Any) -> Any:
            tracer = Tracer(scope=scope, **tracer_args)
            try:
                with tracer:
                    return f(*args, **kwargs)
            finally:
                recording.last_trace = tracer.trace  # type: ignore[attr-defined]
                if output is not None and tracer.trace is not None:
                    tracer.save(output)

        recording.last_trace = None  # type: ignore[attr-defined]
        return recording  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate
