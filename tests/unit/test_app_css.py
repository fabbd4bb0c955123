"""app.css's colours: each one a custom property with a light and a dark value, and every text
colour the rules put on a background at least 4.5:1 against it (WCAG AA, which 12 px text
needs) in both schemes."""
import re

import pytest

from portal.config import BASE_DIR

CSS = (BASE_DIR / "portal" / "static" / "app.css").read_text()
NO_COMMENTS = re.sub(r"/\*.*?\*/", "", CSS, flags=re.S)
DARK_MEDIA = re.search(r"@media \(prefers-color-scheme: dark\) \{\s*:root \{(.*?)\}\s*\}", NO_COMMENTS, re.S)
LIGHT_ROOT = re.search(r"^:root \{(.*?)\}", NO_COMMENTS, re.S | re.M)
VARIABLE = re.compile(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})\b")
# Where text set by a rule that names no background of its own is drawn.
PAGE_SURFACES = ("bg", "surface", "surface-2")
# Text colours drawn only on their own band: the top bar's, and a command's in its dark box.
BANDS = {"topbar-fg": "topbar", "topbar-muted": "topbar", "code-fg": "code-bg"}


def palette(block: str) -> dict[str, str]:
    return dict(VARIABLE.findall(block))


LIGHT, DARK = palette(LIGHT_ROOT.group(1)), palette(DARK_MEDIA.group(1))


def luminance(colour: str) -> float:
    def linear(c):
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def text_pairs() -> set[tuple[str, str]]:
    """(text, background) variable pairs: a rule's color with its own background, else with the
    surfaces text sits on (a band's text with its band)."""
    pairs = set()
    for body in re.findall(r"\{([^{}]*)\}", NO_COMMENTS):
        fg = re.search(r"(?<![\w-])color:\s*var\(--([\w-]+)\)", body)
        bg = re.search(r"background(?:-color)?:\s*var\(--([\w-]+)\)", body)
        if not fg or fg.group(1) == "star":  # the star is an icon (3:1 is enough), never text
            continue
        if bg:
            pairs.add((fg.group(1), bg.group(1)))
        elif fg.group(1) in BANDS:
            pairs.add((fg.group(1), BANDS[fg.group(1)]))
        else:
            pairs.update((fg.group(1), surface) for surface in PAGE_SURFACES)
    return pairs


def test_every_colour_is_a_variable_with_a_light_and_a_dark_value():
    """Is no colour written outside the two palettes, and does each palette name the same
    colours, every var() used among them?"""
    outside = NO_COMMENTS.replace(LIGHT_ROOT.group(0), "").replace(DARK_MEDIA.group(0), "")
    assert re.findall(r"#[0-9a-fA-F]{3,8}\b|rgba?\(|hsla?\(", outside) == []
    assert re.findall(r"(?:color|background|border[\w-]*|outline[\w-]*)\s*:[^;}]*\b"
                      r"(white|black|red|green|blue|gr[ae]y|silver)\b", outside) == []
    assert LIGHT and set(LIGHT) == set(DARK)
    used = set(re.findall(r"var\(--([\w-]+)\)", NO_COMMENTS))
    assert used <= set(LIGHT), used - set(LIGHT)


@pytest.mark.parametrize("scheme, colours", [("light", LIGHT), ("dark", DARK)])
def test_text_is_at_least_4_5_to_1_in_both_schemes(scheme, colours):
    """Is every text colour the rules use at least 4.5:1 against its background, muted 12 px
    text and every badge included?"""
    pairs = text_pairs()
    assert {("muted", "surface-2"), ("warn", "warn-bg"), ("accent", "accent-bg"),
            ("on-button", "button"), ("topbar-fg", "topbar")} <= pairs  # the parsing found them
    low = {f"{fg} on {bg}: {contrast(colours[fg], colours[bg]):.2f}" for fg, bg in pairs
           if contrast(colours[fg], colours[bg]) < 4.5}
    assert low == set()


def test_a_low_contrast_pair_would_be_caught():
    """Does the measure agree with WCAG's own figures (the old muted grey on the old header
    grey was 4.24:1)?"""
    assert round(contrast("#6b7385", "#f0f2f6"), 2) == 4.24
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
