"""Tests for the tracer's command-line parser (cli/args.py)."""

import pytest

from cli.args import (
    HELP,
    OPTIONS,
    USAGE,
    VERSION_TEXT_PREFIX,
    HelpRequested,
    Options,
    UsageError,
    VersionRequested,
    parse_args,
)


def usage_error(argv: list[str]) -> str:
    """The message of the UsageError that parsing ``argv`` raises."""
    with pytest.raises(UsageError) as info:
        parse_args(argv)
    return str(info.value)


# Defaults -------------------------------------------------------------------------------------


def test_defaults():
    assert parse_args(["s.py"]) == Options(
        script="s.py",
        module=None,
        script_args=[],
        outputs=[],
        scopes=[],
        external_calls=True,
        include_builtins=False,
        capture_args=True,
        max_depth=None,
        max_calls=None,
        format=None,
        quiet=False,
        core="auto",
    )


def test_input_list_is_not_modified_or_aliased():
    argv = ["-q", "s.py", "a", "--", "b"]
    opts = parse_args(argv)
    opts.script_args.append("x")
    assert argv == ["-q", "s.py", "a", "--", "b"]
    opts = parse_args(["--", "s.py", "a"])
    assert opts.script_args == ["a"]


# Rule 1: options before or after the script ---------------------------------------------------


def test_rule1_example_options_after_script():
    opts = parse_args(
        ["my_script.py", "-o", "results.json", "--scope", "/project/src", "arg1", "arg2"]
    )
    assert opts.script == "my_script.py"
    assert opts.outputs == ["results.json"]
    assert opts.scopes == ["/project/src"]
    assert opts.script_args == ["arg1", "arg2"]


def test_rule1_options_before_script():
    opts = parse_args(["-o", "results.json", "--scope", "/project/src", "my_script.py", "arg1"])
    assert (opts.script, opts.outputs, opts.scopes, opts.script_args) == (
        "my_script.py",
        ["results.json"],
        ["/project/src"],
        ["arg1"],
    )


def test_rule1_options_on_both_sides_accumulate():
    opts = parse_args(["-o", "a.json", "s.py", "-o", "b.json.gz", "--scope", "x"])
    assert opts.outputs == ["a.json", "b.json.gz"]
    assert opts.scopes == ["x"]


def test_options_between_script_args_keep_arg_order():
    opts = parse_args(["s.py", "a", "-q", "b", "--max-depth", "3", "c", "--no-args", "d"])
    assert opts.script_args == ["a", "b", "c", "d"]
    assert opts.quiet is True
    assert opts.max_depth == 3
    assert opts.capture_args is False


@pytest.mark.parametrize("where", ["before", "after"])
def test_every_option_sets_its_field(where):
    flags = [
        "--no-external-calls",
        "--include-builtins",
        "--no-args",
        "--max-depth",
        "4",
        "--max-calls",
        "1000",
        "--format",
        "text",
        "--quiet",
        "--core",
        "python",
        "-o",
        "-",
        "--scope",
        "src",
    ]
    argv = [*flags, "s.py"] if where == "before" else ["s.py", *flags]
    opts = parse_args(argv)
    assert opts == Options(
        script="s.py",
        outputs=["-"],
        scopes=["src"],
        external_calls=False,
        include_builtins=True,
        capture_args=False,
        max_depth=4,
        max_calls=1000,
        format="text",
        quiet=True,
        core="python",
    )


def test_repeatable_options():
    opts = parse_args(["-o", "a.json", "--output", "b.json", "-oc.json", "--output=-", "s.py"])
    assert opts.outputs == ["a.json", "b.json", "c.json", "-"]
    opts = parse_args(["--scope", "a", "--scope=b", "s.py", "--scope", "c"])
    assert opts.scopes == ["a", "b", "c"]


def test_single_value_options_last_wins():
    opts = parse_args(["--max-depth", "2", "s.py", "--max-depth=5", "--core", "c", "--core=auto"])
    assert opts.max_depth == 5
    assert opts.core == "auto"


# Rule 2: before the script every '-' token is a tracer option -----------------------------------


