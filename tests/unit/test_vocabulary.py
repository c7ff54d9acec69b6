"""The ledger's words for people (`ledger.domain.vocabulary`)."""

from __future__ import annotations

from ledger.domain.vocabulary import CODES, FIELDS, LANGS, code_label, field_label
from projections import exports
from projections.exports import EXPORTS, execution_columns
from projections.views.audit_trail import AuditTrail


def test_every_event_the_audit_trail_records_has_a_label_in_both_languages() -> None:
    recorded = {event_class.__qualname__ for event_class in AuditTrail.HANDLERS}
    assert recorded <= CODES["event_type"].keys()
    for event_type in recorded:
        labels = {code_label("event_type", event_type, lang) for lang in LANGS}
        assert event_type not in labels
        assert len(labels) == 2


def test_every_exported_column_has_a_header_in_both_languages() -> None:
    """A column without a label would head the sheet with its field's name."""
    columns = [
        *exports.AUDIT_TRAIL_COLUMNS,
        *exports.GRANT_COLUMNS,
        *exports.PAYMENT_COLUMNS,
        *exports.YEAR_END_COLUMNS,
        *execution_columns(2024),
    ]
    assert len(EXPORTS) == 5
    for column in columns:
        zh, en = column.title("zh"), column.title("en")
        assert zh != en, column.field
        if column.header is None:
            assert column.field in FIELDS, column.field
        if column.codes is not None:
            assert column.codes in CODES, column.codes


def test_a_code_or_field_without_a_label_is_shown_as_it_is() -> None:
    assert code_label("programme", "night_school", "zh") == "night_school"
    assert field_label("surprise", "en") == "surprise"
    assert code_label("programme", "settling_in", "zh") == "安家补贴"
    assert field_label("net_paid", "en") == "Net paid"
