"""The email's colours in light and dark, each text colour readable on its background.

WCAG 2.x contrast (success criterion 1.4.3, AA): at least 4.5:1 between text and its
background, where the ratio is (L1 + 0.05) / (L2 + 0.05) of the two colours' relative
luminances. The fixed colours below meet it with room; the newsroom's `brand_color`
is whatever the newsroom chose, so the text drawn in it (kickers, section titles) is
darkened on light backgrounds and lightened on dark ones until it does, and the
button's label is white or near-black on it (or the button a darker shade of it).

Dark mode follows the reader's system (`prefers-color-scheme: dark`, Apple Mail, iOS
Mail, Outlook for Mac, Thunderbird) and Outlook.com's own (`[data-ogsc]`/`[data-ogsb]`
selectors); the templates put the classes on the elements (templates/digest.mjml.j2).
"""

from __future__ import annotations

from dataclasses import dataclass

AA = 4.5


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    if len(colour) == 3:
        colour = "".join(c * 2 for c in colour)
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def luminance(colour: str) -> float:
    r, g, b = (_channel(v) for v in _rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two hex colours, 1 to 21."""
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _mix(colour: str, towards: str, amount: float) -> str:
    mixed = (round(c + (t - c) * amount) for c, t in zip(_rgb(colour), _rgb(towards), strict=True))
    return "#" + "".join(f"{v:02x}" for v in mixed)


def readable(colour: str, background: str, minimum: float = AA) -> str:
    """`colour`, or the nearest shade of it (towards black or white, whichever the
    background is not) that reaches `minimum` contrast on `background`."""
    towards = "#000000" if luminance(background) > 0.18 else "#ffffff"
    for step in range(21):
        shade = _mix(colour, towards, step / 20)
        if contrast(shade, background) >= minimum:
            return shade
    return towards


@dataclass(frozen=True)
class Palette:
    """The colours of one scheme (light or dark)."""

    page: str  # behind the 600px column, and the footer
    card: str  # the column itself
    text: str  # greeting, deks
    headline: str  # headlines and Most Read links
    muted: str  # date line, caption, byline
    footer: str  # footer text and links
    brand_text: str  # kickers and section titles, in the brand colour made readable
    rule: str  # the section dividers
    button: str  # the lead's button
    button_text: str


def palettes(brand: str) -> tuple[Palette, Palette]:
    """(light, dark) for a newsroom whose brand colour is `brand`."""
    # The button's label: white, or near-black on a light brand colour; when neither
    # reaches 4.5:1 (a mid red such as #e03a3e), the button is a darker shade of the brand.
    button, button_text = brand, "#ffffff"
    if contrast("#ffffff", brand) < AA:
        if contrast("#111111", brand) >= AA:
            button_text = "#111111"
        else:
            button = readable(brand, "#ffffff")
    light = Palette(
        page="#f2f2f0",
        card="#ffffff",
        text="#1f1f1f",
        headline="#111111",
        muted="#666666",
        footer="#555555",
        brand_text=readable(brand, "#ffffff"),
        rule=brand,
        button=button,
        button_text=button_text,
    )
    dark = Palette(
        page="#121212",
        card="#1e1e1e",
        text="#e4e4e4",
        headline="#f5f5f5",
        muted="#b4b4b4",
        footer="#a9a9a9",
        brand_text=readable(brand, "#1e1e1e"),
        rule=readable(brand, "#1e1e1e", 3.0),  # a graphic, not text: WCAG 1.4.11's 3:1
        button=button,
        button_text=button_text,
    )
    return light, dark