@pytest.mark.parametrize("token", ["--foo", "-x", "--config", "-quiet", "-", "--help=1", "--m"])
def test_rule2_unknown_option_before_script(token):
    message = usage_error([token, "s.py"])
    assert message == (
        f"unknown option: {token} (options for the script go after the script path; see --help)"
    )
    assert "\n" not in message


def test_rule2_first_non_dash_token_is_the_script():
    opts = parse_args(["-q", "first.py", "second.py"])
    assert opts.script == "first.py"
    assert opts.script_args == ["second.py"]


def test_script_path_is_not_checked():
    assert parse_args(["no/such/file.txt"]).script == "no/such/file.txt"


# Rule 3: after the script, unknown tokens go to the script ------------------------------------


def test_rule3_example_script_flags_pass_through():
    opts = parse_args(["my_script.py", "arg1", "arg2", "--script-flag"])
    assert opts.script_args == ["arg1", "arg2", "--script-flag"]


def test_rule3_example_train():
    opts = parse_args(["train.py", "--config", "c.yaml", "-o", "t.json"])
    assert opts.script_args == ["--config", "c.yaml"]
    assert opts.outputs == ["t.json"]


def test_rule3_help_version_and_m_after_script_belong_to_script():
    opts = parse_args(["s.py", "-h", "--help", "--version", "-m", "x", "-"])
    assert opts.script_args == ["-h", "--help", "--version", "-m", "x", "-"]
    assert opts.module is None


def test_rule3_attached_short_value_after_script_goes_to_script():
    opts = parse_args(["s.py", "-offset", "3", "-qv", "-o=x"])
    assert opts.script_args == ["-offset", "3", "-qv", "-o=x"]
    assert opts.outputs == []
    assert opts.quiet is False


def test_rule3_equals_forms_after_script():
    opts = parse_args(["s.py", "--output=t.json", "--max-calls=7", "--format=json.gz", "x"])
    assert opts.outputs == ["t.json"]
    assert opts.max_calls == 7
    assert opts.format == "json.gz"
    assert opts.script_args == ["x"]


def test_rule3_no_prefix_abbreviations():
    opts = parse_args(["s.py", "--out", "x", "--quie"])
    assert opts.script_args == ["--out", "x", "--quie"]
    assert usage_error(["--out", "x", "s.py"]).startswith("unknown option: --out ")


# Rule 4: a literal -- ---------------------------------------------------------------------------


def test_rule4_example_after_script():
    opts = parse_args(["s.py", "a", "--", "-o", "x"])
    assert opts.script_args == ["a", "-o", "x"]
    assert opts.outputs == []


def test_rule4_example_before_script():
    opts = parse_args(["--", "s.py", "-o", "x"])
    assert opts.script == "s.py"
    assert opts.script_args == ["-o", "x"]
    assert opts.outputs == []


def test_rule4_options_before_double_dash_still_apply():
    opts = parse_args(["-q", "-o", "t.json", "--", "-weird.py", "--", "-q"])
    assert opts.script == "-weird.py"
    assert opts.script_args == ["--", "-q"]
    assert opts.outputs == ["t.json"]
    assert opts.quiet is True


def test_rule4_only_first_double_dash_is_consumed():
    opts = parse_args(["s.py", "--", "a", "--", "b"])
    assert opts.script_args == ["a", "--", "b"]


def test_rule4_double_dash_after_module_is_the_modules():
    opts = parse_args(["-m", "pkg", "-q", "--", "-q"])
    assert opts.module == "pkg"
    assert opts.quiet is False
    assert opts.script_args == ["-q", "--", "-q"]


# Rule 5: -m MODULE ------------------------------------------------------------------------------


def test_rule5_example():
    opts = parse_args(["-m", "pkg.mod", "a", "b"])
    assert opts.module == "pkg.mod"
    assert opts.script is None
    assert opts.script_args == ["a", "b"]


@pytest.mark.parametrize("argv", [["-mpkg.mod"], ["-m=pkg.mod"], ["-m", "pkg.mod"]])
def test_rule5_forms(argv):
    opts = parse_args(argv)
    assert (opts.module, opts.script) == ("pkg.mod", None)


