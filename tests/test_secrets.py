"""Secrets never reach the disk or any output: argument values named like
secrets are recorded redacted (a run killed with SIGKILL leaves none in its
spool), secret values on the command line are redacted in every output of every
process, names are matched by word parts, and OTLP credentials are never
printed. Real programs under the tracer, compared with their untraced run."""

from __future__ import annotations

import base64
import gzip
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import CORES, REPO, run_python, run_tracer, write_files

import otel_tracer
from otel_tracer.stream.mover import INTERVAL
from otel_tracer.trace.redact import REDACTED, SecretNames, redact_argv, secret_names

PROGRAM = """
    import subprocess
    import sys
    import time


    def login(user, password, apiKey=None, userAuth=None):
        return len(password)


    def generate(prompt, max_new_tokens, token_ids, tokenizer, num_tokens=0):
        return prompt


    def serve(n):
        for i in range(n):
            login("ann", "hunter2-" + str(i % 3), apiKey="ak-999", userAuth="ua-321")
            generate("hi", max_new_tokens=8, token_ids=[1], tokenizer="tok-plain")
            if i == 20:
                print("ready", flush=True)
            if n > 100:
                time.sleep(0.001)


    print(sys.argv[1:], flush=True)
    serve(int(sys.argv[1]))
    if sys.argv[2:3] == ["child"]:
        subprocess.run([sys.executable, "prog.py", "25", "--api-key=ck-777", "token=ct-888"])
"""
SECRETS = (b"hunter2", b"ak-999", b"ua-321", b"pp-555", b"ck-777", b"ct-888")


def files_holding(directory, secrets=SECRETS) -> dict[str, list[bytes]]:
    """The files under ``directory`` (the program aside) that hold a secret."""
    found = {}
    for root, _, names in os.walk(directory):
        for name in names:
            if name == "prog.py":
                continue
            data = open(os.path.join(root, name), "rb").read()
            hits = [secret for secret in secrets if secret in data]
            if hits:
                found[name] = hits
    return found


