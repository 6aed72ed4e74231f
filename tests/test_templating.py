"""Templating: rendering, shell quoting against injection, sandbox, secrets, `when:`."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from engine.errors import TemplateError
from engine.templating import Renderer, check_expression, check_template

HOOK = "https://chat.example/hook?token=s3cr3t-T0ken"


def ctx(**labels: str) -> dict[str, Any]:
    return {
        "labels": {"instance": "web-1.internal:9100", "mountpoint": "/var", **labels},
        "annotations": {"summary": "disk almost full"},
        "target": "web-1.internal",
        "code": "DISK-001",
        "before": {"stdout": "  87%\n", "stderr": "", "exit_code": 0},
    }


@pytest.fixture
def renderer() -> Renderer:
    return Renderer({"CHAT_HOOK": HOOK, "SHORT": "ab"})


def test_plain_render_uses_labels_annotations_and_target(renderer: Renderer) -> None:
    """Labels, annotations and target interpolate as plain text without shell mode."""
    out = renderer.render("{{ target }} {{ labels.mountpoint }}: {{ annotations.summary }}", ctx())
    assert out == "web-1.internal /var: disk almost full"


def test_split_on_instance_label_gives_host(renderer: Renderer) -> None:
    """`labels.instance.split(':')[0]`, as code targets use it, yields the host."""
    assert renderer.render("{{ labels.instance.split(':')[0] }}", ctx()) == "web-1.internal"


def test_registered_result_access_with_filters(renderer: Renderer) -> None:
    """Earlier steps' registered output can be read and filtered (`before.stdout | trim`)."""
    assert renderer.render("{{ before.stdout | trim }} rc={{ before.exit_code }}", ctx()) == "87% rc=0"


def test_default_filter_covers_missing_label(renderer: Renderer) -> None:
    """`default` still works on an absent label despite strict undefined names."""
    assert renderer.render("[{{ labels.nope | default('') }}]", ctx()) == "[]"
    assert renderer.render("{{ labels.nope | default('') }}", ctx(), shell=True) == "''"


def test_none_renders_empty(renderer: Renderer) -> None:
    """None renders as nothing, or as an empty quoted word in shell mode."""
    assert renderer.render("[{{ x }}]", {"x": None}) == "[]"
    assert renderer.render("echo {{ x }}", {"x": None}, shell=True) == "echo ''"


def test_shell_mode_quotes_values_not_literal_text(renderer: Renderer) -> None:
    """Shell mode quotes each `{{ }}` result but leaves the author's own shell syntax alone."""
    out = renderer.render("df {{ labels.x }} | tail -1", ctx(x="a b; c"), shell=True)
    assert out == "df 'a b; c' | tail -1"


INJECTIONS = [
    "x; touch pwned",
    "$(touch pwned)",
    "`touch pwned`",
    "it's; touch pwned; '",
    'a" ; touch pwned; "',
    "line1\ntouch pwned",
    "a && touch pwned || touch pwned",
    "| touch pwned",
    ">pwned",
    "${IFS}touch${IFS}pwned",
    "$HOME \\ * ?",
    "ünïcødé 🚀 — ok",
    "-n",
    "",
    "trailing newline\n",
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_shell_injection_arrives_as_one_literal_argument(
    renderer: Renderer, tmp_path: Path, payload: str
) -> None:
    """Running the rendered command writes exactly the label's text and creates no other file."""
    command = renderer.render("printf '%s' {{ labels.x }} > out.txt", ctx(x=payload), shell=True)
    subprocess.run(["sh", "-c", command], cwd=tmp_path, check=True, timeout=10)
    assert (tmp_path / "out.txt").read_bytes() == payload.encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_shell_mode_rejects_nul_byte(renderer: Renderer) -> None:
    """A NUL in a value is refused rather than truncating the command remotely."""
    with pytest.raises(TemplateError, match="NUL"):
        renderer.render("echo {{ labels.x }}", ctx(x="a\x00b"), shell=True)


@pytest.mark.parametrize("shell", [False, True])
def test_template_syntax_in_alert_data_stays_literal(renderer: Renderer, shell: bool) -> None:
    """A label containing `{{ 7*7 }}` is data: it renders literally, never evaluated."""
    out = renderer.render("{{ labels.x }}", ctx(x="{{ 7*7 }}{% raw %}"), shell=shell)
    assert "49" not in out
    assert out == ("'{{ 7*7 }}{% raw %}'" if shell else "{{ 7*7 }}{% raw %}")


def test_undefined_attribute_names_it(renderer: Renderer) -> None:
    """A typo in a label name is an error that names the missing attribute and the template."""
    with pytest.raises(TemplateError) as err:
        renderer.render("df {{ labels.mountpont }}", ctx())
    assert "mountpont" in str(err.value)
    assert "df {{ labels.mountpont }}" in str(err.value)


def test_undefined_top_level_name_names_it(renderer: Renderer) -> None:
    """An unknown top-level name is an error naming it, in both modes."""
    for shell in (False, True):
        with pytest.raises(TemplateError, match="'nope' is undefined"):
            renderer.render("echo {{ nope }}", ctx(), shell=shell)


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ labels.__class__ }}",
        "{{ labels.update({'a': 'b'}) }}",
        "{{ joiner.__init__.__globals__.os }}",
    ],
)
def test_sandbox_escapes_are_template_errors(renderer: Renderer, template: str) -> None:
    """Sandbox escapes and mutation fail as TemplateError, never a raw Jinja exception."""
    with pytest.raises(TemplateError, match=r"forbidden|unsafe"):
        renderer.render(template, ctx())


