"""Redaction of secret-named argument values, in every output."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
from conftest import REPO, call_objects, run_tracer, write_files
from trace_builder import build_trace

import otel_tracer
from otel_tracer.trace.model import Function
from otel_tracer.trace.redact import REDACTED, redact, secret_names

PROGRAM = """
    def login(user, password, api_key=None):
        return len(password)

    def connect(host, token):
        return host

    def plain(x, password_hint):
        return x

    login("ann", "hunter2", api_key="k-123")
    connect("db", token="tok-456")
    plain(3, password_hint="the usual")
"""
SECRETS = ("hunter2", "k-123", "tok-456", "the usual")
SCHEMA = json.loads((REPO / "otel_tracer/trace/schema/trace-v3.schema.json").read_text())


def test_default_names():
    names = secret_names()
    for name in (
        "password",
        "db_password",
        "passwd",
        "API_KEY",
        "apikey",
        "auth_token",
        "Authorization",
        "cookie",
        "client_secret",
        "credentials",
        "private_key",
    ):
        assert names.is_secret(name), name
    for name in ("user", "host", "x", "passage", "keys", "author", "authority"):
        assert not names.is_secret(name), name


def test_every_output_is_redacted(tmp_path):
    write_files(tmp_path, {"p.py": PROGRAM})
    result = run_tracer(["p.py", "-o", "t.json", "-o", "t.txt", "-o", "t.html", "-q"], tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("t.json", "t.txt", "t.html"):
        text = (tmp_path / name).read_text()
        for secret in SECRETS:
            assert secret not in text, (name, secret)
    doc = json.loads((tmp_path / "t.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    assert doc["metadata"]["redaction"]["enabled"] is True
    assert doc["metadata"]["redaction"]["calls"] == 3
    login = next(c for c in call_objects(doc) if doc["functions"][c["function"]]["name"] == "login")
    assert login["args"] == {"user": "'ann'", "password": REDACTED, "api_key": REDACTED}


def test_extra_patterns_and_no_redact(tmp_path):
    write_files(tmp_path, {"p.py": PROGRAM})
    result = run_tracer(["p.py", "-o", "t.json", "-q", "--redact", "^user$"], tmp_path)
    assert result.returncode == 0, result.stderr
    trace = otel_tracer.load(tmp_path / "t.json")
    login = next(i for i in range(len(trace)) if trace.function_of(i).name == "login")
    assert trace.args_of(login)["user"] == REDACTED
    result = run_tracer(["p.py", "-o", "t.json", "-q", "--no-redact"], tmp_path)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "t.json").read_text()
    assert all(secret in text for secret in SECRETS)
    assert json.loads(text)["metadata"]["redaction"] == {"enabled": False}


def test_bad_redact_options(tmp_path):
    write_files(tmp_path, {"p.py": PROGRAM})
    for args, expected in (
        (["--redact", "("], "--redact: not a valid regular expression"),
        (["--redact", "x", "--no-redact"], "cannot go with --no-redact"),
        (["--show", "x", "--no-redact"], "cannot go with --no-redact"),
    ):
        result = run_tracer(["p.py", "-q", *args], tmp_path)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and expected in result.stderr
        assert "Traceback" not in result.stderr


def test_shared_argument_tuples_are_redacted_per_function():
    """Two functions whose calls share one argument tuple: only the one whose
    parameter is named like a secret is redacted."""
    trace = build_trace(["f", "g", "f"])
    trace.functions[0] = Function("f", "f", "mod", "/src/mod.py", 1, False, ("token",))
    trace.functions[1] = Function("g", "g", "mod", "/src/mod.py", 1, False, ("count",))
    trace.strings.append("'42'")
    trace.arg_tuples.append((0,))
    trace.calls.args = np.zeros(len(trace), dtype=np.int32)
    assert redact(trace, secret_names()) == 2
    assert [trace.args_of(i) for i in range(3)] == [
        {"token": REDACTED},
        {"count": "'42'"},
        {"token": REDACTED},
    ]


def test_python_api_redacts_by_default(tmp_path):
    write_files(tmp_path, {"prog.py": "def f(secret):\n    return 1\n"})
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        import prog

        with otel_tracer.Tracer(scope=[tmp_path]) as tracer:
            prog.f("s3cr3t")
        assert tracer.trace.args_of(0) == {"secret": REDACTED}
        with otel_tracer.Tracer(scope=[tmp_path], redact=False) as tracer:
            prog.f("s3cr3t")
        assert tracer.trace.args_of(0) == {"secret": "'s3cr3t'"}
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("prog", None)
