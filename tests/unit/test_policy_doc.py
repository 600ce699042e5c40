"""Gate policy documents: parsing with every error located, tightening, merging, diffing, CLI."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from contracts.policy import (
    Approvals,
    Expression,
    Freeze,
    MaxFindings,
    NoSecrets,
    PolicyDocument,
    RequiredScans,
    Sbom,
    Soak,
    When,
    Window,
)
from contracts.policy import (
    Tests as RuleTests,
)
from contracts.schemas import policy_schema
from domain.errors import InvalidInput
from domain.policy import (
    EXPRESSION_VARIABLES,
    PolicyError,
    PolicyInvalid,
    diff_policies,
    effective_exception_max_days,
    effective_rules,
    expression_problem,
    parse_policy,
    policy_as_dict,
    policy_digest,
    tightening_errors,
)
from services.cli.main import main

VALID_YAML = """\
description: production gate
exception_max_days: 30
rules:
  - kind: max_findings
    id: no-critical
    severity: critical
    max: 0
  - kind: required_scans
    id: scans
    scanners: [semgrep, trivy]
    max_age_hours: 12
  - kind: no_secrets
    id: secrets
  - kind: tests
    id: tests
    min_pass_rate: 1
    min_coverage: 0.8
    suites: [unit]
  - kind: approvals
    id: approvals
    count: 2
    roles: [approver, admin]
    when: {criticality: [high, critical]}
  - kind: sbom
    id: sbom
  - kind: soak
    id: soak
    hours: 24
  - kind: freeze
    id: freeze
    windows:
      - start: 2026-12-20T00:00:00Z
        end: 2027-01-02T00:00:00Z
        reason: holidays
      - days: [sat, sun]
        from: 17:30
        to: 08:00
  - kind: expression
    id: internet-facing
    expr: "!profile.internet_facing || findings.all(f, f.severity != 'high')"
    message: internet-facing services ship without high findings