def test_rule5_options_before_module_only():
    """As with python -m, every word after the module is its own: pytest's -q and -o too."""
    opts = parse_args(["-o", "a.json", "-m", "pytest", "-q", "-o", "x=1", "--scope", "src"])
    assert opts.module == "pytest"
    assert opts.outputs == ["a.json"]
    assert (opts.quiet, opts.scopes) == (False, [])
    assert opts.script_args == ["-q", "-o", "x=1", "--scope", "src"]


def test_rule5_only_one_of_script_or_module():
    assert parse_args(["s.py", "-m", "pkg"]).script_args == ["-m", "pkg"]
    opts = parse_args(["-m", "pkg", "s.py", "-m", "other"])
    assert (opts.module, opts.script) == ("pkg", None)
    assert opts.script_args == ["s.py", "-m", "other"]


@pytest.mark.parametrize("argv", [["-m"], ["-m="], ["-m", "--"], ["-q", "-m"]])
def test_rule5_missing_module(argv):
    assert usage_error(argv) == "option -m needs a value"


# Rule 6: values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["-o", "t.json", "s.py"],
        ["--output", "t.json", "s.py"],
        ["--output=t.json", "s.py"],
        ["-ot.json", "s.py"],
        ["-o=t.json", "s.py"],
        ["s.py", "-o", "t.json"],
        ["s.py", "--output", "t.json"],
        ["s.py", "--output=t.json"],
    ],
)
def test_rule6_value_forms(argv):
    assert parse_args(argv).outputs == ["t.json"]


def test_rule6_value_is_taken_verbatim_even_if_dashed():
    assert parse_args(["-o", "-", "s.py"]).outputs == ["-"]
    assert parse_args(["--scope", "-dir", "s.py"]).scopes == ["-dir"]
    assert parse_args(["--format", "whatever", "s.py"]).format == "whatever"
    assert parse_args(["--scope=a=b", "s.py"]).scopes == ["a=b"]


@pytest.mark.parametrize(
    ("argv", "label"),
    [
        (["-o"], "-o/--output"),
        (["s.py", "-o"], "-o/--output"),
        (["s.py", "--output"], "-o/--output"),
        (["--output=", "s.py"], "-o/--output"),
        (["-o", "--", "s.py"], "-o/--output"),
        (["s.py", "--scope"], "--scope"),
        (["s.py", "--max-depth"], "--max-depth"),
        (["s.py", "--max-calls="], "--max-calls"),
        (["s.py", "--format"], "--format"),
        (["s.py", "--core"], "--core"),
    ],
)
def test_rule6_missing_value(argv, label):
    assert usage_error(argv) == f"option {label} needs a value"


@pytest.mark.parametrize("option", ["--max-depth", "--max-calls"])
@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", "two"])
def test_rule6_bad_integers(option, value):
    message = f"option {option} needs an integer >= 1, got '{value}'"
    assert usage_error([option, value, "s.py"]) == message
    assert usage_error(["s.py", f"{option}={value}"]) == message


@pytest.mark.parametrize("option", ["--max-depth", "--max-calls", "--ring-buffer"])
def test_rule6_integers_past_64_bits(option):
    dest = option[2:].replace("-", "_")
    assert getattr(parse_args([option, str(2**63 - 1), "s.py"]), dest) == 2**63 - 1
    message = f"option {option} needs an integer <= {2**63 - 1}, got '{2**63}'"
    assert usage_error([option, str(2**63), "s.py"]) == message


@pytest.mark.parametrize("option", ["--max-depth", "--max-calls"])
def test_rule6_good_integers(option):
    dest = option[2:].replace("-", "_")
    assert getattr(parse_args([option, "1", "s.py"]), dest) == 1
    assert getattr(parse_args(["s.py", f"{option}=250000"]), dest) == 250000


@pytest.mark.parametrize("value", ["-1", "abc", "nan", "inf", "1e400", "-0.5"])
def test_rule6_bad_fold_budget(value):
    message = f"option --fold-budget needs a number of seconds >= 0, got '{value}'"
    assert usage_error(["s.py", f"--fold-budget={value}"]) == message