@pytest.mark.parametrize("core", CORES)
def test_a_killed_run_leaves_no_secret_on_disk(tmp_path, core):
    """SIGKILL while streaming: the spool holds the calls, the secrets redacted,
    readable by its owner only."""
    write_files(tmp_path, {"prog.py": PROGRAM})
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "-q", "--core", core, "-o", "trace.json"]
        + ["prog.py", "100000", "--password", "pp-555"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout.readline() == b"['100000', '--password', 'pp-555']\n"
    assert proc.stdout.readline() == b"ready\n"
    time.sleep(4 * INTERVAL)  # a few moves to disk
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    spool = tmp_path / f"trace.{proc.pid}.spool"
    assert spool.exists()
    assert files_holding(tmp_path) == {}
    assert spool.stat().st_mode & 0o777 == 0o600
    trace = otel_tracer.load(spool)
    assert trace.meta["argv"] == ["prog.py", "100000", "--password", REDACTED]
    by_name = {trace.function_of(r).name: trace.args_of(r) for r in range(len(trace))}
    assert by_name["login"] == {
        "user": "'ann'",
        "password": REDACTED,
        "apiKey": REDACTED,
        "userAuth": REDACTED,
    }
    assert by_name["generate"]["max_new_tokens"] == "8"
    assert by_name["generate"]["tokenizer"] == "'tok-plain'"


def test_command_line_secrets_are_redacted_in_every_output(tmp_path):
    """The parent's and a followed child's secret options, in the JSON trace's
    metadata, the OTLP resource (process.command_args), Perfetto, the viewer
    and the text view; the programs still see their real arguments."""
    write_files(tmp_path, {"prog.py": PROGRAM})
    args = ["prog.py", "25", "child", "--password", "pp-555"]
    untraced = run_python(args, tmp_path)
    outputs = ["t.json", "t.otlp.json", "t.pftrace", "t.html", "t.txt"]
    traced = run_tracer([*sum((["-o", o] for o in outputs), []), *args], tmp_path)
    assert traced.returncode == untraced.returncode == 0, traced.stderr
    assert traced.stdout == untraced.stdout  # the programs see their own argv
    assert b"ck-777" in untraced.stdout.encode()
    assert files_holding(tmp_path) == {}
    html = (tmp_path / "t.html").read_text()
    blobs = re.findall(r'id="blob:[^"]+">([^<]*)</script>', html)
    assert blobs
    for blob in blobs:
        data = gzip.decompress(base64.b64decode(blob))
        assert not [s for s in SECRETS if s in data]
    for name in outputs:
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    trace = otel_tracer.load(tmp_path / "t.json")
    argvs = [p["argv"] for p in trace.meta["processes"]]
    assert argvs == [
        ["prog.py", "25", "child", "--password", REDACTED],
        [argvs[1][0], "25", f"--api-key={REDACTED}", f"token={REDACTED}"],
    ]
    assert b"process.command_args" in (tmp_path / "t.otlp.json").read_bytes()


def test_names_are_matched_by_word_parts():
    names = secret_names()
    secret = (
        "password db_password passwd pwd PASSWORD authKey userAuth auth auth_token "
        "access_token accessToken token apiKey api_key API_KEY x-api-key apikey secret "
        "client_secret Authorization cookie credentials private_key privateKey session_id "
        "sessionId HTTPAuthToken refresh-token bearer"
    ).split()
    plain = (
        "max_new_tokens num_tokens tokenizer token_ids tokens author authority passage "
        "keys key user host x session monkey pass_rate"
    ).split()
    assert [n for n in secret if not names.is_secret(n)] == []
    assert [n for n in plain if names.is_secret(n)] == []
    shown = SecretNames(extra=("^user$",), show=("pwd",))
    assert shown.is_secret("user") and not shown.is_secret("pwd")
    assert shown.is_secret("password")
    assert SecretNames.from_json(shown.to_json()) == shown
    assert redact_argv(["p", "--pwd", "x", "--max-new-tokens", "8", "--token", "--v"], names) == [
        "p",
        "--pwd",
        REDACTED,
        "--max-new-tokens",
        "8",
        "--token",
        "--v",
    ]


def test_show_lets_names_back(tmp_path):
    write_files(tmp_path, {"prog.py": PROGRAM})
    result = run_tracer(
        ["-q", "-o", "t.json", "--show", "password", "--show", "apiKey", "prog.py", "25"], tmp_path
    )
    assert result.returncode == 0, result.stderr
    trace = otel_tracer.load(tmp_path / "t.json")
    login = next(r for r in range(len(trace)) if trace.function_of(r).name == "login")
    assert trace.args_of(login) == {
        "user": "'ann'",
        "password": "'hunter2-0'",
        "apiKey": "'ak-999'",
        "userAuth": REDACTED,
    }
    assert trace.meta["redaction"]["show"] == ["password", "apiKey"]


def test_the_api_takes_show(tmp_path):
    write_files(tmp_path, {"mod.py": "def f(token, pwd):\n    return 1\n"})
    sys.path.insert(0, str(tmp_path))
    try:
        import mod

        with otel_tracer.Tracer(scope=[tmp_path], show=["pwd"]) as tracer:
            mod.f("t-1", "p-2")
        assert tracer.trace.args_of(0) == {"token": REDACTED, "pwd": "'p-2'"}
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mod", None)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_otlp_credentials_are_never_printed(tmp_path, protocol):
    write_files(tmp_path, {"prog.py": PROGRAM})
    headers = {
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20hdr-secret-1",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2000",
    }
    endpoint = f"http://alice:pw-s3cr3t@127.0.0.1:{closed_port()}"
    result = run_tracer(
        ["--otlp-endpoint", endpoint, "--otlp-protocol", protocol, "prog.py", "25"],
        tmp_path,
        env=headers,
    )
    assert "OTLP export to http://[redacted]@127.0.0.1" in result.stderr, result.stderr
    env = {"OTEL_EXPORTER_OTLP_HEADERS": "Bearer hdr-secret-1"}
    bad = ["--otlp-endpoint", "http://alice:pw-s3cr3t@127.0.0.1:99999", "prog.py", "1"]
    refused = run_tracer(bad, tmp_path, env=env)  # a bad option: one line, exit 2
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    result.stderr += refused.stderr
    # a bad OTEL_* value: a warning that names the item by position only (spec: ignored)
    warned = run_tracer(
        ["-q", "--otlp-endpoint", f"http://127.0.0.1:{closed_port()}", "prog.py", "1"],
        tmp_path,
        env=env,
    )
    assert "OTEL_EXPORTER_OTLP_HEADERS: item 1 is not key=value" in warned.stderr, warned.stderr
    result.stderr += warned.stderr
    assert "pw-s3cr3t" not in result.stderr and "alice" not in result.stderr
    assert "hdr-secret-1" not in result.stderr