def test_other_runtime_errors_become_template_errors(renderer: Renderer) -> None:
    """A runtime failure such as a type error surfaces as a TemplateError with its cause."""
    with pytest.raises(TemplateError, match="TypeError"):
        renderer.render("{{ 1 + 'a' }}", ctx())


def test_syntax_error_while_rendering_is_template_error(renderer: Renderer) -> None:
    """Rendering a template with bad syntax raises TemplateError naming the line."""
    with pytest.raises(TemplateError, match="line 1"):
        renderer.render("{{ unclosed", ctx())


def test_secret_renders(renderer: Renderer) -> None:
    """`secrets.NAME` renders the configured value, even if the context has its own `secrets`."""
    assert renderer.render("{{ secrets.CHAT_HOOK }}", {**ctx(), "secrets": {"CHAT_HOOK": "x"}}) == HOOK
    assert renderer.render("{{ secrets['CHAT_HOOK'] }}", ctx()) == HOOK


def test_missing_secret_message_names_it(renderer: Renderer) -> None:
    """An unset secret fails with a message naming it and saying where to define it."""
    with pytest.raises(TemplateError) as err:
        renderer.render("{{ secrets.PAGER_KEY }}", ctx())
    assert "secret 'PAGER_KEY' is not set" in str(err.value)
    assert "config.yaml" in str(err.value)


def test_missing_secret_allows_default(renderer: Renderer) -> None:
    """`default` and `is defined` work on an unset secret."""
    assert renderer.render("{{ secrets.NOPE | default('none') }}", ctx()) == "none"
    assert renderer.evaluate("secrets.NOPE is not defined", ctx()) is True


def test_printing_secrets_mapping_shows_no_values(renderer: Renderer) -> None:
    """`{{ secrets }}` lists names only, never values."""
    out = renderer.render("{{ secrets }}", ctx())
    assert HOOK not in out and "CHAT_HOOK" in out


def test_redact_nested_structures(renderer: Renderer) -> None:
    """Rendered params are scrubbed of secret values in nested dicts, lists and tuples."""
    params = renderer.render_value(
        {"url": "{{ secrets.CHAT_HOOK }}", "json": {"text": ["via {{ secrets.CHAT_HOOK }}", 3]}},
        ctx(),
    )
    assert params["url"] == HOOK
    redacted = renderer.redact({**params, "t": (HOOK, None), "n": 5})
    assert redacted == {"url": "***", "json": {"text": ["via ***", 3]}, "t": ("***", None), "n": 5}


def test_redact_ignores_short_secrets(renderer: Renderer) -> None:
    """Secrets shorter than 4 characters are not redacted (would mangle ordinary text)."""
    assert renderer.redact("ab cab") == "ab cab"


def test_redact_catches_shell_quoted_secret() -> None:
    """A secret containing a quote is still redacted after shell quoting changed its form."""
    renderer = Renderer({"PW": "it's-a-secret"})
    command = renderer.render("login {{ secrets.PW }}", {}, shell=True)
    assert renderer.redact(command) == "login ***"


def test_error_messages_are_redacted(renderer: Renderer) -> None:
    """A secret value that ends up in an error message is replaced by ***."""
    with pytest.raises(TemplateError) as err:
        renderer.render("{{ labels[secrets.CHAT_HOOK] }}", ctx())
    assert HOOK not in str(err.value) and "***" in str(err.value)


def test_render_value_recurses_and_keeps_non_strings(renderer: Renderer) -> None:
    """render_value renders strings inside dicts/lists and returns other values unchanged."""
    value = {"cmd": "df {{ labels.x }}", "n": 3, "flag": True, "list": ["{{ target }}", None]}
    out = renderer.render_value(value, ctx(x="a b"), shell=True)
    assert out == {"cmd": "df 'a b'", "n": 3, "flag": True, "list": ["web-1.internal", None]}


def test_when_true_and_false(renderer: Renderer) -> None:
    """`when:` expressions evaluate to booleans on labels and registered results."""
    expr = "labels.severity == 'critical' and before.exit_code == 0"
    assert renderer.evaluate(expr, ctx(severity="critical")) is True
    assert renderer.evaluate(expr, ctx(severity="low")) is False
    assert renderer.evaluate("before.stdout | trim", ctx()) is True


def test_when_undefined_name_is_error(renderer: Renderer) -> None:
    """A `when:` naming something undefined is an error, not silently false."""
    with pytest.raises(TemplateError, match="nope"):
        renderer.evaluate("nope == 1", ctx())
    with pytest.raises(TemplateError, match="severty"):
        renderer.evaluate("labels.severty == 'critical'", ctx())


def test_when_sandbox_and_syntax_errors(renderer: Renderer) -> None:
    """Sandbox violations and syntax errors in `when:` are TemplateErrors."""
    with pytest.raises(TemplateError):
        renderer.evaluate("''.__class__", ctx())
    with pytest.raises(TemplateError):
        renderer.evaluate("a ==", ctx())


def test_check_template_reports_syntax_error_with_line() -> None:
    """check_template returns a message with the failing line, or None when valid."""
    message = check_template("echo ok\n{{ unclosed")
    assert message is not None and "line 2" in message and "{{ unclosed" in message
    assert check_template("df {{ labels.mountpoint }}") is None


def test_check_expression() -> None:
    """check_expression flags a broken `when:` and accepts a valid one."""
    assert check_expression("labels.a ==") is not None
    assert check_expression("labels.a == 'b' and before.exit_code != 0") is None


def test_render_is_fast_after_compile(renderer: Renderer) -> None:
    """A one-line template renders in well under 50 µs once compiled."""
    context = ctx()
    template = "df --output=pcent {{ labels.mountpoint }} on {{ target }}"
    renderer.render(template, context, shell=True)
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        renderer.render(template, context, shell=True)
    assert (time.perf_counter() - start) / n < 50e-6
