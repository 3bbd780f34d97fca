"""Property-based tests of the canonicaliser and the classification (Hypothesis)."""

from __future__ import annotations

import string

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from features.errors import NumberFormatError
from features.numbering import (
    EMERGENCY_CODES,
    NumberClass,
    canonical,
    classify,
    is_e164,
    mask,
    normalise_national,
)

ASCII_DIGITS = "0123456789"
# Digits that str.isdigit() accepts but the edge must not: Arabic-Indic, Extended
# Arabic-Indic (Persian), Devanagari, fullwidth, superscript.
FOREIGN_DIGITS = "٠١٢٣٤٥٦٧٨٩" "۰۱۲۳۴۵۶۷۸۹" "०१२३४५६७८९" "０１２３４５６７８９" "²³¹"


def strict_e164_oracle(value: str) -> bool:
    """Strict ASCII E.164, written independently of the module's regex."""
    digits = value[1:]
    return (
        value.startswith("+")
        and 7 <= len(digits) <= 15
        and all(c in ASCII_DIGITS for c in digits)
        and digits[0] != "0"
    )


def e164(min_digits: int = 7, max_digits: int = 15) -> st.SearchStrategy[str]:
    return st.builds(
        lambda first, rest: f"+{first}{rest}",
        st.sampled_from("123456789"),
        st.text(ASCII_DIGITS, min_size=min_digits - 1, max_size=max_digits - 1),
    )


