"""Templating: rendering, shell quoting against injection, sandbox, secrets, `when:`."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from engine.errors import TemplateError
from engine.templating import Renderer, check_expression, check_template, option_placeholders

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
    command = renderer.render("printf -- '%s' {{ labels.x }} > out.txt", ctx(x=payload), shell=True)
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


# ------------------------------------------------------------- values read as options

PROXY = "-oProxyCommand=touch /tmp/x"


@pytest.mark.parametrize(
    "template",
    [
        "ssh -p 22 {{ labels.x }} host true",
        "ssh ''{{ labels.x }} host",
        "ssh {{ labels.x | lower }} host",
        "a -- b; ssh {{ labels.x }} host",
        "echo $(ssh {{ labels.x }} host)",
        "echo ${X:-{{ labels.x }}}",
        "{% set o = labels.x %}ssh {{ o }} host",
        "{% for o in [labels.x] %}ssh {{ o }} host{% endfor %}",
    ],
)
def test_alert_value_in_option_position_is_refused_naming_it(renderer: Renderer, template: str) -> None:
    """A label starting with "-" alone at a word's start, before any `--`, is a render error naming it."""
    with pytest.raises(TemplateError, match=r'starts with "-" and would be read as an option') as caught:
        renderer.render(template, ctx(x=PROXY), shell=True)
    assert "labels.x" in str(caught.value) or "o: value" in str(caught.value)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("ssh -- {{ labels.x }}", f"ssh -- '{PROXY}'"),
        ("ssh --path={{ labels.x }}", f"ssh --path='{PROXY}'"),
        ("ssh a{{ labels.x }}", f"ssh a'{PROXY}'"),
        ("echo hi > {{ labels.x }}", f"echo hi > '{PROXY}'"),
        ("sudo -- ls -- $(echo -- {{ labels.x }})", f"sudo -- ls -- $(echo -- '{PROXY}')"),
        ("ssh {{ '-v' }} {{ labels.mountpoint }}", "ssh -v /var"),
    ],
)
def test_option_like_value_is_accepted_where_it_cannot_be_an_option(
    renderer: Renderer, template: str, expected: str
) -> None:
    """After `--`, joined to an option or text, as a redirection target, or a literal: rendered as usual."""
    assert renderer.render(template, ctx(x=PROXY), shell=True) == expected


def test_declared_pattern_lets_a_matching_value_stand_as_an_option(renderer: Renderer) -> None:
    """A label whose pattern the code declares may start with "-" if the value still matches it in full."""
    template = "ssh {{ labels.x }} host"
    out = renderer.render(template, ctx(x="-v"), shell=True, patterns={"labels.x": "-v|-q"})
    assert out == "ssh -v host"
    with pytest.raises(TemplateError, match="labels.x"):
        renderer.render(template, ctx(x=PROXY), shell=True, patterns={"labels.x": "-v|-q"})
    with pytest.raises(TemplateError, match="labels.x"):
        renderer.render(template, ctx(x="-v"), shell=True, patterns={"labels.other": ".*"})


def test_plain_mode_does_not_check_option_position(renderer: Renderer) -> None:
    """HTTP templates are not command lines: a leading "-" is just text there."""
    assert renderer.render("{{ labels.x }}", ctx(x=PROXY)) == PROXY


def test_option_placeholders_finds_alert_values_alone_before_any_double_dash() -> None:
    """`validate` is told which placeholders stand where options are read, and which label each reads."""
    command = "df -h {{ labels.mountpoint }} && df -i -- {{ labels.mountpoint }} {{ '-x' }} --to={{ target }}"
    assert option_placeholders(command) == [("labels.mountpoint", "labels.mountpoint")]
    assert option_placeholders("journalctl -u {{ target }}{% if labels.x %} {{ labels.x }}{% endif %}") == [
        ("target", None),
        ("labels.x", "labels.x"),
    ]
    assert option_placeholders("systemctl restart -- {{ labels.name }}") == []


# ------------------------------------------------------------- secret fragments

