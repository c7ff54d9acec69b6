"""How the values a command carries are written: identifiers, codes and free text.

Commands declare their fields with these types once; the HTTP layer derives its
request bodies from them, so a rule such as "an identifier is at most 64 characters"
is written only here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal


@dataclass(frozen=True)
class TextFormat:
    """A text field's form: a full-match `pattern`, and whether surrounding blanks are
    stripped before it is checked."""

    pattern: str
    strip: bool = False
    min_length: int | None = None
    max_length: int | None = None


@dataclass(frozen=True)
class IntRange:
    """A whole number within these bounds, both included (a fund year, a count)."""

    first: int
    last: int


@dataclass(frozen=True)
class MaxItems:
    """A list of at most this many items."""

    count: int


ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
#: a bank account number (a card number, or an IBAN), digits and capitals only
BANK_ACCOUNT_PATTERN = r"^[0-9A-Z]{8,34}$"
SLUG_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"

#: a client's chosen id of a resource, or a bank's reference
Identifier = Annotated[str, TextFormat(ID_PATTERN)]
#: personal data: a talent's bank account, sealed like the name
BankAccount = Annotated[str, TextFormat(BANK_ACCOUNT_PATTERN)]
#: a code chosen by whoever appropriates: a programme, a category
Slug = Annotated[str, TextFormat(SLUG_PATTERN)]
#: free text: no control characters but tab and newlines (NUL cannot even be stored)
TEXT = TextFormat(
    r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$", strip=True, min_length=1, max_length=1000
)
#: what stripping leaves of a text: something but the blanks Python strips, which are,
#: once control characters are refused, these (so a schema can say "not blank")
NOT_BLANK = r"[^\t\n\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
Text = Annotated[str, TEXT]
YEARS = IntRange(1900, 2999)
Year = Annotated[int, YEARS]
Currency = Literal["CNY"]