def kz_like(abc: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """+7, a three-digit range code from ``abc``, then seven digits."""
    return st.builds(lambda a, rest: f"+7{a}{rest}", abc, st.text(ASCII_DIGITS, min_size=7, max_size=7))


# Text that looks like numbers: mixes of ASCII and foreign digits, '+', separators and NUL.
number_like = st.text(
    alphabet=st.sampled_from(list(ASCII_DIGITS + "+ -()\x00\n\t" + FOREIGN_DIGITS + "８")), max_size=20
)


@given(st.one_of(st.text(max_size=20), number_like, e164()))
@example("+77011234567\n")
@example("+77011234567\x00")
@example("\x00+77011234567")
@example("+7701١234567")
@example("+７７０１１２３４５６７")
def test_canonical_accepts_exactly_strict_ascii_e164(value: str) -> None:
    if strict_e164_oracle(value):
        assert canonical(value) == value
        assert is_e164(value)
    else:
        with pytest.raises(NumberFormatError):
            canonical(value)
        assert not is_e164(value)


@given(e164(), st.integers(min_value=0, max_value=14), st.sampled_from(list(FOREIGN_DIGITS)))
def test_any_non_ascii_digit_is_rejected(number: str, position: int, foreign: str) -> None:
    digits = list(number[1:])
    digits[position % len(digits)] = foreign
    with pytest.raises(NumberFormatError):
        canonical("+" + "".join(digits))


@given(e164(), st.integers(min_value=0, max_value=16), st.sampled_from(["\x00", " ", "\n", "\t", "-", "\u200b"]))
def test_nul_bytes_and_separators_are_rejected(number: str, position: int, junk: str) -> None:
    at = position % (len(number) + 1)
    with pytest.raises(NumberFormatError):
        canonical(number[:at] + junk + number[at:])


@given(st.text(ASCII_DIGITS, min_size=10, max_size=10))
def test_national_8_form_is_rejected_unless_normalised(rest: str) -> None:
    national = "8" + rest
    with pytest.raises(NumberFormatError):
        canonical(national)
    assert normalise_national(national) == "+7" + rest
    assert normalise_national("+7" + rest) == "+7" + rest


@given(st.text(max_size=14))
def test_normalise_national_never_accepts_what_canonical_rejects_except_the_8_form(value: str) -> None:
    try:
        out = normalise_national(value)
    except NumberFormatError:
        return
    assert is_e164(out)
    assert out == value or (value.startswith("8") and len(value) == 11 and out == "+7" + value[1:])


@given(st.text(ASCII_DIGITS, min_size=2, max_size=6))
def test_short_codes_only_where_allowed(code: str) -> None:
    assert canonical(code, allow_short_code=True) == code
    with pytest.raises(NumberFormatError):
        canonical(code)


@given(st.one_of(st.integers(), st.none(), st.binary(), st.lists(st.integers())))
def test_non_strings_are_rejected(value: object) -> None:
    with pytest.raises(NumberFormatError):
        canonical(value)


# -- classification -------------------------------------------------------------------------

KZ_MOBILE_CODES = st.one_of(
    st.builds(lambda d: f"70{d}", st.sampled_from(ASCII_DIGITS)),
    st.builds(lambda d: f"77{d}", st.sampled_from(ASCII_DIGITS)),
    st.just("747"),
)
KZ_FIXED_CODES = st.builds(lambda p, d: f"{p}{d}", st.sampled_from(["71", "72"]), st.sampled_from(ASCII_DIGITS))
KZ_NONGEO_CODES = st.builds(lambda a, b: f"{a}{b}", st.sampled_from(["6", "7"]), st.text(ASCII_DIGITS, min_size=2, max_size=2)).filter(
    lambda abc: abc[:2] not in ("70", "77", "71", "72") and abc != "747"
)
RU_CODES = st.builds(
    lambda a, b: f"{a}{b}", st.sampled_from("0123489"), st.text(ASCII_DIGITS, min_size=2, max_size=2)
)


@given(kz_like(KZ_MOBILE_CODES))
@example("+77011234567")
@example("+77471234567")
@example("+77771234567")
def test_kazakh_mobile(number: str) -> None:
    assert classify(number) is NumberClass.KZ_MOBILE


@given(kz_like(KZ_FIXED_CODES))
@example("+77272501234")  # Almaty
@example("+77172501234")  # Astana
def test_kazakh_fixed(number: str) -> None:
    assert classify(number) is NumberClass.KZ_FIXED


@given(kz_like(KZ_NONGEO_CODES))
@example("+77001234567")  # 700 is mobile (70x), not here; the strategy filters it
def test_kazakh_non_geographic(number: str) -> None:
    expected = NumberClass.KZ_MOBILE if number[2:4] == "70" else NumberClass.KZ_NONGEO
    assert classify(number) is expected


@given(kz_like(RU_CODES))
@example("+79161234567")
def test_russian(number: str) -> None:
    assert classify(number) is NumberClass.RU


@given(st.sampled_from(sorted(EMERGENCY_CODES)))
def test_emergency(code: str) -> None:
    assert classify(code) is NumberClass.EMERGENCY


@given(st.text(ASCII_DIGITS, min_size=2, max_size=6).filter(lambda c: c not in EMERGENCY_CODES))
def test_other_short_codes(code: str) -> None:
    assert classify(code) is NumberClass.SHORT_CODE


@given(e164().filter(lambda n: not n.startswith("+7")))
@example("+905321234567")
@example("+4930123456")
def test_other_country(number: str) -> None:
    assert classify(number) is NumberClass.OTHER_COUNTRY


@given(st.one_of(e164().filter(lambda n: n.startswith("+7") and len(n) != 12), st.text(max_size=16)))
def test_invalid(value: str) -> None:
    is_short = 2 <= len(value) <= 6 and all(c in ASCII_DIGITS for c in value)
    if (strict_e164_oracle(value) and not (value.startswith("+7") and len(value) != 12)) or is_short:
        return  # a valid number, classified by the other tests
    assert classify(value) is NumberClass.INVALID


@given(st.one_of(e164(), st.text(max_size=20)))
def test_classification_is_total_and_consistent_with_canonical(value: str) -> None:
    cls = classify(value)
    assert isinstance(cls, NumberClass)
    if cls not in (NumberClass.INVALID, NumberClass.SHORT_CODE, NumberClass.EMERGENCY):
        assert canonical(value) == value


def test_class_codes_are_stable_model_features() -> None:
    assert {c.name: c.value for c in NumberClass} == {
        "INVALID": 0, "KZ_MOBILE": 1, "KZ_FIXED": 2, "KZ_NONGEO": 3,
        "RU": 4, "SHORT_CODE": 5, "EMERGENCY": 6, "OTHER_COUNTRY": 7,
    }  # fmt: skip


# -- masking --------------------------------------------------------------------------------


@given(st.one_of(st.text(max_size=40), e164(), st.integers()))
def test_mask_never_reveals_more_than_six_characters(value: object) -> None:
    masked = mask(value)
    inner = masked[1:-1]  # mask returns a quoted repr
    revealed = [c for c in inner if c != "*"]
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= 6:
        assert set(inner) <= {"*"}
    elif all(c in string.printable for c in text):
        assert len(revealed) <= 6
        assert inner.count("*") == len(text) - 6
