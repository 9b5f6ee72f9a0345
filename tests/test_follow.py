"""Following child processes: every process a traced program starts is traced
into its own file and merged into one trace, each process a separate root, all
under one OpenTelemetry trace id."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from conftest import run_python, run_tracer, start_traced_group, write_files

import otel_tracer
from otel_tracer.spans.plan import span_plan
from otel_tracer.trace.merge import processes_of

WORKERS = """
    import concurrent.futures
    import multiprocessing as mp
    import os
    import subprocess
    import sys


    def square(x):
        return x * x


    def work(n):
        return sum(square(i) for i in range(n))


    def main(how):
        if how == "executor":
            with concurrent.futures.ProcessPoolExecutor(2) as pool:
                print(list(pool.map(work, [3, 4, 5])))
        elif how == "fork-exit":
            pid = os.fork()
            if pid == 0:
                print("child", work(4), flush=True)
                os._exit(3)
            print("child ended with", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        elif how == "subprocess":
            child = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child.py")
            result = subprocess.run([sys.executable, child, "2"], capture_output=True, text=True)
            print(result.stdout.strip(), result.returncode)
        else:
            with mp.get_context(how).Pool(2) as pool:
                print(pool.map(work, [3, 4, 5]))
        print("parent", work(2))


    if __name__ == "__main__":
        main(sys.argv[1])
"""

CHILD = """
    import sys


    def hello(n):
        return "hello " * n


    print(hello(int(sys.argv[1])).strip())
    sys.exit(4)
"""

HOWS = ["fork", "spawn", "forkserver", "executor", "fork-exit", "subprocess"]


def traced_and_plain(tmp_path, how: str, *options: str):
    write_files(tmp_path, {"prog.py": WORKERS, "child.py": CHILD})
    plain = run_python(["prog.py", how], tmp_path)
    traced = run_tracer(["-q", "-o", "trace.json", *options, "prog.py", how], tmp_path)
    return plain, traced


def without_fork_warning(stderr: str) -> str:
    """``stderr`` without Python 3.13's warning that a process with threads forks.
    Known difference: the tracer's process has threads of its own (numpy's BLAS
    pool), so a program's ``os.fork()`` from ``__main__`` is warned about there."""
    lines = stderr.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if "DeprecationWarning: This process" in line and "use of fork()" in line:
            del lines[i : i + 2]  # the warning and the source line under it
            break
    return "".join(lines)


def without_lost_workers(stderr: str) -> str:
    """``stderr`` without the line naming spawn workers that ``Pool.terminate()``
    (the end of ``with Pool()``) killed while they were still starting, before
    their recording began: on a busy machine one worker may get every task."""
    lost = "otel-tracer: warning: 1 Python process the program started left no trace"
    return "".join(line for line in stderr.splitlines(keepends=True) if lost not in line)


def process_of(trace, pid: int) -> dict:
    return next(p for p in trace.meta["processes"] if p["pid"] == pid)


def rows_of(trace, qualname: str) -> list[int]:
    return [r for r in range(len(trace)) if trace.function_of(r).qualname == qualname]


@pytest.mark.parametrize("how", HOWS)
def test_every_process_is_traced_and_merged(tmp_path, how):
    plain, traced = traced_and_plain(tmp_path, how)
    assert (traced.stdout, traced.returncode) == (plain.stdout, plain.returncode)
    assert without_lost_workers(without_fork_warning(traced.stderr)) == ""
    assert sorted(os.listdir(tmp_path)) == ["child.py", "prog.py", "trace.json"]  # parts merged

    trace = otel_tracer.load(tmp_path / "trace.json")
    processes = trace.meta["processes"]
    main_pid = trace.meta["pid"]
    assert processes[0]["pid"] == main_pid and processes[0]["parent_span_id"] is None
    children = processes[1:]
    assert children, "no child process was merged"
    for child in children:
        if how != "forkserver":  # else started by the fork server, which records nothing
            assert child["parent_pid"] == main_pid
            assert child["parent_span_id"] == trace.meta["root_span_id"]
    pids = {p["pid"] for p in processes}
    assert {t.pid for t in trace.threads} == pids
    # the work ran in the children, each call in the process that made it
    worker_rows = rows_of(trace, "hello" if how == "subprocess" else "work")
    worker_pids = {trace.threads[int(trace.calls.thread[r])].pid for r in worker_rows}
    assert worker_pids - {main_pid}, "no work was recorded in a child"
    assert worker_pids - {main_pid} <= {c["pid"] for c in children}
    main_rows = [r for r in rows_of(trace, "main") if trace.calls.depth[r] <= 1]
    assert [trace.threads[int(trace.calls.thread[r])].pid for r in main_rows] == [main_pid]
    if how == "fork-exit":
        assert children[0]["exit_code"] == 3
    if how == "subprocess":
        assert children[0]["argv"] == [str(tmp_path / "child.py"), "2"]
        assert len(trace.meta["processes"]) == 2


