"""Numbers and digit strings as words, for prompts spoken from recorded fragments (DP-5).

A dynamic part of a prompt (`Say(number=...)`, `Say(digits=...)`) is played as a sequence of
pre-rendered words, so a call never waits for TTS. This module says which words a number is
made of, in Chinese (Mandarin) and English, and which words a language needs at all
(`fragment_words`), so that `ivr.prompts.PromptLibrary` can render them ahead.

Chinese follows spoken usage: 十 / 十一 at the start of a number (not 一十), 一百一十, 一百零一,
一千零一, 两 before 百, 千 and a lone 万/亿 (两百, 两千, 两万, but 二十, 十二), one 零 for any run of
zeros inside a number. Digit by digit, 1 is 幺 (yāo), as telephone and hotline numbers are read
(12345 is 幺二三四五). English has no "and": one hundred twenty three.
"""

from __future__ import annotations

import re
from typing import Literal

Lang = Literal["zh", "en"]

#: The largest number `number_words` reads (just under 10^12: 亿 groups / billions).
MAX_NUMBER = 10**12 - 1

_ZH_DIGITS = "零一二三四五六七八九"
_ZH_PHONE_DIGITS = "零幺二三四五六七八九"
_ZH_GROUP_UNITS = ("", "万", "亿")

_EN_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_EN_SCALES = ("", "thousand", "million", "billion")


def lang_of_voice(voice: str) -> Lang | None:
    """The language of a TTS voice name (`cmn`, `cmn-latn-pinyin`, `zh` → zh; `en`, `en-us`
    → en), or None when this module has no words for it."""
    base = voice.strip().lower().split("-")[0]
    if base in ("cmn", "zh"):
        return "zh"
    if base == "en":
        return "en"
    return None


def fragment_words(lang: Lang) -> tuple[str, ...]:
    """Every word `number_words` and `digit_words` can return for `lang`: the fragments to
    render ahead."""
    if lang == "zh":
        return tuple(dict.fromkeys(_ZH_DIGITS + _ZH_PHONE_DIGITS + "两十百千万亿"))
    return (*_EN_ONES, *_EN_TENS[2:], "hundred", *_EN_SCALES[1:])


def digit_words(digits: str, lang: Lang) -> list[str]:
    """`digits` (ASCII 0-9 only) read one by one; raises ValueError on anything else."""
    if not digits or not digits.isascii() or not digits.isdigit():
        raise ValueError(f"not a digit string: {digits!r}")
    table = _ZH_PHONE_DIGITS if lang == "zh" else _EN_ONES
    return [table[int(c)] for c in digits]


def number_words(n: int, lang: Lang) -> list[str]:
    """`n` (0 … MAX_NUMBER) read as a number; raises ValueError outside that range."""
    if not 0 <= n <= MAX_NUMBER:
        raise ValueError(f"number out of range 0..{MAX_NUMBER}: {n}")
    return _zh_number(n) if lang == "zh" else _en_number(n)


def _zh_group(g: int, unit: str) -> list[str]:
    """1 … 9999 within its 万/亿 group: inner zeros become one 零, trailing zeros vanish."""
    if g == 2 and unit:
        return ["两"]
    words: list[str] = []
    pending_zero = False
    for value, place in (
        (g // 1000, "千"),
        (g // 100 % 10, "百"),
        (g // 10 % 10, "十"),
        (g % 10, ""),
    ):
        if value == 0:
            pending_zero = pending_zero or bool(words)
            continue
        if pending_zero:
            words.append("零")
            pending_zero = False
        words.append("两" if value == 2 and place in ("千", "百") else _ZH_DIGITS[value])
        if place:
            words.append(place)
    return words


def _zh_number(n: int) -> list[str]:
    if n == 0:
        return ["零"]
    groups = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    words: list[str] = []
    gap = False  # a zero group (or a group below 1000) between non-zero groups needs 零
    for index in reversed(range(len(groups))):
        g = groups[index]
        if g == 0:
            gap = gap or bool(words)
            continue
        if words and (gap or g < 1000):
            words.append("零")
        gap = False
        unit = _ZH_GROUP_UNITS[index]
        words += _zh_group(g, unit)
        if unit:
            words.append(unit)
    if words[:2] == ["一", "十"]:
        del words[0]  # 十五, 十万: spoken without the leading 一
    return words


def _en_below_1000(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_EN_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_EN_TENS[n // 10])
        n %= 10
        if n:
            words.append(_EN_ONES[n])
    elif n:
        words.append(_EN_ONES[n])
    return words


def _en_number(n: int) -> list[str]:
    if n == 0:
        return ["zero"]
    words: list[str] = []
    for index in reversed(range(len(_EN_SCALES))):
        chunk = n // 1000**index % 1000
        if chunk:
            words += _en_below_1000(chunk)
            if _EN_SCALES[index]:
                words.append(_EN_SCALES[index])
    return words


_ASCII_DIGITS = re.compile(r"[0-9]+")


def spell_numbers_zh(text: str) -> str:
    """Chinese text with its ASCII digit runs written out in characters, for TTS: runs of 5+
    digits or with a leading 0 (telephone and hotline numbers) digit by digit, shorter runs
    as numbers (3 → 三, 110 → 一百一十). espeak-ng 1.51 reads 12345 as 十二千三百四十五 and 1001 as
    一千一, so numbers are never left to it."""

    def spell(match: re.Match[str]) -> str:
        run = match.group()
        if len(run) >= 5 or (len(run) > 1 and run[0] == "0"):
            return "".join(digit_words(run, "zh"))
        return "".join(number_words(int(run), "zh"))

    return _ASCII_DIGITS.sub(spell, text)


__all__ = [
    "MAX_NUMBER",
    "Lang",
    "digit_words",
    "fragment_words",
    "lang_of_voice",
    "number_words",
    "spell_numbers_zh",
]