FRAGMENT_SECRET = "p@ss/w0rd+Zq"


@pytest.mark.parametrize(
    "template",
    [
        "{{ secrets.PW | urlencode }}",
        "{{ secrets.PW | upper }}",
        "{{ 'Bearer ' ~ secrets.PW }}",
        "{{ secrets.PW[::-1] }}",
        "{{ secrets.PW.replace('/', '_') }}",
        "{{ '%s:%s' | format('u', secrets.PW) }}",
        "{% set k = secrets.PW | title %}{{ k }}",
        "{{ secrets.PW | list }}",
    ],
)
@pytest.mark.parametrize("shell", [False, True])
def test_whatever_a_secret_renders_to_is_redacted_by_the_session(template: str, shell: bool) -> None:
    """Any expression touching `secrets` renders for real, and that rendering is redacted for the run."""
    session = Renderer({"PW": FRAGMENT_SECRET}).session()
    out = session.render(f"send {template} now", {}, shell=shell)
    fragment = out.removeprefix("send ").removesuffix(" now")
    assert "{" not in fragment and len(fragment) >= len(FRAGMENT_SECRET)
    redacted = session.redact({"command": out, "stdout": f"echoed: {fragment}\n"})
    assert redacted == {"command": "send *** now", "stdout": "echoed: ***\n"}


def test_secret_derived_short_or_literal_results_are_not_redacted() -> None:
    """A length, a boolean, a branch's own literal or a 3-character slice stay readable."""
    session = Renderer({"PW": FRAGMENT_SECRET}).session()
    out = session.render(
        "{{ secrets.PW | length }} {{ secrets.PW is defined }} {{ 'enabled' if secrets.PW else 'off' }} "
        "{{ secrets.PW[:3] }}",
        {},
    )
    assert out == "12 True enabled p@s"
    assert session.redact(f"{out} True enabled") == f"{out} True enabled"


def test_fragments_stay_with_their_session() -> None:
    """One run's fragments are not redacted from another run: each session starts clean."""
    renderer = Renderer({"PW": FRAGMENT_SECRET})
    first = renderer.session()
    upper = first.render("{{ secrets.PW | upper }}", {})
    assert first.redact(upper) == "***"
    assert renderer.session().redact(upper) == upper
    assert renderer.redact(upper) == upper


# ------------------------------------------------------------- names a template needs


@pytest.mark.parametrize(
    ("template", "expression", "missing"),
    [
        ("{{ labels.nope }} {{ labels.mountpoint }}", False, ["labels.nope (the alert has no label 'nope')"]),
        ("{{ labels['my-l'] }}", False, ["labels['my-l'] (the alert has no label 'my-l')"]),
        ("{{ annotations.runbook }}", False, ["annotations.runbook (the alert has no annotation 'runbook')"]),
        ("{{ lables.x }}", False, ["lables (not defined)"]),
        ("{{ secrets.NOPE }}", False, ["secrets.NOPE (not set in config.yaml)"]),
        ("labels.nope == 'x'", True, ["labels.nope (the alert has no label 'nope')"]),
        ("{{ labels.get('nope') }} {{ labels.nope | default('') }} {{ labels.nope is defined }}", False, []),
        ("{% if 'nope' in labels %}{{ labels.nope }}{% endif %}", False, []),
        ("{{ labels.nope if labels.nope is defined else 'x' }}", False, []),
        ("'nope' in labels and labels.nope == 'x'", True, []),
        ("{% set m = labels.mountpoint %}{{ m }} {{ before.stdout }} {{ later.stdout }}", False, []),
        ("{{ (labels.nope | default('/')).upper() }}", False, []),
    ],
)
def test_undefined_names_lists_what_every_render_needs(
    renderer: Renderer, template: str, expression: bool, missing: list[str]
) -> None:
    """Names read on every render and absent are listed; guarded ones and names registered later are not."""
    assert renderer.undefined_names(template, ctx(), expression=expression, may_wait=["later"]) == missing