def test_processes_are_separate_roots_of_one_span_tree(tmp_path):
    _, traced = traced_and_plain(tmp_path, "spawn")
    trace = otel_tracer.load(tmp_path / "trace.json")
    plan = span_plan(trace)
    processes = trace.meta["processes"]
    assert len(plan.parts) == len(processes) > 1 and not plan.groups
    assert [part.process for part in plan.parts[1:]] == processes[1:]
    for part in plan.parts[1:]:
        assert part.root_id == int(part.process["root_span_id"], 16)
        assert part.root_parent == plan.root_id
    calls = trace.calls
    for part in plan.parts:
        pid = part.process["pid"] if part.process else trace.meta["pid"]
        for index, parent_id in zip(part.rows.tolist(), part.parent_ids.tolist(), strict=True):
            assert trace.threads[int(calls.thread[index])].pid == pid
            if calls.parent[index] < 0:
                assert parent_id == part.root_id
    assert sum(len(part.rows) for part in plan.parts) == len(trace)


def test_a_resource_per_process_in_every_output(tmp_path):
    """A multi-process run, exported to a collector (OTLP/HTTP), to a JSON Lines
    file and again from the saved trace: one Resource per process, with its own
    pid, command line and ``service.instance.id`` (a UUID, the same in every
    output), the children's root spans under the parent's root span."""
    from otlp_receivers import HttpReceiver
    from test_otlp_json import parse_lines

    write_files(tmp_path, {"prog.py": WORKERS, "child.py": CHILD})
    with HttpReceiver() as receiver:
        result = run_tracer(
            [
                "-q",
                "-o",
                "trace.json",
                "-o",
                "trace.otlp.jsonl",
                "--otlp-endpoint",
                receiver.endpoint,
                "prog.py",
                "subprocess",
            ],  # fmt: skip
            tmp_path,
        )
        assert result.returncode == 0, result.stderr
        wire = receiver.resource_spans()
    trace = otel_tracer.load(tmp_path / "trace.json")
    processes = trace.meta["processes"]
    assert len(processes) == 2
    requests = parse_lines((tmp_path / "trace.otlp.jsonl").read_bytes())
    in_file = [
        (rs.resource, span) for r in requests for rs in r.resource_spans
        for ss in rs.scope_spans for span in ss.spans
    ]  # fmt: skip
    for pairs in (wire, in_file):
        resources = {}
        for resource, span in pairs:
            values = {a.key: a.value for a in resource.attributes}
            resources.setdefault(values["process.pid"].int_value, (values, []))[1].append(span)
        assert set(resources) == {p["pid"] for p in processes}
        instances = {v["service.instance.id"].string_value for v, _ in resources.values()}
        assert len(instances) == 2
        assert instances == {p["service_instance_id"] for p in processes}
        assert all(str(uuid.UUID(i)) == i for i in instances)
        child_values, child_spans = resources[processes[1]["pid"]]
        args = [v.string_value for v in child_values["process.command_args"].array_value.values]
        assert args[1:] == [str(tmp_path / "child.py"), "2"]
        assert child_values["process.parent_pid"].int_value == processes[0]["pid"]
        assert child_values["service.name"].string_value == "child.py"
        root = child_spans[0]
        assert root.name == "child.py"
        assert root.parent_span_id.hex() == trace.meta["root_span_id"]
        assert len(pairs) == len(trace) + 2  # a root span per process
    again = run_python(["-m", "exporters", "trace.json", "-o", "again.otlp.jsonl"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.otlp.jsonl").read_bytes() == (
        tmp_path / "trace.otlp.jsonl"
    ).read_bytes()


def test_text_view_names_the_processes(tmp_path):
    write_files(tmp_path, {"prog.py": WORKERS, "child.py": CHILD})
    traced = run_tracer(["-q", "prog.py", "subprocess"], tmp_path)
    assert traced.returncode == 0
    headers = [line for line in traced.stdout.splitlines() if line.startswith("Thread ")]
    assert len(headers) == 2
    assert headers[0].endswith("(prog.py)") and headers[1].endswith("(child.py)")
    assert " in process " in headers[1]
    assert os.listdir(tmp_path) == ["child.py", "prog.py"] or sorted(os.listdir(tmp_path)) == [
        "child.py",
        "prog.py",
    ]


def test_no_follow_traces_only_the_program(tmp_path):
    program = WORKERS.replace(
        'print("parent", work(2))', 'print("parent", work(2), os.environ.get("TRACEPARENT"))'
    )
    write_files(tmp_path, {"prog.py": program, "child.py": CHILD})
    traced = run_tracer(["-q", "--no-follow", "-o", "trace.json", "prog.py", "spawn"], tmp_path)
    assert traced.returncode == 0, traced.stderr
    assert traced.stdout.splitlines()[-1] == "parent 1 None"
    trace = otel_tracer.load(tmp_path / "trace.json")
    assert "processes" not in trace.meta
    assert {t.pid for t in trace.threads} == {trace.meta["pid"]}
    assert sorted(os.listdir(tmp_path)) == ["child.py", "prog.py", "trace.json"]


LATE = """
    import subprocess
    import sys

    def start():
        return subprocess.Popen([sys.executable, "late.py"])

    start()
"""

LATE_CHILD = """
    import time

    def after_the_parent():
        time.sleep(1.0)
        return "done"

    after_the_parent()
"""


def test_a_process_that_ends_later_is_merged_by_the_merge_command(tmp_path):
    write_files(tmp_path, {"prog.py": LATE, "late.py": LATE_CHILD})
    traced = run_tracer(["-q", "-o", "trace.json", "prog.py"], tmp_path)
    assert traced.returncode == 0, traced.stderr
    deadline = time.monotonic() + 60
    while not (parts := [p for p in os.listdir(tmp_path) if p.count(".") == 2]):
        assert time.monotonic() < deadline, os.listdir(tmp_path)
        time.sleep(0.1)
    assert len(processes_of(otel_tracer.load(tmp_path / "trace.json"))) == 1
    merged = run_python(
        ["-m", "exporters", "merge", "trace.json", parts[0], "-o", "all.json"], tmp_path
    )
    assert merged.returncode == 0, merged.stderr
    assert "2 processes" in merged.stderr
    trace = otel_tracer.load(tmp_path / "all.json")
    assert [p["argv"][0] for p in trace.meta["processes"]] == ["prog.py", "late.py"]
    assert rows_of(trace, "after_the_parent") and rows_of(trace, "start")
    assert trace.patterns is not None


def test_merge_refuses_traces_of_different_runs(tmp_path):
    write_files(tmp_path, {"prog.py": LATE_CHILD.replace("1.0", "0")})
    for name in ("a.json", "b.json"):
        assert run_tracer(["-q", "-o", name, "prog.py"], tmp_path).returncode == 0
    merged = run_python(["-m", "exporters", "merge", "a.json", "b.json"], tmp_path)
    assert merged.returncode == 2
    assert merged.stderr.startswith("exporters merge: error: the traces are of different runs")
    assert len(merged.stderr.splitlines()) == 1
    assert not (tmp_path / "a.merged.json").exists()


NESTED = """
    import subprocess
    import sys

    def run_inner():
        command = [sys.executable, "-m", "cli.main", "-q", "-o", "inner.json", "inner.py"]
        return subprocess.run(command).returncode

    print(run_inner())
"""


def test_the_tracer_run_by_a_traced_program_records_on_its_own(tmp_path):
    write_files(tmp_path, {"prog.py": NESTED, "inner.py": LATE_CHILD.replace("1.0", "0")})
    traced = run_tracer(["-q", "-o", "trace.json", "prog.py"], tmp_path)
    assert (traced.returncode, traced.stdout, traced.stderr) == (0, "0\n", "")
    outer = otel_tracer.load(tmp_path / "trace.json")
    inner = otel_tracer.load(tmp_path / "inner.json")
    assert rows_of(inner, "after_the_parent") and not rows_of(outer, "after_the_parent")
    # the inner run is part of the outer run's trace
    assert inner.meta["trace_id"] == outer.meta["trace_id"]
    assert inner.meta["parent_span_id"] == outer.meta["root_span_id"]


INTERRUPTED = """
    import multiprocessing as mp
    import time


    def step(i):
        time.sleep(0.002)
        return i


    def work(n):
        return sum(step(i) for i in range(n))


    def main():
        with mp.get_context("fork").Pool(2) as pool:
            result = pool.map_async(work, [10**6, 10**6])
            time.sleep(0.5)
            print("ready", flush=True)
            result.get()


    if __name__ == "__main__":
        main()
"""


def test_ctrl_c_keeps_one_readable_trace_of_every_process(tmp_path):
    """Ctrl-C in a terminal: SIGINT to the whole process group."""
    write_files(tmp_path, {"prog.py": INTERRUPTED})
    proc = start_traced_group(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGINT
    assert "KeyboardInterrupt" in stderr and "otel-tracer" not in stderr
    assert sorted(os.listdir(tmp_path)) == ["prog.py", "trace.json"]
    trace = otel_tracer.load(tmp_path / "trace.json")
    processes = trace.meta["processes"]
    assert len(processes) == 3  # the program and its two workers
    for worker in processes[1:]:
        rows = [
            r
            for r in rows_of(trace, "step")
            if trace.threads[int(trace.calls.thread[r])].pid == worker["pid"]
        ]
        assert rows, f"no calls of worker {worker['pid']}"