"""


def errors_of(text: str | bytes) -> list[tuple[str, int | None, int | None, str]]:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(text)
    return [(e.location, e.line, e.column, e.message) for e in caught.value.errors]


def only_error(text: str | bytes) -> tuple[str, int | None, int | None, str]:
    errors = errors_of(text)
    assert len(errors) == 1, errors
    return errors[0]


def rules_yaml(*rules: str) -> str:
    """A document whose rules are the given YAML mappings (each indented under `- `)."""
    body = "".join("  - " + rule.strip().replace("\n", "\n    ") + "\n" for rule in rules)
    return "rules:\n" + body


# --- valid documents -------------------------------------------------------------------------


def test_parses_every_rule_kind_from_yaml():
    doc = parse_policy(VALID_YAML)

    assert doc.description == "production gate"
    assert doc.exception_max_days == 30
    assert [type(rule) for rule in doc.rules] == [
        MaxFindings,
        RequiredScans,
        NoSecrets,
        RuleTests,
        Approvals,
        Sbom,
        Soak,
        Freeze,
        Expression,
    ]
    approvals = doc.rules[4]
    assert isinstance(approvals, Approvals)
    assert approvals.when == When(criticality=["high", "critical"])
    freeze = doc.rules[7]
    assert isinstance(freeze, Freeze)
    assert freeze.windows[0].start == datetime(2026, 12, 20, tzinfo=UTC)
    assert freeze.windows[1].days == ["sat", "sun"]


def test_reads_unquoted_clock_times_as_strings_not_yaml11_sexagesimal_numbers():
    doc = parse_policy(VALID_YAML)

    freeze = doc.rules[7]
    assert isinstance(freeze, Freeze)
    assert (freeze.windows[1].from_, freeze.windows[1].to) == ("17:30", "08:00")


def test_parses_json_to_the_same_document_as_yaml():
    from_yaml = parse_policy(VALID_YAML)
    as_json = json.dumps(policy_as_dict(from_yaml))

    from_json = parse_policy(as_json.encode())

    assert from_json == from_yaml
    assert policy_digest(from_json) == policy_digest(from_yaml)


def test_accepts_an_empty_mapping_as_a_policy_without_rules():
    assert parse_policy("{}") == PolicyDocument()


def test_accepts_yaml_merge_keys_for_shared_rule_fields():
    text = "rules:\n  - <<: {severity: high, max: 0}\n    kind: max_findings\n    id: m\n"

    assert parse_policy(text).rules == [MaxFindings(id="m", severity="high", max=0)]


# --- structural errors, each with its location, line and column -------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            rules_yaml("kind: max_findings\nid: m\nseverity: high\nmax: -1"),
            ("rules[0].max", 5, 10, "Expected int >= 0"),
            id="constraint",
        ),
        pytest.param(
            rules_yaml("kind: max_findings\nid: m\nseverity: high\nmax: 0\noverdue_onyl: true"),
            ("rules[0].overdue_onyl", 6, 5, "unknown field 'overdue_onyl' (did you mean"),
            id="unknown-field-at-its-key",
        ),
        pytest.param(
            rules_yaml("kind: max_findings\nid: m\nseverity: high"),
            ("rules[0]", 2, 5, "missing required field 'max'"),
            id="missing-field",
        ),
        pytest.param(
            rules_yaml("kind: nope\nid: m"),
            ("rules[0].kind", 2, 11, "unknown rule kind 'nope' (expected one of: approvals,"),
            id="unknown-kind",
        ),
        pytest.param(
            rules_yaml("kind: [max_findings]\nid: m"),
            ("rules[0].kind", 2, 11, "unknown rule kind ['max_findings']"),
            id="kind-not-a-string",
        ),
        pytest.param(
            rules_yaml("id: m"),
            ("rules[0]", 2, 5, "missing required field 'kind'"),
            id="missing-kind",
        ),
        pytest.param(
            rules_yaml("kind: sbom\nid: Not Valid"),
            ("rules[0].id", 3, 9, "Expected a rule id (1-64 characters"),
            id="rule-id-pattern",
        ),
        pytest.param(
            rules_yaml("kind: approvals\nid: a\nroles: [approver, boss]"),
            ("rules[0].roles[1]", 4, 23, "Invalid enum value 'boss'"),
            id="enum-in-list",
        ),
        pytest.param(
            rules_yaml("kind: sbom\nid: a\nwhen: {internet_facing: yes}"),
            ("rules[0].when.internet_facing", 4, 29, "Expected bool | null, got str"),
            id="yes-is-not-a-boolean",
        ),
        pytest.param(
            rules_yaml(
                "kind: freeze\nid: f\nwindows:\n  - {days: [sat], from: '25:00', to: '01:00'}"
            ),
            ("rules[0].windows[0].from", 5, 29, "Expected a time of day HH:MM"),
            id="clock-time",
        ),
        pytest.param(
            rules_yaml("kind: required_scans\nid: s\nscanners: []"),
            ("rules[0].scanners", 4, 15, "Expected array of length >= 1"),
            id="list-length",
        ),
        pytest.param(
            "rules:\n  - just a string\n",
            ("rules[0]", 2, 5, "Expected object, got str"),
            id="rule-not-a-mapping",
        ),
        pytest.param("rules: 5\n", ("rules", 1, 8, "Expected array, got int"), id="rules-not-list"),
        pytest.param(
            "exception_max_days: 400\n",
            ("exception_max_days", 1, 21, "Expected int <= 365"),
            id="top-level-field",
        ),
        pytest.param(
            "owner: me\n", ("owner", 1, 1, "unknown field 'owner'"), id="top-level-unknown"
        ),
    ],
)
def test_reports_structural_error_at_its_location_line_and_column(text, expected):
    location, line, column, message = only_error(text)

    assert (location, line, column) == expected[:3]
    assert message.startswith(expected[3])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", ("", None, None, "empty policy document"), id="empty"),
        pytest.param(
            "  \n# only a comment\n", ("", None, None, "empty policy document"), id="blank"
        ),
        pytest.param("- a\n- b\n", ("", 1, 1, "a policy must be a mapping, got a list"), id="list"),
        pytest.param("42\n", ("", 1, 1, "a policy must be a mapping, got a number"), id="scalar"),
        pytest.param(
            "rules:\n  - kind: sbom\n    id: a\n   oops: [\n",
            ("", 4, 4, "invalid YAML: while parsing a block collection"),
            id="yaml-syntax",
        ),
        pytest.param(
            # (a trailing comma is reported at another column since Python 3.13)
            '{"rules": [\n  {"kind": "sbom", "id": "a", 5: 1}]}',
            ("", 2, 31, "invalid JSON: Expecting property name"),
            id="json-syntax",
        ),
        pytest.param(
            "rules:\n  - kind: sbom\n    id: a\n    id: b\n",
            ("rules[0].id", 4, 5, "duplicate key 'id'"),
            id="duplicate-yaml-key",
        ),
        pytest.param(
            '{"rules": [], "rules": []}',
            ("rules", 1, 15, "duplicate key 'rules'"),
            id="duplicate-json-key",
        ),
        pytest.param("rules: &a\n  - *a\n", ("rules[0]", 1, 8, "recursive alias"), id="recursion"),
        pytest.param(b"\xff\xfe\x00", ("", None, None, "not UTF-8 text"), id="not-utf8"),
        pytest.param(
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n"
                for p, n in zip("abcde", "bcdef", strict=True)
            ),
            ("", None, None, "more than 100000 values once aliases are expanded"),
            id="alias-bomb",
        ),
        pytest.param(
            "description: " + "x" * 600_000,
            ("", None, None, "larger than 524288 bytes"),
            id="too-large",
        ),
    ],
)
def test_reports_document_level_error(text, expected):
    location, line, column, message = only_error(text)

    assert (location, line, column) == expected[:3]
    assert message.startswith(expected[3])


def test_reports_every_error_of_the_document_at_once_in_document_order():
    text = """\