def test_rule6_fold_budget():
    assert parse_args(["s.py"]).fold_budget is None
    assert parse_args(["--fold-budget", "2.5", "s.py"]).fold_budget == 2.5
    assert parse_args(["s.py", "--fold-budget=0"]).fold_budget == 0


@pytest.mark.parametrize("core", ["auto", "c", "python", "monitoring", "pymonitoring"])
def test_rule6_core_choices(core):
    assert parse_args(["--core", core, "s.py"]).core == core
    assert parse_args(["s.py", f"--core={core}"]).core == core


@pytest.mark.parametrize("core", ["C", "rust", "py"])
def test_rule6_bad_core(core):
    assert usage_error(["--core", core, "s.py"]) == (
        f"option --core must be one of auto, c, python, monitoring, pymonitoring, got '{core}'"
    )


def test_format_value_is_not_validated_here():
    assert parse_args(["s.py", "--format", "xml"]).format == "xml"


@pytest.mark.parametrize(
    ("token", "label"),
    [
        ("--quiet=1", "-q/--quiet"),
        ("--no-args=", "--no-args"),
        ("--include-builtins=yes", "--include-builtins"),
        ("--no-external-calls=0", "--no-external-calls"),
    ],
)
def test_flag_with_value(token, label):
    message = f"option {label} takes no value"
    assert usage_error([token, "s.py"]) == message
    assert usage_error(["s.py", token]) == message


def test_short_flag_attached_before_script_is_unknown():
    assert usage_error(["-qx", "s.py"]).startswith("unknown option: -qx ")


# Rule 7: missing script -------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [[], ["-q"], ["-o", "t.json"], ["--"], ["-q", "--"]])
def test_rule7_missing_script(argv):
    assert usage_error(argv) == f"missing script: {USAGE}"


def test_usage_line():
    assert USAGE == "usage: python -m cli.main <script.py | -m module> [options] [script args...]"


# Help and version -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv", [["-h"], ["--help"], ["-q", "--help", "s.py"], ["--help", "--bad"]]
)
def test_help(argv):
    with pytest.raises(HelpRequested) as info:
        parse_args(argv)
    assert info.value.text == HELP


@pytest.mark.parametrize("argv", [["--version"], ["-o", "x", "--version", "s.py"]])
def test_version(argv):
    with pytest.raises(VersionRequested):
        parse_args(argv)
    assert VERSION_TEXT_PREFIX == "otel-tracer"


def test_help_and_version_are_not_usage_errors():
    assert not issubclass(HelpRequested, UsageError)
    assert not issubclass(VersionRequested, UsageError)


def test_unknown_option_before_help_wins():
    assert usage_error(["--bad", "--help"]).startswith("unknown option: --bad ")


def test_help_text_contents():
    assert HELP.startswith(USAGE + "\n")
    flat = " ".join(HELP.split())
    for spec in OPTIONS:
        assert spec.usage in HELP
    for text in [
        "-m MODULE",
        "-o, --output FILE",
        "--scope DIR",
        "--core {auto,c,python,monitoring,pymonitoring}",
        "-h, --help",
        "--version",
        "'.json.gz'",
        "'mttl'",
        "len, isinstance, list.append",
        "how many",
        "--opt=VALUE",
        "Argument rules:",
        "my_script.py -o results.json --scope /project/src arg1 arg2",
        "my_script.py arg1 arg2 --script-flag",
        "train.py --config c.yaml -o t.json",
        "s.py a -- -o x",
        "-- s.py -o x",
        "-m pytest -q",
    ]:
        assert text in flat, text
    assert max(len(line) for line in HELP.splitlines()) <= 79


def test_option_table_is_consistent():
    names = [name for spec in OPTIONS for name in spec.names]
    assert len(names) == len(set(names))
    fields = Options.__dataclass_fields__
    for spec in OPTIONS:
        assert spec.dest in fields
        assert all(name.startswith("--") or len(name) == 2 for name in spec.names)
        assert not spec.repeat or spec.metavar is not None