exception_max_days: 0
rules:
  - kind: max_findings
    id: dup
    severity: severe
    max: -1
  - kind: soak
    id: dup
    hours: 0
    extra: 1
  - kind: tests
    id: t
  - kind: expression
    id: e
    expr: "secrets.count > 0"
"""
    assert errors_of(text) == [
        ("exception_max_days", 1, 21, "Expected int >= 1"),
        ("rules[0].severity", 5, 15, "Invalid enum value 'severe'"),
        ("rules[0].max", 6, 10, "Expected int >= 0"),
        ("rules[1].id", 8, 9, "duplicate rule id 'dup' (also rules[0])"),
        ("rules[1].hours", 9, 12, "Expected float > 0.0"),
        ("rules[1].extra", 10, 5, "unknown field 'extra'"),
        ("rules[2]", 11, 5, "a tests rule needs min_pass_rate or min_coverage"),
        (
            "rules[3].expr",
            15,
            11,
            "unknown variable(s) secrets (allowed: approvals, environment, findings, profile, "
            "scans, tests, version)",
        ),
    ]


def test_locates_errors_of_a_json_document_by_line_and_column():
    text = '{\n  "rules": [\n    {"kind": "soak", "id": "s", "hours": -2}\n  ]\n}\n'

    assert only_error(text) == ("rules[0].hours", 3, 42, "Expected float > 0.0")


# --- semantic errors ---------------------------------------------------------------------------


def test_reports_a_second_approvals_rule():
    text = rules_yaml("kind: approvals\nid: a", "kind: approvals\nid: b\ncount: 2")

    assert only_error(text) == (
        "rules[1].kind",
        4,
        11,
        "only one approvals rule is allowed (rules[0])",
    )


def test_accepts_a_tests_rule_with_only_a_coverage_threshold():
    doc = parse_policy(rules_yaml("kind: tests\nid: t\nmin_coverage: 0.5"))

    assert doc.rules == [RuleTests(id="t", min_coverage=0.5)]


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        pytest.param(
            "{start: 2026-12-20T00:00:00Z, end: 2026-12-19T00:00:00Z}",
            ("rules[0].windows[0].end", "end must be after start"),
            id="end-before-start",
        ),
        pytest.param(
            "{start: 2026-12-20T00:00:00, end: 2026-12-28T00:00:00Z}",
            ("rules[0].windows[0].start", "needs a time zone (e.g. 2026-12-20T00:00:00Z)"),
            id="naive-time",
        ),
        pytest.param(
            "{start: 2026-12-20T00:00:00Z}",
            ("rules[0].windows[0]", "an absolute window needs both start and end"),
            id="start-only",
        ),
        pytest.param(
            "{start: 2026-12-20T00:00:00Z, end: 2026-12-28T00:00:00Z, days: [mon]}",
            (
                "rules[0].windows[0]",
                "a window is absolute (start, end) or weekly (days, from, to), not both",
            ),
            id="both",
        ),
        pytest.param(
            "{reason: nothing}",
            ("rules[0].windows[0]", "a window needs start and end, or days, from and to"),
            id="neither",
        ),
        pytest.param(
            "{days: [sat]}",
            ("rules[0].windows[0]", "a weekly window needs days, from and to (missing from, to)"),
            id="weekly-incomplete",
        ),
        pytest.param(
            "{days: [], from: '10:00', to: '11:00'}",
            ("rules[0].windows[0].days", "a weekly window needs at least one day"),
            id="no-days",
        ),
        pytest.param(
            "{days: [mon], from: '10:00', to: '10:00'}",
            ("rules[0].windows[0].to", "to must differ from from"),
            id="empty-span",
        ),
    ],
)
def test_reports_incoherent_freeze_window(window, expected):
    text = rules_yaml(f"kind: freeze\nid: f\nwindows:\n  - {window}")

    location, line, _column, message = only_error(text)

    assert (location, message) == expected
    assert line == 5


def test_checks_the_good_windows_of_a_freeze_rule_whose_other_window_has_a_type_error():
    text = rules_yaml(
        "kind: freeze\nid: f\nwindows:\n  - {start: 2026-12-20T00:00:00Z}\n  - {days: 5}"
    )

    assert [(loc, msg) for loc, _, _, msg in errors_of(text)] == [
        ("rules[0].windows[0]", "an absolute window needs both start and end"),
        ("rules[0].windows[1].days", "Expected array | null, got int"),
    ]


def test_accepts_an_overnight_weekly_window():
    text = rules_yaml("kind: freeze\nid: f\nwindows:\n  - {days: [fri], from: 22:00, to: 06:00}")

    freeze = parse_policy(text).rules[0]

    assert isinstance(freeze, Freeze)
    assert freeze.windows == [Window(days=["fri"], from_="22:00", to="06:00")]


@pytest.mark.parametrize(
    "expr",
    [
        "findings.exists(f, f.severity == 'critical') == false",
        "profile.internet_facing && size(approvals) >= 2",
        "environment == 'prod' && version != '' && scans.all(s, s.full)",
        "tests.pass_rate >= 0.99",
    ],
)
def test_accepts_expressions_over_the_documented_variables(expr):
    assert expression_problem(expr) is None
    assert parse_policy(json.dumps({"rules": [{"kind": "expression", "id": "e", "expr": expr}]}))


def test_expression_variables_are_the_evaluation_facts():
    assert {
        "findings",
        "profile",
        "environment",
        "version",
        "scans",
        "tests",
        "approvals",
    } == EXPRESSION_VARIABLES


def test_rejects_a_cel_syntax_error_with_its_position_in_the_expression():
    text = rules_yaml("kind: expression\nid: e\nexpr: 'findings.size( >'")

    location, line, column, message = only_error(text)

    assert (location, line, column) == ("rules[0].expr", 4, 11)
    assert message.startswith("invalid CEL expression at 1:")


def test_rejects_unknown_variables_even_when_a_string_looks_like_a_comprehension():
    problem = expression_problem("environment == '.all(secret, ' && secret")

    assert problem is not None
    assert problem.startswith("unknown variable(s) secret ")


# --- errors as values ----------------------------------------------------------------------------


def test_formats_a_policy_error_with_location_line_and_column():
    error = PolicyError("rules[2].max", 12, 10, "Expected int >= 0")

    assert str(error) == "rules[2].max (line 12, column 10): Expected int >= 0"
    assert str(PolicyError("", None, None, "empty policy document")) == (
        "document: empty policy document"
    )


def test_policy_invalid_is_invalid_input_and_its_detail_lists_every_error():
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy("exception_max_days: 0\nowner: me\n", source="prod.yaml")

    assert isinstance(caught.value, InvalidInput)
    assert caught.value.code == "invalid-policy"
    assert caught.value.detail == (
        "invalid policy prod.yaml (2 errors): exception_max_days (line 1, column 21): "
        "Expected int >= 1; owner (line 2, column 1): unknown field 'owner'"
    )


# --- canonical form and digest -----------------------------------------------------------------


def test_digest_is_stable_across_key_order_and_explicit_defaults():
    one = parse_policy('{"rules": [{"kind": "approvals", "id": "a"}], "exception_max_days": 90}')
    two = parse_policy(
        "exception_max_days: 90\n"
        "rules:\n  - ttl_hours: 72\n    roles: [approver]\n    id: a\n    kind: approvals\n"
    )

    assert policy_digest(one) == policy_digest(two)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", policy_digest(one))


def test_digest_changes_when_a_rule_changes():
    base = PolicyDocument(rules=[Soak(id="s", hours=24)])

    assert policy_digest(base) != policy_digest(PolicyDocument(rules=[Soak(id="s", hours=48)]))


def test_policy_as_dict_is_plain_json_data_that_parses_back():
    doc = parse_policy(VALID_YAML)

    data = policy_as_dict(doc)

    assert data["rules"][7]["windows"][0]["start"] == "2026-12-20T00:00:00Z"
    assert data["rules"][7]["windows"][1]["from"] == "17:30"
    assert parse_policy(json.dumps(data)) == doc


def test_policy_schema_describes_the_policy_document():
    schema = policy_schema()

    assert schema["$ref"] == "#/$defs/PolicyDocument"
    assert {"MaxFindings", "Freeze", "Window", "When"} <= set(schema["$defs"])
    kinds = schema["$defs"]["PolicyDocument"]["properties"]["rules"]["items"]
    assert kinds["discriminator"]["propertyName"] == "kind"


# --- tightening -------------------------------------------------------------------------------


def doc(*rules: Any, days: int = 90) -> PolicyDocument:
    return PolicyDocument(rules=list(rules), exception_max_days=days)


TIGHTER = [
    pytest.param(
        MaxFindings(id="r", severity="high", max=2),
        MaxFindings(id="r", severity="medium", max=1),
        id="max_findings-lower-max-broader-severity",
    ),
    pytest.param(
        MaxFindings(id="r", severity="high", max=0, overdue_only=True),
        MaxFindings(id="r", severity="high", max=0),
        id="max_findings-all-instead-of-overdue",
    ),
    pytest.param(
        RequiredScans(id="r", scanners=["semgrep"], max_age_hours=24, full=False),
        RequiredScans(id="r", scanners=["semgrep", "trivy"], max_age_hours=12, full=True),
        id="required_scans",
    ),
    pytest.param(
        RuleTests(id="r", min_pass_rate=0.9, suites=["unit"], max_age_hours=24),
        RuleTests(
            id="r", min_pass_rate=0.95, min_coverage=0.5, suites=["unit", "e2e"], max_age_hours=1
        ),
        id="tests",
    ),
    pytest.param(
        Approvals(id="r", count=1, roles=["approver", "admin"], ttl_hours=72),
        Approvals(id="r", count=2, roles=["admin"], ttl_hours=24),
        id="approvals",
    ),
    pytest.param(Soak(id="r", hours=24), Soak(id="r", hours=48), id="soak"),
    pytest.param(
        Freeze(id="r", windows=[Window(days=["sat"], from_="00:00", to="23:59", reason="a")]),
        Freeze(
            id="r",
            windows=[
                Window(days=["sat"], from_="00:00", to="23:59", reason="reworded"),
                Window(days=["sun"], from_="00:00", to="23:59"),
            ],
        ),
        id="freeze-adds-a-window",
    ),
    pytest.param(
        Expression(id="r", expr="size(approvals) > 0"),
        Expression(id="r", expr="size(approvals) > 0", message="needs an approval"),
        id="expression-same-expr",
    ),
    pytest.param(Sbom(id="r"), Sbom(id="r", description="ours"), id="sbom"),
    pytest.param(NoSecrets(id="r"), NoSecrets(id="r"), id="no_secrets"),
]

LOOSER = [
    pytest.param(
        MaxFindings(id="r", severity="medium", max=0),
        MaxFindings(id="r", severity="high", max=1, overdue_only=True),
        ["rules[0].max", "rules[0].severity", "rules[0].overdue_only"],
        id="max_findings",
    ),
    pytest.param(
        RequiredScans(id="r", scanners=["semgrep", "trivy"], max_age_hours=12),
        RequiredScans(id="r", scanners=["semgrep"], max_age_hours=24, full=False),
        ["rules[0].scanners", "rules[0].max_age_hours", "rules[0].full"],
        id="required_scans",
    ),
    pytest.param(
        RuleTests(id="r", min_pass_rate=0.9, min_coverage=0.8, suites=["unit"], max_age_hours=24),
        RuleTests(id="r", min_pass_rate=0.5, suites=["e2e"]),
        [
            "rules[0].min_pass_rate",
            "rules[0].min_coverage",
            "rules[0].suites",
            "rules[0].max_age_hours",
        ],
        id="tests",
    ),
    pytest.param(
        Approvals(id="r", count=2, roles=["approver"], ttl_hours=24),
        Approvals(id="r", count=1, roles=["approver", "agent"], ttl_hours=48),
        ["rules[0].count", "rules[0].roles", "rules[0].ttl_hours"],
        id="approvals",
    ),
    pytest.param(Soak(id="r", hours=24), Soak(id="r", hours=1), ["rules[0].hours"], id="soak"),
    pytest.param(
        Freeze(id="r", windows=[Window(days=["sat"], from_="00:00", to="23:59")]),
        Freeze(id="r", windows=[Window(days=["sat"], from_="00:00", to="12:00")]),
        ["rules[0].windows"],
        id="freeze-drops-a-window",
    ),
    pytest.param(
        Expression(id="r", expr="size(approvals) > 0"),
        Expression(id="r", expr="true"),
        ["rules[0].expr"],
        id="expression",
    ),
    pytest.param(
        Sbom(id="r"),
        Sbom(id="r", when=When(internet_facing=True)),
        ["rules[0].when"],
        id="narrower-when",
    ),
    pytest.param(NoSecrets(id="r"), Sbom(id="r"), ["rules[0].kind"], id="kind-changed"),
]


@pytest.mark.parametrize(("base", "rule"), TIGHTER)
def test_accepts_a_project_rule_that_tightens_its_baseline_rule(base, rule):
    assert tightening_errors(doc(base), doc(Soak(id="other", hours=1), rule)) == []


@pytest.mark.parametrize(("base", "rule", "locations"), LOOSER)
def test_reports_each_loosened_field_of_a_project_rule(base, rule, locations):
    errors = tightening_errors(doc(base), doc(rule))

    assert [e.location for e in errors] == locations
    assert all(e.line is None and e.column is None for e in errors)


def test_reports_loosening_at_the_project_rule_index():
    baseline = doc(Soak(id="soak", hours=24))
    project = doc(Sbom(id="sbom"), Soak(id="soak", hours=2))

    assert tightening_errors(baseline, project) == [
        PolicyError("rules[1].hours", None, None, "2 is less than the baseline's 24")
    ]


def test_reports_an_exception_expiry_longer_than_the_baseline():
    errors = tightening_errors(doc(days=30), doc(days=60))

    assert [(e.location, e.message) for e in errors] == [
        ("exception_max_days", "60 days exceeds the baseline's 30")
    ]
    assert tightening_errors(doc(days=30), doc(days=7)) == []


def test_allows_project_rules_with_new_ids():
    baseline = doc(Soak(id="soak", hours=24))

    assert tightening_errors(baseline, doc(Soak(id="extra-soak", hours=1))) == []


# --- effective rules ------------------------------------------------------------------------


def test_effective_rules_replace_a_baseline_rule_the_project_tightens():
    baseline = doc(Soak(id="soak", hours=24), Sbom(id="sbom"))
    tighter = Soak(id="soak", hours=48)
    extra = NoSecrets(id="secrets")

    assert effective_rules(baseline, doc(tighter, extra)) == [
        ("baseline", Sbom(id="sbom")),
        ("project", tighter),
        ("project", extra),
    ]


def test_effective_rules_keep_both_when_the_project_rule_is_looser():
    strict = Soak(id="soak", hours=24)
    loose = Soak(id="soak", hours=1)

    assert effective_rules(doc(strict), doc(loose)) == [
        ("baseline", strict),
        ("project", loose),
    ]


def test_effective_rules_without_a_baseline_or_project():
    rule = Sbom(id="sbom")

    assert effective_rules(None, doc(rule)) == [("project", rule)]
    assert effective_rules(doc(rule), None) == [("baseline", rule)]
    assert effective_rules(None, None) == []


def test_effective_exception_max_days_is_the_shortest():
    assert effective_exception_max_days(doc(days=30), doc(days=60)) == 30
    assert effective_exception_max_days(doc(days=30), doc(days=7)) == 7
    assert effective_exception_max_days(None, doc(days=14)) == 14
    assert effective_exception_max_days(None, None) == 90


# --- diff -------------------------------------------------------------------------------------


def as_dict(*rules: Any, days: int = 90, description: str | None = None) -> dict[str, Any]:
    return policy_as_dict(
        PolicyDocument(rules=list(rules), exception_max_days=days, description=description)
    )


def test_diff_reports_field_changes_removals_and_additions_in_a_stable_order():
    old = as_dict(
        MaxFindings(id="no-critical", severity="critical", max=0),
        Sbom(id="sbom"),
        Soak(id="soak", hours=24),
        days=90,
    )
    new = as_dict(
        Soak(id="soak", hours=24),
        MaxFindings(id="no-critical", severity="high", max=1),
        NoSecrets(id="secrets"),
        days=30,
        description="stricter",
    )

    assert diff_policies(old, new) == [
        {"op": "add", "path": "description", "old": None, "new": "stricter"},
        {"op": "change", "path": "exception_max_days", "old": 90, "new": 30},
        {"op": "remove", "path": "rules[id=sbom]", "old": old["rules"][1], "new": None},
        {
            "op": "change",
            "path": "rules[id=no-critical].severity",
            "old": "critical",
            "new": "high",
        },
        {"op": "change", "path": "rules[id=no-critical].max", "old": 0, "new": 1},
        {"op": "add", "path": "rules[id=secrets]", "old": None, "new": new["rules"][2]},
    ]


def test_diff_treats_a_kind_change_as_remove_and_add():
    old = as_dict(Sbom(id="r"))
    new = as_dict(NoSecrets(id="r"))

    assert [(op["op"], op["path"]) for op in diff_policies(old, new)] == [
        ("remove", "rules[id=r]"),
        ("add", "rules[id=r]"),
    ]


def test_diff_reports_nested_field_additions_and_removals_whole():
    old = as_dict(Sbom(id="r", when=When(internet_facing=True)))
    new = as_dict(Sbom(id="r", description="why"))

    assert diff_policies(old, new) == [
        {"op": "add", "path": "rules[id=r].description", "old": None, "new": "why"},
        {"op": "remove", "path": "rules[id=r].when", "old": old["rules"][0]["when"], "new": None},
    ]


def test_diff_from_nothing_adds_every_rule_and_set_field():
    new = as_dict(Sbom(id="sbom"), days=30)

    assert diff_policies(None, new) == [
        {"op": "add", "path": "exception_max_days", "old": None, "new": 30},
        {"op": "add", "path": "rules[id=sbom]", "old": None, "new": new["rules"][0]},
    ]


def test_diff_of_equal_policies_is_empty_whatever_the_rule_order():
    old = as_dict(Sbom(id="a"), Soak(id="b", hours=1))

    assert diff_policies(old, as_dict(Soak(id="b", hours=1), Sbom(id="a"))) == []


# --- CLI --------------------------------------------------------------------------------------


def test_cli_validate_prints_ok_and_exits_0_for_a_valid_policy(tmp_path, capsys):
    path = tmp_path / "prod.yaml"
    path.write_text(VALID_YAML)

    code = main(["policy", "validate", str(path)])

    out, err = capsys.readouterr()
    assert (code, out, err) == (0, "OK: 9 rules\n", "")


def test_cli_validate_prints_one_line_per_error_and_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(rules_yaml("kind: soak\nid: s\nhours: 0", "kind: tests\nid: t"))

    code = main(["policy", "validate", str(path)])

    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.splitlines() == [
        f"{path}:4:12: rules[0].hours: Expected float > 0.0",
        f"{path}:5:5: rules[1]: a tests rule needs min_pass_rate or min_coverage",
    ]


def test_cli_validate_prints_document_errors_without_a_location(tmp_path, capsys):
    path = tmp_path / "empty.yaml"
    path.write_text("[]\n")

    code = main(["policy", "validate", str(path)])

    assert code == 2
    assert capsys.readouterr().err == f"{path}:1:1: a policy must be a mapping, got a list\n"


def test_cli_validate_exits_2_when_the_file_cannot_be_read(tmp_path: Path, capsys):
    missing = tmp_path / "missing.yaml"

    code = main(["policy", "validate", str(missing)])

    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err == f"pearl: cannot read {missing}: No such file or directory\n"
